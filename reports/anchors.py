"""Literature anchors: the published figures a report draws beside lmladder's own rows.

The figures live in ``anchors.toml`` beside this module, one ``[[anchor]]`` table each, with its
source.  :func:`load_anchors` reads and checks them; :func:`matching` picks those of one dataset
and metric, :func:`match_anchor` the one that stands for a leaderboard row's model, and
:func:`distance` says how far a measured value is from it.  A metric is the path of the
matching number in a result record, e.g. ``"metrics.test.ppl"`` or
``"tasks.rt-polarity.accuracy"``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ANCHORS = Path(__file__).resolve().parent / "anchors.toml"
ANY_DATASET = "*"


class AnchorError(ValueError):
    """An anchors file is malformed; the message names the file, the entry and the key."""


@dataclass(frozen=True)
class Anchor:
    """One published figure: ``value`` of ``metric`` on ``dataset`` by ``model``, per ``source``.

    ``comparable`` is False where the figure was measured on another test or protocol: a report
    shows it with its ``note`` but never computes a distance to it.
    """

    dataset: str
    metric: str
    value: float
    model: str
    family: str
    source: str
    url: str = ""
    note: str = ""
    comparable: bool = True

    def applies_to(self, dataset: str, metric: str) -> bool:
        return self.metric == metric and self.dataset in (dataset, ANY_DATASET)

    def path(self) -> tuple[str, ...]:
        """``metric`` split into record keys: ("metrics", "test", "ppl")."""
        return tuple(self.metric.split("."))


_REQUIRED = {"dataset": str, "metric": str, "value": float, "model": str, "family": str,
             "source": str}
_OPTIONAL = {"url": str, "note": str, "comparable": bool}


def _check(entry: object, where: str) -> Anchor:
    if not isinstance(entry, dict):
        raise AnchorError(f"{where}: expected a table of keys")
    known = {f.name for f in fields(Anchor)}
    unknown = sorted(set(entry) - known)
    if unknown:
        raise AnchorError(f"{where}: unknown key {unknown[0]!r} (keys: {', '.join(sorted(known))})")
    for key, kind in {**_REQUIRED, **_OPTIONAL}.items():
        if key not in entry:
            if key in _REQUIRED:
                raise AnchorError(f"{where}: missing key {key!r}")
            continue
        value = entry[key]
        ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
              and math.isfinite(value)) if kind is float else isinstance(value, kind)
        if not ok:
            raise AnchorError(f"{where}: {key} must be {kind.__name__}, got {value!r}")
        if kind is str and key in _REQUIRED and not value.strip():
            raise AnchorError(f"{where}: {key} is empty")
    if len(entry["metric"].split(".")) < 2:
        raise AnchorError(f"{where}: metric {entry['metric']!r} is not a record path such as "
                          "'metrics.test.ppl'")
    return Anchor(**{**entry, "value": float(entry["value"])})


def load_anchors(path: str | Path = ANCHORS) -> list[Anchor]:
    """Every anchor in ``path`` (default: the shipped ``anchors.toml``), in file order."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise AnchorError(f"{path}: cannot read the anchors: {err}") from None
    entries = data.get("anchor", [])
    if set(data) - {"anchor"} or not isinstance(entries, list):
        raise AnchorError(f"{path}: expected only [[anchor]] tables")
    return [_check(e, f"{path}: anchor {i + 1}") for i, e in enumerate(entries)]


def matching(anchors: list[Anchor], dataset: str, metric: str) -> list[Anchor]:
    """The anchors of ``dataset`` (or of every dataset) for ``metric``, in file order."""
    return [a for a in anchors if a.applies_to(dataset, metric)]


def cite(anchor: Anchor) -> str:
    """An anchor's source up to its year ("Mikolov 2012", "Zaremba et al. 2014"), else its
    first clause."""
    found = re.match(r"(.*?\b(?:1[89]|20)\d\d)\b", str(anchor.source))
    return (found.group(1) if found else str(anchor.source).split(",")[0]).strip()


def _words(text: str) -> list[str]:
    return re.findall(r"[\w-]+", text.lower())


def match_anchor(label: str, family: str, anchors: list[Anchor], metric: str, *,
                 higher_is_better: bool) -> Anchor | None:
    """The comparable anchor of ``metric`` that stands for a row's model: same ``family`` and
    the anchor's first model word (e.g. "KN5", "LSTM") among the ``label``'s words.  Of several,
    the one sharing most words with the label ("LSTM medium …" → Zaremba's medium LSTM), then
    the weakest published figure (the smallest published model of that kind)."""
    words = set(_words(label))
    found = [a for a in anchors if a.comparable and a.metric == metric and a.family == family
             and (_words(a.model) or [""])[0] in words]
    if not found:
        return None
    sign = 1 if higher_is_better else -1
    return min(found, key=lambda a: (-len(words & set(_words(a.model))), sign * a.value))


def distance(value: float, anchor: Anchor) -> str:
    """How far ``value`` is from ``anchor.value``: a signed percentage within 10 %, a ratio
    beyond ("−0.01%", "2.3×")."""
    if anchor.value == 0:
        return f"{value - anchor.value:+.3g}"
    ratio = value / anchor.value
    if abs(ratio - 1) < 0.1:
        return f"{(ratio - 1) * 100:+.2f}%".replace("-", "−")
    return f"{ratio:.2g}×" if ratio < 10 else f"{ratio:,.0f}×"
