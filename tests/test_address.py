"""`type: address` (parsed into read-only sibling fields on every write path) and the standardisation of names and
codes (trimmed, full-width folded), through HTTP on the shipped CRM schema, on SQLite and PostgreSQL."""
from __future__ import annotations

import csv
import io
import textwrap

import pytest
from conftest import jwt_headers, login, make_app

from app.fieldtypes.address import location_parser, parse_address
from app.fieldtypes.text import standard_text
from app.schema import load_portal

# (as typed, province, city, district, detail): municipalities, provinces, autonomous regions, an autonomous
# prefecture, county-level cities, a district renamed from a county-level city (即墨)
ADDRESSES = [
    ("北京市朝阳区建国路88号SOHO现代城", "北京市", "北京市", "朝阳区", "建国路88号SOHO现代城"),
    ("上海市浦东新区世纪大道100号", "上海市", "上海市", "浦东新区", "世纪大道100号"),
    ("重庆市渝中区解放碑民权路28号", "重庆市", "重庆市", "渝中区", "解放碑民权路28号"),
    ("天津市和平区南京路189号", "天津市", "天津市", "和平区", "南京路189号"),
    ("广东省深圳市南山区科技园南区高新南一道9号", "广东省", "深圳市", "南山区", "科技园南区高新南一道9号"),
    ("浙江省杭州市西湖区文三路90号", "浙江省", "杭州市", "西湖区", "文三路90号"),
    ("江苏省苏州市昆山市花桥镇商务大道8号", "江苏省", "苏州市", "昆山市", "花桥镇商务大道8号"),
    ("河南省郑州市新郑市龙湖镇", "河南省", "郑州市", "新郑市", "龙湖镇"),
    ("湖南省长沙市浏阳市集里街道", "湖南省", "长沙市", "浏阳市", "集里街道"),
    ("新疆维吾尔自治区乌鲁木齐市天山区解放北路", "新疆维吾尔自治区", "乌鲁木齐市", "天山区", "解放北路"),
    ("广西壮族自治区南宁市青秀区民族大道136号", "广西壮族自治区", "南宁市", "青秀区", "民族大道136号"),
    ("内蒙古自治区呼和浩特市赛罕区大学东路", "内蒙古自治区", "呼和浩特市", "赛罕区", "大学东路"),
    ("西藏自治区拉萨市城关区北京中路", "西藏自治区", "拉萨市", "城关区", "北京中路"),
    ("云南省大理白族自治州大理市下关镇", "云南省", "大理白族自治州", "大理市", "下关镇"),
    ("四川省成都市武侯区人民南路四段1号", "四川省", "成都市", "武侯区", "人民南路四段1号"),
    ("山东省青岛市即墨区鹤山路6号", "山东省", "青岛市", "即墨区", "鹤山路6号"),
]
# messy input: (as typed, as stored, province, city, district, detail)
MESSY = [
    ("  浙江省　杭州市　余杭区 文一西路969号 ", "浙江省 杭州市 余杭区 文一西路969号", "浙江省", "杭州市", "余杭区", "文一西路969号"),
    ("广州市天河区天河路３８５号", "广州市天河区天河路385号", "广东省", "广州市", "天河区", "天河路385号"),  # no province
    ("深圳南山区科技园", "深圳南山区科技园", "广东省", "深圳市", "南山区", "科技园"),  # short names
    ("江苏南京鼓楼区汉口路22号", "江苏南京鼓楼区汉口路22号", "江苏省", "南京市", "鼓楼区", "汉口路22号"),
    ("上海浦东张江高科技园区", "上海浦东张江高科技园区", "上海市", "上海市", "浦东新区", "张江高科技园区"),
    ("义乌市稠城街道", "义乌市稠城街道", "浙江省", "金华市", "义乌市", "稠城街道"),  # a county-level city alone
    ("北京 海淀区 中关村大街１号", "北京 海淀区 中关村大街1号", "北京市", "北京市", "海淀区", "中关村大街1号"),
]
# kept whole and flagged: no place at all, a district that several cities have, a province alone
UNPARSED = [("火星基地一号", None, None), ("12345", None, None), ("朝阳区建国路88号", None, "朝阳区"), ("广东省", "广东省", None)]

