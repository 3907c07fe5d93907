"""Leaderboards: the template data of one dataset's table (own, reference, literature and
oracle rows; compact columns first, the rest as details) and of one task's table.  Best values
are marked only in quality columns, among measured rows."""

from __future__ import annotations

import re
import statistics
from collections.abc import Mapping

from lmladder.numbers import finite
from lmladder.record import MetricSpec
from lmladder.reports.anchors import Anchor, cite, match_anchor
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

COMPACT = ("lit.", "× lit.", "parameters", "trained", "train tok/s", "score tok/s")
SPECIAL_UNITS = {"lit.": "published", "× lit.": "measured / published",
                 "trained": "actual / planned", "data share": "of the training split"}


def _header(column: str, quality: bool) -> dict:
    better = ""
    if quality:
        better = "↓ lower is better" if column in LOWER_IS_BETTER else "↑ higher is better"
    return {"name": column, "unit": UNITS.get(column, SPECIAL_UNITS.get(column, "")),
            "better": better}


def trained_cell(row: Row | None) -> dict:
    """The "trained" cell of a row: what it trained against what was planned ("7 / 5,000
    steps, 0.11 epochs, cut at 180 s") and its verdict; a flagged row says why it is flagged
    (not converged, convergence unknown, under 1 epoch)."""
    if row is None:
        return {"text": "—", "value": "", "best": False, "flag": ""}
    t = row.training
    text = t.planned or t.amount or "—"
    if t.verdict in ("closed form", "not trained") or t.converged:
        text += f" · {t.verdict}"
    return {"text": text, "value": "" if t.epochs is None else repr(t.epochs),
            "best": False, "flag": f"⚠ {t.why}" if t.flagged else "", "title": t.reason}


def literature_of(row: Row, anchors: list[Anchor], metrics: list[str]) -> Anchor | None:
    """The comparable anchor that stands for ``row``'s model (:func:`match_anchor`), trying the
    record paths ``metrics`` in order; None where none matches or the row lacks that number."""
    for metric in metrics:
        anchor = match_anchor(row.label, row.family, anchors, metric,
                              higher_is_better=PATH_COLUMNS.get(metric) in HIGHER_IS_BETTER)
        if anchor is not None and row.mean_at(anchor.path()) is not None:
            return anchor
    return None


def times_literature(row: Row, anchor: Anchor) -> float | None:
    """Measured / published for the anchor's metric; None where the anchor is 0."""
    value = row.mean_at(anchor.path())
    return value / anchor.value if value is not None and anchor.value else None


def literature_cells(row: Row | None, anchor: Anchor | None, quality: str) -> list[dict]:
    """The "lit." and "× lit." cells of a row (dashes where no comparable anchor matches)."""
    if row is None or anchor is None:
        return [{"text": "—", "value": "", "best": False, "flag": ""} for _ in range(2)]
    ratio = times_literature(row, anchor)
    metric = PATH_COLUMNS.get(anchor.metric, anchor.metric)
    other = "" if metric == quality else f" ({metric})"
    title = f"{anchor.model}, {cite(anchor)}{other}"
    return [{"text": f"{anchor.value:g}{other}", "value": repr(anchor.value), "best": False,
             "flag": "", "title": title},
            {"text": "—" if ratio is None else f"{ratio:.2f}×",
             "value": "" if ratio is None else repr(ratio), "best": False, "flag": "",
             "title": title}]


def _citation(a: Anchor) -> dict:
    # only web links are ever made clickable
    url = a.url if re.match(r"https?://", a.url or "") else ""
    return {"source": a.source, "short": cite(a), "url": url, "note": a.note,
            "comparable": a.comparable}


def footnotes(anchors: list[Anchor]) -> list[dict]:
    """The non-comparable anchors as footnotes: shown with their note, never ranked."""
    return [{"model": a.model, "metric": PATH_COLUMNS.get(a.metric, a.metric),
             "value": f"{a.value:g}", "cite": _citation(a)} for a in anchors if not a.comparable]


def _row_data(row: Row, cells: list[dict], sort: float | None) -> dict:
    return {"kind": row.kind, "label": row.label, "family": row.family,
            "settings": row.settings, "seeds": len(row.records), "code": row.revision,
            "cells": cells, "cite": None, "sort": sort, "greyed": row.below_floor,
            "baseline": row.baseline, "flagged": row.training.flagged,
            "curve": (row.records[0].cell.label, row.records[0].cell.model),
            "share": row.records[0].cell.fraction}


