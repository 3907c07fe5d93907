"""The figures of one dataset (quality against parameters and training compute, learning
curves with their crossovers, HMM states, training curves, throughput), drawn by
:mod:`lmladder.reports.plots` from rows (:mod:`lmladder.reports.rows`).  Nothing is computed
here beyond means over seeds and which rows to draw."""

from __future__ import annotations

import dataclasses
import math
import re
from collections import defaultdict

from markupsafe import Markup

from lmladder.numbers import finite
from lmladder.reports import plots
from lmladder.reports.anchors import Anchor, cite
from lmladder.reports.rows import (
    COLUMNS,
    UNITS,
    Context,
    Row,
    level,
    quality,
    ranked,
    training,
)
from lmladder.reports.values import clip, number_at, value_at
from lmladder.results import identity

MAX_DRAWN = 24  # rows per figure: beyond this, labels become unreadable and figures heavy
MAX_CURVE_POINTS = 60  # points per training curve (evenly thinned, the last one kept)
DRAWABLE = 1e100  # larger magnitudes are corrupt records, not measurements: never drawn


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-") or "x"


def family_colours() -> dict[str, str]:
    """Family -> hex colour, from the plots so tables and figures agree."""
    return dict(plots.FAMILY_COLOURS)


def plot(kind: str, *args, **kwargs) -> Markup | None:
    """``plots.<kind>(...)`` as markup, or None where it draws nothing."""
    svg = getattr(plots, kind)(*args, **kwargs)
    return Markup(svg) if svg else None  # lmladder's own SVG; record text inside is escaped


def drawable(value: float | None) -> bool:
    return value is not None and abs(value) < DRAWABLE


def converged(row: Row) -> bool:
    """Whether every seed of ``row`` trained to the end (:attr:`Training.converged`): drawn
    filled, and eligible for a Pareto front; any other row is drawn hollow."""
    return all(training(r).converged for r in row.records)


def _point(row: Row, x: float | None, y: float):
    return plots.Point(row.label, row.family, x, y, flagged=not converged(row),
                       reference=row.kind == "reference")


def few(points: list, *, front: bool = False, higher: bool = False) -> list:
    """At most :data:`MAX_DRAWN` of ``points`` (``plots.Point``): those on the Pareto front of
    the converged ones (where ``front``), then the best by y."""
    if len(points) <= MAX_DRAWN:
        return points
    keep = list(plots.pareto_front([p for p in points if not p.flagged])) if front else []
    for p in sorted(points, key=lambda p: -p.y if higher else p.y):
        if len(keep) >= MAX_DRAWN:
            break
        if p not in keep:
            keep.append(p)
    return keep


def _thin(points: tuple) -> tuple:
    """``points`` thinned evenly to at most :data:`MAX_CURVE_POINTS`, the last one kept."""
    if len(points) <= MAX_CURVE_POINTS:
        return points
    step = math.ceil(len(points) / MAX_CURVE_POINTS)
    kept = points[::step]
    return kept if kept[-1] == points[-1] else (*kept, points[-1])


def anchor_lines(anchors: list[Anchor], metric: str) -> list:
    """The comparable literature values of ``metric`` as lines (a figure measured on another
    test or protocol is a footnote of the tables, never a line beside comparable ones)."""
    return [plots.Line(a.value, f"{clip(a.model, 28)} {a.value:g} ({cite(a)})")
            for a in anchors if a.metric == metric and a.comparable]


def _compute(row: Row) -> tuple[float | None, float | None]:
    """(training FLOPs, training tokens seen) of a row's first record, each None where
    unknown."""
    r = row.records[0]
    per_token = number_at(r, ("fit", "notes", "train_flops_per_token"))
    tokens = number_at(r, ("fit", "train_tokens"))
    flops = per_token * tokens if per_token and tokens else None
    return flops, tokens