PARTS = ("address_province", "address_city", "address_district", "address_detail")


# -- the parser --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text,province,city,district,detail", ADDRESSES, ids=[a[0][:8] for a in ADDRESSES])
def test_addresses_from_many_provinces_are_parsed(text, province, city, district, detail):
    parts = parse_address(text)
    assert (parts.province, parts.city, parts.district, parts.detail, parts.parsed) == (province, city, district, detail, True)


@pytest.mark.parametrize("typed,stored,province,city,district,detail", MESSY, ids=[m[1][:8] for m in MESSY])
def test_messy_addresses_are_standardised_then_parsed(typed, stored, province, city, district, detail):
    assert standard_text(typed) == stored
    parts = parse_address(stored)
    assert (parts.province, parts.city, parts.district, parts.detail, parts.parsed) == (province, city, district, detail, True)


@pytest.mark.parametrize("text,province,district", UNPARSED)
def test_unparseable_addresses_are_kept_whole_and_flagged(text, province, district):
    parts = parse_address(text)
    assert (parts.province, parts.city, parts.district, parts.detail, parts.parsed) == (province, None, district, text, False)


def test_the_indexed_parser_answers_as_jionlps_own():
    """The narrowed candidate scan is a speed-up only: jionlp's plain parser gives the same answer for every address
    here and for place names of every level taken from its own dictionary."""
    import contextlib
    import random

    with contextlib.redirect_stdout(io.StringIO()):
        from jionlp.gadget.location_parser import LocationParser
    plain, fast = LocationParser(), location_parser()
    entries = fast._entries
    rng = random.Random(16)
    texts = [a[0] for a in ADDRESSES] + [m[1] for m in MESSY] + [u[0] for u in UNPARSED] + [
        "江苏省", "吉林省吉林市", "海南大学", "西安交通大学", "北海市重庆路其仓11号", "上海市嘉定区太原路99号", "鼓楼区"]
    for entry in rng.sample(entries, 300):
        form = rng.randrange(2)  # full names or short ones
        names = [level[form] or level[0] for level in entry[1:4] if level[0]]
        texts.append("".join(names[rng.randrange(2):]) + rng.choice(["人民路12号", "解放大道3号", ""]))
    for text in texts:
        assert fast(text, town_village=False, change2new=True) == plain(text, town_village=False, change2new=True), text


# -- the checker -------------------------------------------------------------------------------------------
def _check(tmp_path, body: str):
    (tmp_path / "m.yaml").write_text("version: 1\nmodule: m\n" + textwrap.dedent(body), encoding="utf-8")
    return load_portal(tmp_path)


def test_siblings_are_read_only_fields_labelled_after_their_field(tmp_path):
    spec, problems = _check(tmp_path, """\
        entities:
          Shop:
            fields:
              name: string
              site: {type: address, label: {en: Site, zh: 门店地址}}
        """)
    assert not problems
    fields = {f.name: f for f in spec.entity("Shop").fields}
    assert list(fields) == ["name", "site", "site_province", "site_city", "site_district", "site_detail", "site_parsed"]
    assert all(fields[n].readonly and fields[n].derived_from == "site" for n in list(fields)[2:])
    assert fields["site_province"].label.get("en") == "Site province" and fields["site_province"].label.get("zh") == "门店地址省"
    assert fields["site_parsed"].type == "boolean"


def test_a_sibling_name_taken_by_another_field_is_a_problem_at_its_line(tmp_path):
    _, problems = _check(tmp_path, """\
        entities:
          Shop:
            fields:
              site_city: string
              site: address
        """)
    assert [(p.line, p.code) for p in problems] == [(7, "E830")]
    assert "site_city" in problems[0].message and "m.yaml:6" in problems[0].message


# -- through HTTP ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def crm(tmp_path_factory):
    return make_app(tmp_path_factory, "address")


