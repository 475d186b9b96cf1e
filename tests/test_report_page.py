"""The report page through HTTP: numbers formatted for the reader and right-aligned, cells linking to their
records, the report's fixed filter in words, and downloads keeping raw numbers."""
from __future__ import annotations

import csv
import io
import re
from urllib.parse import unquote

import pytest
from conftest import jwt_headers, login, make_app
from openpyxl import load_workbook


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from app.demo import load_demo

    app = make_app(tmp_path_factory, "report_page")
    with app.app_context():
        load_demo(app, labour_days=6)
    api = app.test_client()
    return app, api, jwt_headers(api)


def page_in(app, language: str):
    client = login(app.test_client())
    client.get(f"/lang/{language}")
    return client


@pytest.mark.parametrize("language, fixed", [("en", "Approved = Yes"), ("zh", "已审核 = 是")])
def test_numbers_right_aligned_and_linked_fixed_filter_in_words(demo, language, fixed):
    app, api, h = demo
    data = api.get("/api/v1/reports/labour_cost_by_month", headers=h).json
    html = page_in(app, language).get("/reports/labour_cost_by_month").get_data(as_text=True)
    words = re.search(r'id="report-fixed-filters">(.*?)</p>', html, re.S).group(1)
    assert fixed in words
    body = html.split('report-table"')[1].split("</tbody>")[0]
    first = data["rows"][0]
    row = re.findall(r"<tr>(.*?)</tr>", body.split("<tbody>")[1])[0]
    tds = re.findall(r'<td( class="[^"]*")?>(.*?)</td>', row)
    assert [t[0] for t in tds[2:]] == [' class="report-number"'] * 3
    cost = tds[4][1]
    assert f"{first['cost']:,.2f}" in cost
    href = re.search(r'href="([^"]+)"', cost).group(1).replace("&#34;", '"').replace("&amp;", "&")
    assert href == first["drill"] and "approved" in unquote(href)


def test_downloads_keep_raw_numbers(demo):
    app, api, h = demo
    data = api.get("/api/v1/reports/labour_cost_by_month", headers=h).json
    client = page_in(app, "en")
    text = client.get("/reports/labour_cost_by_month/download.csv").data.decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    assert float(rows[1][4]) == data["rows"][0]["cost"]  # 1234.5, not "1,234.50"
    book = load_workbook(io.BytesIO(client.get("/reports/labour_cost_by_month/download.xlsx").data))
    sheet = book.active
    assert sheet.cell(2, 5).value == pytest.approx(data["rows"][0]["cost"])
