"""Duplicate detection (issue 16) on the shipped Customer (schemas/crm.yaml: `{match: [phone]}` exact;
`{match: [name], fuzzy: 90, same: [address_city]}`), seeded like a real CRM.

Seed (`fill`): CUSTOMERS customers inserted in bulk (executemany in 50k batches). Names: 70% companies (half start
with their city's short name, a tenth with their province's, e.g. "上海宏达建筑工程有限公司"; a shop name of two common
characters, a trade and a shared legal suffix), 25% people (surnames by their frequency in China), 5% government
offices ("杭州市交通运输局"). Addresses: ADDRESSES distinct street addresses on real districts of every province,
cities weighted by rank (the first is Shanghai, the next Beijing, Shenzhen, ... : 1/rank, so big cities hold big
blocks), each parsed ONCE by the app's own parser (app/fieldtypes/address.py `parse_address`) and its
province/city/district/detail/parsed siblings reused for every customer at that address. Phones stored in E.164,
as the phone type stores them.

1. Create against the stored customers: `POST /api/v1/customer/?allow_duplicate=1` (in-process test client:
   server time only) of a new customer (four in five fresh, one in five a near-duplicate of a stored company:
   city written out with 市, the city prefix dropped, another legal suffix; same address, new phone), with the
   duplicate check, interleaved with the same kind of POST without it (the API's `duplicates_conflict` switched off
   for those turns). Goal: the check adds <= 20 ms. Reported: median (min–max) of each, the ratio, the added ms,
   and how many rows the name rule's SQL narrowing hands to rapidfuzz per create (median, max; the cap is
   FUZZY_BLOCK_LIMIT). Before timing, NEAR near-duplicates are posted without `allow_duplicate`: each must be
   answered 409 naming its stored original (asserted; the count found is reported).
2. Import of IMPORT_ROWS customers (CSV: name, phone, kind, address; a tenth near-duplicates of stored or earlier
   rows) with duplicate checking (against the file and the table) into the table, against raw executemany (SQLite) /
   COPY (PostgreSQL) of the same rows with their parsed address columns. Goal: anchor / import >= 0.1. The
   addresses come from the seed's pool, whose parses are cached: this measures the duplicate check, not jionlp
   (the Addresses suite measures parsing).

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
from dataclasses import dataclass
from pathlib import Path

from rapidfuzz import fuzz
from sqlalchemy import delete, func, select, text

from app.data import duplicates as search_module
from app.data.importer import Importer
from app.fieldtypes.address import location_parser, parse_address
from app.generate.apis import EntityApi
from app.portal import portal_of
from app.rules.access import current_viewer

from .common import interleaved, median, pg_schema, release, row, spread
from .reports import _app

QUICK = os.environ.get("BENCH_QUICK") == "1"
CUSTOMERS = 100_000 if QUICK else 1_000_000
IMPORT_ROWS = 20_000 if QUICK else 100_000
CREATES = 40 if QUICK else 100
NEAR = 30  # near-duplicates that must be found (409 naming the original)
ADDRESSES = 15_000  # distinct addresses (below the parse cache's 20,000)
REPEAT = 3

TOP_CITIES = ["上海", "北京", "深圳", "广州", "杭州", "成都", "苏州", "武汉", "南京", "重庆", "天津", "西安", "郑州",
              "长沙", "东莞", "佛山", "宁波", "青岛", "合肥", "济南"]
STREETS = ["人民路", "解放大道", "中山路", "建设街", "文化路", "滨江路", "新华街", "长江路", "南京路", "学院路", "工业大道",
           "科技园路", "世纪大道", "和平路", "东风路", "迎宾大道"]
# surnames with their share of China's population (%), the rest evenly
SURNAMES = {"王": 7.1, "李": 7.0, "张": 6.7, "刘": 5.4, "陈": 4.5, "杨": 3.1, "黄": 2.2, "赵": 2.0, "吴": 2.0, "周": 1.9,
            "徐": 1.6, "孙": 1.5, "马": 1.5, "朱": 1.3, "胡": 1.3, "郭": 1.2, "何": 1.2, "高": 1.1, "林": 1.1, "罗": 1.1,
            **{s: 0.5 for s in "郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛"}}
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华建国文辉力红玲斌宇浩凯鹏飞晨欣怡子涵梓轩雨婷佳俊博"
SHOP = "华宏鑫盛泰安康达信诚建兴隆昌永恒丰源通宇天海德利祥瑞辉明光新东方中创联合科实业发展金银凯嘉博远航汇晟弘正元立"
TRADES = {"建筑工程": 8, "建设工程": 6, "装饰工程": 5, "建筑装饰": 4, "物业服务": 4, "房地产开发": 3, "机械设备": 3,
          "商贸": 5, "贸易": 5, "建材": 4, "劳务": 3, "钢结构": 2, "市政工程": 2, "科技": 6, "电子科技": 2,
          "信息技术": 2, "环保科技": 2, "实业": 3, "投资": 2, "物流": 2}
LEGAL = {"有限公司": 60, "有限责任公司": 12, "集团有限公司": 8, "股份有限公司": 8, "建设集团有限公司": 2, "分公司": 3,
         "工作室": 2, "经营部": 5}
BUREAUS = ["住房和城乡建设局", "交通运输局", "水务局", "城市管理局", "教育局", "卫生健康委员会", "自然资源和规划局",
           "发展和改革委员会", "城投集团", "公共资源交易中心"]
MOBILE = ["130", "131", "132", "133", "135", "136", "137", "138", "139", "150", "151", "152", "158", "159", "176",
          "177", "180", "181", "186", "187", "188", "189", "198", "199"]
ADDRESS_COLUMNS = ("address", "address_province", "address_city", "address_district", "address_detail", "address_parsed")


@dataclass(frozen=True)
class Place:
    text: str
    province: str
    city: str  # the city's short name, as company names start with it
    parts: tuple  # the parsed sibling values (province, city, district, detail, parsed), as the app stores them


def _weighted(rng: random.Random, table: dict) -> str:
    return rng.choices(list(table), weights=list(table.values()))[0]


class Seed:
    """The bench's customer generator: one pool of parsed addresses, names drawn per address."""

    def __init__(self) -> None:
        rng = random.Random(16)
        entries = [e for e in location_parser()._entries if e[3][0] and e[4]]  # current county-level entries
        by_city: dict[str, list] = {}
        for entry in entries:
            by_city.setdefault(entry[2][1] or entry[2][0], []).append(entry)
        others = sorted(set(by_city) - set(TOP_CITIES))
        rng.shuffle(others)
        cities = [c for c in TOP_CITIES if c in by_city] + others
        weights = [1 / rank for rank in range(1, len(cities) + 1)]
        self.places: list[Place] = []
        seen = set()
        while len(self.places) < ADDRESSES:
            city = rng.choices(cities, weights=weights)[0]
            entry = rng.choice(by_city[city])
            province, city_name, county = entry[1][0], entry[2][0], entry[3][0]
            street = f"{rng.choice(STREETS)}{rng.randint(1, 999)}号"
            if rng.random() < 0.3:
                street += f"{rng.randint(1, 30)}栋{rng.randint(1, 30)}0{rng.randint(1, 9)}室"
            prefix = "" if province == city_name else province  # municipalities: 上海市浦东新区
            address = f"{prefix}{city_name}{county}{street}"
            if address in seen:
                continue
            seen.add(address)
            parsed = parse_address(address)  # the app's parser, once per distinct address
            self.places.append(Place(address, entry[1][1] or province, city, (
                parsed.province, parsed.city, parsed.district, parsed.detail, parsed.parsed)))
        self.parsed_cities = len({p.parts[1] for p in self.places})
        self.city_of = {p.text: p.city for p in self.places}  # an address -> the city's short name

    def name(self, rng: random.Random, place: Place) -> tuple[str, str]:
        """(name, kind) of a customer at `place`."""
        draw = rng.random()
        if draw < 0.25:
            given = rng.choice(GIVEN) + (rng.choice(GIVEN) if rng.random() < 0.7 else "")
            return _weighted(rng, SURNAMES) + given, "individual"
        if draw < 0.30:
            return f"{place.city}市{rng.choice(BUREAUS)}", "government"
        lead = rng.random()
        prefix = place.city if lead < 0.5 else place.province if lead < 0.6 else ""
        shop = rng.choice(SHOP) + rng.choice(SHOP)
        return prefix + shop + _weighted(rng, TRADES) + _weighted(rng, LEGAL), "company"

    def customer(self, rng: random.Random, n: int) -> dict:
        place = rng.choice(self.places)
        name, kind = self.name(rng, place)
        return {"name": name, "kind": kind, "phone": phone(n), "address": place.text,
                **dict(zip(ADDRESS_COLUMNS[1:], place.parts))}


