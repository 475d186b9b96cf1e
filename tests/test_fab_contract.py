"""Contract of the Flask-AppBuilder boundary (app/fab.py) with the installed FAB.

Every private or undocumented FAB attribute the portal uses is listed in `fab.CONTRACT`; these tests check
that each still exists with the parameters we pass or receive, and, where it is cheap, that FAB still calls
it the way the boundary assumes. A failure names the attribute and the FAB version, so an upgrade that
changes one says what to look at instead of failing somewhere deep in a page.
"""
from __future__ import annotations

import inspect
from importlib.metadata import version

import pytest
from apispec import APISpec
from flask_appbuilder import ModelView
from flask_appbuilder.api import ModelRestApi
from flask_appbuilder.models.filters import Filters
from flask_appbuilder.models.sqla.interface import SQLAInterface

from app import fab
from conftest import ADMIN, login, make_app
from app.portal import portal_of

FAB_VERSION = version("flask-appbuilder")


def contract_problems(contract=fab.CONTRACT) -> list[str]:
    """One clear line per FAB attribute that is missing or no longer takes the parameters we rely on."""
    problems = []
    for owner, name, params in contract:
        owner_name = f"{owner.__module__}.{owner.__qualname__}" if isinstance(owner, type) else owner.__name__
        where = f"{owner_name}.{name}"
        try:
            inspect.getattr_static(owner, name)
        except AttributeError:
            problems.append(f"Flask-AppBuilder {FAB_VERSION}: {where} is missing (app/fab.py relies on it)")
            continue
        if params is None:
            continue  # a plain attribute: being there is the contract
        try:
            actual = tuple(inspect.signature(getattr(owner, name)).parameters)
        except (TypeError, ValueError):
            problems.append(f"Flask-AppBuilder {FAB_VERSION}: {where} is no longer callable")
            continue
        if actual[:len(params)] != params:
            problems.append(f"Flask-AppBuilder {FAB_VERSION}: {where} takes {actual}, "
                            f"app/fab.py expects {params}")
    return problems


def test_every_fab_attribute_the_boundary_uses_is_there_with_its_signature():
    assert contract_problems() == []


def test_a_missing_attribute_is_reported_by_name_and_fab_version(monkeypatch):
    monkeypatch.delattr(ModelRestApi, "_handle_filters_args")
    problems = contract_problems()
    assert problems == [f"Flask-AppBuilder {FAB_VERSION}: flask_appbuilder.api.ModelRestApi._handle_filters_args "
                        "is missing (app/fab.py relies on it)"]


def test_a_changed_signature_is_reported_with_both_parameter_lists(monkeypatch):
    monkeypatch.setattr(ModelRestApi, "put_headless", lambda self, item_id: None)
    problems = contract_problems()
    assert len(problems) == 1
    assert "ModelRestApi.put_headless takes ('self', 'item_id')" in problems[0]
    assert "expects ('self', 'pk')" in problems[0] and FAB_VERSION in problems[0]


def test_fab_tables_and_instance_attributes(app):
    for table, columns in fab.TABLE_CONTRACT:
        missing = [c for c in columns if c not in table.c]
        assert not missing, f"Flask-AppBuilder {FAB_VERSION}: table {table.name} lacks columns {missing}"
    with app.app_context():
        datamodel = next(v.datamodel for v in app.appbuilder.baseviews if hasattr(v, "datamodel"))
        samples = [app.appbuilder, app.appbuilder.sm, datamodel.get_filters()]
        for owner, name in fab.INSTANCE_CONTRACT:
            instance = next(s for s in samples if isinstance(s, owner))
            assert hasattr(instance, name), f"Flask-AppBuilder {FAB_VERSION}: {owner.__qualname__} instances have no {name}"


