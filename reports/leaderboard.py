"""Leaderboards: the template data of one dataset's table (own, reference, literature and
oracle rows; compact columns first, the rest as details) and of one task's table.  Best values
are marked only in quality columns, among measured rows; a task table ranks its rows with paired
significance tests (:mod:`lmladder.significance`) and marks every row of rank 1."""

from __future__ import annotations

import re
import statistics
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

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
    task_names,
    task_specs,
)
from lmladder.reports.values import value_at
from lmladder.results import lmladder_version
from lmladder.significance import ALPHA, KINDS, RESAMPLES, tie_tests

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


def footnotes(anchors: list[Anchor], shown: list[Anchor] = ()) -> list[dict]:
    """The anchors not ``shown`` as rows (default: the non-comparable ones) as footnotes: shown
    with their note, never ranked."""
    shown = shown or [a for a in anchors if a.comparable]
    return [{"model": a.model, "metric": PATH_COLUMNS.get(a.metric, a.metric),
             "value": f"{a.value:g}", "cite": _citation(a)} for a in anchors if a not in shown]


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
    """The metric that ranks a task: the first it declares (a task lists its ranking metric
    first: continuation its greedy BLEU, since chrF's recall weighting ranks a uniform model's
    random long words above every real model)."""
    return specs[0]


def _shown_specs(specs: tuple[MetricSpec, ...]) -> list[tuple[MetricSpec, bool]]:
    """(spec, detail) in display order: the ranking metric, then repetition beside it, then the
    other metrics as details."""
    first = rank_spec(specs)
    beside = [s for s in specs if s is not first and "repetition" in s.name]
    rest = [s for s in specs if s is not first and s not in beside]
    return [(first, False)] + [(s, False) for s in beside] + [(s, True) for s in rest]


def interval_text(low: float, high: float) -> str:
    return f"[{low:.3g}, {high:.3g}]"


def _interval(result, key: str) -> str:
    """The 95% interval a task result records beside score ``key`` as " [low, high]", or ""."""
    ci = result.scores.get(f"{key}_ci95")
    if isinstance(ci, (list, tuple)) and len(ci) == 2 and all(finite(v) is not None for v in ci):
        return " " + interval_text(*ci)
    return ""


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
        text += _interval(results[0], spec.name)
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


# ---- the baselines of generation tasks: a trivial output scored on the same items --------------


@dataclass(frozen=True)
class TaskBaseline:
    """A baseline a generation task scores beside every row, on the same items: its scores are
    ``<prefix><metric>`` (with ``_ci95``), and the result field ``output`` says what it gives."""

    prefix: str  # "constant_": constant_chrf, constant_chrf_ci95, ...
    output: str  # the result field that holds its text or description
    kind: str  # its row's kind (the row's class on the page)
    label: str  # its row's label, given its output (shortened)
    settings: str  # its label's tooltip, given its output in full
    below: str  # the flag of a row scoring below it
    summary: str  # how the summary names it, given its output (shortened) and value


TASK_BASELINES = (
    TaskBaseline("constant_", "constant_output", "constant", "constant output: “{}”",
                 "the same text for every item: {}", "below the constant output",
                 "the constant output (“{}” for every item, {:.4g})"),
    TaskBaseline("copy_", "copy_output", "copy", "copy: {}",
                 "each item's source given back as its output: {}", "below the copy baseline",
                 "the copy baseline ({}, {:.4g})"),
)
SHORT_OUTPUT = 40  # characters of a baseline's output its row's label shows


def _baseline_score(result, metric: str, base: TaskBaseline) -> tuple[str, float] | None:
    """(key, value) of the baseline's score beside ``metric`` in a task result:
    ``<prefix><metric>``, else ``<prefix><last word of metric>`` (one constant output stands
    beside greedy and sampled decoding: ``greedy_chrf`` reads ``constant_chrf``)."""
    for key in (base.prefix + metric, base.prefix + metric.rsplit("_", 1)[-1]):
        if (value := result.score(key)) is not None:
            return key, value
    return None


def baseline_mean(row: Row, name: str, metric: str, base: TaskBaseline) -> float | None:
    """The baseline's score beside ``metric`` on ``row``'s own items (each seed's result
    records it), averaged over seeds; None where the results have none."""
    values = [found[1] for r in row.records if (t := r.tasks.get(name)) is not None
              and (found := _baseline_score(t, metric, base)) is not None]
    return sum(values) / len(values) if values else None