def leaderboard(rows: list[Row], anchors: list[Anchor] = (), *, quality: str = "test ppl",
                oracle: Mapping | None = None, mark_best: bool = True,
                curve: bool = False) -> dict:
    """Template data for one dataset's leaderboard: ``rows`` (own and reference), the
    comparable anchors' literature rows, and the source's own scores (``oracle``); sorted by
    ``quality``, rows worse than the dataset's unigram row last (greyed, never ranked).

    Every row carries "lit." and "× lit." (the comparable anchor standing for its model, and
    measured / published) where the dataset has comparable anchors; non-comparable anchors
    are ``footnotes``.  Compact columns are the quality metric(s), literature, parameters,
    training and throughput; every other column carries ``detail`` (hidden until the page's
    toggle shows it).  Best values are marked only in quality columns, among ranked rows.
    ``curve``: a learning curve's table (rows on shares of the training data, a "data share"
    column, by label and share, nothing marked best).
    """
    anchors = [a for a in anchors if a.metric in PATH_COLUMNS]
    comparable = [a for a in anchors if a.comparable]
    anchor_columns = {PATH_COLUMNS[a.metric] for a in anchors}
    present = [c for c in COLUMNS if c in anchor_columns or any(row.values(c) for row in rows)]
    metrics = [COLUMNS[quality][0]] + sorted({tuple(a.metric.split(".")) for a in comparable})
    metrics = list(dict.fromkeys(".".join(m) for m in metrics))
    specials = {"trained"} | ({"lit.", "× lit."} if comparable else set())
    compact = ["data share"] if curve else []
    compact += [c for c in present if c == quality or c in anchor_columns]
    compact += [c for c in COMPACT if c in present or c in specials]
    columns = compact + [c for c in present if c not in compact]
    best = {}
    for c in present if mark_best and not curve else ():
        means = [m for row in rows if not row.below_floor and (m := row.mean(c)) is not None]
        if c in QUALITY and means:
            best[c] = min(means) if c in LOWER_IS_BETTER else max(means)

    def cell(c: str, value: float | None, text: str | None = None, *, ranks: bool = True):
        return {"text": fmt(c, value) if text is None else text,
                "value": "" if value is None else repr(value), "flag": "",
                "best": ranks and c in best and value is not None and value == best[c]}

    def cells_of(row: Row | None, value_of, ranks: bool) -> list[dict]:
        lit = literature_cells(row, row and literature_of(row, comparable, metrics), quality)
        special = {"trained": trained_cell(row), "lit.": lit[0], "× lit.": lit[1],
                   "data share": {"text": "" if row is None else
                                  f"{row.records[0].cell.fraction:.4g}",
                                  "value": "" if row is None else
                                  repr(row.records[0].cell.fraction)}}
        return [special[c] if c in special else cell(c, *value_of(c), ranks=ranks)
                for c in columns]

    body = [_row_data(row, cells_of(row, lambda c, r=row: (r.mean(c), r.text(c)),
                                    not row.below_floor), row.mean(quality)) for row in rows]
    for a in comparable:
        column = PATH_COLUMNS[a.metric]
        cells = cells_of(None, lambda c, a=a, col=column: (a.value if c == col else None,),
                         False)
        body.append({"kind": "literature", "label": a.model, "family": a.family,
                     "settings": a.note or a.source, "seeds": "", "code": "", "cells": cells,
                     "cite": _citation(a), "sort": a.value if column == quality else None})
    if oracle is not None:  # an oracle holds {"valid": metrics, "test": metrics}
        cells = cells_of(None, lambda c: (
            finite(value_at(oracle, COLUMNS[c][0][1:])) if COLUMNS[c][0][0] == "metrics"
            else None,), False)
        body.append({"kind": "oracle", "label": "source (oracle)", "family": "", "settings": "",
                     "seeds": "", "code": "", "cells": cells, "cite": None, "sort": None})
    for b in body:
        b["fam"] = slug(b["family"]) if b["family"] else ""
    higher = quality in HIGHER_IS_BETTER
    if curve:
        body.sort(key=lambda r: (r.get("curve", ()), r.get("share", 0)))
    else:
        body.sort(key=lambda r: (r["kind"] == "oracle", bool(r.get("greyed")),
                                 r["sort"] is None,
                                 -(r["sort"] or 0) if higher else (r["sort"] or 0)))
    return {"columns": [{**_header(c, c in QUALITY), "detail": c not in compact}
                        for c in columns],
            "rows": body, "footnotes": footnotes(anchors),
            # families have revisions of their own: the column matters when lmladder's differ
            "show_code": len({lmladder_version(row.records[0]) for row in rows}) > 1,
            "greyed": sum(row.below_floor for row in rows)}


COUNT_KEYS = ("items", "texts", "prompts", "sentences")  # how task results count what they scored


def rank_spec(specs: tuple[MetricSpec, ...]) -> MetricSpec:
    """The metric that ranks a task: its chrF where it reports one (the greedy one first, in
    the task's order), else its first metric.  Corpus BLEU of short generations sits near 0 and
    a constant output beats real models on it; chrF still orders them."""
    return next((s for s in specs if s.name.endswith("chrf")), specs[0])