def learning_curve_lines(rows: list[Row]) -> dict[str, list[tuple]]:
    """Dataset -> [(label, row kind, [(train tokens, fit s, test ppl)], flagged, family,
    hollow)] for experiments run on several shares of the training data (a share grouped with
    its whole).  ``train tokens`` is the share's training split; ``flagged``: the whole's row
    did not converge; ``hollow``: per point, its row did not converge."""
    curves = defaultdict(list)
    for row in rows:
        first = row.records[0]
        tokens = number_at(first, ("dataset", "splits", "train", "tokens"))
        ppl, fit_s = finite(row.mean("test ppl")), finite(row.mean("fit s"))
        if tokens is None or ppl is None:
            continue
        whole = first.replace(cell=dataclasses.replace(first.cell, fraction=1.0))
        curves[(row.dataset, row.kind, identity(whole))].append(
            (tokens, fit_s, ppl, row.label, not converged(row), row.family))
    out = defaultdict(list)
    for (ds, kind, _), pts in sorted(curves.items()):
        if len(pts) < 2:
            continue
        pts.sort(key=lambda p: p[0])
        label = re.sub(r" \[fraction=[^]]*\]$", "", pts[-1][3])
        out[ds].append((label, kind, [(t, s, p) for t, s, p, *_ in pts], pts[-1][4], pts[-1][5],
                        tuple(p[4] for p in pts)))
    return out


def _crossings(ds: str, lines: list) -> list[dict]:
    """Pairs of curves of one dataset whose order flips between two shared training sizes."""
    out = []
    for a_label, a_pts in lines:
        for b_label, b_pts in lines:
            a = {t: p for t, _, p in a_pts}
            b = {t: p for t, _, p in b_pts}
            shared = sorted(set(a) & set(b))
            for lo, hi in zip(shared, shared[1:], strict=False):
                if a[lo] > b[lo] and a[hi] < b[hi]:  # a was worse, then better
                    out.append({"dataset": ds, "winner": a_label, "loser": b_label,
                                "between": f"{lo:,.0f} and {hi:,.0f}", "x": hi, "y": a[hi]})
    return out


def crossings(ctx: Context) -> list[dict]:
    """Every learning-curve crossover, own curves and reference curves apart."""
    out = []
    for rows in ([row for row in ctx.rows if row.current], ctx.ref_rows):
        for ds, lines in learning_curve_lines(rows).items():
            out += _crossings(ds, [(label, pts) for label, _, pts, *_ in lines])
    return out


def dataset_plots(ctx: Context, ds: str) -> list[Markup]:
    """The figures of one dataset, in reading order; those with nothing to show are left out."""
    full = ctx.measured(ds, full=True)
    column = quality(full or ctx.measured(ds))
    metric = ".".join(COLUMNS[column][0])
    unit = f"{column} ({UNITS[column]}, log scale)"
    lines = anchor_lines(ctx.anchors_of(ds), metric)
    by_params = [_point(row, row.mean("parameters"), y) for row in full
                 if drawable(y := row.mean(column)) and drawable(row.mean("parameters"))]
    figures = [plot("pareto", few(by_params, front=True),
                    title=f"{ds}: {column} against parameters",
                    x_label="parameters (log scale)", y_label=unit, lines=lines)]
    # Compute in FLOPs where every row knows them, else in training tokens seen (never in
    # seconds: they measure the machine as much as the model).
    compute = {row.identity + row.kind: _compute(row) for row in full}
    use_flops = all(c[0] for c in compute.values())
    x_label = ("training compute (FLOPs, log scale)" if use_flops else
               "training tokens seen (log scale)")
    by_compute = [_point(row, x, y) for row in full
                  if drawable(y := row.mean(column))
                  and drawable(x := compute[row.identity + row.kind][0 if use_flops else 1])]
    figures.append(plot("pareto", few(by_compute, front=True),
                        title=f"{ds}: {column} against training", x_label=x_label,
                        y_label=unit, lines=lines))
    figures.append(_learning_curves(ctx, ds))
    figures.append(_hmm_states(full, ds, column, unit))
    figures.append(_training_curves(ctx, ds, full, column))
    figures.append(_throughput(full, ds, column))
    return [f for f in figures if f is not None]


