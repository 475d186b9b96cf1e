"""Small timing helpers shared by the benchmarks."""
from __future__ import annotations

import os
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


def pg_url() -> str | None:
    return os.environ.get("PORTAL_BENCH_PG")


def row(*cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"
