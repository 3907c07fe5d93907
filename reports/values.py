"""Values read out of :class:`~lmladder.record.Record` values for display: the helpers every
report page shares.  Records are validated when read; the free-form parts of a section (a fit's
notes and history, a dataset's splits) are reached with :func:`value_at`, and a number that may
be absent is read with :func:`number_at` (:func:`lmladder.numbers.finite`: the one number rule).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from lmladder.numbers import finite
from lmladder.record import SECTIONS, Record


def value_at(data: Any, path: Iterable[str]) -> Any:
    """The value at ``path`` in nested mappings, or None where a step is missing or no mapping."""
    for key in path:
        if not isinstance(data, Mapping) or data.get(key) is None:
            return None
        data = data[key]
    return data


def mapping_at(data: Any, path: Iterable[str]) -> Mapping:
    """The mapping at ``path`` in nested mappings, or ``{}`` where there is none."""
    found = value_at(data, path)
    return found if isinstance(found, Mapping) else {}


def number_at(record: Record, path: tuple[str, ...] | list[str]) -> float | None:
    """The number at a record path such as ``("metrics", "test", "ppl")``,
    ``("fit", "train_tokens")`` or ``("tasks", "cloze", "accuracy")`` (an anchor's metric),
    or None where the record has none."""
    head, *rest = path
    if head == "tasks":
        result = record.tasks.get(rest[0]) if len(rest) == 2 else None
        return None if result is None else result.score(rest[1])
    if head not in SECTIONS:
        return None
    return finite(value_at(getattr(record, head), rest))


def as_text(value: Any) -> str:
    """A record value as one line of text (JSON for containers)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)


def clip(text: str, limit: int = 20) -> str:
    """``text`` cut to at most ``limit`` characters, the last an ellipsis where it was cut."""
    return text if len(text) <= limit else text[:limit - 1] + "…"
