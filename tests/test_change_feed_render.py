"""The change feed's records are written by the database as JSON (app/data/change_feed.py): whatever a record holds,
each change's record must be the record the list API shows, key for key and value for value (SQLite and
PostgreSQL). Values are written with SQL, past the forms' cleaning, so the database holds what a psql user or a
bulk load could leave: decimals with more places than their scale (SQLite keeps the REAL; its printf would round
8399.185 differently from the list API), datetimes with and without microseconds, every character a text column
takes, booleans and nulls; an entity of more than 50 fields (PostgreSQL's json_build_object takes 100 arguments);
a link whose title is a decimal; masked and hidden fields for a role."""
from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import insert

from conftest import jwt_headers, make_app
from app.portal import portal_of
from test_permissions import PASSWORD, make_user

WIDE_FIELDS = 56

SCHEMA = """
version: 1
module: feedrender
entities:
  Rate:
    title: amount
    fields:
      amount: {type: decimal, precision: 14, scale: 2}
  Label:
    title: name
    fields:
      name: {type: string, required: true}
  Gadget:
    title: name
    fields:
      name: {type: string, length: 200}
      notes: text
      count: {type: integer}
      price: {type: decimal, precision: 12, scale: 2}
      whole: {type: decimal, precision: 8, scale: 0}
      fine: {type: decimal, precision: 12, scale: 4}
      active: {type: boolean}
      made_on: {type: date}
      seen_at: {type: datetime}
      state: {type: enum, choices: {new: {en: New, zh: 新}, old: {en: Old, zh: 旧}}}
      mail: {type: email}
      phone: {type: phone}
      site: {type: url}
      rate: {type: link, to: Rate}
      keeper: {type: user}
      labels: {type: many, to: Label}
      place: {type: address}
  Wide:
    fields:
%(wide)s
roles:
  Viewer:
    can: {Gadget: [read], Wide: [read], Rate: [read], Label: [read]}
    hide: {Gadget: [notes, whole]}
    mask: {Gadget: [phone, price, mail]}
  Recent:
    can: {Gadget: [read]}
    rows: {Gadget: {seen_at: {gt: $now-1h}}}
""" % {"wide": "\n".join(f"      f{n:02d}: {{type: {'integer' if n % 3 == 0 else 'string'}}}" for n in range(WIDE_FIELDS))}


@pytest.fixture(scope="module")
def render_app(tmp_path_factory):
    folder = tmp_path_factory.mktemp("feedrender_schema")
    (folder / "feedrender.yaml").write_text(SCHEMA, encoding="utf-8")
    app = make_app(tmp_path_factory, "feedrender", folder)
    make_user(app, "render_viewer", "Viewer")
    return app


class Reader:
    """Reads the feed from where it last stopped, and a record from the list API, as one user."""

    def __init__(self, app, user=None):
        self.client = app.test_client()
        self.headers = jwt_headers(self.client) if user is None else jwt_headers(self.client, user, PASSWORD)
        self.since = {}

    def new_changes(self, entity: str) -> list:
        args = {"limit": 1000} | ({"since": self.since[entity]} if entity in self.since else {})
        response = self.client.get(f"/api/v1/{entity}/changes", headers=self.headers, query_string=args)
        assert response.status_code == 200, response.data[:500]
        assert response.mimetype == "application/json"
        page = json.loads(response.data)  # strict JSON: no NaN, no stray control characters
        self.since[entity] = page["next"]
        return page["changes"]

    def listed(self, entity: str, pk: int) -> dict:
        """The newest record, as the list shows it (the tests write one record at a time)."""
        response = self.client.get(f"/api/v1/{entity}/", headers=self.headers,
                                   query_string={"q": "(order_column:id,order_direction:desc,page:0,page_size:1)"})
        assert response.status_code == 200, response.json
        [record] = response.json["result"]
        assert record["id"] == pk
        return record


texts = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40)
moments = st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2200, 12, 31))
halfway = st.sampled_from([Decimal("8399.185"), Decimal("-4342.915"), Decimal("2.675"), Decimal("0.125"),
                           Decimal("1.005"), Decimal("0")])
prices = st.none() | halfway | st.decimals(min_value=-10 ** 9, max_value=10 ** 9, places=3)
gadgets = st.fixed_dictionaries({
    "name": st.none() | texts, "notes": st.none() | texts, "count": st.none() | st.integers(-2 ** 31 + 1, 2 ** 31 - 1),
    "price": prices, "whole": st.none() | st.decimals(min_value=-10 ** 7, max_value=10 ** 7, places=1),
    "fine": st.none() | st.decimals(min_value=-10 ** 7, max_value=10 ** 7, places=5),
    "active": st.none() | st.booleans(), "made_on": st.none() | st.dates(),
    "seen_at": st.none() | moments | moments.map(lambda m: m.replace(microsecond=0)),
    "state": st.none() | st.sampled_from(["new", "old"]), "mail": st.none() | texts, "phone": st.none() | texts,
    "site": st.none() | texts, "place": st.none() | texts, "place_city": st.none() | texts,
    "place_parsed": st.none() | st.booleans(),
})


