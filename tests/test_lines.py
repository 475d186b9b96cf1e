"""Inline lines (`lines: [OrderLine]`): nested in the parent's API and edited as a grid on its form, saved in one
transaction through the child's record rules; permissions; checker codes. Uses the shipped purchasing module."""
from __future__ import annotations

import io
import re
import textwrap
from decimal import Decimal

import pytest
from sqlalchemy import select

from app.portal import portal_of
from app.schema import load_portal
from conftest import jwt_headers, login, make_app

PASSWORD = "Lines-pass-1"


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    app = make_app(tmp_path_factory, "lines")
    with app.app_context():
        sm = app.appbuilder.sm
        for name, role in (("buyer", "Buyer"), ("keeper", "Warehouse")):
            sm.add_user(name, name, "Test", f"{name}@example.com", [sm.find_role(role)], PASSWORD)
    client = app.test_client()
    headers = jwt_headers(client)
    supplier = client.post("/api/v1/supplier/", json={"name": "宏达五金"}, headers=headers)
    assert supplier.status_code == 201, supplier.json
    return app, supplier.json["id"]


@pytest.fixture()
def api(shop):
    app, _ = shop
    client = app.test_client()
    headers = jwt_headers(client)

    class Api:
        def __getattr__(self, method):
            return lambda url, **kw: getattr(client, method)(url, headers={**headers, **kw.pop("headers", {})}, **kw)

    return Api()


def stored_lines(app, order_id) -> list[tuple]:
    """(item, qty, unit_price, amount) of an order's lines, straight from the table, by id."""
    model = portal_of(app).models["OrderLine"]
    with app.app_context():
        session = app.appbuilder.session
        rows = session.execute(select(model.item, model.qty, model.unit_price, model.amount)
                               .where(model.order_id == order_id).order_by(model.id)).all()
        session.rollback()
    return [tuple(r) for r in rows]


def count(app, entity) -> int:
    model = portal_of(app).models[entity]
    with app.app_context():
        session = app.appbuilder.session
        n = len(session.scalars(select(model.id)).all())
        session.rollback()
    return n


def new_order(api, supplier, lines):
    response = api.post("/api/v1/purchase_order/", json={"supplier": supplier, "lines": lines})
    assert response.status_code == 201, response.json
    return response.json


# -- API -------------------------------------------------------------------------------------------

def test_api_creates_an_order_with_its_lines_in_one_request(shop, api):
    app, supplier = shop
    body = new_order(api, supplier, [{"item": "螺丝", "qty": "10", "unit_price": "0.35"},
                                     {"item": "扳手", "qty": 2, "unit_price": "45.5"}])
    assert re.fullmatch(r"PO-\d{4}-\d{4}", body["result"]["number"])
    assert [(line["item"], line["amount"]) for line in body["result"]["lines"]] == [("螺丝", "3.50"), ("扳手", "91.00")]
    assert body["result"]["total"] == "94.50"  # the order's rollup, kept in the same transaction
    assert stored_lines(app, body["id"]) == [("螺丝", Decimal("10.000"), Decimal("0.35"), Decimal("3.50")),
                                            ("扳手", Decimal("2.000"), Decimal("45.50"), Decimal("91.00"))]
    got = api.get(f"/api/v1/purchase_order/{body['id']}")
    assert got.status_code == 200
    assert [line["item"] for line in got.json["result"]["lines"]] == ["螺丝", "扳手"]
    assert all(line["order"]["id"] == body["id"] for line in got.json["result"]["lines"])


def test_api_put_updates_creates_and_deletes_missing_lines(shop, api):
    app, supplier = shop
    body = new_order(api, supplier, [{"item": "A", "qty": 1, "unit_price": 1}, {"item": "B", "qty": 1, "unit_price": 2},
                                     {"item": "C", "qty": 1, "unit_price": 3}])
    a, b, c = (line["id"] for line in body["result"]["lines"])
    response = api.put(f"/api/v1/purchase_order/{body['id']}",
                       json={"lines": [{"id": a}, {"id": c, "qty": 3}, {"item": "D", "qty": 4, "unit_price": "2.5"}]})
    assert response.status_code == 200, response.json
    assert stored_lines(app, body["id"]) == [("A", 1, 1, 1), ("C", 3, 3, 9), ("D", 4, Decimal("2.5"), 10)]
    assert [line["item"] for line in response.json["result"]["lines"]] == ["A", "C", "D"]
    assert response.json["result"]["total"] == "20.00"  # 1 + 9 + 10: the deleted line left the total
    # a PUT without `lines` leaves them alone; the parent's other fields change
    response = api.put(f"/api/v1/purchase_order/{body['id']}", json={"status": "ordered"})
    assert response.status_code == 200, response.json
    assert [line[0] for line in stored_lines(app, body["id"])] == ["A", "C", "D"]
    # an empty list removes every line
    assert api.put(f"/api/v1/purchase_order/{body['id']}", json={"lines": []}).status_code == 200
    assert stored_lines(app, body["id"]) == []
    assert api.get(f"/api/v1/purchase_order/{body['id']}").json["result"]["total"] == "0.00"
    assert b not in [line["id"] for line in api.get(f"/api/v1/purchase_order/{body['id']}").json["result"]["lines"]]


