"""Report pages, downloads, dashboards and the reports API refuse the way they should: anonymous callers,
unknown ids, reports or dashboards the user may not open, bad parameters (through HTTP, on the shipped portal)."""
from __future__ import annotations

import pytest
from conftest import jwt_headers, login
from test_permissions import PASSWORD, make_user


@pytest.fixture(scope="module")
def agent(app):
    """A support agent: tickets reports only; reads no labour entity, so no labour dashboard."""
    make_user(app, "pages_agent", "SupportAgent")
    return login(app.test_client(), "pages_agent", PASSWORD)


def test_anonymous_callers_are_sent_to_sign_in(app):
    client = app.test_client()
    for url in ("/reports/", "/reports/customers_by_level", "/reports/customers_by_level/download.csv", "/dashboard/crm"):
        response = client.get(url)
        assert response.status_code == 302 and "/login/" in response.location, url
    assert client.get("/api/v1/reports/").status_code == 401
    assert client.get("/api/v1/reports/customers_by_level").status_code == 401


def test_unknown_reports_dashboards_and_formats_are_404(admin_client):
    for url in ("/reports/nope", "/reports/nope/download.csv", "/reports/customers_by_level/download.pdf", "/dashboard/nope"):
        assert admin_client.get(url).status_code == 404, url


def test_reports_and_dashboards_of_other_modules_are_refused(app, agent):
    for url in ("/reports/customers_by_level", "/reports/customers_by_level/download.xlsx", "/dashboard/labour"):
        response = agent.get(url)
        assert response.status_code == 302 and not response.location.startswith("/reports/"), url
        page = agent.get(response.location)
        assert "Access is Denied" in page.get_data(as_text=True), url
    assert agent.get("/dashboard/tickets").status_code == 200
    headers = jwt_headers(app.test_client(), "pages_agent", PASSWORD)
    listed = app.test_client().get("/api/v1/reports/", headers=headers).json["result"]
    assert {r["id"] for r in listed} == {"tickets_by_status", "tickets_by_month", "tickets_by_week", "resolved_by_week",
                                         "resolution_by_priority"}


@pytest.mark.parametrize("query,message", [
    ("from=2026-02-30", "Not a valid date"),
    ("from=2026-03-01&to=2026-02-01", "The start date is after the end date."),
    ("f_name=x", "cannot be filtered by name"),
])
def test_bad_download_parameters_flash_and_go_back_to_the_report(admin_client, query, message):
    response = admin_client.get(f"/reports/customers_by_level/download.csv?{query}")
    assert response.status_code == 302 and response.location.endswith("/reports/customers_by_level"), response.location
    assert message in admin_client.get(response.location).get_data(as_text=True)
