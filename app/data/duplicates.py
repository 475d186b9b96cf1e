"""Candidate duplicates (issue 16): the records an entity's `duplicates:` rules pair with a record, or with each other.

Every rule is narrowed in SQL, through an index this module adds to the table (`duplicate_indexes`):

- **exact** (`{match: [phone]}`): the match and `same` fields equal the record's values as stored (after the type's
  cleaning: phones normalised, text trimmed). One indexed equality lookup.
- **fuzzy** (`{match: [name], fuzzy: 90, same: [city]}`): the `same` fields equal, and the *blocking key* equal:
  the first BLOCK_CHARS characters of the text after a leading province or city name (`block_key`: "上海宏达建筑有限公司",
  "上海市宏达建筑有限公司" and "宏达建筑有限公司" all block on "宏达"; the new value's case variants are looked up too),
  with the length within what a score of `fuzzy` allows. Company names start with their city so often that the
  first two characters alone put most of a big city's companies in one block, beyond the FUZZY_BLOCK_LIMIT rows
  scored (real candidates lost, and the cost of reading them). The place names are place_prefixes.txt (short names
  of provinces and prefecture-level cities; a 市 or 省 right after one is skipped too); texts shorter than
  PLACE_MIN_LENGTH (people's names: "周口" is a city, "周口伟" a person) keep their first characters. The index
  (`ix_<table>_dup<n>p`) is on (same fields..., the key's SQL expression, length(name)), so the block and the
  length range are read through the index, at most FUZZY_BLOCK_LIMIT rows; only those are scored by rapidfuzz
  (`fuzz.ratio` on lower-cased text without punctuation, 0-100). Names whose keys differ (a typo in the two
  characters after the place name, or in the first two of a name without one) are not compared: the price of
  never scanning the table.

Null never equals null: a record with an empty value in any field of a rule is not compared by that rule.
Everything is scoped to the viewer: candidates are records the viewer may read (`Viewer.row_clause`), a rule that
reads a field the viewer may not read (hidden or masked) is skipped for them (its match would reveal the value),
titles are masked when the viewer sees the title field masked.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rapidfuzz import fuzz, process, utils
from sqlalchemy import Index, Integer, String, and_, bindparam, case, func, inspect, literal_column, or_, select, tuple_
from sqlalchemy.types import ARRAY, NullType
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import Grouping
from sqlalchemy.sql.functions import FunctionElement

from app.portal import current_portal
from app.rules.access import Viewer, mask_value
from app.schema.spec import DuplicateRule, EntitySpec

BLOCK_CHARS = 2          # the fuzzy blocking key: this many characters after a leading place name
PLACE_MIN_LENGTH = 6     # shorter texts keep their first characters as the key (people's names)
PLACE_MARKS = ("市", "省")  # skipped after a leading place name too: 上海市…, 广东省…
FUZZY_BLOCK_LIMIT = 1000  # rows of one block scored per record (the nearest ids first)
SHOWN = 10               # candidates returned per record
PAIR_SCAN = 20_000       # blocked pairs a duplicates page scores at most per request
IN_CHUNK = 400           # keys per IN (...) of an import chunk


@dataclass
class Candidate:
    id: int
    title: str
    score: float
    rule: DuplicateRule

    def as_dict(self) -> dict:
        return {"id": self.id, "title": self.title, "score": self.score, "rule": self.rule.id}


@dataclass
class Pair:
    first: Candidate
    second: Candidate

    @property
    def key(self) -> tuple[int, int]:
        return self.first.id, self.second.id


def may_override(viewer: Viewer, rule: DuplicateRule) -> bool:
    """Whether the user may save a record despite this rule's candidates: any writer, unless the rule names
    `save_anyway` roles (then those and Admin)."""
    return not rule.save_anyway or viewer.is_admin or bool({r.name for r in viewer.roles} & set(rule.save_anyway))


def may_save_anyway(viewer: Viewer, candidates: list) -> bool:
    return all(may_override(viewer, c.rule) for c in candidates)


# -- indexes -------------------------------------------------------------------------------------
def _places() -> dict[int, frozenset]:
    """Place names skipped at the start of a blocking key, by length, longest first."""
    names: dict[int, set] = {}
    for line in (Path(__file__).with_name("place_prefixes.txt")).read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            for name in line.split():
                names.setdefault(len(name), set()).add(name)
    return {length: frozenset(names[length]) for length in sorted(names, reverse=True)}


PLACES = _places()
_PLACE_LIST = tuple(PLACES.items())


def block_key(text: str) -> str:
    """The fuzzy blocking key of a stored text (what `_block` computes in SQL, character for character)."""
    if len(text) >= PLACE_MIN_LENGTH:
        for length, names in _PLACE_LIST:
            if text[:length] in names:
                start = length + (text[length:length + 1] in PLACE_MARKS)
                return text[start:start + BLOCK_CHARS]
    return text[:BLOCK_CHARS]


class _position(FunctionElement):
    """Where a text occurs in another (1-based, 0: nowhere): instr() on SQLite, strpos() on PostgreSQL."""

    type = Integer()
    inherit_cache = True


@compiles(_position)
def _position_sqlite(element, compiler, **kw):
    return f"instr({compiler.process(element.clauses, **kw)})"


@compiles(_position, "postgresql")
def _position_postgresql(element, compiler, **kw):
    return f"strpos({compiler.process(element.clauses, **kw)})"


def _literal(value) -> literal_column:
    """A constant written into the SQL (not a bound parameter): index expressions only match constants."""
    if isinstance(value, int):
        return literal_column(str(value), Integer())
    assert "'" not in value
    return literal_column(f"'{value}'", String())


def _block(column):
    """`block_key` as a SQL expression on a column (the same text in the index and in every query). Each list of
    place names is one string constant ("|上海|北京|…|") searched for "|<the text's first n characters>|": a few
    constants keep the expression small, which PostgreSQL's planner matches against the index on every query (an
    IN list of 375 names cost it ~0.1 ms per lookup key, 55 ms for an import chunk)."""
    def head(start: int, size: int = BLOCK_CHARS):
        return func.substr(column, _literal(start), _literal(size))

    def starts_with_place(size: int, names) -> object:
        listed = _literal("|" + "|".join(sorted(names)) + "|")
        return _position(listed, _literal("|") + head(1, size) + _literal("|")) > _literal(0)

    marks = _literal("".join(PLACE_MARKS))
    whens = [(func.length(column) < _literal(PLACE_MIN_LENGTH), head(1))]
    for size, names in PLACES.items():
        after = case((_position(marks, head(size + 1, 1)) > _literal(0), head(size + 2)), else_=head(size + 1))
        whens.append((starts_with_place(size, names), after))
    # in parentheses: PostgreSQL's CREATE INDEX takes an expression other than a function call only so
    return Grouping(case(*whens, else_=head(1)))


def rule_index_columns(entity: EntitySpec, table, rule: DuplicateRule) -> list:
    """What a rule looks records up by: the same fields, then the match fields (fuzzy: the blocking key)."""
    same = [table.c[entity.field(n).column_name] for n in rule.same]
    if rule.fuzzy is not None:
        column = table.c[entity.field(rule.match[0]).column_name]
        return same + [_block(column), func.length(column)]
    return same + [table.c[entity.field(n).column_name] for n in rule.match]


def duplicate_indexes(entity: EntitySpec, table) -> None:
    """One index per rule (ensure_tables creates it on an existing table too). A fuzzy rule's index is named
    `..._dup<n>p` since its key skips place names (an index on the former key, `..._dup<n>`, is no longer used)."""
    for i, rule in enumerate(entity.duplicates, start=1):
        suffix = "" if rule.fuzzy is None else "p"
        Index(f"ix_{entity.table}_dup{i}{suffix}"[:63], *rule_index_columns(entity, table, rule))


# -- values --------------------------------------------------------------------------------------
def _plain(value):
    """A cleaned value as stored: a linked record by its id."""
    return getattr(value, "id", value)


def _blank(value) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _processed(text) -> str:
    return utils.default_process(str(text))


def _length_bounds(length: int, fuzzy: int) -> tuple[int, int]:
    """Lengths another text can have and still score `fuzzy` by fuzz.ratio (2·common / total length), with one
    character of slack for a trailing punctuation mark the scorer drops (stored text is trimmed)."""
    low = length * fuzzy // (200 - fuzzy)
    high = -(-length * (200 - fuzzy) // fuzzy)
    return max(low - 1, 0), high + 1


def _in(columns: list, keys: list):
    """`(a = .. AND b = ..) OR ..`, or `a IN (..)` for one column. Not `(a, b) IN (..)`: SQLite scans the whole table
    for a row value IN over an expression (the fuzzy key), while each OR term is one index search on both
    databases."""
    if len(columns) == 1:
        return columns[0].in_([k[0] for k in keys])
    return or_(*[and_(*[column == value for column, value in zip(columns, key)]) for key in keys])


def _keys_table(columns: list, keys: list) -> tuple:
    """(unnest(array per column) AS keys(k0, k1, ..), the join condition): PostgreSQL's form of `_in`. With one OR
    term per key its planner matched the key's CASE expression against the index once per term: ~1 s a chunk
    of 2,000 keys at 1M customers, 0.01× a raw COPY for an import."""
    arrays = [bindparam(f"keys_{n}", value=[key[n] for key in keys],  # the blocking key's CASE is text
                        type_=ARRAY(String() if isinstance(column.type, NullType) else column.type))
              for n, column in enumerate(columns)]
    table = func.unnest(*arrays).table_valued(*(f"k{n}" for n in range(len(columns)))).render_derived()
    return table, and_(*[column == table.c[f"k{n}"] for n, column in enumerate(columns)])


def _block_keys(text: str) -> list[str]:
    """The blocking keys a new value is looked up by: its key as typed and in the usual cases."""
    head = block_key(text)
    return list(dict.fromkeys((head, head.lower(), head.upper(), head.capitalize())))


class DuplicateSearch:
    """The duplicate rules of one entity for one viewer."""

    def __init__(self, entity: EntitySpec, models: dict, session, viewer: Viewer) -> None:
        self.entity, self.models, self.session, self.viewer = entity, models, session, viewer
        self.model = models[entity.name]
        self.table = self.model.__table__
        unreadable = viewer.unreadable(entity.name)
        self.rules = [r for r in entity.duplicates if not set(r.fields) & unreadable]
        self.scope = viewer.row_clause(entity.name, models)
        title = entity.title
        self.title_hidden = title is None or title in viewer.hidden(entity.name)
        self.title_masked = title in viewer.masked(entity.name)
        title_field = entity.field(title) if title else None
        self.title_column = (self.table.c[title_field.column_name]
                             if title_field is not None and not self.title_hidden and not title_field.is_relation else None)

    def __bool__(self) -> bool:
        return bool(self.rules)

    def _column(self, name: str, table=None):
        return (self.table if table is None else table).c[self.entity.field(name).column_name]

    def title(self, record_id: int, value) -> str:
        if self.title_column is None or value is None or value == "":
            return f"#{record_id}"
        return mask_value(value) if self.title_masked else str(value)

    def _scoped(self, query, table=None):
        """Only rows the viewer may read (the row clause is written on the model's table: an alias reads it by id)."""
        if self.scope is None:
            return query
        if table is None or table is self.table:
            return query.where(self.scope)
        return query.where(table.c.id.in_(select(self.model.id).where(self.scope)))

    def _title_col(self, table=None):
        if self.title_column is None:
            return literal_column("NULL")
        return (self.table if table is None else table).c[self.title_column.name]

    # -- one record (create and edit: form, API) ------------------------------------------------
    def candidates(self, values: dict, exclude_id: int | None = None, changed: set | None = None) -> list[Candidate]:
        """Readable records the rules pair with a record about to have `values` (field name -> cleaned value); on
        an edit, `exclude_id` is the record itself and `changed` the fields whose value changes (a rule over
        unchanged fields is not asked again)."""
        found: dict[int, Candidate] = {}
        for rule in self.rules:
            if changed is not None and not set(rule.fields) & changed:
                continue
            given = {name: _plain(values.get(name)) for name in rule.fields}
            if any(_blank(v) for v in given.values()):
                continue  # null never equals null
            for candidate in self._rule_candidates(rule, given, exclude_id):
                best = found.get(candidate.id)
                if best is None or candidate.score > best.score:
                    found[candidate.id] = candidate
        return sorted(found.values(), key=lambda c: (-c.score, c.id))[:SHOWN]

    def _rule_candidates(self, rule: DuplicateRule, given: dict, exclude_id) -> list[Candidate]:
        conditions = [self._column(n) == given[n] for n in rule.same]
        if exclude_id is not None:
            conditions.append(self.table.c.id != exclude_id)
        if rule.fuzzy is None:
            conditions += [self._column(n) == given[n] for n in rule.match]
            query = select(self.table.c.id, self._title_col()).where(*conditions).order_by(self.table.c.id).limit(SHOWN)
            return [Candidate(row[0], self.title(row[0], row[1]), 100.0, rule)
                    for row in self.session.execute(self._scoped(query))]
        name = rule.match[0]
        text = str(given[name])
        column = self._column(name)
        low, high = _length_bounds(len(text), rule.fuzzy)
        conditions += [_block(column).in_(_block_keys(text)), func.length(column).between(low, high)]
        # no ORDER BY: the index hands rows of the block by length, and the scan stops at the limit
        query = select(self.table.c.id, self._title_col(), column).where(*conditions).limit(FUZZY_BLOCK_LIMIT)
        rows = self.session.execute(self._scoped(query)).all()
        if not rows:
            return []
        scored = process.extract(_processed(text), [_processed(r[2]) for r in rows], scorer=fuzz.ratio,
                                 score_cutoff=rule.fuzzy, limit=SHOWN)
        return [Candidate(rows[i][0], self.title(rows[i][0], rows[i][1]), round(score, 1), rule)
                for _, score, i in scored]

    # -- the whole table (the duplicates page) ----------------------------------------------------
    def pairs(self, after: tuple[int, int] | None, limit: int) -> tuple[list[Pair], tuple[int, int] | None]:
        """The next `limit` candidate pairs (first id < second id) after `after`, in id order, both readable; and
        the cursor of the next page (None: no more). Exact rules are one self-join each; fuzzy rules join on the
        blocking key and score at most PAIR_SCAN blocked pairs per call, so a page may stop early."""
        found: dict[tuple[int, int], Pair] = {}
        reached = None  # the furthest pair every rule has looked at, when some rule stopped short
        for rule in self.rules:
            pairs, stopped_at = (self._exact_pairs if rule.fuzzy is None else self._fuzzy_pairs)(rule, after, limit)
            for pair in pairs:
                best = found.get(pair.key)
                if best is None or pair.first.score > best.first.score:
                    found[pair.key] = pair
            if stopped_at is not None and (reached is None or stopped_at < reached):
                reached = stopped_at
        ordered = sorted(found.values(), key=lambda p: p.key)
        if reached is not None:
            ordered = [p for p in ordered if p.key <= reached]
        page = ordered[:limit]
        if len(ordered) > limit or (len(page) == limit and reached is not None):
            return page, page[-1].key
        if reached is not None:
            return page, reached
        return page, (page[-1].key if len(page) == limit else None)

    def _aliases(self):
        return self.table.alias("a"), self.table.alias("b")

    def _pair_query(self, rule, a, b, after, extra_columns=()):
        conditions = [a.c.id < b.c.id] + [a.c[c] == b.c[c] for c in (self.entity.field(n).column_name for n in rule.same)]
        conditions += [a.c[self.entity.field(n).column_name].isnot(None) for n in rule.fields]  # null never equals null
        conditions += [a.c[self.entity.field(n).column_name] != "" for n in rule.fields if self._is_text(n)]
        if after is not None:
            conditions.append(tuple_(a.c.id, b.c.id) > tuple_(*after))
        query = select(a.c.id, self._title_col(a), b.c.id, self._title_col(b), *extra_columns).where(*conditions)
        return self._scoped(self._scoped(query, a), b).order_by(a.c.id, b.c.id)

    def _exact_pairs(self, rule, after, limit):
        if self._kept_apart(rule):
            return [], None
        a, b = self._aliases()
        query = self._pair_query(rule, a, b, after).where(
            *[a.c[self.entity.field(n).column_name] == b.c[self.entity.field(n).column_name] for n in rule.match])
        rows = self.session.execute(query.limit(limit)).all()
        return [self._pair(row, 100.0, rule) for row in rows], None

    def _kept_apart(self, rule) -> bool:
        """An exact rule whose columns include all of a unique index's can pair no two records (null never equals
        null): the database keeps them apart. The CRM's `{match: [phone]}` with a unique phone: the self-join found
        nothing after reading the whole table (1.4 s a duplicates page at 1M rows). The indexes are read from the
        database, not the YAML: `unique: true` added to a field of an existing table does not create its index
        (start-up adds only new columns), and its old duplicates must still be listed."""
        columns = {self.entity.field(n).column_name for n in rule.match}
        return any(unique <= columns for unique in self._unique_column_sets())

    def _unique_column_sets(self) -> list:
        def read() -> list:
            found = inspect(self.session.connection())
            sets = [frozenset(c["column_names"]) for c in found.get_unique_constraints(self.table.name)]
            sets += [frozenset(i["column_names"]) for i in found.get_indexes(self.table.name) if i.get("unique")]
            return [s for s in sets if s and None not in s]  # expression indexes name no columns
        return current_portal().form_cache.get_or_make(("unique_column_sets", self.table.name), read)

    def _is_text(self, name: str) -> bool:
        from app.schema.duplicates import fuzzy_text
        return fuzzy_text(self.entity.field(name))

    def _fuzzy_pairs(self, rule, after, limit):
        a, b = self._aliases()
        name = self.entity.field(rule.match[0]).column_name
        length_a, length_b, fuzzy = func.length(a.c[name]), func.length(b.c[name]), rule.fuzzy
        query = self._pair_query(rule, a, b, None, (a.c[name], b.c[name])).where(
            _block(a.c[name]) == _block(b.c[name]),  # the index on (same..., block, length) finds b for each a
            length_b.between(length_a * fuzzy // (200 - fuzzy) - 3, (length_a * (200 - fuzzy) + fuzzy - 1) // fuzzy + 3))
        result, scanned, batch, cursor = [], 0, 2000, after
        while scanned < PAIR_SCAN:
            page = query if cursor is None else query.where(tuple_(a.c.id, b.c.id) > tuple_(*cursor))
            rows = self.session.execute(page.limit(batch)).all()
            for row in rows:
                score = fuzz.ratio(_processed(row[4]), _processed(row[5]))
                if score >= rule.fuzzy:
                    result.append(self._pair(row, round(score, 1), rule))
                    if len(result) == limit:
                        return result, (row[0], row[2])
            scanned += len(rows)
            if len(rows) < batch:
                return result, None
            cursor = (rows[-1][0], rows[-1][2])
        return result, cursor

    def _pair(self, row, score: float, rule) -> Pair:
        return Pair(Candidate(row[0], self.title(row[0], row[1]), score, rule),
                    Candidate(row[2], self.title(row[2], row[3]), score, rule))

    # -- imports --------------------------------------------------------------------------------
    def for_import(self) -> "ImportDuplicates":
        return ImportDuplicates(self)


@dataclass
class DuplicateFlag:
    """A row of an import that duplicates another row of the file (`other_row`) or a stored record (`id`)."""

    row: int
    rule: str
    score: float
    other_row: int | None = None
    id: int | None = None
    title: str | None = None

    def as_dict(self) -> dict:
        data = {"row": self.row, "rule": self.rule, "score": self.score}
        if self.other_row is not None:
            data["other_row"] = self.other_row
        else:
            data.update(id=self.id, title=self.title)
        return data


class ImportDuplicates:
    """Flags an import's rows chunk by chunk: against the file's earlier rows (keys and blocks kept in memory) and
    against the table (one IN (...) query per rule and chunk). Rows that update a record are compared as well,
    never with the record itself."""

    MAX_FLAGS = 1000

    def __init__(self, search: DuplicateSearch) -> None:
        self.search = search
        self.keys: dict[int, dict[tuple, int]] = {i: {} for i in range(len(search.rules))}  # exact: key -> first row
        self.blocks: dict[int, dict[tuple, tuple]] = {i: {} for i in range(len(search.rules))}  # fuzzy: block -> rows
        self.flags: list[DuplicateFlag] = []
        self.count = 0

    def _flag(self, flag: DuplicateFlag) -> None:
        self.count += 1
        if len(self.flags) < self.MAX_FLAGS:
            self.flags.append(flag)

    def check(self, records: list[dict]) -> None:
        """`records`: the chunk's valid rows (field name -> cleaned value, `_row`, `_id` when updating)."""
        for i, rule in enumerate(self.search.rules):
            names = rule.same + rule.match
            rows = []
            for record in records:
                key = tuple(_plain(record.get(n)) for n in names)
                if None not in key and "" not in key and all(n in record for n in names):  # cleaned: stripped
                    rows.append((record, key))
            if rows:
                (self._exact if rule.fuzzy is None else self._fuzzy)(i, rule, rows)

    def _exact(self, i, rule, rows) -> None:
        """`rows`: (record, its (same..., match...) values)."""
        search = self.search
        seen = self.keys[i]
        wanted: dict[tuple, list] = {}
        for record, key in rows:
            first = seen.setdefault(key, record["_row"])
            if first != record["_row"]:
                self._flag(DuplicateFlag(record["_row"], rule.id, 100.0, other_row=first))
            wanted.setdefault(key, []).append(record)
        columns = [search._column(n) for n in rule.same + rule.match]
        keys = list(wanted)
        for start in range(0, len(keys), IN_CHUNK):
            query = select(search.table.c.id, search._title_col(), *columns).where(_in(columns, keys[start:start + IN_CHUNK]))
            for row in search.session.execute(search._scoped(query)):
                for record in wanted.get(tuple(row[2:]), ()):
                    if record.get("_id") != row[0]:
                        self._flag(DuplicateFlag(record["_row"], rule.id, 100.0, id=row[0], title=search.title(row[0], row[1])))

    def _fuzzy(self, i, rule, rows) -> None:
        """`rows`: (record, its (same..., text) values). Within the file: each block keeps its rows' numbers and
        processed texts side by side (rapidfuzz reads the list as is)."""
        search = self.search
        name = rule.match[0]
        blocks = self.blocks[i]
        by_block: dict[tuple, list] = {}
        for record, key in rows:
            text = str(key[-1])
            same = key[:-1]
            processed = _processed(text)
            numbers, texts = blocks.setdefault(same + (block_key(text),), ([], []))
            if texts:
                best = process.extractOne(processed, texts, scorer=fuzz.ratio, score_cutoff=rule.fuzzy, processor=None)
                if best is not None:
                    self._flag(DuplicateFlag(record["_row"], rule.id, round(best[1], 1), other_row=numbers[best[2]]))
            if len(texts) < FUZZY_BLOCK_LIMIT:
                numbers.append(record["_row"])
                texts.append(processed)
            for head in _block_keys(text):
                by_block.setdefault(same + (head,), []).append((record, processed))
        # the key's expression written once, in a subquery the databases flatten (each OR term of `_in` is then an
        # index search on (same..., key)); written in every term it made compiling the statement the import's cost
        readable = search._scoped(select(search.table.c.id, search._title_col().label("title"), search._column(name),
                                         *[search._column(n) for n in rule.same],
                                         _block(search._column(name)).label("block_key"))).subquery()
        columns = [readable.c[search._column(n).name] for n in rule.same] + [readable.c.block_key]
        keys = list(by_block)
        best_stored: dict[int, tuple] = {}  # row -> (stored row, score): a row's case variants may meet several
        postgresql = search.session.get_bind().dialect.name == "postgresql"
        for start in range(0, len(keys), IN_CHUNK):
            part = keys[start:start + IN_CHUNK]
            query = select(readable.c.id, readable.c.title, readable.c[search._column(name).name], *columns)
            if postgresql:  # joined to the chunk's keys as arrays: the key's expression planned once, not per OR term
                query = query.select_from(readable.join(*_keys_table(columns, part)))
            else:
                query = query.where(_in(columns, part))
            stored: dict[tuple, list] = {}
            for row in search.session.execute(query):
                stored.setdefault(tuple(row[3:]), []).append(row)
            for key, found in stored.items():
                choices = [_processed(r[2]) for r in found[:FUZZY_BLOCK_LIMIT]]
                for record, processed in by_block[key]:
                    best = process.extractOne(processed, choices, scorer=fuzz.ratio, score_cutoff=rule.fuzzy,
                                              processor=None)
                    if best is not None and found[best[2]][0] != record.get("_id"):
                        previous = best_stored.get(record["_row"])
                        if previous is None or best[1] > previous[1]:
                            best_stored[record["_row"]] = (found[best[2]], best[1])
        for row_number, (row, score) in sorted(best_stored.items()):
            self._flag(DuplicateFlag(row_number, rule.id, round(score, 1), id=row[0], title=search.title(row[0], row[1])))