def below_baseline(row: Row, name: str, spec: MetricSpec, base: TaskBaseline) -> bool:
    """Whether ``row`` scores worse on ``spec`` than the baseline on the same items."""
    mine, theirs = task_mean(row, name, spec.name), baseline_mean(row, name, spec.name, base)
    if mine is None or theirs is None:
        return False
    return mine < theirs if spec.higher_is_better else mine > theirs


def shorten(text: str, limit: int = SHORT_OUTPUT) -> str:
    """``text`` cut after its last whole word within ``limit`` characters, with " …"."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 2]
    return (cut.rsplit(" ", 1)[0] if " " in cut else cut).rstrip() + " …"


def baseline_output(rows: list[Row], name: str, base: TaskBaseline) -> str | None:
    """The baseline's output (text or description) task ``name`` records in ``rows`` (the
    first found), or None."""
    return next((t.scores[base.output] for row in rows for r in row.records
                 if (t := r.tasks.get(name)) is not None
                 and isinstance(t.scores.get(base.output), str)), None)


# ---- significance: paired bootstrap ranks -------------------------------------------------------


@dataclass(frozen=True)
class Paired:
    """What a paired test of one row on one metric needs (:mod:`lmladder.significance`): the
    metric's entry of its result's ``paired`` block and the items' fingerprint, or ``why`` the
    row cannot be tested."""

    entry: Mapping | None = None
    items: str | None = None
    why: str = ""

    @property
    def n(self) -> int:
        return len(self.entry["values"]) if self.entry is not None else 0


def paired_of(results: list, key: str, many: str) -> Paired:
    """The :class:`Paired` of a row standing for task ``results`` (one per seed or set of
    items; ``many`` names them) on score ``key``: untested where there are several, or where
    the result records no per-item statistics of ``key``."""
    if len(results) != 1:
        return Paired(why=f"a mean over {len(results)} {many}")
    block = results[0].scores.get("paired")
    metrics = block.get("metrics") if isinstance(block, Mapping) else None
    entry = metrics.get(key) if isinstance(metrics, Mapping) else None
    if not (isinstance(entry, Mapping) and entry.get("kind") in KINDS
            and isinstance(entry.get("values"), (list, tuple)) and entry["values"]):
        return Paired(why="no per-item statistics in its record")
    if not isinstance(block.get("items"), str):
        return Paired(why="no fingerprint of its items in its record")
    return Paired(entry, block["items"])


def _row_paired(row: Row, name: str, metric: str) -> Paired:
    results = [t for r in row.records if (t := r.tasks.get(name)) is not None
               and t.score(metric) is not None]
    return paired_of(results, metric, "seeds")


def _p_text(p: float, n: int) -> str:
    return f"paired bootstrap over the same {n:,} items, p = {p:.2g}"


def significance_ranks(body: list[dict], higher_is_better: bool) -> None:
    """Rank the rows of ``body`` that carry ``"paired"`` (a :class:`Paired`), in their order
    (best first), with :func:`lmladder.significance.tie_tests`, and give each a ``"rank"``
    cell: "=k" where rank k is shared (no significant difference from the row ranked k, the
    first of its rank), a tooltip with the p-value of its test, and ``"untested"`` (with why)
    where no paired test was possible against the row ranked above it.  Other rows get a
    dash."""
    ranked = [b for b in body if b.get("paired") is not None and b["sort"] is not None]
    tests = tie_tests([(b["sort"], b["paired"].entry, b["paired"].items) for b in ranked],
                      higher_is_better=higher_is_better)
    shared = Counter(rank for rank, _ in tests)
    leader: dict | None = None  # the first row of the current rank
    for b, (rank, p) in zip(ranked, tests, strict=True):
        mine = b["paired"]
        cell = {"text": f"={rank}" if shared[rank] > 1 else str(rank), "value": repr(rank),
                "rank": rank, "untested": False, "title": ""}
        if leader is not None and leader["rank"]["rank"] == rank:  # p >= ALPHA: a tie
            cell["title"] = (f"not significantly different from the row ranked {rank} "
                             f"({_p_text(p, mine.n)})")
            b["rank"] = cell
            continue
        above = None if leader is None else leader["rank"]["rank"]
        if p is not None:
            cell["title"] = (f"significantly different from the row ranked {above} "
                             f"({_p_text(p, mine.n)})")
        why = mine.why
        if not why and leader is not None and p is None:
            lead = leader["paired"]
            why = (f"the row ranked {above} cannot be tested ({lead.why})" if lead.why
                   else f"scored on other items than the row ranked {above}"
                   if lead.items != mine.items
                   else f"its statistics cannot be paired with those of the row ranked {above}")
        if shared[rank] > 1:
            others = shared[rank] - 1
            cell["title"] = "; ".join(filter(None, (
                f"rank {rank} shared with {others} row{'s' if others > 1 else ''} marked "
                f"={rank}, not significantly different from this one", cell["title"])))
        if why:
            cell.update(untested=True,
                        title="; ".join(filter(None, (f"untested: {why}", cell["title"]))))
        b["rank"], leader = cell, b
    for b in body:
        b.setdefault("rank", {"text": "—", "value": "", "rank": None, "untested": False,
                              "title": ""})


def baseline_row(rows: list[Row], name: str, shown: list[tuple[MetricSpec, bool]],
                 base: TaskBaseline) -> dict | None:
    """Template data of the row of baseline ``base`` of task ``name``, scored by the task
    beside every row (its ``<prefix>*`` scores), one value per distinct set of items (seed,
    count, fingerprint) averaged, with the 95% interval where there is one set; greyed, ranked
    among the rows where its value puts it (testable where there is one set of items with
    per-item statistics).  None where no result in ``rows`` records this baseline."""
    results = {}
    for row in rows:
        for r in row.records:
            t = r.tasks.get(name)
            if t is not None and isinstance(t.scores.get(base.output), str):
                paired = t.scores.get("paired")
                key = (t.scores.get("seed"), t.scores[base.output],
                       *(t.scores.get(k) for k in COUNT_KEYS),
                       paired.get("items") if isinstance(paired, Mapping) else None)
                results.setdefault(repr(key), t)
    if not results:
        return None
    cells, keys, means = [], [], []
    for spec, _ in shown:
        found = [f for t in results.values() if (f := _baseline_score(t, spec.name, base))]
        keys.append(found[0][0] if found else None)
        means.append(sum(v for _, v in found) / len(found) if found else None)
        if not found:
            cells.append({"text": "—", "value": ""})
            continue
        mean = means[-1]
        text = f"{mean:.4g}"
        if len(found) > 1:
            text += f" ± {statistics.stdev(v for _, v in found):.2g}"
        else:
            text += _interval(next(iter(results.values())), found[0][0])
        cells.append({"text": text, "value": repr(mean)})
    output = baseline_output(rows, name, base)
    first = next(iter(results.values()))
    count = next((int(v) for k in COUNT_KEYS if (v := finite(first.scores.get(k))) is not None),
                 None)
    scored = [t for t in results.values() if keys[0] is not None and t.score(keys[0]) is not None]
    return {"kind": base.kind, "label": base.label.format(shorten(output)),
            "family": "", "settings": base.settings.format(output),
            "seeds": "—", "cells": cells, "cite": None, "greyed": True,
            "baseline": True, "task_baseline": True, "note": "scored on the same items",
            "trained": trained_cell(None),
            "count": {"text": "—" if count is None else f"{count:,}",
                      "value": "" if count is None else repr(count)},
            "sort": means[0],
            "paired": None if means[0] is None else paired_of(scored, keys[0], "sets of items")}


def _explained(rows: list[Row], name: str, body: list[dict], below: Counter) -> list[dict]:
    """The table's baselines, for its note: kind, output and how many rows score below."""
    return [{"kind": base.kind, "output": baseline_output(rows, name, base),
             "below": below[base.kind]}
            for base in TASK_BASELINES if any(b["kind"] == base.kind for b in body)]