def phone(n: int) -> str:
    """A distinct Chinese mobile number in E.164, as the phone type stores it."""
    return f"+86{MOBILE[n % len(MOBILE)]}{n // len(MOBILE):08d}"


def near_duplicate(rng: random.Random, name: str, city: str) -> str | None:
    """A spelling of a stored company's name a user would type for the same company (None: none fits): the city
    written out (上海 -> 上海市), the city dropped, or another legal suffix; kept only if it scores >= 90 (the rule's
    threshold, the app's scorer) so the check must find it."""
    variants = []
    if name.startswith(city):
        variants += [city + "市" + name[len(city):], name[len(city):]]
    for legal in LEGAL:
        if name.endswith(legal):
            other = rng.choice([s for s in LEGAL if s != legal and len(s) >= 4])
            variants.append(name[:-len(legal)] + other)
            break
    rng.shuffle(variants)
    for variant in variants:
        if fuzz.ratio(search_module._processed(variant), search_module._processed(name)) >= 90:
            return variant
    return None


def fill(app, seed: Seed, count: int) -> tuple[float, list[dict]]:
    """Seconds taken, and a sample of stored companies (near-duplicates are made of them)."""
    models = portal_of(app).models
    table = models["Customer"].__table__
    rng = random.Random(16)
    now = dt.datetime.now()
    sample = []
    start = time.perf_counter()
    with app.app_context():
        engine = app.appbuilder.session.get_bind()
        for first in range(0, count, 50_000):
            rows = [{**seed.customer(rng, n), "level": "normal", "created_on": now, "changed_on": now}
                    for n in range(first, min(first + 50_000, count))]
            sample += [r for r in rows[:4000] if r["kind"] == "company"][:200]
            with engine.begin() as conn:
                conn.execute(table.insert(), rows)
        with engine.begin() as conn:
            conn.execute(text("ANALYZE customer"))  # this table only: other schemas may share the server
    return time.perf_counter() - start, sample