def test_api_line_errors_are_per_line_and_nothing_is_stored(shop, api):
    app, supplier = shop
    orders, lines = count(app, "PurchaseOrder"), count(app, "OrderLine")
    response = api.post("/api/v1/purchase_order/", json={
        "supplier": supplier, "status": "nope",
        "lines": [{"item": "ok", "qty": 1, "unit_price": 1}, {"item": "bad", "qty": 0, "unit_price": 1},
                  {"qty": "x", "unit_price": 1, "amount": 5}]})
    assert response.status_code == 422
    message = response.json["message"]
    assert "status" in message  # the parent's own field errors sit next to the lines'
    first, second, third = message["lines"]
    assert first == {}
    assert second == {"qty": ["The quantity must be more than zero"]}
    assert set(third) == {"qty", "item", "amount"}  # not a number, required, computed (read-only)
    assert (count(app, "PurchaseOrder"), count(app, "OrderLine")) == (orders, lines)

    # an update with one bad line changes nothing: neither the good line, nor deletes, nor the parent
    body = new_order(api, supplier, [{"item": "keep", "qty": 1, "unit_price": 1}, {"item": "gone?", "qty": 1, "unit_price": 1}])
    keep = body["result"]["lines"][0]["id"]
    before = stored_lines(app, body["id"])
    response = api.put(f"/api/v1/purchase_order/{body['id']}", json={
        "status": "ordered", "lines": [{"id": keep, "qty": 7}, {"item": "new", "qty": -1, "unit_price": 1}]})
    assert response.status_code == 422
    assert response.json["message"] == {"lines": [{}, {"qty": ["The quantity must be more than zero"]}]}
    assert stored_lines(app, body["id"]) == before
    assert api.get(f"/api/v1/purchase_order/{body['id']}").json["result"]["status"] == "draft"


def test_api_refuses_lines_of_other_orders_and_bad_shapes(shop, api):
    app, supplier = shop
    one = new_order(api, supplier, [{"item": "X", "qty": 1, "unit_price": 1}])
    two = new_order(api, supplier, [{"item": "Y", "qty": 1, "unit_price": 1}])
    foreign = two["result"]["lines"][0]["id"]
    response = api.put(f"/api/v1/purchase_order/{one['id']}", json={"lines": [{"id": foreign, "qty": 5}]})
    assert response.status_code == 422
    assert response.json["message"]["lines"][0]["id"] == [f"No line with id {foreign} on this record."]
    response = api.put(f"/api/v1/purchase_order/{one['id']}",
                       json={"lines": [{"item": "Z", "qty": 1, "unit_price": 1, "order": two["id"]}]})
    assert response.status_code == 422 and "order" in response.json["message"]["lines"][0]
    for bad in ("x", [1], {"item": "a"}):
        response = api.put(f"/api/v1/purchase_order/{one['id']}", json={"lines": bad})
        assert response.status_code == 422, (bad, response.json)
    assert stored_lines(app, two["id"]) == [("Y", 1, 1, 1)] and stored_lines(app, one["id"]) == [("X", 1, 1, 1)]


def test_openapi_and_info_describe_lines(shop, api):
    spec = api.get("/api/v1/_openapi").json
    schemas = spec["components"]["schemas"]
    assert schemas["PurchaseOrderApi.get"]["properties"]["lines"]["items"] == {"$ref": "#/components/schemas/OrderLineApi.get"}
    assert schemas["PurchaseOrderApi.post"]["properties"]["lines"]["type"] == "array"
    info = api.get("/api/v1/purchase_order/_info").json
    [lines] = [c for c in info["add_columns"] if c["name"] == "lines"]
    assert (lines["type"], lines["entity"], lines["link"]) == ("Lines", "OrderLine", "order")
    assert lines["fields"] == ["item", "qty", "unit_price"]  # amount is computed


