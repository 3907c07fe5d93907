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

    ``protocol``, where set, is the evaluation protocol the figure used, spelled as task results
    record theirs under ``protocol`` (e.g. ``"10-fold CV"``, :mod:`lmladder.tasks.sentiment`):
    the figure is comparable only to results that record the same protocol
    (:meth:`comparable_to`).  Such an anchor has ``comparable`` False -- a report that does not
    look at a row's protocol (the default fixed split, say) shows it as a note, never as a
    distance -- and :func:`match_anchor` offers it only to a row whose ``protocol`` is given
    and equal.
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
    protocol: str = ""

    def __post_init__(self):
        if self.protocol and self.comparable:
            raise ValueError(f"anchor {self.model!r}: a figure with protocol {self.protocol!r} "
                             "is comparable only to results of that protocol, so comparable "
                             "must be False")

    def comparable_to(self, protocol: str | None = None) -> bool:
        """Whether a result recorded under ``protocol`` (None: not known) may be set against
        this figure: the same protocol where the anchor names one, else ``comparable``."""
        return protocol == self.protocol if self.protocol else self.comparable

    def applies_to(self, dataset: str, metric: str) -> bool:
        return self.metric == metric and self.dataset in (dataset, ANY_DATASET)

    def path(self) -> tuple[str, ...]:
        """``metric`` split into record keys: ("metrics", "test", "ppl")."""
        return tuple(self.metric.split("."))


_REQUIRED = {"dataset": str, "metric": str, "value": float, "model": str, "family": str,
             "source": str}
_OPTIONAL = {"url": str, "note": str, "comparable": bool, "protocol": str}


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
    if entry.get("protocol", "").strip() and entry.get("comparable", False):
        raise AnchorError(f"{where}: comparable = true with protocol {entry['protocol']!r}: a "
                          "figure with a protocol is comparable only to results of that "
                          "protocol (leave comparable out)")
    if "protocol" in entry and not entry["protocol"].strip():
        raise AnchorError(f"{where}: protocol is empty")
    if "protocol" in entry:
        entry = {**entry, "comparable": False}
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
                 higher_is_better: bool, protocol: str | None = None) -> Anchor | None:
    """The comparable anchor of ``metric`` that stands for a row's model: comparable to a
    result of ``protocol`` (:meth:`Anchor.comparable_to`; None: the row's protocol is not known,
    so no anchor that names one), same ``family`` and the anchor's first model word (e.g.
    "KN5", "LSTM") among the ``label``'s words.  Of several, the one sharing most words with the
    label ("LSTM medium …" → Zaremba's medium LSTM), then the weakest published figure (the
    smallest published model of that kind)."""
    words = set(_words(label))
    found = [a for a in anchors if a.comparable_to(protocol) and a.metric == metric
             and a.family == family and (_words(a.model) or [""])[0] in words]
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