@pytest.fixture(scope="module")
def h(crm):
    return jwt_headers(crm.test_client())


def _create(client, h, **values):
    # one name for many customers in one city: the CRM's duplicate rule would ask (tests/test_duplicates.py)
    response = client.post("/api/v1/customer/?allow_duplicate=1", json={"name": "地址客户", **values}, headers=h)
    assert response.status_code == 201, response.json
    return response.json["id"]


def _get(client, h, pk):
    return client.get(f"/api/v1/customer/{pk}", headers=h).json["result"]


def _parts(record):
    return tuple(record[name] for name in PARTS) + (record["address_parsed"],)


def _list(client, h, filters: str):
    return client.get(f"/api/v1/customer/?q=(filters:!({filters}),page_size:100)", headers=h).json


def test_the_api_parses_addresses_and_lists_filter_by_their_parts(crm, h):
    client = crm.test_client()
    ids = {}
    for text, province, city, district, detail in ADDRESSES:
        ids[text] = _create(client, h, address=text)
        assert _parts(_get(client, h, ids[text])) == (province, city, district, detail, True)
    for typed, stored, province, city, district, detail in MESSY:
        record = _get(client, h, _create(client, h, address=typed))
        assert record["address"] == stored and _parts(record) == (province, city, district, detail, True)
    for text, province, district in UNPARSED:
        record = _get(client, h, _create(client, h, address=text))  # never refused
        assert record["address"] == text and _parts(record) == (province, None, district, text, False)
    in_guangdong = _list(client, h, "(col:address_province,opr:eq,value:广东省)")
    assert sorted(r["address"] for r in in_guangdong["result"]) == sorted(
        ["广东省", "广东省深圳市南山区科技园南区高新南一道9号", "广州市天河区天河路385号", "深圳南山区科技园"])
    flagged = _list(client, h, "(col:address_parsed,opr:eq,value:!f)")
    assert sorted(r["address"] for r in flagged["result"]) == sorted(u[0] for u in UNPARSED)
    in_chongqing = _list(client, h, "(col:address_city,opr:eq,value:重庆市)")
    assert [r["id"] for r in in_chongqing["result"]] == [ids["重庆市渝中区解放碑民权路28号"]]


def test_siblings_follow_every_change_and_cannot_be_written(crm, h):
    client = crm.test_client()
    pk = _create(client, h, address="湖北省武汉市洪山区珞喻路1037号")
    before = _get(client, h, pk)
    refused = client.put(f"/api/v1/customer/{pk}", json={"address_city": "深圳市"}, headers=h)
    assert refused.status_code == 422 and refused.json == {"message": {"address_city": ["This field is read-only."]}}
    assert _get(client, h, pk) == before
    zh = client.put(f"/api/v1/customer/{pk}?_l_=zh", json={"address_province": "x"}, headers=h)
    assert zh.status_code == 422 and zh.json["message"]["address_province"] != ["This field is read-only."]
    moved = client.put(f"/api/v1/customer/{pk}", json={"address": "福建省厦门市思明区厦禾路20号"}, headers=h)
    assert moved.status_code == 200, moved.json
    assert _parts(_get(client, h, pk)) == ("福建省", "厦门市", "思明区", "厦禾路20号", True)
    assert client.put(f"/api/v1/customer/{pk}", json={"level": "vip"}, headers=h).status_code == 200
    assert _parts(_get(client, h, pk)) == ("福建省", "厦门市", "思明区", "厦禾路20号", True)  # left alone
    assert client.put(f"/api/v1/customer/{pk}", json={"address": None}, headers=h).status_code == 200
    assert _parts(_get(client, h, pk)) == (None, None, None, None, None)


