"""An app's own field type, registered with PORTAL_FIELD_TYPES, used by every runtime part through the registry.

`percent` exists only here: a number from 0 to 100 with two decimals, typed as "12.5" or "12.5 %", shown
and exported as "12.5 %". Adding it touched this module only.
"""
from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest
from conftest import ASSETS, jwt_headers, login, make_app
from sqlalchemy import Column, Integer, MetaData, Table, insert, select

from app.fieldtypes import BUILTIN_TYPES, FieldError, FieldType, field_types, type_of
from app.fieldtypes.base import _l, check_bounds
from app.fieldtypes.numbers import DecimalType, parse_number
from app.generate.columns import formatters
from app.generate.input_errors import clean_filter_value
from app.rules.records import clean_value
from app.schema.spec import EntitySpec, FieldSpec, Label


class PercentType(DecimalType):
    name = "percent"
    option_keys = ("min", "max")
    maskable = False

    def column_type(self, field):
        from sqlalchemy import Numeric

        return Numeric(5, 2, asdecimal=True)

    def clean(self, field, value) -> Decimal:
        if isinstance(value, str):
            value = value.strip().removesuffix("%")
        number = parse_number(value)
        if not 0 <= number <= 100:
            raise FieldError(_l("Must be at least %(min)s.", min=0) if number < 0 else _l("Must be at most %(max)s.", max=100))
        return check_bounds(field, number.quantize(Decimal("0.01")))

    def clean_filter(self, field, operator, value):
        return FieldType.clean_filter(self, field, operator, value)  # "5 %" as typed, not Decimal's filter rule

    def display(self, field):
        return lambda value: f"{value.normalize():f} %"

    def export_converter(self, field):
        show = self.display(field)
        return lambda v: "" if v is None else show(v if isinstance(v, Decimal) else Decimal(str(v)))

    def export_sql(self, field, column):
        from sqlalchemy import Text, cast, func

        return cast(func.trim_scale(column), Text) + " %"

    def openapi_schema(self, field) -> dict:
        return {"type": "number", "minimum": 0, "maximum": 100, "description": "a percentage"}

    def filter_operators(self, field):
        from flask_appbuilder.models.sqla.filters import FilterEqual, FilterGreater, FilterSmaller

        return [FilterEqual, FilterGreater, FilterSmaller]


RATE = FieldSpec(name="rate", type="percent", label=Label.plain("Rate"))


@pytest.fixture(scope="module")
def percent_app(tmp_path_factory):
    return make_app(tmp_path_factory, "percent", schema_dir=ASSETS, PORTAL_FIELD_TYPES=[PercentType])


def test_the_type_is_known_to_its_app_only(percent_app, app):
    assert field_types(percent_app)["percent"].name == "percent"
    assert "percent" not in field_types(app) and "percent" not in BUILTIN_TYPES
    with percent_app.app_context():
        assert type_of(RATE).name == "percent"
    with app.app_context(), pytest.raises(ValueError, match="unknown field type 'percent' of field 'rate'"):
        type_of(RATE)


def test_types_can_be_given_by_dotted_path():
    from flask import Flask

    other = Flask("other")
    other.config["PORTAL_FIELD_TYPES"] = [f"{__name__}.PercentType"]
    assert field_types(other)["percent"].name == "percent"
    assert field_types(other) is field_types(other)  # built once per app


def test_cleaning_goes_through_the_apps_registry(percent_app):
    with percent_app.test_request_context("/?_l_=en"):
        assert clean_value(RATE, "12.5 %") == Decimal("12.50")
        assert clean_value(RATE, 0.125 * 100) == Decimal("12.50")  # a spreadsheet cell
        assert clean_value(RATE, "  ") is None
        with pytest.raises(FieldError, match=r"^Must be at most 100\.$"):
            clean_value(RATE, "101")
        with pytest.raises(FieldError, match=r"^Must be a number\.$"):
            clean_value(RATE, "lots")
        assert clean_filter_value(RATE, "gt", "5 %") == Decimal("5.00")
    with percent_app.test_request_context("/?_l_=zh"):
        with pytest.raises(FieldError) as caught:
            clean_value(RATE, "lots")
        assert str(caught.value) != "Must be a number."