def block_rows(app, names_and_cities: list[tuple[str, str]]) -> tuple[list[int], list[int]]:
    """Rows the name rule's SQL narrowing matches (without its cap) per (name, parsed city): what rapidfuzz would
    have to score; with the blocking key (after a leading place name), and with the former key (the name's first
    two characters, counted through the city's rows) for comparison."""
    table = portal_of(app).models["Customer"].__table__
    now, before = [], []
    with app.app_context():
        session = app.appbuilder.session
        for name, city in names_and_cities:
            low, high = search_module._length_bounds(len(name), 90)
            common = [table.c.address_city == city, func.length(table.c.name).between(low, high)]
            count = select(func.count()).select_from(table)
            now.append(session.execute(count.where(*common, search_module._block(table.c.name).in_(
                search_module._block_keys(name)))).scalar())
            before.append(session.execute(count.where(*common, func.substr(table.c.name, 1, 2) == name[:2])).scalar())
        session.remove()
    return now, before


def measure_create(app, seed: Seed, sample: list[dict]) -> dict:
    client = app.test_client()
    token = client.post("/api/v1/security/login", json={"username": "bench", "password": "bench-pass",
                                                        "provider": "db"}).json["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    models = portal_of(app).models
    rng = random.Random(99)
    serial = iter(range(90_000_000, 99_999_999))

    def near_body(original: dict) -> dict | None:
        variant = near_duplicate(rng, original["name"], seed.city_of[original["address"]])
        if variant is None:
            return None
        return {"name": variant, "kind": "company", "phone": phone(next(serial)), "address": original["address"]}

    # near-duplicates must be found: 409 naming the stored original (or ten candidates scoring at least as high)
    with app.app_context():
        session = app.appbuilder.session
        table = models["Customer"].__table__
        ids = {r["phone"]: session.execute(select(table.c.id).where(table.c.phone == r["phone"])).scalar()
               for r in sample}
        session.remove()
    found, tried = 0, 0
    for original in rng.sample(sample, len(sample)):
        if tried == NEAR:
            break
        body = near_body(original)
        if body is None:
            continue
        tried += 1
        response = client.post("/api/v1/customer/", json=body, headers=headers)
        assert response.status_code == 409, (body, response.status_code)
        candidates = response.json["duplicates"]
        score = fuzz.ratio(search_module._processed(body["name"]), search_module._processed(original["name"]))
        if ids[original["phone"]] in {c["id"] for c in candidates} or (
                len(candidates) == search_module.SHOWN and min(c["score"] for c in candidates) >= round(score, 1)):
            found += 1
    assert found == tried, f"near-duplicates found {found} of {tried}"

    def new_body() -> dict:
        if rng.random() < 0.2:
            body = near_body(rng.choice(sample))
            if body is not None:
                return body
        c = seed.customer(rng, next(serial))
        return {"name": c["name"], "kind": c["kind"], "phone": c["phone"], "address": c["address"]}

    bodies: list[dict] = []
    original = EntityApi.duplicates_conflict
    times: dict[str, list[float]] = {"checked": [], "plain": []}

    def post(kind: str):
        body = new_body()
        bodies.append(body)
        start = time.perf_counter()
        response = client.post("/api/v1/customer/?allow_duplicate=1", json=body, headers=headers)
        times[kind].append(time.perf_counter() - start)
        assert response.status_code == 201, response.json

    def checked():
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
    for _ in range(5):  # warm up both paths
        checked(), plain()
    times = {"checked": [], "plain": []}
    interleaved({"checked": checked, "plain": plain}, CREATES)
    cities = {p.text: p.parts[1] for p in seed.places}
    blocks, former = block_rows(app, [(b["name"].strip(), cities[b["address"]]) for b in bodies[-2 * CREATES:]])
    return {"checked": times["checked"], "plain": times["plain"], "page": page_times, "found": found, "tried": tried,
            "blocks": blocks, "former": former}


def make_csv(seed: Seed, rows: int, sample: list[dict]) -> tuple[bytes, list[tuple]]:
    """The import file and its rows as stored (with the parsed address columns) for the raw anchor."""
    rng = random.Random(7)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["name", "phone", "kind", "address"])
    stored = []
    for n in range(rows):
        c = seed.customer(rng, 80_000_000 + n)
        if n % 10 == 5:  # a near-duplicate of a stored company
            original = rng.choice(sample)
            variant = near_duplicate(rng, original["name"], seed.city_of[original["address"]])
            if variant is not None:
                c = {**c, "name": variant, "kind": "company", "address": original["address"],
                     **{k: original[k] for k in ADDRESS_COLUMNS[1:]}}
        writer.writerow([c["name"], c["phone"], c["kind"], c["address"]])
        stored.append(tuple(c[k] for k in ("name", "phone", "kind") + ADDRESS_COLUMNS))
    return buffer.getvalue().encode("utf-8"), stored