def test_info_leaves_out_child_fields_hidden_from_the_role(shop):
    app, _ = shop
    client = app.test_client()
    info = client.get("/api/v1/purchase_order/_info", headers=jwt_headers(client, "keeper", PASSWORD)).json
    [lines] = [c for c in info["edit_columns"] if c["name"] == "lines"]
    assert lines["fields"] == ["item", "qty"]


# -- permissions -----------------------------------------------------------------------------------

def test_hidden_child_fields_are_not_shown_or_writable_in_lines(shop, api):
    app, supplier = shop
    body = new_order(api, supplier, [{"item": "钢管", "qty": 2, "unit_price": "12.5"}])
    client = app.test_client()
    keeper = jwt_headers(client, "keeper", PASSWORD)
    got = client.get(f"/api/v1/purchase_order/{body['id']}", headers=keeper).json["result"]["lines"]
    assert got[0]["item"] == "钢管" and "unit_price" not in got[0] and "amount" not in got[0]  # amount reads unit_price
    # the warehouse may update orders but only read lines: a change to the lines is refused, nothing stored
    line = got[0]["id"]
    response = client.put(f"/api/v1/purchase_order/{body['id']}", headers=keeper,
                          json={"status": "received", "lines": [{"id": line, "qty": 1}]})
    assert response.status_code == 422
    assert response.json["message"]["lines"][0] == {"id": ["You may not change lines."]}
    response = client.put(f"/api/v1/purchase_order/{body['id']}", headers=keeper, json={"lines": []})
    assert response.status_code == 422 and response.json["message"]["lines"] == ["You may not remove lines."]
    assert stored_lines(app, body["id"]) == [("钢管", 2, Decimal("12.5"), 25)]
    # the buyer may edit lines, but a hidden field would be refused (here: none hidden for buyers)
    buyer = jwt_headers(client, "buyer", PASSWORD)
    response = client.put(f"/api/v1/purchase_order/{body['id']}", headers=buyer, json={"lines": [{"id": line, "qty": 3}]})
    assert response.status_code == 200, response.json
    assert stored_lines(app, body["id"]) == [("钢管", 3, Decimal("12.5"), Decimal("37.5"))]


# -- checker codes ---------------------------------------------------------------------------------

@pytest.mark.parametrize("entities,code", [  # the problem is reported at the lines: of the entity on line 4 (or 5)
    ("A: {fields: {x: string}, lines: [Nope]}", "E481"),
    ("A: {fields: {x: string}, lines: [B]}\n  B: {fields: {y: string}}", "E482"),
    ("A: {fields: {x: string}, lines: [B]}\n  B: {fields: {p: {type: link, to: A}, q: {type: link, to: A}}}", "E483"),
    ("A: {fields: {x: string, p: {type: link, to: A}}, lines: [A]}", "E484"),
    ("A: {fields: {x: string}, lines: [C]}\n  B: {fields: {x: string}, lines: [C]}\n"
     "  C: {fields: {a: {type: link, to: A}, b: {type: link, to: B}}}", "E485@5"),
    ("A: {fields: {lines: string}, lines: [B]}\n  B: {fields: {a: {type: link, to: A}}}", "E486"),
    # a second lines entity's key is its snake_case name: never one the portal uses (row_version, csrf_token, id)
    ("A: {fields: {x: string}, lines: [B, RowVersion]}\n  B: {fields: {a: {type: link, to: A}}}\n"
     "  RowVersion: {fields: {a: {type: link, to: A}}}", "E486"),
    ("A: {fields: {x: string}, lines: [B, CsrfToken]}\n  B: {fields: {a: {type: link, to: A}}}\n"
     "  CsrfToken: {fields: {a: {type: link, to: A}}}", "E486"),
    ("A: {fields: {x: string}, lines: 5}", "E480"),
])
def test_checker_codes_at_the_lines_line(tmp_path, entities, code):
    text = "version: 1\nmodule: m\nentities:\n  " + entities + "\n"
    (tmp_path / "m.yaml").write_text(text, encoding="utf-8")
    spec, problems = load_portal(tmp_path)
    assert spec is None
    code, _, line = code.partition("@")
    assert [(p.code, p.line) for p in problems] == [(code, int(line or 4))], [str(p) for p in problems]


