"""address: a Chinese postal address, stored whole and parsed into read-only sibling columns.

`address: {type: address}` stores the standardised text in `address` and, on every write (forms, API, imports,
bulk transitions), its parts in `address_province`, `address_city`, `address_district`, `address_detail` and
`address_parsed` (true when province and city were found; false: kept whole and flagged, never refused). The
siblings are declared here (`siblings`); the checker adds them to the entity as read-only fields
(app/schema/entities.py) and app/rules/siblings.py `SiblingStep` fills them from `derive`.

Parsing is jionlp's location parser (docs/schema.md says why it was chosen over cpca and others). Its candidate
scan tests every one of ~3,500 place entries against the text (2–5 ms per address); `_IndexedParser` hands it
only the entries whose names occur in the text, which gives the same answer 15–25 times faster, and parses are
cached. jionlp is imported on the first parse (it loads numpy and prints a banner on stdout, silenced here).
"""
from __future__ import annotations

import contextlib
import io
import threading
from dataclasses import dataclass
from functools import lru_cache

from app.fieldtypes.base import Sibling
from app.fieldtypes.text import StringType

PARSE_CACHE = 20_000  # distinct addresses whose parse is kept (an import repeats a city's addresses often)


@dataclass(frozen=True)
class ParsedAddress:
    province: str | None
    city: str | None
    district: str | None
    detail: str | None
    parsed: bool


# -- the parser ------------------------------------------------------------------------------------------
_lock = threading.Lock()  # jionlp's parser keeps per-call state on its shared entries: one parse at a time
_parser = None


def _load_parser():
    global _parser
    if _parser is None:
        with contextlib.redirect_stdout(io.StringIO()):  # jionlp and jiojio greet on stdout when imported
            from jionlp.gadget.location_parser import LocationParser

        class _IndexedParser(LocationParser):
            """jionlp's LocationParser with its candidate scan narrowed to the entries that name a place found in the
            text: the others match nothing. Of the entries found only by their province's name, which all give the
            same answer, the first of each province is kept. Entries keep their order (the parser breaks ties by
            it). tests/test_address.py checks the answers against the plain parser."""

            _entries = None

            def _index(self):
                entries = self.administrative_map_list
                by_province: dict[str, list[int]] = {}  # a province's full or short name -> entries under it
                by_place: dict[str, list[int]] = {}  # a city's or county's full or short name -> its entries
                for position, entry in enumerate(entries):
                    for level, names in enumerate(entry[1:4]):
                        for name in names:
                            if name:
                                (by_place if level else by_province).setdefault(name, []).append(position)
                self._entries, self._by_province, self._by_place = entries, by_province, by_place
                self._lengths = sorted({len(name) for name in (*by_province, *by_place)})

            def get_candidates(self, location_text):
                if self._entries is None:
                    self._index()
                places: set[int] = set()
                provinces: set[int] = set()
                by_province, by_place, size = self._by_province, self._by_place, len(location_text)
                for length in self._lengths:
                    for start in range(size - length + 1):
                        piece = location_text[start:start + length]
                        hits = by_place.get(piece)
                        if hits:
                            places.update(hits)
                        hits = by_province.get(piece)
                        if hits:
                            provinces.update(hits)
                entries = self._entries
                keep, seen = set(places), set()
                for position in sorted(provinces - places):
                    province = tuple(entries[position][1])
                    if province not in seen:
                        seen.add(province)
                        keep.add(position)
                self.administrative_map_list = [entries[i] for i in sorted(keep)]
                try:
                    return super().get_candidates(location_text)
                finally:
                    self.administrative_map_list = entries

        with contextlib.redirect_stdout(io.StringIO()):
            parser = _IndexedParser()
            parser("北京市")  # loads the place dictionary now, not inside the first request's lock
        _parser = parser
    return _parser


def location_parser():
    """The shared jionlp parser (loaded on first use; gunicorn's master loads it before forking: AddressType.warm_up)."""
    with _lock:
        return _load_parser()


@lru_cache(maxsize=PARSE_CACHE)
def parse_address(text: str) -> ParsedAddress:
    """Province, city, district (county, county-level city or district) and the rest of a standardised address;
    `parsed` is False (and the whole text is the detail) when no province and city could be told."""
    parser = location_parser()
    with _lock:
        found = parser(text, town_village=False, change2new=True)
    province, city, district = found["province"], found["city"], found["county"]
    detail = (found["detail"] or "").strip(" ,，;；:：-")
    if not (province and city):
        return ParsedAddress(province, city, district, text, False)
    return ParsedAddress(province, city, district, detail or None, True)


# -- the field type --------------------------------------------------------------------------------------
class AddressType(StringType):
    name = "address"
    option_keys = ("length",)
    default_length = 500
    can_be_unique = False  # two customers may share an address; duplicates: rules compare its parts
    groupable = False  # reports group by its parts (address_province ...), not by whole addresses
    listed_by_default = True
    siblings = (
        Sibling("_province", "string", (("en", "province"), ("zh", "省")), length=50),
        Sibling("_city", "string", (("en", "city"), ("zh", "市")), length=50),
        Sibling("_district", "string", (("en", "district"), ("zh", "区县")), length=50),
        Sibling("_detail", "string", (("en", "detail"), ("zh", "详情")), length=500),
        Sibling("_parsed", "boolean", (("en", "parsed"), ("zh", "已解析"))),
    )

    def warm_up(self) -> None:
        location_parser()  # jionlp's place dictionary: loaded before gunicorn forks, once for all workers

    def derive(self, field, value) -> dict:
        """{suffix: value} of the siblings for a stored value (None: every sibling empty)."""
        if value is None:
            return {s.suffix: None for s in self.siblings}
        parts = parse_address(value)
        return {"_province": parts.province, "_city": parts.city, "_district": parts.district,
                "_detail": parts.detail, "_parsed": parts.parsed}