def raw_import(app, rows: list[tuple]) -> float:
    with app.app_context():
        engine = app.appbuilder.session.get_bind()
        start = time.perf_counter()
        now = dt.datetime.now()
        rows = [r + ("normal", now, now) for r in rows]
        raw = engine.raw_connection()
        columns = ", ".join(("name", "phone", "kind") + ADDRESS_COLUMNS + ("level", "created_on", "changed_on"))
        try:
            cursor = raw.cursor()
            if engine.dialect.name == "postgresql":
                body = "".join("\t".join(r"\N" if v is None else str(v) for v in r) + "\n" for r in rows)
                cursor.copy_expert(f"COPY customer ({columns}) FROM STDIN", io.StringIO(body))
            else:
                marks = ", ".join("?" * len(rows[0]))
                cursor.executemany(f"INSERT INTO customer ({columns}) VALUES ({marks})", rows)
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


def clear(app, above: int) -> None:
    """Delete the customers with ids above `above` (the import's), and their history."""
    models = portal_of(app).models
    table = models["Customer"].__table__
    with app.app_context():
        with app.appbuilder.session.get_bind().begin() as conn:
            conn.execute(text("DELETE FROM portal_history"))
            conn.execute(delete(table).where(table.c.id > above))


def measure_import(app, seed: Seed, sample: list[dict]) -> tuple[list[float], list[float], int]:
    data, stored = make_csv(seed, IMPORT_ROWS, sample)
    with app.app_context():
        top = app.appbuilder.session.execute(text("SELECT max(id) FROM customer")).scalar() or 0
        app.appbuilder.session.remove()
    seconds = {"raw": [], "ours": []}
    flagged = []

    def raw():
        seconds["raw"].append(raw_import(app, stored))
        clear(app, top)

    def ours():
        taken, report = portal_import(app, data)
        assert report.written and report.created == IMPORT_ROWS, report.errors[:5]
        seconds["ours"].append(taken)
        flagged.append(report.duplicates_count)
        clear(app, top)

    interleaved({"raw": raw, "ours": ours}, REPEAT)
    return seconds["raw"], seconds["ours"], flagged[-1]


