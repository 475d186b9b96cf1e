"""Date reminders on a datetime field beside date-field reminders: the scan reads both kinds in one pass (one
statement per kind), keeps each value's type (the snapshot and fire time are exact), fires once, and fires again
when the time moves."""
from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlalchemy import select

from conftest import jwt_headers, make_app
from app.portal import portal_of
from app.rules.notification_passes import scan

SCHEMA = """
version: 1
module: visits
entities:
  Visit:
    label: {en: Visit, zh: 拜访}
    title: place
    fields:
      place: {type: string, required: true, label: {en: Place, zh: 地点}}
      starts_at: {type: datetime, label: {en: Starts at, zh: 开始时间}}
      report_on: {type: date, label: {en: Report on, zh: 报告日期}}
      host: {type: user, label: {en: Host, zh: 接待人}}
reminders:
  visit_soon:
    entity: Visit
    date: starts_at
    offset: -30m
    notify: [host]
    channels: [inbox]
    message: {en: "{place} at {starts_at}", zh: "{starts_at} {place}"}
  report_due:
    entity: Visit
    date: report_on
    offset: 0d
    notify: [host]
    channels: [inbox]
"""


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    folder = tmp_path_factory.mktemp("visits_schema")
    (folder / "visits.yaml").write_text(SCHEMA, encoding="utf-8")
    return make_app(tmp_path_factory, "datetime_reminders", schema_dir=folder)


def notifications(app) -> list:
    with app.app_context():
        table = portal_of(app).metadata.tables["portal_notifications"]
        found = app.appbuilder.session.execute(select(table).order_by(table.c.id)).all()
        app.appbuilder.session.remove()
        return found


def test_datetime_and_date_reminders_fire_once_with_their_own_types_and_again_when_moved(app):
    client = app.test_client()
    headers = jwt_headers(client)
    with app.app_context():
        host = app.appbuilder.sm.find_user(username="admin").id
    now = dt.datetime.now().replace(microsecond=0)
    starts = now + dt.timedelta(minutes=20)  # fire time (−30 m) has passed, the visit has not started
    later = now + dt.timedelta(hours=3)      # not yet
    due = client.post("/api/v1/visit/", json={"place": "Site A", "starts_at": starts.isoformat(),
                                              "report_on": str(now.date()), "host": host}, headers=headers)
    not_yet = client.post("/api/v1/visit/", json={"place": "Site B", "starts_at": later.isoformat(), "host": host},
                          headers=headers)
    assert due.status_code == 201 and not_yet.status_code == 201, (due.json, not_yet.json)
    # the author is the host: event reminders would skip them, date reminders do not (nobody wrote "now")
    with app.app_context():
        assert scan(app, now) == 2
        assert scan(app, now) == 0
    fired = {(n.reminder, n.record_id): n for n in notifications(app)}
    assert set(fired) == {("visit_soon", due.json["id"]), ("report_due", due.json["id"])}
    assert fired[("visit_soon", due.json["id"])].fire_on == starts - dt.timedelta(minutes=30)
    assert json.loads(fired[("visit_soon", due.json["id"])].snapshot) == {"starts_at": starts.isoformat()}
    assert fired[("report_due", due.json["id"])].fire_on == dt.datetime.combine(now.date(), dt.time())
    assert json.loads(fired[("report_due", due.json["id"])].snapshot) == {"report_on": str(now.date())}

    moved = starts + dt.timedelta(minutes=5)
    response = client.put(f"/api/v1/visit/{due.json['id']}", json={"starts_at": moved.isoformat()}, headers=headers)
    assert response.status_code == 200, response.json
    with app.app_context():
        assert scan(app, now) == 1   # a new key for the moved time; the report date did not move
        assert scan(app, now + dt.timedelta(hours=2, minutes=45)) == 1   # Site B's fire time has come
        assert scan(app, now + dt.timedelta(hours=4)) == 0               # Site B has started: never after
    assert [n.reminder for n in notifications(app)].count("visit_soon") == 3


def test_a_burst_of_fired_keys_refreshes_their_statistics_on_postgresql(app, monkeypatch):
    """The scan's anti join is planned from portal_reminder_fired's statistics; after many new keys at once the scan
    refreshes them (PostgreSQL) instead of looping over a seq scan per due row until autovacuum comes."""
    from sqlalchemy import text

    from app.rules import notification_passes

    with app.app_context():
        engine = app.appbuilder.session.get_bind()
    if engine.dialect.name != "postgresql":
        pytest.skip("statistics: PostgreSQL")
    monkeypatch.setattr(notification_passes, "ANALYZE_AFTER", 3)
    client = app.test_client()
    headers = jwt_headers(client)
    with app.app_context():
        host = app.appbuilder.sm.find_user(username="admin").id
    soon = dt.datetime.now().replace(microsecond=0) + dt.timedelta(minutes=10)
    for n in range(3):
        assert client.post("/api/v1/visit/", json={"place": f"Burst {n}", "starts_at": soon.isoformat(), "host": host},
                           headers=headers).status_code == 201

    def analyzed():
        with engine.connect() as conn:
            return conn.execute(text("SELECT last_analyze FROM pg_stat_user_tables WHERE relname = 'portal_reminder_fired' "
                                     "AND schemaname = current_schema()")).scalar()

    before = analyzed()
    with app.app_context():
        assert scan(app) >= 3
    after = analyzed()
    assert after is not None and (before is None or after > before)
