"""The sections of the report page, in reading order (:data:`SECTIONS`).

Each is a function ``Context -> Section | None`` that returns plain data (strings, numbers,
lists, dicts) and names the Jinja template that turns it into markup, so a new kind of content is
one function appended to :data:`SECTIONS` and one template in ``templates/``.  The only markup
not escaped by the templates is what lmladder itself produced (the plots' SVG, the model cards
and the protocol prose of their own modules), wrapped in ``Markup``.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from markupsafe import Markup

from lmladder.numbers import finite, first_line
from lmladder.record import STATUSES, MetricSpec, Record
from lmladder.reports import plots
from lmladder.reports.anchors import cite, distance, match_anchor
from lmladder.reports.cards import model_cards
from lmladder.reports.efficiency import (
    dataset_variants,
    efficiency_plots,
    efficiency_table,
    variant_lines,
)
from lmladder.reports.figures import (
    MAX_DRAWN,
    anchor_lines,
    crossings,
    dataset_plots,
    drawable,
    few,
    plot,
    slug,
)
from lmladder.reports.headline import budget_lines, floor_lines, headline, run_conditions
from lmladder.reports.leaderboard import (
    TASK_BASELINES,
    TaskBaseline,
    baseline_mean,
    baseline_output,
    below_baseline,
    leaderboard,
    rank_spec,
    shorten,
    task_table,
    tied_best,
)
from lmladder.reports.protocol import protocol_prose
from lmladder.reports.reference import reference_caption
from lmladder.reports.rows import (
    PATH_COLUMNS,
    SPREAD_NOTE,
    Context,
    Row,
    distinct,
    fmt,
    higher_is_better,
    quality,
    ranked,
    task_mean,
    task_names,
    task_specs,
)
from lmladder.reports.sweeps import find_sweeps
from lmladder.reports.timing import time_sections
from lmladder.reports.values import as_text, value_at
from lmladder.results import code_revision


@dataclass(frozen=True)
class Section:
    """A titled part of the page: ``template`` (in ``templates/``) renders ``data``."""

    title: str
    template: str
    data: dict = field(default_factory=dict)

    @property
    def anchor(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.title.lower()).strip("-")


# ---- summary ------------------------------------------------------------------------------------


def _value_text(value: float, metric: str) -> str:
    column = PATH_COLUMNS.get(metric)
    return fmt(column, value) if column else f"{value:.4g}"


def _anchor_line(row: Row, anchor, metric: str) -> str:
    value = row.mean_at(anchor.path())
    text = (f"{row.label} {_value_text(value, metric)} — literature {anchor.value:g} "
            f"({anchor.model}, {cite(anchor)}): {distance(value, anchor)}")
    t = row.training
    if t.flagged:
        text += f" — trained {t.amount or 'an unknown amount'}, not converged"
    return text + (" [reference run]" if row.kind == "reference" else "")


def _best_lines(rows: list[Row], column: str) -> list[str]:
    """The best own row and the best reference row by ``column``, a flagged one with the best
    converged row beside it."""
    lines = []
    for kind, what in (("own", "best of this run"), ("reference", "best reference row")):
        order = ranked([row for row in rows if row.kind == kind], column)
        if not order:
            continue
        top = order[0]
        text = f"{what}: {top.label} {column} {top.text(column)}"
        if top.training.flagged:
            text += f" ({top.training.flag})"
            steady = next((row for row in order if not row.training.flagged), None)
            if steady is not None:
                text += (f"; best converged row: {steady.label} "
                         f"{column} {steady.text(column)}")
        lines.append(text)
    return lines


def _literature_lines(ctx: Context, ds: str, rows: list[Row], column: str) -> list[str]:
    """The best literature figure of each metric against this run's best; each row against the
    anchor that stands for its model."""
    anchors = ctx.anchors_of(ds)
    own = [row for row in rows if row.kind == "own" and not row.below_floor]
    lines = []
    for a_metric in sorted({a.metric for a in anchors if a.comparable
                            and a.metric.startswith("metrics.")}):
        higher = higher_is_better(a_metric, rows)
        path = tuple(a_metric.split("."))
        scored = sorted(((v, row) for row in own if (v := row.mean_at(path)) is not None),
                        key=lambda vr: -vr[0] if higher else vr[0])
        if not scored:
            continue
        pick = max if higher else min
        top = pick((a for a in anchors if a.comparable and a.metric == a_metric),
                   key=lambda a: a.value)
        value, row = scored[0]
        name = PATH_COLUMNS.get(a_metric, a_metric)
        lines.append(f"best literature figure ({name}): {top.model} {top.value:g} "
                     f"({cite(top)}); this run's best, {row.label} "
                     f"{_value_text(value, a_metric)}, is {distance(value, top)} of it")
    seen = set()
    own_labels = {row.label for row in own}
    for row in ranked(rows, column) + [r for r in rows if r.mean(column) is None]:
        if row.kind == "reference" and row.label in own_labels:
            continue  # the user's own row of that model speaks for it
        for a_metric in sorted({a.metric for a in anchors if a.comparable}):
            anchor = match_anchor(row.label, row.family, anchors, a_metric,
                                  higher_is_better=higher_is_better(a_metric, [row]))
            if anchor is not None and row.mean_at(anchor.path()) is not None \
                    and (row.identity, row.kind, a_metric) not in seen:
                seen.add((row.identity, row.kind, a_metric))
                lines.append(_anchor_line(row, anchor, a_metric))
    return lines


def _speed_lines(rows: list[Row]) -> list[str]:
    own = [row for row in rows if row.kind == "own"]
    lines = []
    for column, what in (("score tok/s", "scoring"), ("train tok/s", "training")):
        order = [row for row in ranked(own, column) if row.mean(column) > 0]
        if len(order) > 1 and order[0].mean(column) > order[-1].mean(column):
            fast, slow = order[0], order[-1]
            lines.append(f"{what} speed: {fast.label} ({fast.text(column)} tok/s) is "
                         f"{fast.mean(column) / slow.mean(column):,.0f}× faster than "
                         f"{slow.label} ({slow.text(column)} tok/s), same run")
    return lines


def _dataset_summary(ctx: Context, ds: str) -> list[str]:
    rows = ctx.measured(ds, full=True)
    column = quality(rows or ctx.measured(ds))
    return (_best_lines(rows, column) + _literature_lines(ctx, ds, rows, column)
            + _speed_lines(rows))


def _task_summary(ctx: Context, ds: str) -> list[str]:
    lines = []
    rows = ctx.measured(ds, full=True)
    for name in task_names(rows):
        specs = task_specs(rows, name)
        if not specs:
            continue
        spec = rank_spec(specs)
        scored = [(row, v) for row in rows if (v := task_mean(row, name, spec.name)) is not None
                  and not row.below_floor]
        if not scored:
            continue
        scored.sort(key=lambda rv: rv[1], reverse=spec.higher_is_better)
        row, value = scored[0]
        text = f"{name} {spec.name}: best {row.label} {value:.4g}"
        if row.kind == "reference":
            text += " [reference run]"
        if row.training.flagged:
            text += f" ({row.training.flag})"
        if len(tied := tied_best(rows, name, spec)) > 1 and row.label in tied:
            text += (" (rank 1 shared with " + ", ".join(t for t in tied if t != row.label)
                     + ": not significantly different)")
        if spec.chance is not None:
            text += f"; chance {spec.chance:.3g}"
        metric = f"tasks.{name}.{spec.name}"
        for a in ctx.anchors_of(ds):
            if a.metric == metric:
                text += (f"; literature {a.value:g} ({a.model}, {cite(a)}"
                         + (f": {distance(value, a)})" if a.comparable
                            else "; not comparable)"))
        lines.append(text)
        lines += [line for base in TASK_BASELINES
                  if (line := _baseline_line(rows, name, spec, base))]
    return lines


def _baseline_line(rows: list[Row], name: str, spec: MetricSpec, base: TaskBaseline
                   ) -> str | None:
    """Which rows of task ``name`` score below its baseline ``base`` on ``spec`` (each on its
    own items), or None where none does or the task has no such baseline."""
    below = [row for row in rows if below_baseline(row, name, spec, base)]
    if not below:
        return None
    scored = [row for row in rows if task_mean(row, name, spec.name) is not None]
    values = [v for row in below if (v := baseline_mean(row, name, spec.name, base)) is not None]
    output = shorten(baseline_output(rows, name, base) or "")
    return (f"{name} {spec.name}: {len(below)} of {len(scored)} rows score below "
            + base.summary.format(output, sum(values) / len(values)) + ": "
            + ", ".join(row.label for row in below))


def headline_table(ctx: Context) -> Section | None:
    """The page's first table: per dataset and family, the best converged row, its
    literature figure, measured / literature and its training (:func:`headline`)."""
    rows = headline(ctx)
    return Section("Headline", "headline.html.j2", {"rows": rows}) if rows else None


def summary(ctx: Context) -> Section | None:
    """The page's first lines: the budget where it cut rows short, the rows below the unigram
    floor, best rows, distances to the literature, speed ratios,
    compressed variants worth a mention, learning-curve crossovers and one line per cause of
    failure."""
    groups = []
    if lines := budget_lines(ctx):
        groups.append({"title": "budget", "lines": lines})
    if lines := floor_lines(ctx):
        groups.append({"title": "below the unigram baseline", "lines": lines})
    for ds in ctx.datasets:
        lines = _dataset_summary(ctx, ds) + _task_summary(ctx, ds)
        if lines:
            groups.append({"title": ds, "lines": lines})
    cross = [f"{c['dataset']}: {c['winner']} overtakes {c['loser']} between {c['between']} "
             "training tokens" for c in crossings(ctx)]
    if variants := variant_lines(ctx):
        groups.append({"title": "compressed variants", "lines": variants})
    if cross:
        groups.append({"title": "learning curves", "lines": cross})
    problem_lines = []
    for c in problem_causes(ctx.records):
        which = f" ({'; '.join(c['cells'])})" if len(c["cells"]) <= 2 else ""  # few: name them
        text = (f"{c['count']} cell{'s' if c['count'] != 1 else ''} {c['status']}{which}: "
                f"{c['type']}{': ' + c['message'] if c['message'] else ''}")
        problem_lines.append(text + (f" — {c['hint']}" if c["hint"] else ""))
    if problem_lines:
        groups.append({"title": "failed or skipped", "lines": problem_lines})
    if not groups:
        return None
    flagged = any(row.training.flagged for row in ctx.rows + ctx.ref_rows)
    return Section("Summary", "summary.html.j2", {"groups": groups, "flagged": flagged})


# ---- failed and skipped cells -------------------------------------------------------------------


def _cause(message: str, record: Record) -> str:
    """The cause of a failure in one line: the message's first line without the parts that
    name one cell (its label, model, seed), so cells failing alike share it."""
    line = first_line(message)
    for part in (record.cell.label, record.cell.model):
        if len(part) > 2:
            line = line.replace(part, "…")
    return re.sub(r"\bseed \d+\b", "seed …", line)


def _hint(message: str) -> str:
    """What to do about a missing-data message: the files it names and where they go."""
    files = re.findall(r"^\s+(\S+)\s+sha256", message, re.M)
    folders = re.search(r"^Folders searched: ([^,\n]+)", message, re.M)
    if not files:
        return ""
    where = f" under {folders.group(1).strip()}" if folders else ""
    return f"put {', '.join(files)}{where} (or choose the folder with --data-dir)"


def problem_causes(records: list[Record]) -> list[dict]:
    """Failed and skipped cells, one entry per cause (status, error type, first line of the
    message without cell-specific parts) with the cells it affected."""
    causes = defaultdict(lambda: defaultdict(set))
    details = {}
    for r in distinct(r for r in records if not r.ok):
        message = r.error.message if r.error is not None else ""
        kind = r.error.type if r.error is not None and r.error.type else "no error type recorded"
        cause = (r.status, kind, _cause(message, r))
        details.setdefault(cause, message)
        c = r.cell
        causes[cause][(c.label, c.dataset, c.device)].add(c.seed)
    entries = []
    for cause, cells in sorted(causes.items(), key=lambda kv: kv[0]):
        status, kind, line = cause
        listed = [f"{label} on {ds} ({device}): seed{'s' if len(seeds) > 1 else ''} "
                  + ", ".join(str(s) for s in sorted(seeds))
                  for (label, ds, device), seeds in sorted(cells.items())]
        full = details[cause].strip()
        entries.append({"status": status, "type": kind, "message": line,
                        "detail": full if full != line else "", "hint": _hint(full),
                        "count": sum(len(s) for s in cells.values()), "cells": listed})
    return entries


def problems(ctx: Context) -> Section | None:
    """Failed and skipped cells, one entry per cause with the cells it affected collapsed, and
    one line per file beside the records that could not be used (a malformed time-to-ppl.json)."""
    causes = problem_causes(ctx.records)
    if not causes and not ctx.file_problems:
        return None
    return Section("Failed and skipped cells" if causes else "Problems", "problems.html.j2",
                   {"causes": causes, "files": ctx.file_problems})


# ---- overview and results by dataset ------------------------------------------------------------


def _status_order(status: str) -> tuple[int, str]:
    return (STATUSES.index(status) if status in STATUSES else len(STATUSES), status)


def overview(ctx: Context) -> Section:
    records = ctx.records
    provs = sorted((r.provenance for r in records), key=lambda p: str(p.get("date") or ""))
    last = provs[-1] if provs else {}
    commits = sorted({str(p.get("git_commit") or "unknown")[:10]
                      + (" (dirty)" if p.get("git_dirty") is True else "") for p in provs})
    dates = sorted(str(p["date"]) for p in provs if p.get("date"))
    status = Counter(r.status for r in distinct(records))
    cores = last.get("cpu_count")
    devices = ", ".join(sorted({r.cell.device for r in records}))
    if isinstance(cores, int) and not isinstance(cores, bool):
        devices += f" ({cores} CPU cores)"
    versions = last.get("versions") if isinstance(last.get("versions"), dict) else {}
    platform = ", ".join(str(last[k]) if k == "platform" else f"Python {last[k]}"
                         for k in ("platform", "python") if last.get(k))
    items = [
        ("cells", ", ".join(f"{status[s]} {s}" for s in sorted(status, key=_status_order))),
        ("datasets", ", ".join(sorted({r.cell.dataset for r in records}))),
        ("devices", devices),
        *run_conditions(ctx),
        ("run between", f"{dates[0]} and {dates[-1]}" if dates else ""),
        ("lmladder commit", ", ".join(commits)),
        ("code revisions", "; ".join(sorted({code_revision(r) for r in records}))),
        ("platform", platform),
        ("versions", ", ".join(f"{k} {v}" for k, v in versions.items() if v)),
    ]
    if ctx.reference:
        items.append(("reference rows", reference_caption(ctx.reference)))
    return Section("Overview", "overview.html.j2", {"items": items})


def per_dataset(ctx: Context) -> Section | None:
    """One part per dataset: its leaderboard (own, reference and literature rows), older code
    apart, its figures and its model cards."""
    if not ctx.rows:
        return None
    parts = []
    for ds in ctx.datasets:
        mine = [row for row in ctx.rows if row.dataset == ds]
        current = [row for row in mine if row.current]
        older = [row for row in mine if not row.current]
        refs = [row for row in ctx.ref_rows if row.dataset == ds]
        recs = [r for row in current + older for r in row.records]
        oracle = next((r.oracle for r in recs if r.oracle is not None), None)
        column = quality(current + refs)
        note = _dataset_note(recs)
        if any(len(row.records) > 1 for row in mine):
            note += " " + SPREAD_NOTE
        shown = [row for row in current + refs if row.full]
        # a learning curve: the rows on shares of the data, with the whole-data row of each
        shares = [row for row in current + refs if not row.full]
        curves = {_curve_key(row) for row in shares}
        curve = shares + [row for row in shown if _curve_key(row) in curves]
        parts.append({
            "name": ds, "anchor": "ds-" + slug(ds), "note": note,
            "reference": reference_caption([r for row in refs for r in row.records])
            if refs else "",
            "table": leaderboard(shown, ctx.anchors_of(ds), quality=column, oracle=oracle),
            "curve": leaderboard(curve, quality=column, curve=True) if shares else None,
            "older": leaderboard(older, quality=column, mark_best=False) if older else None,
            "flagged": sum(row.training.flagged for row in shown),
            "plots": dataset_plots(ctx, ds),
            "cards": model_cards([(row.label, row.records) for row in current + refs])
            if current + refs else None,
        })
    return Section("Results by dataset", "results.html.j2",
                   {"datasets": parts, "older": any(not row.current for row in ctx.rows)})


def _curve_key(row: Row) -> tuple:
    """What a learning curve's points share: the kind of row, cell label, model and config."""
    cell = row.records[0].cell
    return row.kind, cell.label, cell.model, as_text(dict(cell.config))