def test_checker_accepts_several_line_entities_and_names_their_keys(tmp_path):
    (tmp_path / "m.yaml").write_text(textwrap.dedent("""\
        version: 1
        module: m
        entities:
          Order: {fields: {x: string}, lines: [OrderLine, DeliveryNote]}
          OrderLine: {fields: {order: {type: link, to: Order}}}
          DeliveryNote: {fields: {order: {type: link, to: Order}, other: {type: link, to: OrderLine}}}
        """), encoding="utf-8")
    spec, problems = load_portal(tmp_path)
    assert problems == []
    assert spec.entity("Order").lines_keys == (("lines", "OrderLine"), ("delivery_note", "DeliveryNote"))
    assert spec.back_link("DeliveryNote", "Order").name == "order"


# -- forms -----------------------------------------------------------------------------------------

def order_form(supplier, rows: list[dict], **fields) -> dict:
    """The add/edit form as the browser posts it: the grid's rows as lines-<n>-<field> inputs."""
    data = {"supplier": str(supplier), "order_date": "2026-03-01", "status": "draft", "lines-rows": "1", **fields}
    for n, row in enumerate(rows):
        data.update({f"lines-{n}-{name}": value for name, value in row.items()})
    return data


def orders_by_note(app, note) -> list[int]:
    model = portal_of(app).models["PurchaseOrder"]
    with app.app_context():
        session = app.appbuilder.session
        ids = session.scalars(select(model.id).where(model.notes == note)).all()
        session.rollback()
    return list(ids)


def test_form_adds_an_order_with_lines_and_edits_them(shop):
    app, supplier = shop
    client = login(app.test_client())
    response = client.post("/purchase_order/add", data=order_form(supplier, [
        {"item": "水泥", "qty": "3", "unit_price": "20.5"}, {"item": "沙子", "qty": "2", "unit_price": "7"}], notes="form-add"))
    assert response.status_code == 302, response.data.decode()[-3000:]
    [order] = orders_by_note(app, "form-add")
    assert stored_lines(app, order) == [("水泥", 3, Decimal("20.5"), Decimal("61.5")), ("沙子", 2, 7, 14)]
    # the edit form shows the lines as rows with their ids; the amount is read-only
    page = client.get(f"/purchase_order/edit/{order}").data.decode()
    ids = [int(i) for i in re.findall(r'name="lines-\d+-id" value="(\d+)"', page)]
    assert len(ids) == 2 and 'name="lines-0-amount"' not in page and ">61.50<" in page
    # edit: change the first row, drop the second, add one
    response = client.post(f"/purchase_order/edit/{order}", data=order_form(supplier, [
        {"id": str(ids[0]), "item": "水泥", "qty": "4", "unit_price": "20.5"},
        {"item": "石子", "qty": "1", "unit_price": "9.99"}], notes="form-add"))
    assert response.status_code == 302, response.data.decode()[-3000:]
    assert stored_lines(app, order) == [("水泥", 4, Decimal("20.5"), 82), ("石子", 1, Decimal("9.99"), Decimal("9.99"))]


def test_form_row_errors_are_shown_in_their_row_and_nothing_is_stored(shop):
    app, supplier = shop
    client = login(app.test_client())
    orders, lines = count(app, "PurchaseOrder"), count(app, "OrderLine")
    response = client.post("/purchase_order/add", data=order_form(supplier, [
        {"item": "好的", "qty": "1", "unit_price": "2"}, {"item": "<b>坏</b>", "qty": "0", "unit_price": "2"}], notes="form-bad"))
    assert response.status_code == 200
    page = response.data.decode()
    rows = re.findall(r'<tr class="portal-line">(.*?)</tr>', page.split("<template")[0], re.S)
    assert len(rows) == 2
    assert "must be more than zero" not in rows[0] and "The quantity must be more than zero" in rows[1]
    assert 'value="&lt;b&gt;坏&lt;/b&gt;"' in rows[1] and "<b>坏" not in page  # kept, escaped
    assert (count(app, "PurchaseOrder"), count(app, "OrderLine")) == (orders, lines)
    # a parent error and a line error at once: both shown, nothing stored
    response = client.post("/purchase_order/add", data=order_form(supplier, [{"item": "", "qty": "1", "unit_price": "x"}],
                                                                  status="nope", notes="form-bad"))
    page = response.data.decode()
    assert response.status_code == 200 and "Not a valid choice" in page
    row = re.findall(r'<tr class="portal-line">(.*?)</tr>', page.split("<template")[0], re.S)[0]
    assert "This field is required." in row and "number" in row.lower()
    assert (count(app, "PurchaseOrder"), count(app, "OrderLine")) == (orders, lines)
    # on edit, one bad row keeps the stored lines as they were
    body = new_order(_admin_api(app), supplier, [{"item": "原", "qty": 1, "unit_price": 1}])
    before = stored_lines(app, body["id"])
    line = body["result"]["lines"][0]["id"]
    response = client.post(f"/purchase_order/edit/{body['id']}", data=order_form(supplier, [
        {"id": str(line), "item": "改", "qty": "5", "unit_price": "1"}, {"item": "新", "qty": "-2", "unit_price": "1"}]))
    assert response.status_code == 200 and "The quantity must be more than zero" in response.data.decode()
    assert stored_lines(app, body["id"]) == before