def test_apispec_paths_are_where_apispec_paths_reads_them():
    spec = APISpec(title="t", version="1", openapi_version="3.0.2")
    spec.path(path="/probe/", operations={"get": {"responses": {"200": {"description": "ok"}}}})
    assert "get" in fab.apispec_paths(spec)["/probe/"], "apispec no longer keeps paths in APISpec._paths"


# -- behaviour: a fresh app with probe views on two of the portal's tables ------------------------------

CALLS: list[str] = []


@pytest.fixture(scope="module")
def probe_app(tmp_path_factory):
    app = make_app(tmp_path_factory, "fabcontract")
    models = portal_of(app).models
    columns = dict(list_columns=["name"], show_columns=["name"], add_columns=["name"], edit_columns=["name"],
                   search_columns=["name"])

    class ProbeContacts(ModelView):
        datamodel = SQLAInterface(models["Contact"])
        list_title = "probe-contacts-panel"
        list_columns = ["name"]

    class ProbeCustomers(fab.ModelViewBoundary, ModelView):
        """Records which boundary hook FAB reached; `hide_related` drops the related-record panels."""
        datamodel = SQLAInterface(models["Customer"])
        related_views = [ProbeContacts]
        hide_related = False
        fail_after_save = False
        locals().update(columns)

        def request_filters(self):
            CALLS.append("request_filters")
            return self.datamodel.get_filters(self.search_columns)

        def readable_related_views(self, full):
            CALLS.append("readable_related_views")
            return [] if self.hide_related else full

        def prefill_add_form(self, form):
            CALLS.append("prefill_add_form")
            form["name"].data = "prefilled-by-hook"

        def list_page(self, **kwargs):
            CALLS.append("list_page")
            widgets = self.list_widgets(fab.filters_from_url(self), page_size=10)
            return fab.search_page(self, self.search_form.refresh(), widgets)

        def list_widgets(self, filters, **kwargs):
            CALLS.append("list_widgets")
            kwargs.pop("position", None)
            return ModelView._get_list_widget(self, filters, **kwargs)

        def process_form(self, form, is_created):
            CALLS.append(f"edited_pk={fab.edited_pk(form)}")

        def post_update(self, item):
            if self.fail_after_save:
                raise RuntimeError("probe failure")

        def save_error_message(self, error):
            CALLS.append(f"handling={error!r}")
            return "probe database error"

    with app.app_context():
        with fab.perms_sync_suppressed(app.appbuilder) as wanted:
            app.appbuilder.add_view_no_menu(ProbeContacts)
            suppressed_pvm = app.appbuilder.sm.find_permission_view_menu("can_list", "ProbeContacts")
        app.appbuilder.add_view_no_menu(ProbeCustomers)
        synced_pvm = app.appbuilder.sm.find_permission_view_menu("can_list", "ProbeCustomers")
        view = next(v for v in app.appbuilder.baseviews if isinstance(v, ProbeCustomers))
        # the Admin role needs the contacts panel's permissions that were not synced above
        app.appbuilder.add_permissions(update_perms=True)
        session = app.appbuilder.session
        customer = models["Customer"](name="probe customer")
        session.add(customer)
        session.flush()
        session.add(models["Contact"](name="probe contact", customer_id=customer.id))
        session.commit()
        customer_id = customer.id
    return app, view, customer_id, wanted, suppressed_pvm, synced_pvm


def test_update_perms_off_keeps_add_view_from_syncing_permissions(probe_app):
    _, _, _, wanted, suppressed_pvm, synced_pvm = probe_app
    assert wanted is True
    assert suppressed_pvm is None, "AppBuilder.update_perms=False no longer stops add_view from syncing permissions"
    assert synced_pvm is not None, "add_view no longer syncs permissions when AppBuilder.update_perms is True"


def test_list_page_goes_through_the_boundary_hooks(probe_app):
    app, _, _, _, _, _ = probe_app
    client = login(app.test_client())
    CALLS.clear()
    response = client.get("/probecustomers/list/?_flt_0_name=probe")
    assert response.status_code == 200
    assert "probe customer" in response.text
    assert "request_filters" in CALLS, "FAB's list no longer reads _filters"
    assert "list_page" in CALLS, "FAB's list no longer calls _list"
    assert "list_widgets" in CALLS, "FAB's _list no longer reaches _get_list_widget"