def _dataset_note(records: list[Record]) -> str:
    desc = next((r.dataset for r in records if r.dataset is not None), {})
    facts = []
    if isinstance(desc.get("level"), str):
        facts.append(f"{desc['level']}-level")
    vocab = finite(desc.get("vocab_size"))
    if vocab is not None:
        facts.append(f"vocabulary {vocab:,.0f}")
    tokens, chars = (finite(value_at(desc, ("splits", "test", k))) for k in ("tokens", "chars"))
    if tokens is not None:
        facts.append(f"test {tokens:,.0f} tokens"
                     + (f" ({chars:,.0f} characters)" if chars is not None else ""))
    return ("; ".join(facts) + ". " if facts else "") + (
        "Perplexity is per model token; word ppl is per whitespace word plus one per line; "
        "bpc is bits per character of running text."
    )


# ---- tasks, efficiency, sweeps, protocol --------------------------------------------------------


def time_to_target(ctx: Context) -> Section | None:
    """Per dataset, when each trained row first reached the best count-based row's validation
    figure, and the time-to-ppl benchmark beside it (:mod:`lmladder.reports.timing`)."""
    parts = time_sections(ctx)
    return Section("Time to target", "timing.html.j2", {"parts": parts}) if parts else None


def task_scores(ctx: Context) -> Section | None:
    """One leaderboard per dataset and task: rows (own and reference) by the task's first
    metric, its other metrics as details, chance level and literature rows, and one bar chart
    of the first metric."""
    parts = []
    for ds in ctx.datasets:
        rows = ctx.measured(ds, full=True)  # a learning curve's shares are not task rows
        for name in task_names(rows):
            specs = task_specs(rows, name)
            if not specs:
                continue
            anchors = [a for a in ctx.anchors_of(ds) if a.metric.startswith(f"tasks.{name}.")]
            table = task_table(rows, name, specs, anchors)
            if table is None:
                continue
            first = rank_spec(specs)
            scored = [row for row in rows if drawable(task_mean(row, name, first.name))]
            points = [plots.Point(row.label, row.family, None, task_mean(row, name, first.name),
                                  flagged=row.training.flagged,
                                  reference=row.kind == "reference") for row in scored]
            shown = few([p for p, row in zip(points, scored, strict=True) if row.full],
                        higher=first.higher_is_better)
            figure = plot("bars", shown, title=f"{ds}: {name} {first.name}",
                          y_label=first.name, higher_is_better=first.higher_is_better,
                          chance=first.chance,
                          lines=anchor_lines(anchors, f"tasks.{name}.{first.name}"))
            parts.append({"dataset": ds, "task": name, **table, "plot": figure})
    if not parts:
        return None
    return Section("Task scores", "tasks.html.j2", {"tables": parts})


