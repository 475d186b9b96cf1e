"""Retention (issue 16) on the test-only module tests/fixtures/retention: `portal retention --dry-run` counts exactly
what the real run then touches; anonymize (values, history, many links, file attachments, formulas), delete
(restrict refused and reported, cascade followed), archive (`<table>_archive`); the worker's once-a-day run and
its claim; each run in the audit log; the checker's codes."""
from __future__ import annotations

import datetime as dt
import io
import os
import re

import pytest
from sqlalchemy import text

from app.schema import load_portal
from conftest import ROOT, jwt_headers, make_app
from test_attachments import PNG, blobs

SCHEMAS = ROOT / "tests" / "fixtures" / "retention"
TODAY = dt.date.today()
OLD = (TODAY - dt.timedelta(days=6 * 366)).isoformat()
RECENT = (TODAY - dt.timedelta(days=30)).isoformat()


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    files = tmp_path_factory.mktemp("retention_files")
    app = make_app(tmp_path_factory, "retention", schema_dir=SCHEMAS, PORTAL_FILES_DIR=str(files),
                   PORTAL_RETENTION_HOUR=0)
    app.files_dir = files
    return app


@pytest.fixture(scope="module")
def api(app):
    client = app.test_client()
    headers = jwt_headers(client)

    class Api:
        def __getattr__(self, method):
            return lambda url, **kw: getattr(client, method)(url, headers={**headers, **kw.pop("headers", {})}, **kw)
    return Api()


def create(api, entity: str, **values) -> int:
    response = api.post(f"/api/v1/{entity}/", json=values)
    assert response.status_code == 201, response.json
    return response.json["id"]


def sql(app, statement: str, **params):
    with app.app_context():
        return app.appbuilder.session.execute(text(statement), params).all()


def policy_counts(output: str) -> dict[str, tuple[int, int]]:
    """entity -> (touched, refused) from the command's table."""
    found = {}
    for line in output.splitlines():
        match = re.match(r"^(\w+)\s+#1 .+?\s+(anonymize|delete|archive)\s+(\d+)\s+(\d+)$", line)
        if match:
            found[match.group(1)] = (int(match.group(3)), int(match.group(4)))
    return found