def test_forms_parse_the_address(crm):
    client = login(crm.test_client())
    response = client.post("/customer/add", data={"name": "表单客户", "kind": "company", "level": "normal",
                                                   "address": "　宁夏回族自治区银川市兴庆区解放东街　"})
    assert response.status_code == 302, response.data[:800]
    h = jwt_headers(crm.test_client())
    found = _list(crm.test_client(), h, "(col:name,opr:eq,value:表单客户)")["result"]
    assert len(found) == 1
    assert found[0]["address"] == "宁夏回族自治区银川市兴庆区解放东街"
    assert _parts(found[0]) == ("宁夏回族自治区", "银川市", "兴庆区", "解放东街", True)
    page = client.get(f"/customer/show/{found[0]['id']}").get_data(as_text=True)
    assert "Address province" in page and "宁夏回族自治区" in page
    form = client.get(f"/customer/edit/{found[0]['id']}").get_data(as_text=True)
    assert 'name="address"' in form and 'name="address_province"' not in form
    edited = client.post(f"/customer/edit/{found[0]['id']}", data={
        "name": "表单客户", "kind": "company", "level": "normal", "address": "内蒙古自治区呼和浩特市赛罕区大学东路",
        "row_version": found[0]["row_version"]})
    assert edited.status_code == 302, edited.data[:800]
    assert _parts(_get(crm.test_client(), h, found[0]["id"])) == ("内蒙古自治区", "呼和浩特市", "赛罕区", "大学东路", True)


def _csv(rows) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue().encode()


def test_imports_parse_addresses_and_ignore_exported_parts(crm, h):
    client = crm.test_client()
    rows = [["name", "phone", "address", "address_province"]] + [
        [f"导入地址{i}", f"1390000{i:04d}", text, "ignored"] for i, (text, *_) in enumerate(ADDRESSES)]
    rows.append(["导入地址乱", "", "  广州市天河区天河路３８５号 ", ""])
    rows.append(["导入地址无", "", "火星基地一号", "北京市"])
    response = client.post("/api/v1/customer/import", data={"file": (io.BytesIO(_csv(rows)), "a.csv")}, headers=h,
                           content_type="multipart/form-data")
    assert response.status_code == 200, response.json
    assert response.json["created"] == len(ADDRESSES) + 2
    assert [i["field"] for i in response.json.get("ignored", [])] == ["address_province"]
    imported = {r["name"]: r for r in _list(client, h, "(col:name,opr:sw,value:导入地址)")["result"]}
    for i, (text, province, city, district, detail) in enumerate(ADDRESSES):
        assert _parts(imported[f"导入地址{i}"]) == (province, city, district, detail, True)
    assert imported["导入地址乱"]["address"] == "广州市天河区天河路385号"
    assert _parts(imported["导入地址乱"]) == ("广东省", "广州市", "天河区", "天河路385号", True)
    assert _parts(imported["导入地址无"]) == (None, None, None, "火星基地一号", False)
    # an update by key moves the parts with the address
    moved = _csv([["phone", "address"], ["13900000000", "西藏自治区拉萨市城关区北京中路"]])
    response = client.post("/api/v1/customer/import", data={"file": (io.BytesIO(moved), "u.csv"), "key": "phone"},
                           headers=h, content_type="multipart/form-data")
    assert response.status_code == 200 and response.json["updated"] == 1, response.json
    assert _parts(_get(client, h, imported["导入地址0"]["id"])) == ("西藏自治区", "拉萨市", "城关区", "北京中路", True)


