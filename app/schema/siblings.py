"""Sibling fields: the read-only columns a field type derives from a field (FieldType.siblings), e.g. an address's
`<field>_province`, `<field>_city`, `<field>_district`, `<field>_detail` and `<field>_parsed`.

The checker adds them to the entity right after their field, as ordinary read-only fields, so the model, API,
exports, list columns, filters, roles and report `group_by` treat them like any field; app/rules/siblings.py
fills them on every write. E830: a sibling's name is another field's; E831: the field's name is too long for them.
"""
from __future__ import annotations

from app.schema.spec import LOCALES, FieldSpec, Label
from app.schema.values import Check

MAX_FIELD_NAME = 60  # as app/schema/fields.py FIELD_NAME


def add_siblings(run: Check, file, entity: str, fields: list[FieldSpec]) -> list[FieldSpec]:
    """`fields` with each field's siblings after it; siblings that clash or do not fit are reported and left out."""
    given = {f.name: f for f in fields}
    out: list[FieldSpec] = []
    added: dict[str, FieldSpec] = {}
    for f in fields:
        out.append(f)
        siblings = f.kind.siblings
        if not siblings:
            continue
        longest = max(len(s.suffix) for s in siblings)
        if len(f.name) + longest > MAX_FIELD_NAME:
            run.error(file, f.line, "E831", f"field '{entity}.{f.name}' is a {f.type} field, whose columns are named "
                                            f"'{f.name}{siblings[0].suffix}' and so on: its name may have at most "
                                            f"{MAX_FIELD_NAME - longest} characters")
            continue
        for s in siblings:
            name = f"{f.name}{s.suffix}"
            other = given.get(name) or added.get(name)
            if other is not None:
                run.error(file, f.line, "E830", f"field '{entity}.{f.name}' adds the read-only column '{name}' "
                                                f"({f.type} fields do), but field '{other.derived_from or name}' at "
                                                f"{file}:{other.line} already gives that name; rename one of them")
                continue
            sibling = FieldSpec(
                name=name, type=s.type, label=Label(s.label_texts(f.label.texts, LOCALES)), line=f.line,
                label_given=True, readonly=True, length=s.length, derived_from=f.name, field_type=run.types[s.type])
            added[name] = sibling
            out.append(sibling)
    return out