def _shown_specs(specs: tuple[MetricSpec, ...]) -> list[tuple[MetricSpec, bool]]:
    """(spec, detail) in display order: the ranking metric, then repetition beside it, then the
    other metrics as details."""
    first = rank_spec(specs)
    beside = [s for s in specs if s is not first and "repetition" in s.name]
    rest = [s for s in specs if s is not first and s not in beside]
    return [(first, False)] + [(s, False) for s in beside] + [(s, True) for s in rest]


def interval_text(low: float, high: float) -> str:
    return f"[{low:.3g}, {high:.3g}]"


def _task_cell(row: Row, name: str, spec: MetricSpec) -> dict:
    """A task score as ``{"text", "value"}``: mean ± std over seeds, the 95% interval the
    result records (``<metric>_ci95``) for one seed, "n/a" where the task cannot use the model,
    the task's status where it did not run, "" where not run at all."""
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
    else:
        ci = results[0].scores.get(f"{spec.name}_ci95")
        if isinstance(ci, (list, tuple)) and len(ci) == 2 and all(
                finite(v) is not None for v in ci):
            text += " " + interval_text(*ci)
    return {"text": text, "value": repr(sum(values) / len(values))}


def _count_cell(row: Row, name: str) -> dict:
    """How many items the task scored (its results' ``items``, ``texts``, ``prompts`` or
    ``sentences``), a range over seeds."""
    counts = set()
    for r in row.records:
        result = r.tasks.get(name)
        found = [v for key in COUNT_KEYS if result is not None
                 and (v := finite(result.scores.get(key))) is not None]
        if found:
            counts.add(int(found[0]))
    if not counts:
        return {"text": "—", "value": ""}
    low, high = min(counts), max(counts)
    return {"text": f"{low:,}" if low == high else f"{low:,}–{high:,}", "value": repr(low)}


def count_key(rows: list[Row], name: str) -> str:
    """The count a task's results record ("items", "prompts", ...), or "items"."""
    return next((key for row in rows for r in row.records if (t := r.tasks.get(name))
                 for key in COUNT_KEYS if key in t.scores), "items")


# ---- the constant-output baseline of generation tasks ------------------------------------------

CONSTANT = "constant_"  # a task result's scores of its constant output: constant_<metric>
SHORT_OUTPUT = 40  # characters of the constant output its row's label shows


def _constant_score(result, metric: str) -> tuple[str, float] | None:
    """(key, value) of the constant output's score beside ``metric`` in a task result:
    ``constant_<metric>``, else ``constant_<last word of metric>`` (one constant output stands
    beside greedy and sampled decoding: ``greedy_chrf`` reads ``constant_chrf``)."""
    for key in (CONSTANT + metric, CONSTANT + metric.rsplit("_", 1)[-1]):
        if (value := result.score(key)) is not None:
            return key, value
    return None


def constant_mean(row: Row, name: str, metric: str) -> float | None:
    """The constant output's score beside ``metric`` on ``row``'s own items (each seed's
    result records it), averaged over seeds; None where the results have none."""
    values = [found[1] for r in row.records if (t := r.tasks.get(name)) is not None
              and (found := _constant_score(t, metric)) is not None]
    return sum(values) / len(values) if values else None


def below_constant(row: Row, name: str, spec: MetricSpec) -> bool:
    """Whether ``row`` scores worse on ``spec`` than the constant output on the same items."""
    mine, constant = task_mean(row, name, spec.name), constant_mean(row, name, spec.name)
    if mine is None or constant is None:
        return False
    return mine < constant if spec.higher_is_better else mine > constant


