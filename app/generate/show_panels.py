"""Panels of a record's detail page besides its fields: each feature registers one (workflow buttons,
attachments, the timeline) and ships its template `portal/show_<name>.html` (views/templates).

A panel is `fn(view, item) -> dict | None`: the template's `panel` variable, or None when there is nothing to
show to this user (the feature is off for the entity, or the user may not use it). Panels run in the order they
are registered, at most once per page; `position` is "top" (above the fields) or "bottom".
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Panel:
    name: str
    position: str
    build: Callable


PANELS: list[Panel] = []


def show_panel(name: str, position: str = "bottom"):
    """Decorator: register `fn(view, item)` as the detail page's panel `name`."""
    def register(fn):
        PANELS[:] = [p for p in PANELS if p.name != name] + [Panel(name, position, fn)]
        return fn
    return register


def panels_for(view, item) -> dict[str, list[tuple[str, dict]]]:
    """{"top": [(template, panel), ...], "bottom": [...]} for one record on its detail page."""
    placed: dict[str, list] = {"top": [], "bottom": []}
    for panel in PANELS:
        data = panel.build(view, item)
        if data is not None:
            placed[panel.position].append((f"portal/show_{panel.name}.html", data))
    return placed