def _admin_api(app):
    client = app.test_client()
    headers = jwt_headers(client)

    class Api:
        def post(self, url, json):
            return client.post(url, json=json, headers=headers)

    return Api()


def test_form_grid_follows_the_child_permissions(shop):
    app, supplier = shop
    body = new_order(_admin_api(app), supplier, [{"item": "木板", "qty": 2, "unit_price": "30"}])
    keeper = login(app.test_client(), "keeper", PASSWORD)
    page = keeper.get(f"/purchase_order/edit/{body['id']}").data.decode()
    grid = page[page.index('class="portal-lines"'):page.index("portal/lines.js")]
    assert "木板" in grid and "lines-rows" not in grid and "<input" not in grid  # read-only: no inputs
    assert "portal-line-add" not in grid and "portal-line-remove" not in grid
    assert 'data-column="unit_price"' not in grid and 'data-column="amount"' not in grid  # hidden (amount reads it)
    # a forged grid post from a read-only user changes nothing
    response = keeper.post(f"/purchase_order/edit/{body['id']}", data=order_form(supplier, [], status="received"))
    assert response.status_code == 200 and "You may not remove lines." in response.data.decode()
    assert stored_lines(app, body["id"]) == [("木板", 2, 30, 60)]
    # without the grid in the post, the warehouse updates the order and the lines stay
    data = order_form(supplier, [], status="received")
    del data["lines-rows"]
    assert keeper.post(f"/purchase_order/edit/{body['id']}", data=data).status_code == 302
    assert stored_lines(app, body["id"]) == [("木板", 2, 30, 60)]
    # the buyer edits lines in the grid
    buyer = login(app.test_client(), "buyer", PASSWORD)
    page = buyer.get(f"/purchase_order/edit/{body['id']}").data.decode()
    assert "portal-line-add" in page and 'name="lines-0-unit_price"' in page


# -- two lines entities, a link picker in the grid, a hidden field ---------------------------

JOBS = """\
    version: 1
    module: jobs
    label: {en: Jobs, zh: 作业}
    entities:
      Part:
        label: {en: Part, zh: 零件}
        title: name
        fields:
          name: {type: string, length: 40, required: true, label: {en: Name, zh: 名称}}
      Job:
        label: {en: Job, zh: 作业}
        title: code
        fields:
          code: {type: string, length: 20, required: true, label: {en: Code, zh: 编号}}
        lines: [JobPart, JobNote]
      JobPart:
        label: {en: Job part, zh: 作业零件}
        fields:
          job: {type: link, to: Job, required: true, on_delete: cascade, label: {en: Job, zh: 作业}}
          part: {type: link, to: Part, required: true, label: {en: Part, zh: 零件}}
          urgent: {type: boolean, default: false, label: {en: Urgent, zh: 加急}}
          cost: {type: decimal, label: {en: Cost, zh: 成本}}
      JobNote:
        label: {en: Job note, zh: 作业备注}
        fields:
          job: {type: link, to: Job, required: true, on_delete: cascade, label: {en: Job, zh: 作业}}
          text: {type: string, length: 100, required: true, label: {en: Text, zh: 内容}}
    roles:
      Fitter:
        label: {en: Fitter, zh: 装配工}
        can: {Part: [read], Job: [read, create, update], JobPart: [read, create, update, delete], JobNote: [read]}
        hide: {JobPart: [cost]}
    """