def shorten(text: str, limit: int = SHORT_OUTPUT) -> str:
    """``text`` cut after its last whole word within ``limit`` characters, with " …"."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 2]
    return (cut.rsplit(" ", 1)[0] if " " in cut else cut).rstrip() + " …"


def constant_output(rows: list[Row], name: str) -> str | None:
    """The constant output task ``name`` records in ``rows`` (the first found), or None."""
    return next((t.scores["constant_output"] for row in rows for r in row.records
                 if (t := r.tasks.get(name)) is not None
                 and isinstance(t.scores.get("constant_output"), str)), None)


def constant_row(rows: list[Row], name: str, shown: list[tuple[MetricSpec, bool]]
                 ) -> dict | None:
    """Template data of the constant-output baseline row of task ``name``: the training text's
    most frequent line given for every item, scored by the task beside every row (its
    ``constant_*`` scores), one value per distinct set of items (seed, count) averaged, with
    the 95% interval where there is one set; greyed, never ranked.  None where no result in
    ``rows`` records a constant output."""
    results = {}
    for row in rows:
        for r in row.records:
            t = r.tasks.get(name)
            if t is not None and isinstance(t.scores.get("constant_output"), str):
                key = (t.scores.get("seed"), t.scores["constant_output"],
                       *(t.scores.get(k) for k in COUNT_KEYS))
                results.setdefault(repr(key), t)
    if not results:
        return None
    cells, means = [], []
    for spec, _ in shown:
        found = [f for t in results.values() if (f := _constant_score(t, spec.name))]
        mean = sum(v for _, v in found) / len(found) if found else None
        means.append(mean)
        if mean is None:
            cells.append({"text": "—", "value": ""})
            continue
        text = f"{mean:.4g}"
        if len(found) > 1:
            text += f" ± {statistics.stdev(v for _, v in found):.2g}"
        else:
            ci = next(iter(results.values())).scores.get(f"{found[0][0]}_ci95")
            if isinstance(ci, (list, tuple)) and len(ci) == 2 and all(
                    finite(v) is not None for v in ci):
                text += " " + interval_text(*ci)
        cells.append({"text": text, "value": repr(mean)})
    output = constant_output(rows, name)
    first = next(iter(results.values()))
    count = next((int(v) for k in COUNT_KEYS if (v := finite(first.scores.get(k))) is not None),
                 None)
    return {"kind": "constant", "label": f"constant output: “{shorten(output)}”",
            "family": "", "settings": f"the same text for every item: {output}",
            "seeds": "—", "cells": cells, "cite": None, "greyed": True,
            "baseline": True, "note": "scored on the same items · never ranked",
            "constant": True, "trained": trained_cell(None),
            "count": {"text": "—" if count is None else f"{count:,}",
                      "value": "" if count is None else repr(count)},
            "sort": means[0]}


def task_table(rows: list[Row], name: str, specs: tuple[MetricSpec, ...],
               anchors: list[Anchor]) -> dict | None:
    """Template data of one task's table: rows (own and reference) by the task's ranking metric
    (:func:`rank_spec`) with its 95% interval where recorded and repetition beside it, the
    number of items scored, its other metrics as details, chance level and the literature rows
    of ``anchors`` (those of this task; non-comparable ones as footnotes); None where no row
    ran the task.  Rows worse than their dataset's unigram row are greyed, never ranked.  A
    generation task's constant output (:func:`constant_row`) is a greyed baseline row in its
    place by value, never ranked; a row scoring below it on the ranking metric (on the same
    items) is marked."""
    shown = _shown_specs(specs)
    first = shown[0][0]
    body, below = [], 0
    for row in rows:
        cells = [_task_cell(row, name, spec) for spec, _ in shown]
        if any(c["text"] != "" for c in cells):
            if below_constant(row, name, first):
                cells[0]["flag"] = "below the constant output"
                below += 1
            body.append({**_row_data(row, cells, task_mean(row, name, first.name)),
                         "trained": trained_cell(row), "count": _count_cell(row, name)})
    if not body:
        return None
    if (constant := constant_row(rows, name, shown)) is not None:
        body.append(constant)
    best = [b["sort"] for b in body if b["sort"] is not None and not b["greyed"]]
    best = (max if first.higher_is_better else min)(best) if best else None
    for b in body:
        b["cells"][0]["best"] = best is not None and b["sort"] == best and not b["greyed"]
    for a in anchors:
        if not a.comparable:
            continue
        metric = a.metric.split(".", 2)[2]
        cells = [{"text": f"{a.value:.4g}" if s.name == metric else "—",
                  "value": repr(a.value) if s.name == metric else ""} for s, _ in shown]
        body.append({"kind": "literature", "label": a.model, "family": a.family,
                     "settings": a.note or a.source, "seeds": "", "greyed": False,
                     "trained": trained_cell(None), "count": {"text": "", "value": ""},
                     "cells": cells, "cite": _citation(a),
                     "sort": a.value if metric == first.name else None})
    for b in body:
        b["fam"] = slug(b["family"]) if b["family"] else ""
    # the constant output stands among the ranked rows, where its value puts it
    body.sort(key=lambda b: (b["greyed"] and not b.get("constant"), b["sort"] is None,
                             -(b["sort"] or 0) if first.higher_is_better else (b["sort"] or 0)))
    heads = [{"name": s.name, "unit": "",
              "better": "↑ higher is better" if s.higher_is_better else "↓ lower is better",
              "detail": detail} for s, detail in shown]
    chance = [{"text": "" if s.chance is None else f"{s.chance:.3g}",
               "value": "" if s.chance is None else repr(s.chance)} for s, _ in shown]
    return {"heads": heads, "rows": body, "chance": chance, "count": count_key(rows, name),
            "rank": first.name, "footnotes": footnotes(anchors),
            "intervals": any("[" in c["text"] for b in body for c in b["cells"]),
            "constant": constant is not None,
            "below_constant": below}