def _learning_curves(ctx: Context, ds: str) -> Markup | None:
    series, marks = [], []
    for rows in ([row for row in ctx.rows if row.current], ctx.ref_rows):
        found = learning_curve_lines([row for row in rows if row.dataset == ds]).get(ds, [])
        # the curves ending lowest (crossovers are still found among all of them)
        drawn = sorted(found, key=lambda f: min((p for *_, p in f[2] if drawable(p)),
                                                 default=math.inf))
        drawn = drawn[:MAX_DRAWN // 2]
        for label, kind, pts, flagged, family, hollow in drawn:
            shown = [(t, p, h) for (t, _, p), h in zip(pts, hollow, strict=True)
                     if drawable(t) and drawable(p)]
            series.append(plots.Series(label, family, tuple((t, p) for t, p, _ in shown),
                                       flagged, kind == "reference",
                                       tuple(h for *_, h in shown)))
        marks += [plots.Mark(c["x"], c["y"], f"{clip(c['winner'], 18)} overtakes")
                  for c in _crossings(ds, [(label, pts) for label, _, pts, *_ in found])]
    return plot("curves", series, title=f"{ds}: learning curves",
                x_label="training tokens (the share's split, log scale)",
                y_label="test ppl (per token, log scale)", marks=marks,
                lines=anchor_lines(ctx.anchors_of(ds), "metrics.test.ppl"),
                log_x=True, log_y=True)


def iteration_note(states: float, row: Row) -> str:
    """A point's label on the HMM-states figure: "256 states · 9 it." (the fewest iterations
    of its seeds; no count where a seed's record gives none).  Its marker's fill says whether
    it converged."""
    counts = [training(r).iterations for r in row.records]
    done = f" · {min(counts):,} it." if None not in counts else ""
    return f"{states:g} states{done}"


def _hmm_states(full: list[Row], ds: str, column: str, unit: str) -> Markup | None:
    hmm = defaultdict(list)
    for row in full:
        states = finite(row.records[0].cell.config.get("states"))
        if row.family == "HMM" and states and drawable(y := row.mean(column)):
            hmm[(row.kind, row.records[0].cell.model)].append((states, y, row))
    for pts in hmm.values():
        pts.sort(key=lambda p: (p[0], p[1]))
    series = [plots.Series(f"{model}" + (" (reference)" if kind == "reference" else ""),
                           "HMM", tuple((s, y) for s, y, _ in pts),
                           not all(converged(r) for *_, r in pts), kind == "reference",
                           tuple(not converged(r) for *_, r in pts),
                           tuple(iteration_note(s, r) for s, _, r in pts))
              for (kind, model), pts in sorted(hmm.items()) if len({p[0] for p in pts}) > 1]
    return plot("curves", series, title=f"{ds}: HMM {column} against states",
                x_label="hidden states (log scale)", y_label=unit, log_x=True, log_y=True)


def _tokens_seen(row: Row) -> list[tuple[float, float]]:
    """(training tokens seen, validation loss) at each validation in the history of ``row``'s
    first record.  Tokens seen are the entry's ``tokens``; where an entry gives only its step
    count (EM's minibatch steps), they are that share of the fit's tokens (steps x
    ``fit.train_tokens`` / ``fit.steps``: every step reads one equal chunk)."""
    fit = row.records[0].fit or {}
    history = value_at(fit, ("history",))
    total, steps = finite(fit.get("train_tokens")), finite(fit.get("steps"))
    per_step = total / steps if total and steps else None
    pts = []
    for h in history if isinstance(history, list) else []:
        if not isinstance(h, dict) or not drawable(v := finite(h.get("valid_nll"))):
            continue
        tokens = finite(h.get("tokens"))
        step = finite(h.get("step", h.get("steps")))
        if tokens is None and step is not None and per_step:
            tokens = step * per_step
        if drawable(tokens) and tokens > 0:
            pts.append((tokens, v))
    return pts


def _training_curves(ctx: Context, ds: str, full: list[Row], column: str) -> Markup | None:
    nats = "nats/char" if level([r for row in full for r in row.records]) == "char" \
        else "nats/token"
    series = []
    for row in ranked(full, column)[:MAX_DRAWN // 2]:  # the best rows' curves
        pts = tuple(_tokens_seen(row))
        if len(pts) > 1:
            series.append(plots.Series(row.label, row.family, _thin(pts), not converged(row),
                                       row.kind == "reference"))
    return plot("curves", series, title=f"{ds}: training curves",
                x_label="training tokens seen (log scale)",
                y_label=f"validation loss ({nats})", log_x=True,
                lines=anchor_lines(ctx.anchors_of(ds), "metrics.valid.nll"))


def _throughput(full: list[Row], ds: str, column: str) -> Markup | None:
    speed, families = {}, {}
    for row in ranked(full, column)[:MAX_DRAWN]:
        if row.kind != "own":  # speeds compare only within one run, on one machine
            continue
        device = row.records[0].cell.device
        values = {f"{what} {device}": v for what in ("train tok/s", "score tok/s")
                  if drawable(v := row.mean(what)) and v > 0}
        if values:
            speed[row.label], families[row.label] = values, row.family
    if not speed:
        return None
    return plot("grouped_bars", speed, families,
                title=f"{ds}: throughput by model and device",
                x_label="tokens per second (log scale)")