@pytest.fixture(scope="module")
def jobs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("jobs-schema")
    (folder / "jobs.yaml").write_text(textwrap.dedent(JOBS), encoding="utf-8")
    app = make_app(tmp_path_factory, "lines_jobs", schema_dir=folder)
    with app.app_context():
        sm = app.appbuilder.sm
        sm.add_user("fitter", "fitter", "Test", "fitter@example.com", [sm.find_role("Fitter")], PASSWORD)
    client = app.test_client()
    part = client.post("/api/v1/part/", json={"name": "<i>轴承</i>"}, headers=jwt_headers(client))
    assert part.status_code == 201, part.json
    return app, part.json["id"]


def test_second_lines_entity_goes_under_its_snake_case_name(jobs):
    app, part = jobs
    client = app.test_client()
    headers = jwt_headers(client)
    response = client.post("/api/v1/job/", headers=headers, json={
        "code": "J1", "lines": [{"part": part, "urgent": True, "cost": "3"}], "job_note": [{"text": "小心"}]})
    assert response.status_code == 201, response.json
    result = response.json["result"]
    assert result["lines"][0]["part"]["id"] == part and result["lines"][0]["urgent"] is True
    assert [n["text"] for n in result["job_note"]] == ["小心"]


def test_grid_link_cells_use_the_type_ahead_picker_and_hidden_fields_stay_out(jobs):
    app, part = jobs
    fitter = login(app.test_client(), "fitter", PASSWORD)
    page = fitter.get("/job/add").data.decode()
    template = page[page.index('<template class="portal-line-template">'):page.index("</template>")]
    assert 'class="portal-lookup form-control"' in template and 'data-lookup-url="/job_part/lookup/part"' in template
    assert "cost" not in template  # hidden from fitters: neither shown nor posted
    # notes are read-only for fitters: no grid inputs for them
    notes = page[page.index('data-key="job_note"'):]
    assert "job_note-rows" not in notes[:notes.index("portal/lines.js")]
    response = fitter.post("/job/add", data={"code": "J2", "lines-rows": "1", "lines-0-part": str(part),
                                             "lines-0-urgent": ["n", "y"], "lines-0-cost": "99"})
    assert response.status_code == 302, re.findall(r'(?:alert-danger|text-danger)[^>]*>([^<]*)', response.data.decode())
    client = app.test_client()
    headers = jwt_headers(client)
    jobs_list = client.get("/api/v1/job/?q=(filters:!((col:code,opr:eq,value:J2)))", headers=headers).json
    job = client.get(f"/api/v1/job/{jobs_list['ids'][0]}", headers=headers).json["result"]
    assert [(line["urgent"], line["cost"]) for line in job["lines"]] == [(True, None)]  # the posted cost was ignored
    # the edit page shows the chosen part's title in its picker, escaped
    page = fitter.get(f"/job/edit/{jobs_list['ids'][0]}").data.decode()
    assert f'<option selected value="{part}">&lt;i&gt;轴承&lt;/i&gt;</option>' in page
    # through the API the hidden field is refused for the fitter, nothing stored
    fitter_api = jwt_headers(client, "fitter", PASSWORD)
    response = client.put(f"/api/v1/job/{jobs_list['ids'][0]}", headers=fitter_api, json={"lines": [{"part": part, "cost": "5"}]})
    assert response.status_code == 422 and response.json["message"]["lines"][0] == {"cost": ["This field is read-only."]}


def test_unchanged_lines_are_not_written_again(shop, api):
    app, supplier = shop
    body = new_order(api, supplier, [{"item": "甲", "qty": 1, "unit_price": 1}, {"item": "乙", "qty": 1, "unit_price": 1}])
    first, second = body["result"]["lines"]
    response = api.put(f"/api/v1/purchase_order/{body['id']}", json={"lines": [
        {"id": first["id"], "item": "甲", "qty": "1.000", "unit_price": "1"}, {"id": str(second["id"]), "qty": 2}]})
    assert response.status_code == 200, response.json
    first_after, second_after = response.json["result"]["lines"]
    assert first_after["row_version"] == first["row_version"]  # same values: untouched
    assert second_after["row_version"] == second["row_version"] + 1 and second_after["amount"] == "2.00"


