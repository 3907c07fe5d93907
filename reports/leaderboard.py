"""Leaderboards: the template data of one dataset's table (own, reference, literature and
oracle rows; compact columns first, the rest as details) and of one task's table.  Best values
are marked only in quality columns, among measured rows."""

from __future__ import annotations

import re
import statistics
from collections.abc import Mapping

from lmladder.numbers import finite
from lmladder.record import MetricSpec
from lmladder.reports.anchors import Anchor, cite
from lmladder.reports.figures import slug
from lmladder.reports.rows import (
    COLUMNS,
    HIGHER_IS_BETTER,
    LOWER_IS_BETTER,
    PATH_COLUMNS,
    QUALITY,
    UNITS,
    Row,
    fmt,
    task_mean,
)
from lmladder.reports.values import value_at
from lmladder.results import lmladder_version

COMPACT = ("parameters", "trained", "train tok/s", "score tok/s")


def _header(column: str, quality: bool) -> dict:
    better = ""
    if quality:
        better = "↓ lower is better" if column in LOWER_IS_BETTER else "↑ higher is better"
    return {"name": column, "unit": UNITS.get(column, ""), "better": better}


def trained_cell(row: Row | None) -> dict:
    """The "trained" cell of a row: amount, verdict and budget, flagged where not converged."""
    if row is None:
        return {"text": "—", "value": "", "best": False, "flag": ""}
    t = row.training
    text = t.amount or "—"
    if t.verdict in ("closed form", "not trained", "converged"):
        text = ", ".join(p for p in (t.amount, t.verdict) if p)
    if t.budget:
        text += f" (budget {t.budget})"
    # the amount is in the cell already: the flag adds only why
    return {"text": text, "value": "" if t.epochs is None else repr(t.epochs),
            "best": False, "flag": f"⚠ not converged: {t.reason}" if t.flagged else "",
            "title": t.reason}


def _citation(a: Anchor) -> dict:
    # only web links are ever made clickable
    url = a.url if re.match(r"https?://", a.url or "") else ""
    return {"source": a.source, "short": cite(a), "url": url, "note": a.note,
            "comparable": a.comparable}


def leaderboard(rows: list[Row], anchors: list[Anchor] = (), *, quality: str = "test ppl",
                oracle: Mapping | None = None, mark_best: bool = True) -> dict:
    """Template data for one dataset's leaderboard: ``rows`` (own and reference), the anchors'
    literature rows, and the source's own scores (``oracle``); sorted by ``quality``.

    Compact columns are the quality metric(s), parameters, training and throughput; every other
    column carries ``detail`` (hidden until the page's toggle shows it).  Best values are marked
    only in quality columns, among measured rows.
    """
    anchors = [a for a in anchors if a.metric in PATH_COLUMNS]
    anchor_columns = {PATH_COLUMNS[a.metric] for a in anchors}
    present = [c for c in COLUMNS if c in anchor_columns or any(row.values(c) for row in rows)]
    compact = [c for c in present if c == quality or c in anchor_columns]
    compact += [c for c in COMPACT if c in present or c == "trained"]
    columns = compact + [c for c in present if c not in compact]
    best = {}
    for c in present if mark_best else ():
        means = [m for m in (row.mean(c) for row in rows) if m is not None]
        if c in QUALITY and means:
            best[c] = min(means) if c in LOWER_IS_BETTER else max(means)

    def cell(c: str, value: float | None, text: str | None = None, *, ranks: bool = True):
        return {"text": fmt(c, value) if text is None else text,
                "value": "" if value is None else repr(value), "flag": "",
                "best": ranks and c in best and value is not None and value == best[c]}

    body = []
    for row in rows:
        cells = [trained_cell(row) if c == "trained" else cell(c, row.mean(c), row.text(c))
                 for c in columns]
        body.append({"kind": row.kind, "label": row.label, "family": row.family,
                     "settings": row.settings, "seeds": len(row.records), "code": row.revision,
                     "cells": cells, "cite": None, "sort": row.mean(quality),
                     # a learning curve's shares are details: the whole-data row ranks
                     "share": not row.full})
    for a in anchors:
        column = PATH_COLUMNS[a.metric]
        cells = [trained_cell(None) if c == "trained"
                 else cell(c, a.value if c == column else None, ranks=False) for c in columns]
        body.append({"kind": "literature", "label": a.model, "family": a.family,
                     "settings": a.note or a.source, "seeds": "", "code": "", "cells": cells,
                     "cite": _citation(a), "sort": a.value if column == quality else None})
    if oracle is not None:  # an oracle holds {"valid": metrics, "test": metrics}
        cells = [trained_cell(None) if c == "trained" else cell(
            c, finite(value_at(oracle, COLUMNS[c][0][1:])) if COLUMNS[c][0][0] == "metrics"
            else None, ranks=False) for c in columns]
        body.append({"kind": "oracle", "label": "source (oracle)", "family": "", "settings": "",
                     "seeds": "", "code": "", "cells": cells, "cite": None, "sort": None})
    for b in body:
        b["fam"] = slug(b["family"]) if b["family"] else ""
    higher = quality in HIGHER_IS_BETTER
    body.sort(key=lambda r: (r["kind"] == "oracle", r["sort"] is None,
                             -(r["sort"] or 0) if higher else (r["sort"] or 0)))
    return {"columns": [{**_header(c, c in QUALITY), "detail": c not in compact}
                        for c in columns],
            "rows": body,
            # families have revisions of their own: the column matters when lmladder's differ
            "show_code": len({lmladder_version(row.records[0]) for row in rows}) > 1,
            "shares": sum(not row.full for row in rows)}


