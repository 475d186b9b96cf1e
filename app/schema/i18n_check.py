"""`portal check --i18n`: every label the UI shows must exist in every configured locale."""
from __future__ import annotations

from app.schema.loader import Problem
from app.schema.spec import LOCALES, Label, PortalSpec


def missing_translations(spec: PortalSpec, locales=LOCALES) -> list[Problem]:
    problems: list[Problem] = []

    def need(label: Label | None, file: str, line: int, what: str) -> None:
        if label is None:
            return
        missing = label.missing(locales)
        if missing:
            problems.append(Problem(file, line, "E011", f"{what} has no {', '.join(missing)} text ({label.get('en')!r})"))

    for module in spec.modules:
        need(module.label, module.file, 1, f"label of module '{module.name}'")
        for entity in module.entities:
            need(entity.label, entity.file, entity.line, f"label of entity '{entity.name}'")
            for f in entity.fields:
                need(f.label, entity.file, f.line, f"label of field '{entity.name}.{f.name}'")
                need(f.help, entity.file, f.line, f"help of field '{entity.name}.{f.name}'")
                for choice in f.choices:
                    need(choice.label, entity.file, f.line, f"label of choice '{choice.key}' of '{entity.name}.{f.name}'")
        for report in module.reports:
            need(report.label, report.file, report.line, f"label of report '{report.id}'")
            for measure in report.measures:
                need(measure.label, report.file, report.line, f"label of measure '{measure.name}' of report '{report.id}'")
        for dashboard in module.dashboards:
            need(dashboard.label, dashboard.file, dashboard.line, f"label of dashboard '{dashboard.id}'")
            for tile in dashboard.tiles:
                need(tile.label, dashboard.file, tile.line, f"label of a tile of dashboard '{dashboard.id}'")
    for role in spec.roles:
        need(role.label, role.file, role.line, f"label of role '{role.name}'")
    return sorted(problems, key=lambda p: (p.file, p.line))