def test_exports_carry_the_parts(crm, h):
    client = crm.test_client()
    _create(client, h, name="导出地址客户", address="四川省成都市武侯区人民南路四段1号")
    admin = login(crm.test_client())
    data = admin.get("/customer/export/csv?_flt_0_name=导出地址客户").data.decode("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(data)))
    assert len(rows) == 1
    row = rows[0]
    assert (row["Address"], row["Address province"], row["Address city"], row["Address district"], row["Address detail"]) == (
        "四川省成都市武侯区人民南路四段1号", "四川省", "成都市", "武侯区", "人民南路四段1号")


def test_a_report_groups_by_province(crm, h):
    client = crm.test_client()
    for text in ("江苏省苏州市昆山市花桥镇商务大道8号", "江苏南京鼓楼区汉口路22号"):
        _create(client, h, name="报表地址客户", address=text)
    data = client.get("/api/v1/reports/customers_by_province", headers=h).json
    counts = {row["address_province"]: row["customers"] for row in _rows(data)}
    expected = {}
    for record in _list_all(client, h):
        expected[record["address_province"]] = expected.get(record["address_province"], 0) + 1
    assert counts == expected and counts["江苏省"] >= 2
    drill = next(row["drill"] for row in data["rows"] if row["address_province"]["value"] == "江苏省")
    admin = login(crm.test_client())
    assert admin.get(drill).status_code == 200  # the row's drill-down lists the province's customers


def _rows(data):
    """Report rows as {group key: its value, measure: number}."""
    return [{k: (v["value"] if isinstance(v, dict) else v) for k, v in row.items()} for row in data["rows"]]


def _list_all(client, h):
    records, page = [], 0
    while True:
        chunk = client.get(f"/api/v1/customer/?q=(page:{page},page_size:100)", headers=h).json["result"]
        records += chunk
        if len(chunk) < 100:
            return records
        page += 1


# -- standardisation ---------------------------------------------------------------------------------------
def test_names_and_codes_are_trimmed_and_folded_on_every_path(crm, h):
    client = crm.test_client()
    record = _get(client, h, _create(client, h, name="  ＡＢＣ１２３　建材（集团）  ", notes="  备注　保留 "))
    assert record["name"] == "ABC123 建材(集团)"
    assert record["notes"] == "  备注　保留 "  # free text keeps its layout
    found = _list(client, h, "(col:name,opr:eq,value:'ＡＢＣ１２３ 建材(集团)')")["result"]  # a filter folds too
    assert [r["id"] for r in found] == [record["id"]]
    rows = [["name", "email"], ["  张三　 ", "ＺＳ＠ＥＸＡＭＰＬＥ.com"]]
    response = client.post("/api/v1/customer/import", data={"file": (io.BytesIO(_csv(rows)), "s.csv")}, headers=h,
                           content_type="multipart/form-data")
    assert response.status_code == 200, response.json
    imported = _list(client, h, "(col:name,opr:eq,value:张三)")["result"]
    assert [(r["name"], r["email"]) for r in imported] == [("张三", "ZS@example.com")]


def test_standardised_values_are_the_same_value_for_unique_fields(crm, h):
    """"张三建材  " and "张三建材" are one value for a unique name, "ＰＲＪ－００１" and "PRJ-001" for a unique code:
    the second is refused by the API and by an import, and nothing is written."""
    client = crm.test_client()
    first = client.post("/api/v1/supplier/", json={"name": "张三建材"}, headers=h)
    assert first.status_code == 201, first.json
    again = client.post("/api/v1/supplier/", json={"name": "　张三建材  "}, headers=h)
    assert again.status_code == 422 and again.json["message"] == {"name": ["Already exists."]}
    project = client.post("/api/v1/project/", json={"code": "ＰＲＪ－００１", "name": "工程一"}, headers=h)
    assert project.status_code == 201 and project.json["result"]["code"] == "PRJ-001", project.json
    copy = client.post("/api/v1/project/", json={"code": " PRJ-001 ", "name": "工程二"}, headers=h)
    assert copy.status_code == 422 and copy.json["message"] == {"code": ["Already exists."]}
    rows = [["name"], ["张三建材 "]]
    response = client.post("/api/v1/supplier/import", data={"file": (io.BytesIO(_csv(rows)), "s.csv")}, headers=h,
                           content_type="multipart/form-data")
    assert response.status_code == 422 and response.json["written"] is False, response.json
    names = [r["name"] for r in client.get("/api/v1/supplier/?q=(page_size:100)", headers=h).json["result"]]
    assert names.count("张三建材") == 1


def test_hiding_or_masking_an_address_hides_or_masks_its_parts(tmp_path):
    """The parts reveal the address: a role that hides (masks) it hides (masks) them too."""
    from types import SimpleNamespace

    from app.rules.access import Viewer

    spec, problems = _check(tmp_path, """\
        entities:
          Shop:
            fields:
              name: string
              site: address
        roles:
          Clerk: {can: {Shop: [read]}, hide: {Shop: [site]}}
          Auditor: {can: {Shop: [read]}, mask: {Shop: [site]}}
        """)
    assert not problems, problems
    parts = {"site", "site_province", "site_city", "site_district", "site_detail", "site_parsed"}

    def viewer(role):
        return Viewer(spec, SimpleNamespace(id=1, roles=[SimpleNamespace(name=role)]), "Admin")

    assert viewer("Clerk").hidden("Shop") == parts and not viewer("Clerk").masked("Shop")
    assert viewer("Auditor").masked("Shop") == parts and not viewer("Auditor").hidden("Shop")


def test_a_string_field_that_becomes_an_address_gets_its_parts_derived_at_start_up(tmp_path_factory):
    """Customer.address was a string: the next start-up adds the sibling columns and derives them for stored rows."""
    from app import create_app

    before, after = tmp_path_factory.mktemp("was_string"), tmp_path_factory.mktemp("now_address")
    body = "version: 1\nmodule: m\nentities:\n  Shop:\n    fields:\n      name: string\n      site: {type: %s}\n"
    (before / "m.yaml").write_text(body % "string", encoding="utf-8")
    (after / "m.yaml").write_text(body % "address", encoding="utf-8")
    old = make_app(tmp_path_factory, "address_upgrade", schema_dir=before)
    client = old.test_client()
    h = jwt_headers(client)
    for name, site in (("甲", "重庆市万州区高笋塘"), ("乙", "火星基地一号"), ("丙", None)):
        assert client.post("/api/v1/shop/", json={"name": name, "site": site}, headers=h).status_code == 201
    new = create_app({**{k: old.config[k] for k in ("TESTING", "SECRET_KEY", "SQLALCHEMY_DATABASE_URI")},
                      "WTF_CSRF_ENABLED": False, "PORTAL_SCHEMA_DIR": str(after)})
    client = new.test_client()
    rows = {r["name"]: r for r in client.get("/api/v1/shop/", headers=jwt_headers(client)).json["result"]}
    assert [rows["甲"][f"site{s}"] for s in ("_province", "_city", "_district", "_detail", "_parsed")] == [
        "重庆市", "重庆市", "万州区", "高笋塘", True]
    assert (rows["乙"]["site_detail"], rows["乙"]["site_parsed"]) == ("火星基地一号", False)
    assert rows["丙"]["site_parsed"] is None


def test_a_bulk_transition_that_sets_an_address_sets_its_parts(tmp_path_factory):
    schema = tmp_path_factory.mktemp("address_bulk")
    (schema / "m.yaml").write_text(textwrap.dedent("""\
        version: 1
        module: m
        entities:
          Job:
            fields:
              name: string
              state: {type: enum, required: true, choices: [open, moved], default: open}
              site: address
            workflow:
              field: state
              transitions:
                move: {from: open, to: moved, roles: [Mover], set: {site: "重庆市万州区高笋塘"}}
        roles:
          Mover: {can: {Job: all}}
        """), encoding="utf-8")
    app = make_app(tmp_path_factory, "address_bulk", schema_dir=schema)
    client = app.test_client()
    h = jwt_headers(client)
    ids = [client.post("/api/v1/job/", json={"name": n, "site": "火星基地一号"}, headers=h).json["id"] for n in "甲乙"]
    done = client.post("/api/v1/job/bulk", json={"action": "transition", "transition": "move", "ids": ids}, headers=h)
    assert done.status_code == 200 and sorted(done.json["done"]) == sorted(ids), done.json
    for pk in ids:
        record = client.get(f"/api/v1/job/{pk}", headers=h).json["result"]
        assert (record["state"], record["site"]) == ("moved", "重庆市万州区高笋塘")
        assert [record[f"site{s}"] for s in ("_province", "_city", "_district", "_detail", "_parsed")] == [
            "重庆市", "重庆市", "万州区", "高笋塘", True]