def test_column_display_and_export_cell(percent_app):
    """The type's column holds its values on this database; list pages and exports show them its way."""
    with percent_app.test_request_context("/?_l_=en"):
        ftype = type_of(RATE)
        table = Table("percent_probe", MetaData(), Column("id", Integer, primary_key=True),
                      Column("rate", ftype.column_type(RATE)))
        engine = percent_app.appbuilder.session.get_bind()
        table.create(engine)
        try:
            with engine.begin() as conn:
                conn.execute(insert(table), [{"rate": clean_value(RATE, "12.5%")}, {"rate": None}])
                stored = conn.execute(select(table.c.rate).order_by(table.c.id)).scalars().all()
                assert stored == [Decimal("12.50"), None]
                export = ftype.export_converter(RATE)
                assert [export(v) for v in stored] == ["12.5 %", ""]
                if engine.dialect.name == "postgresql":  # what the CSV export's COPY writes
                    assert conn.execute(select(ftype.export_sql(RATE, table.c.rate)).order_by(table.c.id)).scalars().all() == ["12.5 %", None]
        finally:
            table.drop(engine)
        entity = EntitySpec(name="Probe", module="m", label=Label.plain("Probe"), file="x.yaml", line=1, fields=(RATE,))
        assert formatters(entity)["rate"](Decimal("12.50")) == "12.5 %"
        assert formatters(entity)["rate"](None) == ""


def test_openapi_schema_of_the_value(percent_app):
    assert field_types(percent_app)["percent"].openapi_schema(RATE) == {
        "type": "number", "minimum": 0, "maximum": 100, "description": "a percentage"}
    assert BUILTIN_TYPES["decimal"].openapi_schema(RATE)["oneOf"] == [{"type": "string"}, {"type": "number"}]



def test_end_to_end_from_yaml_to_pages_api_and_export(tmp_path_factory):
    schemas = tmp_path_factory.mktemp("percent-schemas")
    (schemas / "rates.yaml").write_text(
        "version: 1\nmodule: rates\nentities:\n  Rate:\n    title: name\n    fields:\n"
        "      name: {type: string, required: true}\n      rate: {type: percent, max: 50}\n", encoding="utf-8")
    app = make_app(tmp_path_factory, "percent_e2e", schema_dir=schemas, PORTAL_FIELD_TYPES=[PercentType])
    client = login(app.test_client())
    headers = jwt_headers(client)
    created = client.post("/api/v1/rate/", json={"name": "VAT", "rate": "12.5 %"}, headers=headers)
    assert created.status_code == 201, created.json
    assert client.get(f"/api/v1/rate/{created.json['id']}", headers=headers).json["result"]["rate"] in ("12.50", 12.5)
    refused = client.post("/api/v1/rate/", json={"name": "Too much", "rate": "60"}, headers=headers)
    assert refused.status_code == 422 and refused.json["message"]["rate"] == ["Must be at most 50."]
    assert "12.5 %" in client.get("/rate/list/").get_data(as_text=True)
    rows = list(csv.reader(io.StringIO(client.get("/rate/export/csv").get_data(as_text=True).lstrip("\ufeff"))))
    assert rows[0][0] == "ID" and rows[1][2] == "12.5 %"
    # the type names its filter operators; the string field keeps FAB's by column type
    filters = client.get("/api/v1/rate/_info", headers=headers).json["filters"]
    assert [f["operator"] for f in filters["rate"]] == ["eq", "gt", "lt"]
    assert "ct" in [f["operator"] for f in filters["name"]]
    client.post("/api/v1/rate/", json={"name": "Low", "rate": "3"}, headers=headers)
    above = client.get("/api/v1/rate/?q=(filters:!((col:rate,opr:gt,value:'10 %')))", headers=headers)
    assert above.status_code == 200 and [r["name"] for r in above.json["result"]] == ["VAT"]