def test_show_reads_related_views_per_request(probe_app):
    app, view, customer_id, _, _, _ = probe_app
    client = login(app.test_client())
    CALLS.clear()
    shown = client.get(f"/probecustomers/show/{customer_id}")
    assert shown.status_code == 200 and "probe contact" in shown.text
    assert "readable_related_views" in CALLS, "FAB's show no longer reads _related_views"
    view.hide_related = True
    try:
        hidden = client.get(f"/probecustomers/show/{customer_id}")
    finally:
        view.hide_related = False
    assert hidden.status_code == 200 and "probe contact" not in hidden.text, \
        "FAB's show draws related views it did not read from _related_views"


def test_add_form_is_prefilled_through_get_add_widget(probe_app):
    app, _, _, _, _, _ = probe_app
    client = login(app.test_client())
    CALLS.clear()
    response = client.get("/probecustomers/add")
    assert response.status_code == 200
    assert "prefill_add_form" in CALLS, "FAB's add no longer calls _get_add_widget"
    assert "prefilled-by-hook" in response.text


def test_edit_form_carries_the_pk_and_a_failed_save_is_the_exception_being_handled(probe_app):
    app, view, customer_id, _, _, _ = probe_app
    client = login(app.test_client())
    CALLS.clear()
    view.fail_after_save = True
    try:
        response = client.post(f"/probecustomers/edit/{customer_id}", data={"name": "probe customer"},
                               follow_redirects=True)
    finally:
        view.fail_after_save = False
    assert response.status_code == 200
    assert f"edited_pk={customer_id}" in CALLS, "FAB no longer sets form._id to the edited pk"
    assert "handling=RuntimeError('probe failure')" in CALLS, \
        "FAB no longer reads database_error_message while handling the failed save"
    assert "probe database error" in response.text


def test_has_access_ends_in_the_permission_hook(probe_app, monkeypatch):
    app, _, _, _, _, _ = probe_app
    sm = app.appbuilder.sm
    checked = []
    original = sm.user_may

    def spy(user, permission_name, view_name):
        checked.append((permission_name, view_name))
        return original(user, permission_name, view_name)

    monkeypatch.setattr(sm, "user_may", spy)
    client = login(app.test_client())
    assert client.get("/probecustomers/list/").status_code == 200
    assert ("can_list", "ProbeCustomers") in checked, "FAB's has_access no longer ends in _has_view_access"


def test_rest_endpoints_call_the_headless_methods_and_filters_parse_to_filters(probe_app):
    app, _, _, _, _, _ = probe_app
    models = portal_of(app).models

    class Probe(fab.RestApiBoundary, ModelRestApi):
        datamodel = SQLAInterface(models["Customer"])
        search_columns = ["name"]
        checked = []

        def request_filters(self):
            return self.datamodel.get_filters(self.search_columns)

        def check_request_filters(self, filters):
            self.checked.append(filters)

        def create_record(self):
            return "create_record"

        def update_record(self, pk):
            return f"update_record {pk}"

        def delete_record(self, pk):
            return f"delete_record {pk}"

        def after_get(self, response):
            return ("after_get", response.status_code)

        def viewer_info(self, payload):
            payload["probe"] = True

    with app.test_request_context("/"):
        api = Probe()
        filters = fab.rest_filters(api, {"filters": [{"col": "name", "opr": "eq", "value": "probe customer"}]})
        assert isinstance(filters, Filters), "ModelRestApi._handle_filters_args no longer returns a Filters object"
        assert api.checked == [filters], "RestApiBoundary's check_request_filters was not reached"
        assert [f.column_name for f in filters.filters] == ["name"]
        assert isinstance(fab.search_filters(api), Filters)
        # FAB's endpoints, without their auth and rison wrappers, call the headless methods
        assert inspect.unwrap(ModelRestApi.post)(api) == "create_record", "FAB's POST no longer calls post_headless"
        assert inspect.unwrap(ModelRestApi.put)(api, 7) == "update_record 7", "FAB's PUT no longer calls put_headless"
        assert inspect.unwrap(ModelRestApi.delete)(api, 7) == "delete_record 7", \
            "FAB's DELETE no longer calls delete_headless"
        assert inspect.unwrap(ModelRestApi.get)(api, 999999) == ("after_get", 404), \
            "FAB's GET no longer calls get_headless"
        info = inspect.unwrap(ModelRestApi.info)(api, rison={"keys": ["add_title"]})
        assert info.status_code == 200 and info.get_json()["probe"] is True, "FAB's _info no longer calls info_headless"