def _task_cell(row: Row, name: str, spec: MetricSpec) -> dict:
    """A task score as ``{"text", "value"}``: mean ± std over seeds, "n/a" where the task
    cannot use the model, the task's status where it did not run, "" where not run at all."""
    results = [r.tasks[name] for r in row.records if name in r.tasks]
    if not results:
        return {"text": "", "value": ""}
    values = [v for t in results if (v := t.score(spec.name)) is not None]
    if not values:
        status = results[0].status
        return {"text": "n/a" if status == "not applicable" else status, "value": ""}
    text = f"{sum(values) / len(values):.4g}"
    if len(values) > 1:
        text += f" ± {statistics.stdev(values):.2g}"
    return {"text": text, "value": repr(sum(values) / len(values))}


def task_table(rows: list[Row], name: str, specs: tuple[MetricSpec, ...],
               anchors: list[Anchor]) -> dict | None:
    """Template data of one task's table: rows (own and reference) by the task's first metric,
    its other metrics as details, chance level and the literature rows of ``anchors`` (those of
    this task); None where no row ran the task."""
    body = []
    for row in rows:
        cells = [_task_cell(row, name, spec) for spec in specs]
        if any(c["text"] != "" for c in cells):
            body.append({"kind": row.kind, "label": row.label, "family": row.family,
                         "settings": row.settings, "seeds": len(row.records),
                         "trained": trained_cell(row), "cells": cells, "cite": None,
                         "sort": task_mean(row, name, specs[0].name), "share": not row.full})
    if not body:
        return None
    first = specs[0]
    best = [b["sort"] for b in body if b["sort"] is not None]
    best = (max if first.higher_is_better else min)(best) if best else None
    for b in body:
        b["cells"][0]["best"] = best is not None and b["sort"] == best
    for a in anchors:
        metric = a.metric.split(".", 2)[2]
        cells = [{"text": f"{a.value:.4g}" if s.name == metric else "—",
                  "value": repr(a.value) if s.name == metric else ""} for s in specs]
        body.append({"kind": "literature", "label": a.model, "family": a.family,
                     "settings": a.note or a.source, "seeds": "",
                     "trained": trained_cell(None), "cells": cells, "cite": _citation(a),
                     "sort": a.value if metric == first.name else None})
    for b in body:
        b["fam"] = slug(b["family"]) if b["family"] else ""
    body.sort(key=lambda b: (b["sort"] is None,
                             -(b["sort"] or 0) if first.higher_is_better else (b["sort"] or 0)))
    heads = [{"name": s.name, "unit": "",
              "better": "↑ higher is better" if s.higher_is_better else "↓ lower is better",
              "detail": i > 0} for i, s in enumerate(specs)]
    chance = [{"text": "" if s.chance is None else f"{s.chance:.3g}",
               "value": "" if s.chance is None else repr(s.chance)} for s in specs]
    return {"heads": heads, "rows": body, "chance": chance}

