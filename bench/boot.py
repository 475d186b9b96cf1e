"""Boot time with 50 generated entities: our bulk permission sync vs FAB's per-view sync.

Anchor: FAB's own `add_permissions(update_perms=True)` over the same 50 entity views, same run.
"""
from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

from app import create_app
from app.generate.roles import sync_permissions
from app.portal import portal_of

from .common import row

ENTITIES_PER_MODULE, MODULES = 10, 5


def write_schemas(directory: Path) -> None:
    for m in range(MODULES):
        lines = [f"version: 1\nmodule: mod{m}\nlabel: {{en: Module {m}, zh: 模块{m}}}\nentities:"]
        for e in range(ENTITIES_PER_MODULE):
            name = f"Thing{m}x{e}"
            link = f"\n      parent: {{type: link, to: Thing{m}x{e - 1}}}" if e else ""
            lines.append(
                f"  {name}:\n    title: name\n    fields:\n"
                f"      name: {{type: string, required: true, label: {{en: Name, zh: 名称}}}}\n"
                f"      code: {{type: string, unique: true}}\n      qty: {{type: integer, min: 0}}\n"
                f"      price: {{type: decimal}}\n      day: {{type: date}}\n      done: boolean\n"
                f"      state: {{type: enum, choices: [new, old]}}\n      owner: {{type: user}}{link}\n"
                f"    search: [name, state]")
        lines.append(f"roles:\n  Role{m}:\n    can: {{Thing{m}x0: all, Thing{m}x1: [read]}}\n"
                     f"    rows: {{Thing{m}x0: {{owner: $user}}}}\n")
        (directory / f"mod{m}.yaml").write_text("\n".join(lines), encoding="utf-8")


def timed_app(schema_dir: Path, url: str, **config):
    start = time.perf_counter()
    app = create_app({"PORTAL_SCHEMA_DIR": str(schema_dir), "SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": "bench", **config})
    return app, time.perf_counter() - start


def run(pg: str | None = None) -> list[str]:
    logging.getLogger("flask_appbuilder").setLevel(logging.ERROR)
    work = Path(tempfile.mkdtemp(prefix="bench-boot-"))
    schemas = work / "schemas"
    schemas.mkdir()
    write_schemas(schemas)
    url = f"sqlite:///{work / 'a.db'}"
    _, first = timed_app(schemas, url)
    _, second = timed_app(schemas, url)

    # anchor: FAB's per-view sync for the same views, on a fresh database, vs ours
    fab_url, ours_url = f"sqlite:///{work / 'fab.db'}", f"sqlite:///{work / 'ours.db'}"
    fab_app, _ = timed_app(schemas, fab_url, FAB_UPDATE_PERMS=False)
    with fab_app.app_context():
        start = time.perf_counter()
        fab_app.appbuilder.add_permissions(update_perms=True)
        fab_sync = time.perf_counter() - start
    ours_app, _ = timed_app(schemas, ours_url, FAB_UPDATE_PERMS=False)
    with ours_app.app_context():
        start = time.perf_counter()
        fab_security = [v for v in ours_app.appbuilder.baseviews if not hasattr(v, "entity")]
        for view in fab_security:  # FAB's own security views, as a normal boot does
            ours_app.appbuilder._add_permission(view, update_perms=True)
        sync_permissions(ours_app.appbuilder, portal_of(ours_app).spec)
        ours_sync = time.perf_counter() - start
    entities = MODULES * ENTITIES_PER_MODULE
    return [
        f"### Boot with {entities} entities (SQLite)",
        "",
        row("what", "seconds", "ratio"),
        row("---", "---", "---"),
        row("first boot: tables + permissions + roles", f"{first:.2f}", ""),
        row("second boot (nothing to create)", f"{second:.2f}", ""),
        row("anchor: FAB per-view permission sync, fresh DB", f"{fab_sync:.2f}", "1.00"),
        row("our bulk sync (incl. FAB security views), fresh DB", f"{ours_sync:.2f}", f"{ours_sync / fab_sync:.2f}"),
    ]


if __name__ == "__main__":
    print("\n".join(run()))
