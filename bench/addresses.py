"""Import of 100k customers with an address column vs the same file without it, in the same run (docs/performance.md
"Addresses").

Anchor: Importer.run of the CRM's Customer rows (name, level, phone) with no address column. Measured: the same rows
plus an `address` column: every address standardised and parsed (jionlp, app/fieldtypes/address.py) into province,
city, district, detail and the parsed flag, written with the row. The addresses are all different (a street and
number on real place names of every province, a fifth without their province, a tenth with full-width digits and
spaces), and the parse cache is emptied before each run, so every address is parsed: the worst case. Median of
interleaved runs with (min–max); the ratio is with-address time / without-address time.
Also: one address parsed by jionlp's own parser vs the indexed one the portal uses (same answers), per address.
"""
from __future__ import annotations

import contextlib
import csv
import io
import random
import tempfile
import time
from pathlib import Path

from sqlalchemy import delete

from app.data.importer import Importer
from app.fieldtypes.address import location_parser, parse_address
from app.portal import portal_of
from app.rules.access import current_viewer

from .common import interleaved, median, pg_schema, release, row, spread
from .reports import _app

ROWS = 100_000
REPEAT = 3
STREETS = ["人民路", "解放大道", "中山路", "建设街", "文化路", "滨江路", "新华街", "长江路"]


def addresses(rows: int) -> list[str]:
    rng = random.Random(16)
    entries = [e for e in location_parser()._entries if e[3][0] and e[4]]  # county-level entries with current names
    out = []
    for n in range(rows):
        entry = rng.choice(entries)
        province, city, county = entry[1][0], entry[2][0], entry[3][0]
        if province == city:
            city = ""  # municipalities: 北京市朝阳区
        street = f"{rng.choice(STREETS)}{n % 997 + 1}号{n // 997 % 30 + 1}栋"
        text = f"{'' if n % 5 == 0 else province}{city}{county}{street}"
        if n % 10 == 3:  # full-width digits and an ideographic space
            text = text.translate({ord(d): ord(d) + 0xFEE0 for d in "0123456789"}).replace("号", "号　", 1)
        out.append(text)
    return out


def make_csv(with_address: bool, places: list[str]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["name", "level", "phone"] + (["address"] if with_address else []))
    for n, place in enumerate(places):
        writer.writerow([f"客户{n}", "normal", f"+86135{n:08d}"] + ([place] if with_address else []))
    return buffer.getvalue().encode("utf-8")


def portal_import(app, data: bytes) -> float:
    spec, models = portal_of(app).spec, portal_of(app).models
    parse_address.cache_clear()  # every address parsed: no run profits from an earlier one
    with app.app_context():
        importer = Importer(spec, spec.entity("Customer"), models, app.appbuilder.session, current_viewer())
        start = time.perf_counter()
        report = importer.run(io.BytesIO(data), "csv", dry_run=False)
        taken = time.perf_counter() - start
        assert report.written and report.created == ROWS, report.errors[:5]
        return taken


def clear(app) -> None:
    models = portal_of(app).models
    with app.app_context():
        with app.appbuilder.session.get_bind().begin() as conn:
            conn.execute(delete(models["Customer"].__table__))


def measure(app, label: str, places: list[str]) -> list[str]:
    files = {"without": make_csv(False, places), "with": make_csv(True, places)}
    seconds: dict[str, list[float]] = {"without": [], "with": []}

    def run(kind):
        def go():
            seconds[kind].append(portal_import(app, files[kind]))
            clear(app)
        return go

    interleaved({kind: run(kind) for kind in files}, REPEAT)
    without, with_ = median(seconds["without"]), median(seconds["with"])
    return [row(label, spread(seconds["without"]), f"{ROWS / without:,.0f}", spread(seconds["with"]),
                f"{ROWS / with_:,.0f}", f"{with_ / without:.2f}")]


def parse_cost(places: list[str], count: int = 2000) -> list[str]:
    with contextlib.redirect_stdout(io.StringIO()):
        from jionlp.gadget.location_parser import LocationParser
    plain, indexed = LocationParser(), location_parser()
    sample = places[:count]
    plain(sample[0])
    times = interleaved({"jionlp": lambda: [plain(t) for t in sample], "indexed": lambda: [indexed(t) for t in sample]}, 3)
    return [row(name, spread(values, 1e6 / count, 0)) for name, values in times.items()]


def run(pg: str | None = None) -> list[str]:
    places = addresses(ROWS)
    lines = [f"### Import of {ROWS:,} customers with and without an address column, median of {REPEAT} interleaved runs (min–max)",
             "", row("database", "without address s", "rows/s", "with address s", "rows/s", "with / without"),
             row("---", "---", "---", "---", "---", "---")]
    work = Path(tempfile.mkdtemp(prefix="bench-address-"))
    app = _app(f"sqlite:///{work / 'addresses.db'}")
    lines += measure(app, "SQLite", places)
    if pg:
        with pg_schema(pg) as url:
            app = _app(url)
            lines += measure(app, "PostgreSQL", places)
            release(app)
    lines += ["", "### One address parsed (µs, median of 3 runs over 2,000 addresses, min–max)", "",
              row("parser", "µs per address"), row("---", "---")]
    lines += parse_cost(places)
    return lines