def write(app, entity: str, values: dict) -> int:
    """Insert with SQL, past the forms and the API (the log triggers see it like any write)."""
    now = dt.datetime.now()
    with app.app_context():
        table = portal_of(app).models[entity].__table__
        with app.appbuilder.session.get_bind().begin() as conn:
            return conn.execute(insert(table).values(created_on=now, changed_on=now, row_version=1, **values)).inserted_primary_key[0]


# no shrinking: each example writes and reads over HTTP (a shrink ran minutes); the failing example is printed
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture],
          phases=(Phase.explicit, Phase.reuse, Phase.generate))
@example(values={"price": Decimal("8399.185"), "fine": Decimal("2.00005"), "active": False, "place_parsed": True,
                 "seen_at": dt.datetime(2026, 1, 2, 3, 4, 5, 120000), "name": '"\\\u2028\x01中'},
         with_rate=True, rate=Decimal("-4342.915"), with_keeper=True, labels=2)
@given(values=gadgets, with_rate=st.booleans(), rate=prices, with_keeper=st.booleans(), labels=st.integers(0, 3))
def test_every_value_is_written_as_the_list_api_writes_it(render_app, values, with_rate, rate, with_keeper, labels):
    readers = getattr(render_app, "_render_readers", None)
    if readers is None:
        readers = render_app._render_readers = (Reader(render_app), Reader(render_app, "render_viewer"))
        for reader in readers:
            reader.new_changes("gadget")
    fields = dict(values)
    if with_rate:
        fields["rate_id"] = write(render_app, "Rate", {"amount": rate})
    if with_keeper:
        with render_app.app_context():
            fields["keeper_id"] = render_app.appbuilder.sm.find_user(username="admin").id
    pk = write(render_app, "Gadget", fields)
    if labels:
        with render_app.app_context():
            portal = portal_of(render_app)
            secondary = portal.models["Gadget"].labels.property.secondary
            label_ids = [write(render_app, "Label", {"name": f"l{n}"}) for n in range(labels)]
            with render_app.appbuilder.session.get_bind().begin() as conn:
                conn.execute(insert(secondary), [{"left_id": pk, "right_id": i} for i in reversed(label_ids)])
    for reader in readers:
        changes = reader.new_changes("gadget")
        assert [(c["op"], c["id"]) for c in changes] == [("create", pk)]
        assert changes[0]["record"] == reader.listed("gadget", pk)


def test_an_entity_of_more_than_fifty_fields(render_app):
    reader = Reader(render_app)
    reader.new_changes("wide")
    values = {f"f{n:02d}": (n * 7 if n % 3 == 0 else f"值{n}\"\\\n") for n in range(WIDE_FIELDS)}
    values["f05"] = None
    pk = write(render_app, "Wide", values)
    [change] = reader.new_changes("wide")
    assert change["record"] == reader.listed("wide", pk)
    assert len(change["record"]) == WIDE_FIELDS + 4  # id, created_on, changed_on, row_version


def test_masked_and_hidden_fields_and_a_decimal_title(render_app):
    admin, viewer = Reader(render_app), Reader(render_app, "render_viewer")
    for reader in (admin, viewer):
        reader.new_changes("gadget")
    rate = write(render_app, "Rate", {"amount": Decimal("8399.185")})
    pk = write(render_app, "Gadget", {"name": "张三的设备", "phone": "+8613800138000", "price": Decimal("1234567.5"),
                                      "notes": "secret", "whole": Decimal("7"), "rate_id": rate})
    [seen] = viewer.new_changes("gadget")
    assert seen["record"]["phone"] == "138****8000" and seen["record"]["price"] == "123****7.50"
    assert "notes" not in seen["record"] and "whole" not in seen["record"]
    [full] = admin.new_changes("gadget")
    assert full["record"]["rate"] == {"id": rate, "amount": admin.listed("gadget", pk)["rate"]["amount"]}
    assert full["record"]["whole"] == "7" and full["record"]["notes"] == "secret"
    for reader, change in ((admin, full), (viewer, seen)):
        assert change["record"] == reader.listed("gadget", pk)


def test_a_scope_with_now_is_built_for_each_page(render_app):
    """A row scope with `$now` is resolved to a moment when the page's statement is built: such a statement is
    never kept (kept for the day, `$now-1h` stayed the moment of the first page), others are (review)."""
    from flask import g
    from flask_login import login_user

    from app.data.change_feed import ChangeFeed
    from app.rules.access import current_viewer
    make_user(render_app, "render_recent", "Recent")
    portal = portal_of(render_app)
    statements = {}
    for user in ("admin", "render_viewer", "render_recent"):
        with render_app.test_request_context():
            g.user = render_app.appbuilder.sm.find_user(username=user)
            login_user(g.user)
            assert current_viewer().user_id == g.user.id
            feed = ChangeFeed(portal.spec, portal.spec.entity("Gadget"), portal.models,
                              portal.change_logs["Gadget"], portal.metadata, current_viewer())
            statements[user] = [feed.prepared("sqlite")[0] for _ in range(2)]
    assert statements["admin"][0] is statements["admin"][1]
    assert statements["render_viewer"][0] is statements["render_viewer"][1]
    assert statements["render_recent"][0] is not statements["render_recent"][1]