def test_a_form_opened_before_a_line_was_added_elsewhere_is_refused_and_deletes_nothing(shop):
    """The grid posts the ids it showed (`lines-known`): a save that would delete a line it never showed (added
    meanwhile on the order-line page or the API) is refused, like a record changed meanwhile."""
    app, supplier = shop
    body = new_order(_admin_api(app), supplier, [{"item": "旧", "qty": 1, "unit_price": 5}])
    order, first = body["id"], body["result"]["lines"][0]["id"]
    client = login(app.test_client())
    page = client.get(f"/purchase_order/edit/{order}").data.decode()
    known = re.search(r'name="lines-known" value="([0-9,]*)"', page).group(1)
    assert known == str(first)
    # the edit page has the grid, not a second editor of the same lines; the detail page keeps the panel
    assert 'href="#OrderLineView"' not in page
    assert 'href="#OrderLineView"' in client.get(f"/purchase_order/show/{order}").data.decode()
    added = _admin_api(app).post("/api/v1/order_line/", json={"order": order, "item": "别处新增", "qty": 2, "unit_price": 100})
    assert added.status_code == 201, added.json
    stale = order_form(supplier, [{"id": str(first), "item": "旧", "qty": "1", "unit_price": "5"}],
                       notes="stale grid", **{"lines-known": known})
    response = client.post(f"/purchase_order/edit/{order}", data=stale)
    assert response.status_code == 200 and "Someone else has added lines" in response.data.decode()
    assert [line[0] for line in stored_lines(app, order)] == ["旧", "别处新增"]
    # reloaded, the form shows both and saves
    page = client.get(f"/purchase_order/edit/{order}").data.decode()
    known = re.search(r'name="lines-known" value="([0-9,]*)"', page).group(1)
    assert known == f"{first},{added.json['id']}"
    fresh = order_form(supplier, [{"id": str(first), "item": "旧", "qty": "1", "unit_price": "5"}],
                       notes="fresh grid", **{"lines-known": known})
    assert client.post(f"/purchase_order/edit/{order}", data=fresh).status_code == 302
    assert [line[0] for line in stored_lines(app, order)] == ["旧"]  # the user removed the other line on purpose



@pytest.mark.parametrize("line_id", ["²", "١٢", "1e3", " 7 ", "-1"])
def test_odd_line_ids_are_refused_or_read_as_numbers_never_a_server_error(shop, api, line_id):
    app, supplier = shop
    body = new_order(api, supplier, [{"item": "件", "qty": 1, "unit_price": 1}])
    response = api.put(f"/api/v1/purchase_order/{body['id']}", json={"lines": [{"id": line_id}]})
    assert response.status_code == 422, response.json
    assert "lines" in response.json["message"]
    client = login(app.test_client())
    form = client.post(f"/purchase_order/edit/{body['id']}", data=order_form(supplier, [{"id": line_id, "item": "件", "qty": "1", "unit_price": "1"}]))
    assert form.status_code == 200 and "No line with id" in form.data.decode()
    assert [line[0] for line in stored_lines(app, body["id"])] == ["件"]


def test_an_orders_version_counts_its_lines_from_every_path(shop, api):
    """Adding, changing or removing a line anywhere gives the order a new row_version (ETag), so a client holding
    the older order gets 409 instead of deleting a line it never saw."""
    app, supplier = shop
    body = new_order(api, supplier, [{"item": "甲", "qty": 1, "unit_price": 1}])
    order, first = body["id"], body["result"]["lines"][0]["id"]
    etag = api.get(f"/api/v1/purchase_order/{order}").headers["ETag"]
    # a line added through the line's own API
    added = api.post("/api/v1/order_line/", json={"order": order, "item": "乙", "qty": 2, "unit_price": 3})
    assert added.status_code == 201, added.json
    now = api.get(f"/api/v1/purchase_order/{order}")
    assert now.headers["ETag"] != etag and now.json["result"]["total"] == "7.00"
    stale = api.put(f"/api/v1/purchase_order/{order}", json={"lines": [{"id": first}]}, headers={"If-Match": etag})
    assert stale.status_code == 409, stale.json
    assert [line[0] for line in stored_lines(app, order)] == ["甲", "乙"]
    # the current version saves (and deletes the line on purpose)
    fresh = api.put(f"/api/v1/purchase_order/{order}", json={"lines": [{"id": first}]}, headers={"If-Match": now.headers["ETag"]})
    assert fresh.status_code == 200, fresh.json
    assert [line[0] for line in stored_lines(app, order)] == ["甲"]
    # a line imported into the order moves the version too
    etag = api.get(f"/api/v1/purchase_order/{order}").headers["ETag"]
    csv_text = f"order,item,qty,unit_price\n{body['result']['number']},丙,5,1\n".encode("utf-8")
    imported = api.post("/api/v1/order_line/import", content_type="multipart/form-data",
                        data={"file": (io.BytesIO(csv_text), "lines.csv")})
    assert imported.status_code == 200, imported.json
    assert [line[0] for line in stored_lines(app, order)] == ["甲", "丙"]
    assert api.get(f"/api/v1/purchase_order/{order}").headers["ETag"] != etag


