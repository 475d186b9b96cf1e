"""Walk every page and endpoint a portal serves for its entities, reports and dashboards.

Used by the schema fuzz test: whatever the checker accepts must serve all of these without a 5xx.
"""
from __future__ import annotations

import datetime as dt

from conftest import jwt_headers, login
from app.portal import portal_of

SAMPLE = {
    "string": "x1", "text": "some text", "integer": 1, "decimal": "1.5", "boolean": True,
    "date": "2026-01-02", "datetime": "2026-01-02T03:04:05", "email": "a@example.com",
    "phone": "+8613800138000", "url": "https://example.com/", "file": None,  # a file is uploaded, not sent as JSON
    "address": "广东省深圳市南山区科技园路1号",
}


def sample_value(field, created: dict):
    """A value the field is likely to accept (the API may still refuse it: that is fine)."""
    if field.type == "enum":
        return field.choices[0].key if field.choices else None
    if field.type == "link":
        return created.get(field.to)
    if field.type == "many":
        return [created[field.to]] if field.to in created else []
    if field.type == "user":
        return 1
    if field.min is not None and field.type in ("integer", "decimal", "date", "datetime"):
        value = field.min
        return str(value) if field.type == "decimal" else value.isoformat() if isinstance(value, (dt.date, dt.datetime)) else value
    return SAMPLE[field.type]


def walk(app) -> list[tuple[str, int]]:
    """GET every page of every entity, report and dashboard; returns (url, status) of each 5xx."""
    spec = portal_of(app).spec
    client = app.test_client()
    login(client)
    api_client = app.test_client()
    headers = jwt_headers(api_client)
    failures: list[tuple[str, int]] = []

    def get(url, api=False):
        response = (api_client.get(url, headers=headers) if api else client.get(url))
        if response.status_code >= 500:
            failures.append((url, response.status_code))
        return response

    created: dict[str, int] = {}
    for _ in range(2):  # a second round fills links to entities created later in the first
        for entity in spec.entities:
            if entity.name in created:
                continue
            payload = {f.name: sample_value(f, created) for f in entity.fields if not f.readonly}
            payload = {k: v for k, v in payload.items() if v is not None}
            response = api_client.post(f"/api/v1/{entity.snake}/", json=payload, headers=headers)
            if response.status_code >= 500:
                failures.append((f"POST /api/v1/{entity.snake}/", response.status_code))
            elif response.status_code == 201:
                created[entity.name] = response.json["id"]
    get("/")
    get("/api/v1/_openapi", api=True)
    for entity in spec.entities:
        base, api = f"/{entity.snake}", f"/api/v1/{entity.snake}"
        for url in (f"{base}/list/", f"{base}/add", f"{base}/export/csv", f"{base}/import"):
            get(url)
        for url in (f"{api}/", f"{api}/_info", f"{api}/export?format=csv", f"{api}/export?format=xlsx"):
            get(url, api=True)
        for name in [n for n in entity.list if n not in entity.field_names or not entity.field(n).is_relation]:  # sort by each sortable column
            get(f"{base}/list/?_oc_{entity.name}View={name}&_od_{entity.name}View=desc")
        if entity.name in created:
            pk = created[entity.name]
            get(f"{base}/show/{pk}")
            get(f"{base}/edit/{pk}")
            get(f"{api}/{pk}", api=True)
    for report in spec.reports:
        get(f"/reports/{report.id}")
        get(f"/api/v1/reports/{report.id}", api=True)
    get("/api/v1/reports/", api=True)
    for module in spec.modules:
        get(f"/dashboard/{module.name}")
    return failures
