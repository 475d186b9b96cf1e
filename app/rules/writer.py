"""Kept for imports elsewhere: the write path is `app.rules.record_rules.RecordRules`."""
from __future__ import annotations

from app.rules.record_rules import RecordRules, link_target, writable_fields

RecordWriter = RecordRules  # the API/import writer grew into the one rules path for every write

__all__ = ["RecordRules", "RecordWriter", "link_target", "writable_fields"]
