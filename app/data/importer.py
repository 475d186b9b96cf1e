"""Validated, all-or-nothing import of CSV/XLSX rows into one entity, in bounded memory.

Every row goes through the same `RecordRules` as forms and the API (app/rules/record_rules.py): cells
are cleaned by `records.clean_value`, links are resolved by title in bulk (in the viewer's row scope),
required and uniqueness are checked in bulk (against the file and the database), the portal's own rule
steps run per chunk (`check_many`, `before_write`), and the audit stamp comes from `stamp_many`.
Nothing is written unless every row is valid.

The file is read once, in chunks of ROWS_PER_CHUNK rows: each chunk's new link titles and keys are
looked up with IN (...) queries (titles are remembered), its unique values are checked against the
table and against a set of hashes of the file's earlier values, and its valid rows are spooled to a
temp file (`bulk.RowSpool`). Only if no row is bad are they written, in one transaction (`bulk.write`).
Memory holds one chunk, the link memos and the hash sets, not the file.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import IO, Callable, Iterator

from flask_babel import lazy_gettext as _l
from sqlalchemy import select, tuple_

from app.data import bulk
from app.rules.access import Viewer
from app.data.bulk import Chunk, RowSpool
from app.i18n import lazy
from app.portal import current_portal
from app.rules.records import FieldError, clean_present, is_blank
from app.schema.spec import EntitySpec, FieldSpec, PortalSpec
from app.data.tabular import GB18030, FileProblem, NotUtf8, read_rows, unquote_formula
from app.data.exporter import ID_HEADER
from app.data.round_trip import Comparison, ImportKey, record_id as _record_id
from app.rules.record_rules import RecordRules, duplicate_message, link_target
from app.rules.flushes import link_values
from app.rules.line_versions import bump as bump_line_parents
from app.rules.rollups import RollupRefused
from app.rules.siblings import with_siblings
from app.data.duplicates import DuplicateSearch, may_override

CHUNK = 500  # values per IN (...) lookup
PREVIEW_ROWS = 100  # rows that create, change or fail shown before an import is confirmed
ROWS_PER_CHUNK = 2000  # rows validated, looked up and spooled together
MAX_ERRORS = 1000  # a file with more problems is reported up to here
MEMO_LIMIT = 20_000  # distinct cleaned values remembered per column


@dataclass
class RowError:
    row: int  # spreadsheet row number (the header is row 1)
    field: str
    message: str

    def as_dict(self) -> dict:
        return {"row": self.row, "field": self.field, "message": self.message}


@dataclass
class ImportReport:
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0  # rows keyed to a record that already holds every value of the row: not written
    errors: list[RowError] = field(default_factory=list)
    # rows that look like another row of the file or a stored record (app/data/duplicates.py DuplicateFlag)
    duplicates: list = field(default_factory=list)
    duplicates_count: int = 0
    # first rows that create, change or fail (unchanged rows are only counted): {"row", "action", "values",
    # "changes"}; action create | update | error; changes (updates): {column: {"old": text, "new": text}}
    preview: list[dict] = field(default_factory=list)
    # columns read but not imported: values the portal assigns (autonumbers) or computes (formulas)
    ignored: list[RowError] = field(default_factory=list)
    written: bool = False

    @property
    def ok(self) -> bool:
        return not self.errors

    def as_dict(self) -> dict:
        return {"rows": self.rows, "created": self.created, "updated": self.updated, "unchanged": self.unchanged,
                "written": self.written,
                "errors": [e.as_dict() for e in self.errors], "preview": self.preview,
                "ignored": [e.as_dict() for e in self.ignored],
                "duplicates": [d.as_dict() for d in self.duplicates], "duplicates_count": self.duplicates_count}


def _chunks(values: list, size: int = CHUNK):
    for start in range(0, len(values), size):
        yield values[start:start + size]


def _batched(items: Iterator, size: int) -> Iterator[list]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _blank_row(cells: list) -> bool:
    if cells and cells[0].__class__ is str and cells[0] and not cells[0].isspace():
        return False  # the usual row, decided without a loop
    return all(is_blank(c) for c in cells)


class Importer:
    """One import: `run` reads the file once, chunk by chunk, and keeps only what the next chunk needs."""

    def __init__(self, portal: PortalSpec, entity: EntitySpec, models: dict, session, viewer: Viewer,
                 key: str | None = None) -> None:
        self.portal, self.entity, self.models, self.session, self.viewer = portal, entity, models, session, viewer
        self.model = models[entity.name]
        self.key = key
        self.keys = ImportKey(entity, key)  # round_trip.py: `id`, a unique field or a unique_together set
        self.rules = RecordRules(portal, entity, models, session, viewer)

    # -- public -------------------------------------------------------------------------------
    def run(self, stream: IO[bytes], fmt: str, dry_run: bool = True, progress: Callable[[int], None] | None = None,
            preview_rows: int = PREVIEW_ROWS) -> ImportReport:
        """Check every row; unless `dry_run` or a row is bad, write them all in one transaction."""
        start = stream.tell()
        try:
            return self._run(stream, fmt, None, dry_run, progress, preview_rows)
        except NotUtf8:  # UTF-8 at the start, something else further on: the whole pass again as GB18030
            stream.seek(start)
            return self._run(stream, fmt, GB18030, dry_run, progress, preview_rows)

    def _run(self, stream, fmt, encoding, dry_run, progress, preview_rows) -> ImportReport:
        report = ImportReport()
        self._memo: dict[str, dict] = {}
        self._seen: dict[tuple, set] = {}  # unique group -> hashes of its values met so far in the file
        self._pending: list[tuple[RowError, tuple, tuple]] = []  # in-file duplicates awaiting their first row
        self._duplicates = None  # the duplicate flags of this pass (_flag_duplicates)
        self._duplicates_read_siblings = None  # whether a duplicate rule reads an address's parts
        start = stream.tell()
        spool = None
        self._writing = not dry_run
        try:
            rows = ((n, cells) for n, cells in enumerate(read_rows(stream, fmt, encoding), start=1)
                    if not _blank_row(cells))
            header = next(rows, None)
            if header is None:
                report.errors.append(RowError(1, "", str(_l("The file is empty."))))
                return report
            columns = self._columns(header[1], report)
            if report.errors:
                return report
            self._prepare(columns)
            titles = [str(c).strip() if c is not None else "" for c in header[1]]
            spool = None if dry_run else RowSpool([f.column_name for f in self._scalar], [f.name for f in self._many])
            for chunk in _batched(rows, ROWS_PER_CHUNK):
                records = self._check_chunk(chunk, columns, titles, report, preview_rows)
                if spool is not None and not report.errors:
                    spool.add(self._spool_chunk(records))
                if progress:
                    progress(len(chunk))
            if self._pending:
                stream.seek(start)
                self._name_first_rows(read_rows(stream, fmt, encoding), columns, report)
            report.errors.sort(key=lambda e: e.row)
            if report.errors or dry_run:
                if report.errors and not dry_run:
                    self.session.rollback()  # rule steps may have advanced counters (autonumbers) for spooled rows
                return report
            self._write(spool)
            report.written = True
            return report
        except FileProblem as exc:
            report.errors.append(RowError(1, "", str(exc)))
            return report
        finally:
            if spool is not None:
                spool.close()

    # -- header -------------------------------------------------------------------------------
    def _columns(self, header: list, report: ImportReport) -> list[FieldSpec | None]:
        """Match each header cell to a field by name or by its label in any language."""
        by_title: dict[str, FieldSpec] = {}
        for f in self.entity.fields:
            by_title[f.name.lower()] = f
            for _, text in f.label.texts:
                by_title.setdefault(text.strip().lower(), f)
        writable = self.rules.writable  # neither readonly nor hidden/masked from this viewer
        masked = self.viewer.masked(self.entity.name)
        columns, seen = [], set()
        self._id_index = None
        for index, cell in enumerate(header):
            title = "" if cell is None else str(cell).strip()
            if not title:
                columns.append(None)  # an unnamed, usually empty, column
                continue
            f = by_title.get(title.lower())
            if f is None and title.lower() == ID_HEADER.lower() and self._id_index is None:
                self._id_index = index  # an export's ID column: the key with key=id, else not imported
                if not self.keys.by_id:
                    report.ignored.append(RowError(1, title, str(_l("The portal assigns this value; the column is ignored."))))
            elif f is None:
                report.errors.append(RowError(1, title, str(_l("Unknown column."))))
            elif f.kind.assigned:
                report.ignored.append(RowError(1, title, str(_l("The portal assigns this value; the column is ignored."))))
            elif f.formula is not None:  # an exported file carries it: computed again on import, not an error
                report.ignored.append(RowError(1, title, str(_l("Computed by a formula; this column is ignored."))))
            elif f.rollup is not None:  # likewise: kept from the related records (app/rules/rollups.py)
                report.ignored.append(RowError(1, title, str(_l("Computed from related records; this column is ignored."))))
            elif f.derived_from is not None:  # an address's province ...: parsed again from the address column
                report.ignored.append(RowError(1, title, str(_l("Derived from another column; this column is ignored."))))
            elif f.readonly and f.name not in self.viewer.hidden(self.entity.name):  # exported, set by the portal
                report.ignored.append(RowError(1, title, str(_l("Read-only; this column is ignored."))))
            elif f.name in masked:  # an export shows it masked: the masks are not values to store
                report.ignored.append(RowError(1, title, str(_l("Masked for you; this column is ignored."))))
            elif f.name not in writable:
                report.errors.append(RowError(1, title, str(_l("This column cannot be imported."))))
            elif f.name in seen:
                report.errors.append(RowError(1, title, str(_l("This column appears twice."))))
            else:
                seen.add(f.name)
            columns.append(f if f is not None and f.name in writable and not f.kind.assigned else None)
        problem = self.keys.problem(seen, self._id_index is not None)
        if problem is not None:
            report.errors.append(RowError(1, *problem))
        return columns

    def _prepare(self, columns: list[FieldSpec | None]) -> None:
        """What every chunk needs: link resolvers, forced values, required fields, unique groups, columns to write."""
        self._links = {f.name: _LinkResolver(self, f) for f in columns if f is not None and f.is_relation}
        self._forced = self.rules.forced  # the row scope's values (RowScopeStep), as ids for bulk.write
        self._forced_ids = self.rules.forced_ids
        present = {f.name for f in columns if f is not None}
        computed = self.rules.step_fields  # rule steps give every row these (formula fields)
        self._missing_required = [f for f in self.entity.fields if f.required and f.default is None
                                  and not f.kind.assigned and f.name not in present and f.name not in self._forced and f.name not in computed]
        self._required_present = [f for f in self.entity.fields  # a step's own fields: the step checks them
                                  if f.required and f.name in present and f.name not in self._forced
                                  and f.name not in computed]
        self._groups = [(f.name,) for f in self.entity.fields if f.unique] + list(self.entity.unique_together)
        self._table_had_rows = self.session.scalar(select(self.model.id).limit(1)) is not None
        present |= set(self._forced) | self.rules.step_fields  # values the rule steps give every row
        self._scalar = [f for f in self.entity.fields if not f.kind.multiple and f.name in present]
        self._many = [f for f in self.entity.fields if f.kind.multiple and f.name in present]
        # rollups over this entity (app/rules/rollups.py): the parents of written rows are refreshed after the write
        rollups = current_portal().rollups
        self._rollups = rollups if rollups and self.entity.name in rollups.feeds else None
        self._rollup_links = list(rollups.feeds[self.entity.name]) if self._rollups else []
        # lines of a parent (`lines:`): the parents whose lines the file writes get a new row_version (line_versions.py)
        versions = current_portal().line_versions
        self._line_back, self._line_parent = versions.back_link(self.model) if versions else (None, None)
        # link -> the records the written rows link to, before (read under a lock before the write) and after
        self._touched: dict[str, set] = {link: set() for link in self._rollup_links}
        if self._line_back is not None:
            self._touched.setdefault(self._line_back.name, set())
        self._updated_ids: list[int] = []
        self.comparison = Comparison(self, columns)  # round_trip.py: stored values of the rows keyed to records

    # -- rows ---------------------------------------------------------------------------------
    def _check_chunk(self, chunk: list, columns, titles, report: ImportReport, preview_rows: int) -> list[dict]:
        """Validate one chunk of rows; returns its valid records (counted, previewed, checked for uniqueness)."""
        for name, resolver in self._links.items():
            resolver.prepare(columns, chunk)
        existing = self._existing_by_key(columns, chunk, report)
        records, cells_of = [], {}
        for number, cells in chunk:
            report.rows += 1
            record = self._record(number, cells, columns, existing, report)
            if record is None:
                if len(report.preview) < preview_rows:
                    report.preview.append({"row": number, "action": "error", "values": _values(titles, cells)})
                continue
            records.append(record)
            cells_of[number] = cells
        self._check_unique(records, report)
        self._flag_duplicates(records, report)
        if self.rules.checks_each_row:
            self._run_rule_steps(records, report)
        changes = self.comparison.compare(records, columns) if self.keys.given else {}
        for record in records:
            if record.get("_id") and not changes.get(record["_row"]):
                record["_unchanged"] = True  # not written
                report.unchanged += 1
                continue
            if record.get("_id"):
                report.updated += 1
            else:
                report.created += 1
            if len(report.preview) < preview_rows:
                entry = {"row": record["_row"], "action": "update" if record.get("_id") else "create",
                         "values": _values(titles, cells_of[record["_row"]])}
                if record.get("_id"):
                    entry["changes"] = changes[record["_row"]]
                report.preview.append(entry)
        return records

    def _record(self, number: int, cells: list, columns, existing: dict, report) -> dict | None:
        """The cleaned values of one row, or None (with its errors reported) if any cell is bad."""
        record: dict = {"_row": number}
        ok = True
        width = len(columns)
        if len(cells) > width and any(not is_blank(c) for c in cells[width:]):
            report.errors.append(RowError(number, "", str(_l("This row has more cells than the header has columns."))))
            ok = False
        if len(cells) < width:
            cells = cells + [None] * (width - len(cells))  # CSV rows may stop early
        for f, cell in zip(columns, cells):
            if f is None:
                continue
            try:
                record[f.name] = self._value(f, cell)
            except FieldError as exc:
                ok = False
                self._error(report, number, f, str(exc))
        if self.keys.by_id and existing is not None:  # None: the second reading, which only looks at values
            ok = self._id_of(number, cells, existing, record, report) and ok
        elif self.keys.given and existing is not None and all(record.get(n) is not None for n in self.keys.fields):
            record["_id"] = existing.get(self.keys.value(record))
            if record["_id"] == "out of scope":
                ok = False
                self._error(report, number, self.entity.field(self.keys.fields[0]),
                            str(_l("This record exists but is not yours to change.")))
        if not record.get("_id"):
            for f in self._missing_required:
                ok = False
                self._error(report, number, f, str(_l("This field is required.")))
        for f in self._required_present:
            if f.name in record and record[f.name] in (None, []):
                ok = False
                self._error(report, number, f, str(_l("This field is required.")))
        record.update(self._forced_ids)
        return record if ok else None

    def _flag_duplicates(self, records: list[dict], report: ImportReport) -> None:
        """Rows that look like another row of the file or a readable stored record (`duplicates:` rules,
        app/data/duplicates.py) are flagged in the report; a flag is an error only for a rule whose `save_anyway`
        roles the importer lacks."""
        if self._duplicates is None:
            search = DuplicateSearch(self.entity, self.models, self.session, self.viewer)
            self._duplicates = search.for_import() if search else False
        if not self._duplicates or not records:
            return
        flagger = self._duplicates
        before = len(flagger.flags)
        if self._duplicates_read_siblings is None:  # e.g. `same: [address_city]`: parsed later by SiblingStep
            derived = {f.name for f in self.entity.fields if f.derived_from}
            self._duplicates_read_siblings = any(derived & set(rule.same + rule.match) for rule in flagger.search.rules)
        if self._duplicates_read_siblings:
            records = [with_siblings(self.entity, dict(record)) for record in records]  # copies: the write derives again
        flagger.check(records)
        report.duplicates, report.duplicates_count = flagger.flags, flagger.count
        rules = {rule.id: rule for rule in flagger.search.rules}
        for flag in flagger.flags[before:]:
            if not may_override(self.viewer, rules[flag.rule]) and len(report.errors) < MAX_ERRORS:
                report.errors.append(RowError(flag.row, "", str(_l("Looks like an existing record; your role may not save a duplicate."))))

    def _run_rule_steps(self, records: list[dict], report: ImportReport) -> None:
        """The portal's own rule steps (record_rules.py) over a chunk: refusals become row errors."""
        batch = [self.rules.context(r, not r.get("_id"), "import", record_id=r.get("_id"), row=r["_row"])
                 for r in records]
        self.rules.check_many(batch)
        if self._writing:  # ctx.values is the record itself: changes are spooled (a dry run takes no numbers)
            self.rules.before_write_many([ctx for ctx in batch if not ctx.errors])
        for ctx in batch:
            for name, messages in ctx.errors.items():
                f = self.entity.field(name)
                for message in messages:
                    if f is not None:
                        self._error(report, ctx.row, f, message)
                    elif len(report.errors) < MAX_ERRORS:
                        report.errors.append(RowError(ctx.row, name, message))

    def _error(self, report: ImportReport, row: int, f: FieldSpec, message: str) -> RowError | None:
        if len(report.errors) < MAX_ERRORS:
            error = RowError(row, str(lazy(f.label)), message)
            report.errors.append(error)
            return error
        return None

    def _value(self, f: FieldSpec, cell):
        memo = self._memo.get(f.name)
        if memo is not None and cell.__class__ is str:  # the hot path: a text cell of a scalar field seen before
            result = memo.get(cell, memo)
            if result is not memo:
                if result.__class__ is FieldError:
                    raise result
                return result
        if cell is None or cell == "" or (isinstance(cell, str) and not cell.strip()):
            return [] if f.kind.multiple else None
        if isinstance(cell, str) and cell[0] == "'":
            cell = unquote_formula(cell)  # our own exports quote cells that look like formulas
        if f.kind.multiple:
            resolve = self._links[f.name]
            return [resolve(t.strip()) for t in str(cell).replace("，", ",").split(",") if t.strip()]
        if f.is_relation:
            return self._links[f.name](cell)
        # spreadsheets repeat values (rates, hours, dates, choices): clean each distinct one once
        if memo is None:
            memo = self._memo[f.name] = {}
        key = cell if cell.__class__ is str else (type(cell), cell)
        result = memo.get(key, memo)
        if result is memo:
            if len(memo) >= MEMO_LIMIT:
                memo.clear()  # a column of distinct values (names, phones): keep memory flat
            try:
                result = clean_present(f, cell)
            except FieldError as exc:
                result = exc
            memo[key] = result
        if isinstance(result, FieldError):
            raise result
        return result

    # -- keys and uniqueness ------------------------------------------------------------------
    def _existing_by_key(self, columns, chunk: list, report) -> dict:
        """key value -> id of the record to update (or 'out of scope' when it exists but is not the viewer's).
        The key value is the id (key=id), one field's value, or a tuple of a unique_together set's values."""
        if not self.keys.given or not self._table_had_rows:
            return {}
        if self.keys.by_id:
            return self.keys.existing_ids(self, chunk)
        keys = set()
        indexes = [[c.name if c else None for c in columns].index(n) for n in self.keys.fields]
        for _, cells in chunk:
            try:
                value = tuple(self._value(self.entity.field(n), cells[i] if i < len(cells) else None)
                              for n, i in zip(self.keys.fields, indexes))
            except FieldError:
                continue
            if all(v is not None for v in value):
                keys.add(value if len(value) > 1 else value[0])
        return self.keys.existing(self, keys)

    def _id_of(self, number: int, cells: list, existing: dict, record: dict, report) -> bool:
        """key=id: the row's ID cell names the record to update (blank: a new record)."""
        cell = cells[self._id_index] if self._id_index < len(cells) else None
        if is_blank(cell):
            return True
        pk = _record_id(cell)
        if pk is None or existing.get(pk) in (None, "out of scope"):  # the same words: nothing is hinted at
            if len(report.errors) < MAX_ERRORS:
                report.errors.append(RowError(number, ID_HEADER, str(_l("No record of yours has this ID."))))
            return False
        record["_id"] = pk
        return True

    def _check_unique(self, records: list[dict], report: ImportReport) -> None:
        """Unique fields and groups: against the earlier rows of the file (a set of hashes) and the table."""
        for group in self._groups:
            seen = self._seen.setdefault(group, set())
            rows = [r for r in records if all(r.get(n) is not None for n in group)]
            values = {}
            for r in rows:
                value = tuple(r[n] for n in group)
                digest = hash(value)
                if digest in seen:  # almost surely a duplicate: `_name_first_rows` finds the earlier row
                    error = self._error(report, r["_row"], self.entity.field(group[0]), "")
                    if error is not None:
                        self._pending.append((error, group, value))
                else:
                    seen.add(digest)
                if self._table_had_rows:
                    values.setdefault(value, r)
            if self._table_had_rows:  # an empty table cannot conflict
                self._check_against_table(group, list(values), rows, report)

    def _check_against_table(self, group: tuple, values: list[tuple], rows: list[dict], report) -> None:
        columns = [getattr(self.model, self.entity.field(n).column_name) for n in group]
        owners: dict[tuple, int] = {}
        for chunk in _chunks(values, 3 * CHUNK // max(1, len(group))):
            condition = columns[0].in_([v[0] for v in chunk]) if len(group) == 1 else tuple_(*columns).in_(chunk)
            for row in self.session.execute(select(self.model.id, *columns).where(condition)):
                owners[tuple(_normal(v) for v in row[1:])] = row[0]
        for r in rows:
            owner = owners.get(tuple(_normal(r[n]) for n in group))
            if owner is not None and owner != r.get("_id"):
                self._error(report, r["_row"], self.entity.field(group[0]), duplicate_message(self.entity, group))

    def _name_first_rows(self, rows: Iterator[list], columns, report: ImportReport) -> None:
        """Second reading, only when the file repeats a unique value: name the row each repeat repeats."""
        wanted = {(group, value): None for _, group, value in self._pending}
        scratch = ImportReport()
        numbered = ((n, cells) for n, cells in enumerate(rows, start=1) if not _blank_row(cells))
        next(numbered, None)  # the header
        for chunk in _batched(numbered, ROWS_PER_CHUNK):
            for resolver in self._links.values():
                resolver.prepare(columns, chunk)
            for number, cells in chunk:
                record = self._record(number, cells, columns, None, scratch)
                if record is None:
                    continue
                for group in self._groups:
                    key = (group, tuple(record.get(n) for n in group))
                    if key in wanted and wanted[key] is None:
                        wanted[key] = number
        for error, group, value in self._pending:
            first = wanted[(group, value)]
            if first is not None and first < error.row:
                error.message = str(_l("Same %(fields)s as row %(row)d.", fields=", ".join(group), row=first))
            else:  # two different values with the same hash: not a duplicate after all
                report.errors.remove(error)

    # -- writing --------------------------------------------------------------------------------
    def _keep_unassigned(self, records: list[dict]) -> None:
        """An updated row writes every column of the chunk's UPDATE: a field a rule step fills only on create (an
        autonumber) or only when asked (a default from a link) keeps its stored value, read once per chunk."""
        assigned = [f for f in self._scalar if f.name in self.rules.step_fields]
        lacking = [r for r in records if r.get("_id") and not r.get("_unchanged")
                   and any(f.name not in r for f in assigned)]
        if not lacking:
            return
        table = self.model.__table__
        columns = [table.c[f.column_name] for f in assigned]
        ids = [r["_id"] for r in lacking]
        stored = {}
        for start in range(0, len(ids), 1000):
            stored.update((row[0], row[1:]) for row in self.session.execute(
                select(table.c.id, *columns).where(table.c.id.in_(ids[start:start + 1000]))))
        for r in lacking:
            for f, value in zip(assigned, stored.get(r["_id"], ())):
                r.setdefault(f.name, value)

    def _spool_chunk(self, records: list[dict]) -> Chunk:
        self._keep_unassigned(records)
        new_stamp, changed_stamp = self.rules.stamp_many(True), self.rules.stamp_many(False)  # AuditStep, in bulk
        names = [f.name for f in self._scalar]
        many = [f.name for f in self._many]
        chunk = Chunk()
        for r in records:
            if r.get("_unchanged"):
                continue  # holds what is stored already: not written, no history
            for link, ids in self._touched.items():
                if r.get(link) is not None:
                    ids.add(r[link])
            if self._touched and r.get("_id"):
                self._updated_ids.append(r["_id"])  # its old parent loses it: looked up before the write
            values = tuple(r.get(n) for n in names)
            if r.get("_id"):
                chunk.changed.append(values + changed_stamp + (r["_id"],))
                if many:
                    chunk.changed_links.append((r["_id"], {n: r.get(n) for n in many}))
            else:
                chunk.new.append(values + new_stamp)
                if many:
                    chunk.new_links.append({n: r.get(n) for n in many})
        return chunk

    def _write(self, spool: RowSpool) -> None:
        """Everything spooled, in one transaction: committed whole or rolled back whole."""
        secondaries = {f.name: getattr(self.model, f.name).property.secondary for f in self._many}
        try:
            connection = self.session.connection()
            table = self.model.__table__
            for link, ids in self._touched.items():  # a move meanwhile waits for the lock
                column = table.c[self.entity.field(link).column_name]
                ids |= link_values(connection, table, column, self._updated_ids, lock=True)
            bulk.write(connection, table, spool, secondaries, self._history(table, spool, secondaries))
            if self._line_back is not None:
                bump_line_parents(connection, self._line_parent, self._touched[self._line_back.name])
            if self._rollups is not None:  # one statement per rollup and set of parents, in this transaction
                self._rollups.refresh(connection, {(self.entity.name, link): self._touched[link] for link in self._rollup_links})
            self.session.commit()
        except RollupRefused as exc:  # reported like a problem of the file: nothing written
            self.session.rollback()
            raise FileProblem(str(exc)) from None
        except Exception:
            self.session.rollback()
            raise


    def _history(self, table, spool: RowSpool, secondaries: dict):
        """`history: true` or event reminders: the created and updated rows are recorded, path "import"
        (app/rules/history.py), and handed to the reminders (app/rules/notifications.py)."""
        portal = current_portal()
        notifier = portal.notifier if portal.notifier is not None and portal.notifier.watches(self.entity.name) else None
        if not self.entity.history and notifier is None:
            return None
        from app.rules.history import ImportHistory  # history.py reads the table names of app.generate

        return ImportHistory(portal.metadata, self.entity, table, spool.columns, secondaries, self.viewer.user,
                             notifier)


class _LinkResolver:
    """Link cell -> id by the target's title, looked up per chunk for titles not met before (a memo)."""

    def __init__(self, importer: Importer, f: FieldSpec) -> None:
        self.f, self.session = f, importer.session
        self.target, title = link_target(importer.portal, importer.models, f)
        self.title = self.target.id if title is None else title  # an entity without a title is linked by id
        self.scope = None if f.kind.to_users else importer.viewer.row_clause(f.to, importer.models)
        self.found: dict[str, list[int]] = {}
        self.asked: set[str] = set()

    def prepare(self, columns, chunk: list) -> None:
        index = columns.index(self.f)
        wanted = set()
        cells_seen = {cells[index] if index < len(cells) else None for _, cells in chunk}
        for cell in cells_seen:
            if not is_blank(cell):
                if isinstance(cell, str) and cell[0] == "'":
                    cell = unquote_formula(cell)
                parts = str(cell).replace("，", ",").split(",") if self.f.kind.multiple else [cell]
                wanted.update(_key_text(p) for p in parts if not is_blank(p))
        wanted -= self.asked
        if not wanted:
            return
        self.asked |= wanted
        by_id = self.title is self.target.id
        for values in _chunks(sorted(wanted)):
            query = select(self.target.id, self.title).where(
                self.title.in_([int(v) for v in values if v.isdecimal()] if by_id else values))
            if self.scope is not None:
                query = query.where(self.scope)
            for pk, text in self.session.execute(query):
                self.found.setdefault(_key_text(text), []).append(pk)

    def __call__(self, cell) -> int:
        text = _key_text(cell)
        ids = self.found.get(text)
        if not ids:
            raise FieldError(_l("No record named '%(title)s'.", title=text))
        if len(ids) > 1:
            raise FieldError(_l("More than one record is named '%(title)s'; use its id.", title=text))
        return ids[0]


def _key_text(value) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def _normal(value):
    return value.isoformat() if isinstance(value, (dt.date, dt.datetime)) else value


def _show(value):
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, list):
        return value
    return value if isinstance(value, (int, float, str, bool)) or value is None else str(value)


def _values(titles: list, cells: list) -> dict:
    return {t: _show(c) for t, c in zip(titles, cells) if t}
