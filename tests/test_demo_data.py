"""The demo data (`make run`, `portal demo`) is a seed, not news: loading it notifies nobody and queues no e-mail,
though its tickets are assigned to the admin and its follow-ups fall due."""
from __future__ import annotations

from sqlalchemy import text

from conftest import make_app
from app.demo import load_demo


def test_loading_the_demo_notifies_nobody(tmp_path_factory):
    app = make_app(tmp_path_factory, "demo_data")
    with app.app_context():
        assert load_demo(app, labour_days=2)
        session = app.appbuilder.session
        assigned = session.execute(text("SELECT count(*) FROM ticket WHERE assignee_id IS NOT NULL")).scalar()
        assert assigned > 0  # what would have notified
        assert session.execute(text("SELECT count(*) FROM portal_notifications")).scalar() == 0
        assert session.execute(text("SELECT count(*) FROM portal_outbox")).scalar() == 0
        session.remove()