def task_table(rows: list[Row], name: str, specs: tuple[MetricSpec, ...],
               anchors: list[Anchor]) -> dict | None:
    """Template data of one task's table: rows (own and reference) by the task's ranking metric
    (:func:`rank_spec`) with its 95% interval where recorded and repetition beside it, the
    number of items scored, its other metrics as details, chance level and the literature rows
    of ``anchors`` (those of this task; non-comparable ones as footnotes); None where no row
    ran the task.

    Rows are ranked with significance (:func:`significance_ranks`): rows with no significant
    difference share a rank ("=2"), rows that cannot be tested say so; every row of rank 1 is
    marked best.  Rows worse than their dataset's unigram row are greyed, never ranked.  A
    generation task's baselines (:data:`TASK_BASELINES`: its constant output, its source
    copied) are greyed rows in their place by value, ranked with the others; a row scoring
    below one on the ranking metric (on the same items) is marked, "not significantly" where it
    shares the baseline's rank."""
    shown = _shown_specs(specs)
    first = shown[0][0]
    body, below = [], Counter()
    for row in rows:
        cells = [_task_cell(row, name, spec) for spec, _ in shown]
        if any(c["text"] != "" for c in cells):
            under = [base for base in TASK_BASELINES if below_baseline(row, name, first, base)]
            below.update(base.kind for base in under)
            sort = task_mean(row, name, first.name)
            body.append({**_row_data(row, cells, sort), "key": row_key(row), "under": under,
                         "trained": trained_cell(row), "count": _count_cell(row, name),
                         "paired": None if row.below_floor or sort is None
                         else _row_paired(row, name, first.name)})
    if not body:
        return None
    body += [b for base in TASK_BASELINES if (b := baseline_row(rows, name, shown, base))]
    protocols = {t.scores.get("protocol") for row in rows for r in row.records
                 if (t := r.tasks.get(name)) is not None}
    # a figure stands beside the rows where comparable, one bound to a protocol (10-fold CV)
    # only where a row ran that protocol; the others are footnotes
    beside = [a for a in anchors if any(a.comparable_to(p) for p in protocols)]
    for a in beside:
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
    # the baselines stand among the ranked rows, where their values put them
    body.sort(key=lambda b: (b["greyed"] and not b.get("task_baseline"), b["sort"] is None,
                             -(b["sort"] or 0) if first.higher_is_better else (b["sort"] or 0)))
    significance_ranks(body, first.higher_is_better)
    ranks = {b["kind"]: b["rank"]["rank"] for b in body if b.get("task_baseline")}
    for b in body:
        b["cells"][0]["best"] = b["rank"]["rank"] == 1 and not b["greyed"]
        if b.get("under"):  # below a baseline by value; "not significantly" where ranked with it
            b["cells"][0]["flag"] = "; ".join(
                base.below + (", not significantly" if b["rank"]["rank"] is not None
                              and ranks.get(base.kind) == b["rank"]["rank"] else "")
                for base in b["under"])
    heads = [{"name": s.name, "unit": "",
              "better": "↑ higher is better" if s.higher_is_better else "↓ lower is better",
              "detail": detail} for s, detail in shown]
    chance = [{"text": "" if s.chance is None else f"{s.chance:.3g}",
               "value": "" if s.chance is None else repr(s.chance)} for s, _ in shown]
    ranked = [b["rank"] for b in body if b["rank"]["rank"] is not None]
    return {"heads": heads, "rows": body, "chance": chance, "count": count_key(rows, name),
            "rank": first.name,
            "footnotes": footnotes(anchors, beside),
            "intervals": any("[" in c["text"] for b in body for c in b["cells"]),
            "baselines": _explained(rows, name, body, below),
            "significance": {"ranked": len(ranked),
                             "tied": sum(r["text"].startswith("=") for r in ranked),
                             "untested": sum(r["untested"] for r in ranked),
                             "alpha": ALPHA, "resamples": RESAMPLES}}


def row_key(row: Row) -> tuple[str, str, str]:
    """What tells a row apart from every other in a report: identity, revision and kind."""
    return (row.identity, row.revision, row.kind)


def task_ranks(rows: list[Row]) -> dict[tuple[str, str, str], dict[str, dict]]:
    """The rank cell (:func:`significance_ranks`) of every row in each task table of ``rows``:
    ``{row_key(row): {task: {"text", "rank", "untested", "title", ...}}}``."""
    out: dict[tuple[str, str, str], dict[str, dict]] = {}
    for name in task_names(rows):
        if (specs := task_specs(rows, name)) and (table := task_table(rows, name, specs, [])):
            for b in table["rows"]:
                if "key" in b and b["rank"]["rank"] is not None:
                    out.setdefault(b["key"], {})[name] = b["rank"]
    return out


def tied_best(rows: list[Row], name: str, spec: MetricSpec) -> list[str]:
    """The labels of the rows of rank 1 in task ``name``'s table on ``spec`` (ties included,
    baselines among them), best first."""
    table = task_table(rows, name, tuple([spec]), [])
    return [] if table is None else [b["label"] for b in table["rows"]
                                     if b["rank"]["rank"] == 1]