BOXES = """\
    version: 1
    module: boxes
    entities:
      Box:
        title: name
        fields:
          name: {type: string, length: 40, required: true}
        lines: [Slot]
      Slot:
        fields:
          box: {type: link, to: Box, required: true, on_delete: cascade}
          code: {type: string, length: 10, required: true}
          tag: {type: string, length: 10, unique: true}
        unique_together: [[box, code]]
"""


def test_lines_repeating_each_other_get_a_line_error_not_the_databases_refusal(tmp_path_factory):
    folder = tmp_path_factory.mktemp("boxes-schema")
    (folder / "boxes.yaml").write_text(textwrap.dedent(BOXES), encoding="utf-8")
    app = make_app(tmp_path_factory, "boxes", schema_dir=folder)
    client = app.test_client()
    headers = jwt_headers(client)
    response = client.post("/api/v1/box/", headers=headers, json={"name": "一号", "lines": [
        {"code": "A", "tag": "t1"}, {"code": "B", "tag": "t1"}, {"code": "A", "tag": "t3"}]})
    assert response.status_code == 422, response.json
    errors = response.json["message"]["lines"]
    assert errors[0] == {} and errors[1] == {"tag": ["Already exists."]}
    assert "already exists" in errors[2]["code"][0] and "Code" in errors[2]["code"][0]
    assert count(app, "Box") == count(app, "Slot") == 0
    login(client)
    form = client.post("/box/add", data={"name": "二号", "lines-rows": "1", "lines-0-code": "A", "lines-1-code": "A"})
    assert form.status_code == 200 and "already exists" in form.data.decode()
    assert count(app, "Box") == count(app, "Slot") == 0


CRATES = """\
    version: 1
    module: crates
    entities:
      Crate:
        title: name
        fields:
          name: {type: string, length: 40, required: true}
          open: {type: boolean, default: true}
        lines: [Item]
      Shelf:
        title: ref
        fields:
          ref: {type: string, length: 20, required: true}
          crate: {type: link, to: Crate}
      Item:
        fields:
          crate: {type: link, to: Crate, required: true, on_delete: cascade, filter: {open: true}}
          shelf: {type: link, to: Shelf, filter: {crate: $record.crate}}
          name: {type: string, length: 40, required: true}
"""


def test_line_filters_that_read_the_parent_hold_when_the_parent_is_created_with_its_lines(tmp_path_factory):
    """A line's `$record.<back link>` filter matches nothing while the parent is new (no stored record belongs to
    it), instead of being dropped; a filter on the back link itself does not refuse the parent being created."""
    folder = tmp_path_factory.mktemp("crates-schema")
    (folder / "crates.yaml").write_text(textwrap.dedent(CRATES), encoding="utf-8")
    app = make_app(tmp_path_factory, "crates", schema_dir=folder)
    client = app.test_client()
    headers = jwt_headers(client)
    first = client.post("/api/v1/crate/", json={"name": "一", "lines": [{"name": "甲"}]}, headers=headers)
    assert first.status_code == 201, first.json  # the back link's own filter (open) does not block a new crate
    shelf = client.post("/api/v1/shelf/", json={"ref": "S1", "crate": first.json["id"]}, headers=headers).json["id"]
    other = client.post("/api/v1/crate/", json={"name": "二", "lines": [{"name": "乙", "shelf": shelf}]}, headers=headers)
    assert other.status_code == 422 and "shelf" in other.json["message"]["lines"][0], other.json
    existing = client.put(f"/api/v1/crate/{first.json['id']}", headers=headers,
                          json={"lines": [{"id": first.json["result"]["lines"][0]["id"]}, {"name": "丙", "shelf": shelf}]})
    assert existing.status_code == 200, existing.json  # the shelf is this crate's
    assert count(app, "Crate") == 1 and count(app, "Item") == 2
