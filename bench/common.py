"""Small timing helpers shared by the benchmarks."""
from __future__ import annotations

import os
import statistics
import time
import uuid
from contextlib import contextmanager

from sqlalchemy import create_engine, text


def best_of(fn, repeat: int = 5) -> float:
    """Best wall time in seconds of `repeat` runs (the least disturbed by the rest of the machine)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def interleaved(calls: dict, repeat: int = 5) -> dict[str, list[float]]:
    """Wall times of each call, run in turns (a, b, c, a, b, c, ...) so all see the same machine state."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeat):
        for name, fn in calls.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def median(values: list[float]) -> float:
    return statistics.median(values)


def spread(values: list[float], scale: float = 1.0, digits: int = 2) -> str:
    """`median (min–max)` of timings, e.g. `1.23 (1.20–1.31)`."""
    return f"{median(values) * scale:.{digits}f} ({min(values) * scale:.{digits}f}–{max(values) * scale:.{digits}f})"


@contextmanager
def pg_schema(base_url: str):
    """A fresh schema on the bench PostgreSQL; yields a URL whose search_path points at it."""
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    engine = create_engine(base_url)
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{base_url}?options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


def release(app) -> None:
    """Close an app's sessions and pooled connections (before its PostgreSQL schema is dropped)."""
    with app.app_context():
        app.appbuilder.session.remove()
        app.appbuilder.session.get_bind().dispose()


def pg_url() -> str | None:
    return os.environ.get("PORTAL_BENCH_PG")


def row(*cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"
