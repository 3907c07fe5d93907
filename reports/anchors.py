"""Literature anchors: the published figures a report draws beside lmladder's own rows.

The figures live in ``anchors.toml`` beside this module, one ``[[anchor]]`` table each, with its
source.  :func:`load_anchors` reads and checks them; :func:`matching` picks those of one dataset
and metric.  A metric is the path of the matching number in a result record, e.g.
``"metrics.test.ppl"`` or ``"tasks.rt-polarity.accuracy"``.
"""

from __future__ import annotations

import math
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
