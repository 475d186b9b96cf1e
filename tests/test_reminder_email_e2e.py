"""End to end (issue 14): a change → its notification rows in the same transaction → the worker ("notify" then
"deliver") → a real SMTP server (aiosmtpd). Each recipient's e-mail is in their saved language, through their
Viewer (hidden fields left out, masked fields masked), with a link to the record; a recipient outside the row
scope gets no e-mail and no inbox entry."""
from __future__ import annotations

import pytest

from conftest import jwt_headers, make_app
from mail_server import MailServer
from services import free_port

from app.data.worker import run_worker
from app.rules.access import mask_value

SCHEMA = """version: 1
module: deals
entities:
  Deal:
    label: {en: Deal, zh: 交易}
    title: title
    fields:
      title: {type: string, required: true, label: {en: Title, zh: 标题}}
      secret: {type: string, label: {en: Secret, zh: 机密}}
      phone: {type: string, label: {en: Phone, zh: 电话}}
      owner: {type: user, label: {en: Owner, zh: 负责人}}
      watcher: {type: user, label: {en: Watcher, zh: 关注人}}
roles:
  Seller:
    can: {Deal: [read, update]}
    rows: {Deal: {owner: $user}}
    hide: {Deal: [secret]}
    mask: {Deal: [phone]}
  Boss:
    can: {Deal: all}
reminders:
  deal_opened:
    entity: Deal
    on: [create]
    notify: [owner, watcher, "role:Boss"]
    channels: [inbox, email]
    message: {en: "Deal {title}: secret [{secret}] phone [{phone}]", zh: "交易 {title}：机密 [{secret}] 电话 [{phone}]"}
"""
PASSWORD = "Deal-pass-1"
PHONE = "13812345678"
SECRET = "s3cret-margin-42"


@pytest.fixture(scope="module")
def mail():
    server = MailServer(free_port()).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def app(tmp_path_factory, mail):
    folder = tmp_path_factory.mktemp("deals_schema")
    (folder / "deals.yaml").write_text(SCHEMA, encoding="utf-8")
    app = make_app(tmp_path_factory, "reminder_email_e2e", folder, PORTAL_WORKER_POLL_SECONDS=0.05,
                   PORTAL_BASE_URL="http://portal.example:8080", **mail.config())
    from app.runtime.locale import UserLocale

    with app.app_context():
        sm = app.appbuilder.sm
        for name, role in (("owner", "Seller"), ("watcher", "Seller"), ("boss", "Boss")):
            sm.add_user(name, name, "Test", f"{name}@example.com", [sm.find_role(role)], PASSWORD)
        session = app.appbuilder.session
        session.merge(UserLocale(user_id=sm.find_user(username="owner").id, locale="zh"))
        session.merge(UserLocale(user_id=sm.find_user(username="boss").id, locale="en"))
        session.commit()
    return app


def test_a_created_record_reaches_each_recipient_by_email_through_their_viewer(app, mail):
    client = app.test_client()
    ids = {}
    with app.app_context():
        for name in ("owner", "watcher", "boss"):
            ids[name] = app.appbuilder.sm.find_user(username=name).id
    # the admin writes it in English; the owner reads Chinese
    response = client.post("/api/v1/deal/", json={"title": "Big <b>order</b>", "secret": SECRET, "phone": PHONE,
                                                  "owner": ids["owner"], "watcher": ids["watcher"]},
                           headers=jwt_headers(client) | {"Accept-Language": "en"})
    assert response.status_code == 201, response.json
    pk = response.json["id"]
    assert mail.messages == []  # nothing is sent in the request
    run_worker(app, once=True)

    by_recipient = {}
    for message in mail.messages:
        by_recipient.setdefault(str(message["To"]), []).append(message)
    assert set(by_recipient) == {"owner@example.com", "boss@example.com"}  # the watcher is out of scope
    assert all(len(m) == 1 for m in by_recipient.values())

    owner = by_recipient["owner@example.com"][0]
    body = owner.get_body(("plain",)).get_content()
    assert str(owner["Subject"]).startswith("交易 Big <b>order</b>：机密 [] 电话 [")
    assert SECRET not in body and PHONE not in body and SECRET not in str(owner["Subject"])
    assert f"电话 [{mask_value(PHONE)}]" in body
    assert f"http://portal.example:8080/deal/show/{pk}" in body

    boss = by_recipient["boss@example.com"][0]
    boss_body = boss.get_body(("plain",)).get_content()
    assert f"Deal Big <b>order</b>: secret [{SECRET}] phone [{PHONE}]" in boss_body
    assert f"http://portal.example:8080/deal/show/{pk}" in boss_body
    html = boss.get_body(("html",)).get_content()  # the title is escaped in the HTML part
    assert "<b>order</b>" not in html and "&lt;b&gt;order&lt;/b&gt;" in html
    assert f'<a href="http://portal.example:8080/deal/show/{pk}">Open the record</a>' in html
    assert f'<a href="http://portal.example:8080/deal/show/{pk}">打开记录</a>' in owner.get_body(("html",)).get_content()

    # the inboxes agree: the watcher has nothing listed or counted; the owner's text is masked the same way
    watcher = client.get("/api/v1/notifications", headers=jwt_headers(client, "watcher", PASSWORD)).json
    assert watcher["count"] == watcher["unread"] == 0 and watcher["result"] == []
    mine = client.get("/api/v1/notifications", headers=jwt_headers(client, "owner", PASSWORD)
                      | {"Accept-Language": "zh"}).json
    assert [n["record_id"] for n in mine["result"]] == [pk]
    assert SECRET not in mine["result"][0]["text"] and mask_value(PHONE) in mine["result"][0]["text"]

    run_worker(app, once=True)  # nothing left: each e-mail was sent once
    assert len(mail.messages) == 2
