"""Values read out of result records for display, whatever a record holds (records may be old,
hand-edited or malformed): the helpers every report page shares."""

from __future__ import annotations

import json
from collections.abc import Iterable


def value_at(record, path: Iterable[str]):
    """The value at ``path`` in nested dicts, or None where any step is missing or not a dict."""
    for key in path:
        if not isinstance(record, dict) or record.get(key) is None:
            return None
        record = record[key]
    return record


def as_text(value) -> str:
    """A record value as one line of text (JSON for containers)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)


def clip(text: str, limit: int = 20) -> str:
    """``text`` cut to at most ``limit`` characters, the last an ellipsis where it was cut."""
    return text if len(text) <= limit else text[:limit - 1] + "…"