def suite(url: str, label: str, seed: Seed) -> tuple[str, str]:
    app = _app(url)
    filled, sample = fill(app, seed, CUSTOMERS)
    m = measure_create(app, seed, sample)
    checked, plain, blocks = m["checked"], m["plain"], m["blocks"]
    added = (median(checked) - median(plain)) * 1000
    limit = search_module.FUZZY_BLOCK_LIMIT

    def rows(counts):
        return f"{median(counts):.0f} / {max(counts):,} ({sum(c > limit for c in counts)} over {limit:,})"

    create_line = row(label, f"{CUSTOMERS:,}", spread(plain, 1000), spread(checked, 1000),
                      f"{median(checked) / median(plain):.2f}", f"{added:.1f}",
                      rows(blocks), rows(m["former"]), f"{m['found']} / {m['tried']}",
                      spread(m["page"], 1000, 0), f"{filled:.0f}")
    raw_s, ours_s, flagged = measure_import(app, seed, sample)
    import_line = row(label, f"{IMPORT_ROWS:,}", spread(raw_s), spread(ours_s), f"{flagged:,}",
                      f"{median(raw_s) / median(ours_s):.2f}")
    release(app)
    return create_line, import_line


def run(pg: str | None = None) -> list[str]:
    work = Path(tempfile.mkdtemp(prefix="bench-dup-"))
    seed = Seed()
    creates, imports = [], []
    c, i = suite(f"sqlite:///{work / 'dup.db'}", "SQLite", seed)
    creates.append(c), imports.append(i)
    if pg:
        with pg_schema(pg) as url:
            c, i = suite(url, "PostgreSQL", seed)
            creates.append(c), imports.append(i)
    scale = "quick scale (BENCH_QUICK=1)" if QUICK else "full scale"
    return ([f"### Create with the duplicate check ({scale}; {ADDRESSES:,} distinct addresses in "
             f"{seed.parsed_cities} cities): {CREATES} interleaved API creates each, ms, median (min–max)", "",
             row("database", "stored customers", "plain create ms", "create + check ms", "ratio", "added ms",
                 "name-rule rows per create: median / max", "same with the first-two-characters key",
                 "near-duplicates found", "duplicates page ms", "fill s"),
             row(*["---"] * 11)] + creates +
            ["", f"### Import with duplicate checking ({scale}), median of {REPEAT} interleaved runs (min–max)", "",
             row("database", "rows", "anchor s (raw executemany / COPY)", "import s", "rows flagged", "anchor / import"),
             row(*["---"] * 6)] + imports)
