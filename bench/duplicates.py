"""Duplicate detection (issue 16) on the shipped Customer (schemas/crm.yaml: phone exact; name fuzzy 90, same kind).

1. Create against CUSTOMERS stored customers: `POST /api/v1/customer/?allow_duplicate=1` (in-process test client:
   server time only) of a new random customer with the duplicate check (run in full; a random name that has
   candidates is saved anyway), interleaved with the same POST without it (the API's
   `duplicates_conflict` switched off for those runs). Goal: the check adds <= 20 ms. Reported: median (min–max)
   of each, the ratio, and the added ms.
2. Import of IMPORT_ROWS customers (CSV: name, phone, kind) with duplicate checking (against the file and the
   table), against raw executemany (SQLite) / COPY (PostgreSQL) of the same rows. Goal: anchor / import >= 0.1.

`BENCH_QUICK=1` scales down (100k stored customers, 20k imported rows); the tables say which scale ran.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import os
import random
import tempfile
import time
from pathlib import Path

from sqlalchemy import delete, text

from app.data.importer import Importer
from app.generate.apis import EntityApi
from app.portal import portal_of
from app.rules.access import current_viewer

from .common import interleaved, median, pg_schema, row, spread
from .reports import _app

QUICK = os.environ.get("BENCH_QUICK") == "1"
CUSTOMERS = 100_000 if QUICK else 1_000_000
IMPORT_ROWS = 20_000 if QUICK else 100_000
CREATES = 40 if QUICK else 100
REPEAT = 3

CITIES = ["上海", "北京", "广州", "深圳", "杭州", "南京", "成都", "武汉", "西安", "重庆", "天津", "苏州", "长沙", "郑州",
          "青岛", "宁波", "无锡", "厦门", "福州", "合肥", "济南", "沈阳", "大连", "昆明", "南昌", "贵阳", "太原", "石家庄"]
SURNAMES = list("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤")
WORDS = list("华宏鑫盛泰安康达信诚建兴隆昌永恒丰源通宇天海德利祥瑞辉明光新东方中国创联合科技实业发展投资")
TRADES = ["建筑工程", "装饰", "物业服务", "房地产开发", "机械制造", "贸易", "建材", "劳务", "钢结构", "市政工程"]
SUFFIXES = ["有限公司", "集团有限公司", "股份有限公司", "工作室", ""]
KINDS = ["company", "individual", "government"]


def customer(rng: random.Random, n: int) -> dict:
    name = (rng.choice(CITIES) if rng.random() < 0.6 else "") + rng.choice(SURNAMES) + rng.choice(WORDS) + \
        rng.choice(WORDS) + rng.choice(TRADES) + rng.choice(SUFFIXES)
    return {"name": f"{name}{n}" if rng.random() < 0.5 else name, "phone": f"+8613{n:09d}",
            "kind": rng.choice(KINDS)}


def fill(app, count: int) -> float:
    models = portal_of(app).models
    table = models["Customer"].__table__
    rng = random.Random(16)
    now = dt.datetime.now()
    start = time.perf_counter()
    with app.app_context():
        engine = app.appbuilder.session.get_bind()
        for first in range(0, count, 50_000):
            rows = [{**customer(rng, n), "level": "normal", "created_on": now, "changed_on": now}
                    for n in range(first, min(first + 50_000, count))]
            with engine.begin() as conn:
                conn.execute(table.insert(), rows)
        with engine.begin() as conn:
            conn.execute(text("ANALYZE customer"))  # this table only: other schemas may share the server
    return time.perf_counter() - start


def measure_create(app) -> tuple[list[float], list[float]]:
    client = app.test_client()
    token = client.post("/api/v1/security/login", json={"username": "bench", "password": "bench-pass",
                                                        "provider": "db"}).json["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    rng = random.Random(99)
    serial = iter(range(900_000_000, 999_999_999))
    original = EntityApi.duplicates_conflict
    times = {"checked": [], "plain": []}

    def post(kind: str):
        body = customer(rng, next(serial))
        start = time.perf_counter()
        response = client.post("/api/v1/customer/?allow_duplicate=1", json=body, headers=headers)
        times[kind].append(time.perf_counter() - start)
        assert response.status_code == 201, response.json

    def checked():
        EntityApi.duplicates_conflict = original
        post("checked")

    def plain():
        EntityApi.duplicates_conflict = lambda self, rules, ctx: None
        try:
            post("plain")
        finally:
            EntityApi.duplicates_conflict = original

    page_times = []
    assert client.post("/login/", data={"username": "bench", "password": "bench-pass"}).status_code == 302
    for _ in range(3):  # the duplicates page over the whole table (first page)
        start = time.perf_counter()
        page = client.get("/customer/duplicates/")
        assert page.status_code == 200, page.status_code
        page_times.append(time.perf_counter() - start)
    measure_create.page = page_times
    for _ in range(5):  # warm up both paths
        checked(), plain()
    times = {"checked": [], "plain": []}
    interleaved({"checked": checked, "plain": plain}, CREATES)
    return times["checked"], times["plain"]


def make_csv(rows: int) -> bytes:
    rng = random.Random(7)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["name", "phone", "kind"])
    for n in range(rows):
        c = customer(rng, 500_000_000 + n)
        writer.writerow([c["name"], c["phone"], c["kind"]])
    return buffer.getvalue().encode("utf-8")


def raw_import(app, data: bytes) -> float:
    with app.app_context():
        engine = app.appbuilder.session.get_bind()
        start = time.perf_counter()
        reader = csv.reader(io.StringIO(data.decode("utf-8")))
        next(reader)
        now = dt.datetime.now()
        rows = [(name, phone, kind, "normal", now, now) for name, phone, kind in reader]
        raw = engine.raw_connection()
        columns = "name, phone, kind, level, created_on, changed_on"
        try:
            cursor = raw.cursor()
            if engine.dialect.name == "postgresql":
                body = "".join("\t".join(str(v) for v in r) + "\n" for r in rows)
                cursor.copy_expert(f"COPY customer ({columns}) FROM STDIN", io.StringIO(body))
            else:
                cursor.executemany(f"INSERT INTO customer ({columns}) VALUES (?, ?, ?, ?, ?, ?)", rows)
            raw.commit()
        finally:
            raw.close()
        return time.perf_counter() - start


def portal_import(app, data: bytes):
    spec, models = portal_of(app).spec, portal_of(app).models
    with app.app_context():
        importer = Importer(spec, spec.entity("Customer"), models, app.appbuilder.session, current_viewer())
        start = time.perf_counter()
        report = importer.run(io.BytesIO(data), "csv", dry_run=False)
        return time.perf_counter() - start, report


def clear(app) -> None:
    models = portal_of(app).models
    with app.app_context():
        with app.appbuilder.session.get_bind().begin() as conn:
            conn.execute(text("DELETE FROM portal_history"))
            conn.execute(delete(models["Customer"].__table__))


def measure_import(app) -> tuple[list[float], list[float], int]:
    data = make_csv(IMPORT_ROWS)
    seconds = {"raw": [], "ours": []}
    flagged = []

    def raw():
        seconds["raw"].append(raw_import(app, data))
        clear(app)

    def ours():
        taken, report = portal_import(app, data)
        assert report.written and report.created == IMPORT_ROWS, report.errors[:5]
        seconds["ours"].append(taken)
        flagged.append(report.duplicates_count)
        clear(app)

    interleaved({"raw": raw, "ours": ours}, REPEAT)
    return seconds["raw"], seconds["ours"], flagged[-1]


def suite(url: str, label: str, work: Path) -> tuple[list[str], list[str]]:
    app = _app(url)
    filled = fill(app, CUSTOMERS)
    checked, plain = measure_create(app)
    added = (median(checked) - median(plain)) * 1000
    create_line = row(label, f"{CUSTOMERS:,}", spread(plain, 1000), spread(checked, 1000),
                      f"{median(checked) / median(plain):.2f}", f"{added:.1f}", spread(measure_create.page, 1000, 0),
                      f"{filled:.0f}")
    import_app = _app(url.replace("dup.db", "dup-import.db")) if url.startswith("sqlite") else app
    if import_app is app:
        clear(app)
    raw_s, ours_s, flagged = measure_import(import_app)
    import_line = row(label, f"{IMPORT_ROWS:,}", spread(raw_s), spread(ours_s), f"{flagged:,}",
                      f"{median(raw_s) / median(ours_s):.2f}")
    return [create_line], [import_line]


def run(pg: str | None = None) -> list[str]:
    work = Path(tempfile.mkdtemp(prefix="bench-dup-"))
    creates, imports = [], []
    c, i = suite(f"sqlite:///{work / 'dup.db'}", "SQLite", work)
    creates += c
    imports += i
    if pg:
        with pg_schema(pg) as url:
            c, i = suite(url, "PostgreSQL", work)
            creates += c
            imports += i
    scale = "quick scale (BENCH_QUICK=1)" if QUICK else "full scale"
    return ([f"### Create with the duplicate check ({scale}): {CREATES} interleaved API creates each, ms, median (min–max)", "",
             row("database", "stored customers", "plain create ms", "create + check ms", "ratio", "added ms",
                 "duplicates page ms", "fill s"),
             row("---", "---", "---", "---", "---", "---", "---", "---")] + creates +
            ["", f"### Import with duplicate checking ({scale}), median of {REPEAT} interleaved runs (min–max)", "",
             row("database", "rows", "anchor s (raw executemany / COPY)", "import s", "rows flagged", "anchor / import"),
             row("---", "---", "---", "---", "---", "---")] + imports)