@pytest.fixture(scope="module")
def world(app, api):
    """Records old and new for every policy, then a dry run, the real run and a second dry run."""
    tags = [create(api, "tag", label=f"t{n}") for n in range(2)]
    old = [create(api, "client", name=f"Old {n}", code=f"C-{n}", phone=f"+86 138 0013 80{n:02d}",
                  email=f"old{n}@example.com", notes=f"private note {n}", since=OLD, tags=tags) for n in range(3)]
    vip = create(api, "client", name="Old VIP", code="C-VIP", phone="+86 138 0013 8099", email="vip@example.com",
                 level="vip", since=OLD)
    recent = create(api, "client", name="New one", code="C-NEW", phone="+86 138 0013 8098", since=RECENT)
    assert api.put(f"/api/v1/client/{old[0]}", json={"phone": "+86 139 0013 8000", "email": "changed@example.com"}
                   ).status_code == 200  # history now holds old and new phone numbers
    photo = api.post(f"/api/v1/client/{old[1]}/attachments", data={"file": (io.BytesIO(PNG + b"ret"), "me.png"),
                     "field": "photo"}, content_type="multipart/form-data")
    assert photo.status_code == 201, photo.json
    blocked = create(api, "lead", name="has a call", stale_on=OLD)
    create(api, "call", lead=blocked, topic="keep me")
    cascaded = create(api, "lead", name="has a memo", stale_on=OLD)
    memo = create(api, "memo", lead=cascaded, text="goes with it")
    fresh_lead = create(api, "lead", name="fresh", stale_on=RECENT)
    old_visits = [create(api, "visit", place=f"Room {n}", done_on=OLD) for n in range(2)]
    new_visit = create(api, "visit", place="Now", done_on=RECENT)
    for blob in blobs(app.files_dir):
        os.utime(blob, (0, 0))  # old enough for the blob sweep (new uploads are kept a while)
    runner = app.test_cli_runner()
    dry = runner.invoke(args=["portal", "retention", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    real = runner.invoke(args=["portal", "retention"])
    assert real.exit_code == 0, real.output
    again = runner.invoke(args=["portal", "retention", "--dry-run"])
    return dict(tags=tags, old=old, vip=vip, recent=recent, photo=photo.json["result"][0], blocked=blocked,
                cascaded=cascaded, memo=memo, fresh_lead=fresh_lead, old_visits=old_visits, new_visit=new_visit,
                dry=dry, real=real, again=again)


def test_dry_run_counts_what_the_real_run_touches(world):
    dry, real = policy_counts(world["dry"].stdout), policy_counts(world["real"].stdout)
    assert dry == real == {"Client": (3, 0), "Lead": (1, 1), "Visit": (2, 0)}, (world["dry"].output, world["real"].output)
    assert "would touch" in world["dry"].stdout and "nothing changed" in world["dry"].stdout
    assert policy_counts(world["again"].stdout) == {"Client": (0, 0), "Lead": (0, 1), "Visit": (0, 0)}


def test_anonymize_replaces_values_links_files_and_history(app, api, world):
    for pk in world["old"]:
        record = api.get(f"/api/v1/client/{pk}").json["result"]
        assert record["name"] == "(anonymized)" and record["code"] == f"anon-{pk}" and record["phone"] == f"anon-{pk}"
        assert record["email"] is None and record["notes"] is None and record["tags"] == [] and record["photo"] is None
        assert record["greeting"] is None  # a formula over an anonymized field keeps no copy
        assert record["level"] == "normal" and record["since"] == OLD  # fields not listed stay
    untouched = {pk: api.get(f"/api/v1/client/{pk}").json["result"] for pk in (world["vip"], world["recent"])}
    assert untouched[world["vip"]]["email"] == "vip@example.com" and untouched[world["recent"]]["code"] == "C-NEW"
    history = sql(app, "SELECT record_id, changes FROM portal_history WHERE entity = 'Client'")
    for record_id, changes in history:
        if record_id in world["old"]:
            assert "example.com" not in changes and "138" not in changes and "Old" not in changes, changes
            assert "private" not in changes and "+86" not in changes
    assert any("vip@example.com" in changes for record_id, changes in history if record_id == world["vip"])
    assert sql(app, "SELECT count(*) FROM portal_attachments WHERE id = :id", id=world["photo"]["id"])[0][0] == 0
    assert not any(b.name == world["photo"].get("sha256") for b in blobs(app.files_dir))
    assert not [b for b in blobs(app.files_dir)]  # the only file was the anonymized photo
    assert len(api.get("/api/v1/tag/").json["result"]) == 2  # links removed, not the linked records


def test_delete_refuses_restrict_links_and_follows_cascades(app, api, world):
    assert api.get(f"/api/v1/lead/{world['blocked']}").status_code == 200
    assert api.get(f"/api/v1/lead/{world['fresh_lead']}").status_code == 200
    assert api.get(f"/api/v1/lead/{world['cascaded']}").status_code == 404
    assert api.get(f"/api/v1/memo/{world['memo']}").status_code == 404
    assert f"Lead #{world['blocked']}: Cannot delete: 1 × Call still refer to this record." in world["real"].stderr
    assert sql(app, "SELECT path, action FROM portal_history WHERE entity = 'Lead' AND record_id = :id",
               id=world["cascaded"])[-1] == ("retention", "delete")


def test_archive_moves_rows_to_the_archive_table(app, api, world):
    archived = sql(app, "SELECT id, place, done_on FROM visit_archive ORDER BY id")
    assert [(r[0], r[1]) for r in archived] == [(pk, f"Room {n}") for n, pk in enumerate(world["old_visits"])]
    assert str(archived[0][2])[:10] == OLD
    assert [r["id"] for r in api.get("/api/v1/visit/").json["result"]] == [world["new_visit"]]


def test_each_run_is_in_the_audit_log(api, world):
    entries = api.get("/api/v1/audit?kind=retention&page_size=100").json["result"]
    by_entity = {}
    for entry in reversed(entries):  # oldest first
        by_entity.setdefault(entry["entity"], []).append(entry["detail"])
    assert [(d["dry_run"], d["touched"], d["refused"]) for d in by_entity["Lead"]] == [
        (True, 1, 1), (False, 1, 1), (True, 0, 1)]
    assert by_entity["Client"][1]["action"] == "anonymize" and by_entity["Client"][1]["trigger"] == "cli"
    assert by_entity["Lead"][1]["refusals"][0]["id"] == world["blocked"]


def test_worker_runs_once_a_day_even_with_several_workers(app, api, world):
    from app.data.retention import daily_pass

    stale = create(api, "lead", name="stale", stale_on=OLD)
    with app.app_context():
        app.extensions.pop("portal_retention", None)
        assert daily_pass(app) == 1
        app.extensions.pop("portal_retention", None)  # a second worker process: its own memory, the same database
        assert daily_pass(app) == 0
        assert daily_pass(app) == 0
    assert api.get(f"/api/v1/lead/{stale}").status_code == 404
    runs = sql(app, "SELECT day, finished_at, summary FROM portal_retention_runs")
    assert len(runs) == 1 and str(runs[0][0]) == TODAY.isoformat() and runs[0][1] is not None
    entries = api.get("/api/v1/audit?kind=retention&entity=Lead").json["result"]
    worker_runs = [e for e in entries
                   if e["detail"]["trigger"] == "worker"]
    assert len(worker_runs) == 1 and worker_runs[0]["detail"]["touched"] == 1


# -- the checker -------------------------------------------------------------------------------------------------

def codes_of(tmp_path, entities: str) -> list[str]:
    (tmp_path / "m.yaml").write_text(f"version: 1\nmodule: m\nentities:\n{entities}", encoding="utf-8")
    _, problems = load_portal(tmp_path)
    return [p.code for p in problems]


@pytest.mark.parametrize("retention, code", [
    ("{age: 5y, action: anonymize}", "E824"),
    ("{age: 5y, action: archive, fields: [x]}", "E824"),
    ("{age: 0d, action: delete}", "E821"),
    ("{age: 5w, action: delete}", "E821"),
    ("{age: 5y, from: created_by, action: delete}", "E822"),
    ("{age: 5y, from: nowhere, action: delete}", "E822"),
    ("{age: 5y, action: anonymize, fields: [f]}", "E825"),
    ("{age: 5y, action: anonymize, fields: [who]}", "E826"),
    ("{age: 5y, action: anonymize, fields: [short]}", "E826"),
    ("{age: 5y, action: anonymize, fields: [x, x]}", "E825"),
    ("{age: 5y, when: {nope: 1}, action: delete}", "E761"),
    ("[{age: 5y, action: delete}, 3]", "E820"),
])
def test_checker_codes(tmp_path, retention, code):
    entities = ("  B: {fields: {y: string}}\n"
                "  A:\n    fields:\n      x: string\n      short: {type: string, length: 8, unique: true}\n"
                "      who: {type: link, to: B, required: true}\n      f: {type: string, formula: x}\n"
                f"    retention: {retention}\n")
    assert code in codes_of(tmp_path, entities)


def test_checker_refuses_an_archive_table_a_many_field_has(tmp_path):
    entities = "  B: {fields: {y: string}}\n  A: {fields: {archive: {type: many, to: B}}, retention: {age: 5y, action: archive}}\n"
    assert codes_of(tmp_path, entities) == ["E827"]


def test_checker_accepts_every_action_and_reports_the_line(tmp_path):
    good = ("  A:\n    fields:\n      x: {type: string, required: true}\n      d: date\n"
            "    retention:\n      - {age: 18m, from: d, action: anonymize, fields: [x]}\n"
            "      - {age: 90d, action: delete}\n      - {age: 5y, from: created_on, action: archive}\n")
    assert codes_of(tmp_path, good) == []
    (tmp_path / "m.yaml").write_text("version: 1\nmodule: m\nentities:\n  A:\n    fields: {x: string}\n"
                                     "    retention: {age: 5y, action: purge}\n", encoding="utf-8")
    _, problems = load_portal(tmp_path)
    assert [(p.line, p.code) for p in problems] == [(6, "E823")]


def test_the_shipped_crm_policy_anonymizes_an_address_with_all_its_parts(tmp_path_factory):
    """schemas/crm.yaml: ordinary customers untouched for five years lose phone, email, address (and the address's
    parsed parts, `_parsed` included) and notes; a VIP and a recent customer keep theirs."""
    crm = make_app(tmp_path_factory, "retention_crm")
    client = crm.test_client()
    h = jwt_headers(client)

    def add(**values):
        response = client.post("/api/v1/customer/", json=values, headers=h)
        assert response.status_code == 201, response.json
        return response.json["id"]
    old = add(name="老客户", phone="+86 138 0013 8001", email="old@example.com", address="广东省深圳市南山区科技园路1号",
              notes="private", level="normal")
    vip = add(name="大客户", phone="+86 138 0013 8002", address="北京市朝阳区建国路88号", level="vip")
    recent = add(name="新客户", phone="+86 138 0013 8003", address="上海市浦东新区世纪大道100号", level="normal")
    with crm.app_context():
        session = crm.appbuilder.session
        session.execute(text("UPDATE customer SET changed_on = :old WHERE id IN (:a, :b)"),
                        {"old": dt.datetime(2019, 1, 1), "a": old, "b": vip})
        session.commit()
    dry = crm.test_cli_runner().invoke(args=["portal", "retention", "--dry-run"])
    assert policy_counts(dry.stdout).get("Customer") == (1, 0), dry.output
    real = crm.test_cli_runner().invoke(args=["portal", "retention"])
    assert policy_counts(real.stdout).get("Customer") == (1, 0), real.output
    gone = client.get(f"/api/v1/customer/{old}", headers=h).json["result"]
    assert gone["phone"] == f"anon-{old}" and gone["email"] is None and gone["notes"] is None
    assert [gone[k] for k in ("address", "address_province", "address_city", "address_district", "address_detail",
                              "address_parsed")] == [None] * 6
    for kept in (vip, recent):
        record = client.get(f"/api/v1/customer/{kept}", headers=h).json["result"]
        assert record["address"] and record["address_city"] and record["address_parsed"] is True
