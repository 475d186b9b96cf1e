"""The navbar's menu is rendered once per permission set, language and URL prefix (app/runtime/navbar.py): each
user still sees exactly the menu FAB would render for them, in their language, and a permission change shows."""
from __future__ import annotations

import re

import pytest
from flask import render_template

from conftest import login, make_app
from test_permissions import PASSWORD, make_user


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    app = make_app(tmp_path_factory, "navbar")
    make_user(app, "nav_sales", "Sales")
    make_user(app, "nav_agent", "SupportAgent")
    return app


def menu_of(html: str) -> str:
    """The left menu's <ul> as the page shows it."""
    return re.search(r'<ul class="nav navbar-nav">(.*?)</ul>\s*<ul class="nav navbar-nav navbar-right">', html,
                     re.S).group(1)


def fab_menu(app, client, path="/") -> str:
    """What FAB's own appbuilder/navbar_menu.html renders for the client's user, now (no cache)."""
    with client.application.test_request_context(path, headers={"Cookie": _cookies(client)}):
        app.preprocess_request()
        return render_template("appbuilder/navbar_menu.html", menu=app.appbuilder.menu)


def _cookies(client) -> str:
    return "; ".join(f"{c.key}={c.value}" for c in client._cookies.values())


def links(menu: str) -> list[str]:
    return re.findall(r'href="([^"#]+)"', menu)


def test_each_user_sees_the_menu_fab_renders_for_them_in_their_language(app):
    admin = login(app.test_client())
    sales = login(app.test_client(), "nav_sales", PASSWORD)
    agent = login(app.test_client(), "nav_agent", PASSWORD)
    seen = {}
    for name, client in (("admin", admin), ("sales", sales), ("agent", agent)):
        first, second = (menu_of(client.get(path).get_data(as_text=True)) for path in ("/", "/customer/list/"))
        assert first == second, "the kept menu is the same on every page"
        assert links(first) == links(fab_menu(app, client)), name
        seen[name] = first
    assert "/audit/" in links(seen["admin"]) and "/audit/" not in links(seen["sales"])
    assert "/ticket/list/" in links(seen["agent"]) and "/follow_up/list/" not in links(seen["agent"])
    assert "/follow_up/list/" in links(seen["sales"]) and "/ticket/list/" not in links(seen["sales"])
    assert sales.get("/lang/zh").status_code == 302
    chinese = menu_of(sales.get("/").get_data(as_text=True))
    assert links(chinese) == links(seen["sales"]) and chinese != seen["sales"], "another language, another menu"
    assert "客户" in chinese
    assert menu_of(login(app.test_client(), "nav_sales", PASSWORD).get("/").get_data(as_text=True)) in (
        seen["sales"], chinese)


def test_a_permission_change_shows_at_the_next_page(app):
    agent = login(app.test_client(), "nav_agent", PASSWORD)
    before = links(menu_of(agent.get("/").get_data(as_text=True)))
    assert "/follow_up/list/" not in before
    with app.app_context():
        sm = app.appbuilder.sm
        role = sm.find_role("SupportAgent")
        for permission in ("menu_access", "can_list"):
            pv = sm.find_permission_view_menu(permission, "FollowUp")
            if pv is None:
                pv = sm.add_permission_view_menu(permission, "FollowUp")
            sm.add_permission_role(role, pv)
    try:
        after = links(menu_of(agent.get("/").get_data(as_text=True)))
        assert "/follow_up/list/" in after, after
        assert links(fab_menu(app, agent)) == after
    finally:
        with app.app_context():
            sm = app.appbuilder.sm
            role = sm.find_role("SupportAgent")
            for permission in ("menu_access", "can_list"):
                sm.del_permission_role(role, sm.find_permission_view_menu(permission, "FollowUp"))
    assert links(menu_of(agent.get("/").get_data(as_text=True))) == before
