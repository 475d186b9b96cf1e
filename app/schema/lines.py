"""Check `lines: [OrderLine]`: child entities edited as a grid on their parent's form (and nested in its API).

Each listed entity must exist, must not be the parent, must have exactly one link field back to the parent
and may be the lines of one parent only; the key it goes under (`lines`, then the snake_case name) must not
be one of the parent's fields. Every problem is reported at the `lines:` line.
"""
from __future__ import annotations

from app.schema.fields import FORM_RESERVED_FIELDS, RESERVED_FIELDS
from app.schema.loader import YList
from app.schema.spec import EntitySpec
from app.schema.values import Check, did_you_mean, kind, short

# a lines key is a form field and an API key of the parent: it must not be a name the portal itself uses there
SYSTEM_KEYS = RESERVED_FIELDS | FORM_RESERVED_FIELDS


def read_lines(run: Check, file: str, entity: str, raw, line: int) -> tuple[str, ...]:
    """The `lines:` value as entity names (a single name is accepted); checked against the entities later."""
    if raw is None:
        return ()
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, (list, YList)) or not raw or not all(isinstance(n, str) for n in raw):
        run.error(file, line, "E480", f"lines of '{entity}' must be a list of entity names, e.g. [OrderLine], got {kind(raw)}")
        return ()
    names = []
    for name in raw:
        if name in names:
            run.error(file, line, "E487", f"entity '{name}' is listed twice in the lines of '{entity}'")
        else:
            names.append(name)
    return tuple(names)


def check_lines(run: Check, entities: dict[str, EntitySpec]) -> None:
    """Every `lines:` against all entities of all modules."""
    parent_of: dict[str, EntitySpec] = {}
    for parent in entities.values():
        fields = set(parent.field_names)
        for key, child_name in parent.lines_keys:
            where = f"lines of '{parent.name}'"
            if key in fields or key in SYSTEM_KEYS or key.startswith("_"):
                run.error(parent.file, parent.lines_line, "E486", f"{where}: '{child_name}' would be sent as '{key}', which is a field of '{parent.name}' or a name the portal uses; rename one of them")
            if child_name == parent.name:
                run.error(parent.file, parent.lines_line, "E484", f"{where}: an entity cannot be its own lines")
                continue
            child = entities.get(child_name)
            if child is None:
                run.error(parent.file, parent.lines_line, "E481", f"{where} names unknown entity '{short(child_name)}'{did_you_mean(child_name, entities)}")
                continue
            links = [f.name for f in child.fields if f.stores_link and not f.kind.to_users and f.to == parent.name]
            if not links:
                run.error(parent.file, parent.lines_line, "E482", f"{where}: '{child_name}' needs a link field to '{parent.name}', e.g. "
                                                                  f"{parent.snake}: {{type: link, to: {parent.name}, required: true, on_delete: cascade}}")
            elif len(links) > 1:
                run.error(parent.file, parent.lines_line, "E483", f"{where}: '{child_name}' links to '{parent.name}' {len(links)} times "
                                                                  f"({', '.join(links)}); lines need exactly one link back")
            if child_name in parent_of:
                other = parent_of[child_name]
                run.error(parent.file, parent.lines_line, "E485", f"{where}: '{child_name}' is already the lines of '{other.name}' ({other.file}:{other.lines_line})")
            else:
                parent_of[child_name] = parent