def efficiency(ctx: Context) -> Section | None:
    """Per dataset, the compressed variants of each model beside it (:func:`dataset_variants`):
    a table of perplexity, size on disk, scoring speed, peak memory and n-grams with their
    ratios to the uncompressed model, and the trade-off plots; None where no dataset has
    compressed variants or sizes on disk."""
    parts = []
    for ds in ctx.datasets:
        groups = dataset_variants(ctx, ds)
        if groups:
            parts.append({"dataset": ds, "table": efficiency_table(groups),
                          "plots": efficiency_plots(ds, groups)})
    return Section("Efficiency", "efficiency.html.j2", {"tables": parts}) if parts else None


def sweeps(ctx: Context) -> Section | None:
    """Curves for a registry model run with several values of one numeric hyperparameter."""
    current = [r for row in ctx.rows if row.current for r in row.records]
    found = find_sweeps(current)
    if not found:
        return None
    figures = []
    by_key = defaultdict(list)
    for (model, ds, key), pts in found.items():
        family = next((row.family for row in ctx.rows if row.dataset == ds
                       and row.records[0].cell.model == model), "other")
        by_key[key].append(plots.Series(f"{model} on {ds}", family, tuple(pts)))
    for key, series in sorted(by_key.items()):
        # the sweeps reaching the lowest perplexity; every one is listed in text below
        series = sorted(series, key=lambda s: min(y for _, y in s.points))[:MAX_DRAWN // 2]
        figures.append(plot("curves", series, title=f"test ppl against {key}",
                            x_label=key, y_label="test ppl (per token)"))
    lines = [f"{model} on {ds}: " + ", ".join(f"{key}={x:g} → {y:.2f}" for x, y in pts)
             for (model, ds, key), pts in found.items()]
    return Section("Scaling curves", "sweeps.html.j2",
                   {"plots": [f for f in figures if f is not None], "lines": lines})


def protocol(ctx: Context) -> Section:
    """The scoring protocol as prose per dataset, with a worked example (reports/protocol.py)."""
    return Section("Scoring protocol", "protocol.html.j2",
                   {"prose": Markup(protocol_prose(ctx.records))})


def unreadable_files(lines: list[str]) -> Section | None:
    """The record-named files that could not be read, one line each (from the scan)."""
    if not lines:
        return None
    return Section("Files that could not be read", "unreadable.html.j2", {"lines": list(lines)})


SECTIONS: list[Callable[[Context], Section | None]] = [
    headline_table,
    summary,
    overview,
    per_dataset,
    time_to_target,
    task_scores,
    efficiency,
    sweeps,
    protocol,
    problems,
]