PAGE_SETTINGS = ("list_columns", "show_columns", "search_columns", "order_columns", "add_columns", "edit_columns",
                 "add_form", "edit_form", "formatters_columns", "_filters", "_related_views")
API_SETTINGS = ("list_columns", "show_columns", "search_columns", "order_columns", "_filters")


def test_fab_assigns_the_per_request_settings_in_init(app):
    """PerRequest relies on FAB computing these in __init__ and assigning them on the instance."""
    models = portal_of(app).models

    def per_request(names):
        return {name: fab.PerRequest(lambda view, full: ("trimmed", full)) for name in names}

    page = type("ProbeSettingsView", (ModelView,), {"datamodel": SQLAInterface(models["Customer"]),
                                                    **per_request(PAGE_SETTINGS)})
    rest = type("ProbeSettingsApi", (ModelRestApi,), {"datamodel": SQLAInterface(models["Customer"]),
                                                      **per_request(API_SETTINGS)})
    with app.app_context():
        for cls, names in ((page, PAGE_SETTINGS), (rest, API_SETTINGS)):
            instance = cls()
            for name in names:
                slot = f"full_{name.lstrip('_')}"
                assert instance.__dict__.get(slot) is not None, \
                    f"Flask-AppBuilder {FAB_VERSION}: {cls.__bases__[0].__name__}.__init__ no longer assigns {name}"
            with app.test_request_context("/"):
                assert instance.list_columns == ("trimmed", instance.__dict__["full_list_columns"])


def test_config_auth_type_is_fabs_database_authentication():
    """config.py writes FAB's AUTH_DB out (reading the config must not load FAB): it must still be FAB's value."""
    import config
    from flask_appbuilder.const import AUTH_DB

    assert config.AUTH_TYPE == config.AUTH_DB == AUTH_DB


def test_a_page_works_out_who_is_asking_once_and_forgets_at_sign_out(probe_app, monkeypatch):
    """The navbar asks has_access ~120 times a page: the signed-in user is resolved once per request; signing out
    mid-request (the logout view) forgets it, so the page after answers for nobody."""
    app, _, _, _, _, _ = probe_app
    sm = app.appbuilder.sm
    resolved = []
    original = type(sm)._get_safe_user

    def spy(self, user):
        resolved.append(user)
        return original(self, user)

    monkeypatch.setattr(type(sm), "_get_safe_user", spy)
    client = login(app.test_client())
    assert client.get("/probecustomers/list/").status_code == 200
    assert len(resolved) == 1, len(resolved)
    from flask import g
    from flask_login import login_user, logout_user

    from app.fab import _ASKING
    with app.test_request_context():
        admin = sm.find_user(username=ADMIN[0])
        login_user(admin)
        g.user = admin
        assert sm.has_access("can_list", "ProbeCustomers") and g.get(_ASKING) is not None
        logout_user()
        assert g.get(_ASKING) is None, "signing out forgets who was asking"
        assert not sm.has_access("can_list", "ProbeCustomers"), "nobody may list after signing out"
