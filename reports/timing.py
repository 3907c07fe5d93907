"""Time to a target: when each trained row first reached its dataset's count-based validation
figure (read from the fit's own history), and the ``time-to-ppl`` benchmark beside it.

**Target.**  Per dataset, the validation loss of the best row trained on the whole data whose
verdict is "closed form" (:func:`~lmladder.reports.rows.training`: counted in one pass, e.g. KN5
on PTB, valid ppl ≈ 148).  A row is listed where its records hold a training history whose
entries give ``valid_nll`` (nats/token) and ``seconds`` (the fit's wall-clock since it began,
its own evaluations included).  Its time to the target is the ``seconds`` of the first entry at
or below the target's validation loss; its tokens are that entry's ``tokens`` (else its step
count times the fit's tokens per step) and its epochs those tokens over the training split.
Where a comparable literature figure of validation perplexity or loss stands for the row's
model (:func:`~lmladder.reports.anchors.match_anchor`), the time to that is given too.

**Benchmark.**  ``python -m lmladder.perf.time_to_ppl --out time-to-ppl.json`` times our recipe
and PyTorch's word-language-model example to one validation perplexity on PTB, in one session.
A results folder holding that file (:data:`TIME_TO_PPL`) shows it beside the table of its
dataset (``"dataset"`` in the file, else PTB, the only corpus the benchmark trains on).  The
file is read with :mod:`json` and checked key by key; a malformed one becomes one line naming
the file and the key (:class:`BenchmarkError`), never an exception out of the report.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from lmladder.numbers import finite
from lmladder.record import Record
from lmladder.reports.anchors import cite, match_anchor
from lmladder.reports.headline import threads_text
from lmladder.reports.rows import Context, Row, level
from lmladder.reports.values import number_at

TIME_TO_PPL = "time-to-ppl.json"  # the benchmark's output, looked for in the results folder
OURS = "lmladder"  # the benchmark's name for our program; ratios are ours / another's
VALID_METRICS = ("metrics.valid.ppl", "metrics.valid.nll")  # literature figures timed against
TIME_NOTE = ("Time is the fit's wall-clock from its start to the end of the first validation "
             "at or below the target, its own evaluations included, on the threads shown (one "
             "thread unless the column says otherwise); tokens and epochs are those trained by "
             "then.  The validation is the fit's own (some recipes evaluate a part of the valid "
             "split while training).")


# ---- time to the target, from each row's training history ----------------------------------


def _valid_nll(record: Record) -> float | None:
    """The record's validation loss in nats per token (from its perplexity where that is all
    it gives)."""
    nll = number_at(record, ("metrics", "valid", "nll"))
    if nll is not None:
        return nll
    ppl = number_at(record, ("metrics", "valid", "ppl"))
    return math.log(ppl) if ppl and ppl > 0 else None


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def target_row(rows: list[Row]) -> Row | None:
    """The best (lowest validation loss) whole-data row whose verdict is "closed form"."""
    closed = [(nll, row) for row in rows if row.full and row.training.verdict == "closed form"
              and (nll := _mean([v for r in row.records if (v := _valid_nll(r)) is not None]))
              is not None]
    return min(closed, key=lambda vr: vr[0])[1] if closed else None


def _history(record: Record) -> list[tuple[float, float, float | None]]:
    """(seconds, valid nll, tokens trained or None) of each history entry that gives both."""
    fit = dict(record.fit or {})
    history = fit.get("history") if isinstance(fit.get("history"), list) else []
    total, steps = finite(fit.get("train_tokens")), finite(fit.get("steps"))
    out = []
    for h in history:
        if not isinstance(h, dict):
            continue
        seconds, nll = finite(h.get("seconds")), finite(h.get("valid_nll"))
        if seconds is None or nll is None:
            continue
        tokens = finite(h.get("tokens"))
        step = finite(h.get("step", h.get("steps")))
        if tokens is None and step is not None and total and steps:
            tokens = step * total / steps  # every step reads an equal share of the tokens
        out.append((seconds, nll, tokens))
    return out


@dataclass(frozen=True)
class Reach:
    """When one record's fit first reached a validation loss: ``seconds`` since the fit began
    (None: never), with its ``tokens`` and ``epochs`` by then and the ``before`` seconds of the
    evaluation before (when it had not yet); ``best`` is its lowest validation loss."""

    seconds: float | None
    tokens: float | None
    epochs: float | None
    before: float | None
    best: float


def reach(record: Record, nll: float) -> Reach | None:
    """When ``record``'s history first shows a validation loss at or below ``nll`` (nats per
    token); None where its history has no timed validation."""
    points = _history(record)
    if not points:
        return None
    best = min(v for _, v, _ in points)
    for i, (seconds, value, tokens) in enumerate(points):
        if value <= nll:
            split = number_at(record, ("dataset", "splits", "train", "tokens"))
            epochs = tokens / split if tokens is not None and split else None
            return Reach(seconds, tokens, epochs, points[i - 1][0] if i else None, best)
    return Reach(None, None, None, None, best)


def _value_text(nll: float, char: bool) -> str:
    """A validation loss as the dataset's tables show it: perplexity, or nats/char."""
    return f"{nll:.3f} nats/char" if char else f"valid ppl {math.exp(nll):,.1f}"


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:,.1f} min"


def _when(reaches: list[Reach], char: bool) -> dict:
    """One row's cells from its seeds' :class:`Reach`: means where every seed reached it."""
    done = [r for r in reaches if r.seconds is not None]
    best = min(r.best for r in reaches)
    if len(done) < len(reaches):
        some = f" ({len(reaches) - len(done)} of {len(reaches)} seeds)" if len(reaches) > 1 else ""
        return {"reached": False, "minutes": f"not reached{some}", "value": None, "low": best,
                "tokens": "—", "epochs": "—", "before": "",
                "best": f"best {_value_text(best, char)}"}
    seconds = _mean([r.seconds for r in done])
    tokens = [r.tokens for r in done if r.tokens is not None]
    epochs = [r.epochs for r in done if r.epochs is not None]
    before = [r.before for r in done if r.before is not None]
    seeds = f" (mean of {len(done)} seeds)" if len(done) > 1 else ""
    return {"reached": True, "minutes": _minutes(seconds) + seeds, "value": seconds, "low": best,
            "tokens": f"{_mean(tokens):,.0f}" if len(tokens) == len(done) else "—",
            "epochs": f"{_mean(epochs):.2g}" if len(epochs) == len(done) else "—",
            "before": f"not yet at {_minutes(_mean(before))}" if len(before) == len(done)
            else "", "best": f"best {_value_text(best, char)}"}


def _literature_nll(row: Row, ctx: Context, ds: str):
    """(nats per token, anchor) of the comparable validation figure standing for ``row``."""
    for metric in VALID_METRICS:
        anchor = match_anchor(row.label, row.family, ctx.anchors_of(ds), metric,
                              higher_is_better=False)
        if anchor is not None and anchor.value > (1 if metric.endswith("ppl") else 0):
            return (math.log(anchor.value) if metric.endswith("ppl") else anchor.value), anchor
    return None, None


def time_to_target(ctx: Context, ds: str) -> dict | None:
    """The "Time to target" table of dataset ``ds``: its target (:func:`target_row`) and one
    entry per whole-data row with a timed validation history, fastest first, then the rows
    that did not reach it by their best loss; None where there is no target or no such row."""
    rows = ctx.measured(ds, full=True)
    top = target_row(rows)
    if top is None:
        return None
    nll = _mean([v for r in top.records if (v := _valid_nll(r)) is not None])
    char = level([r for row in rows for r in row.records]) == "char"
    entries = []
    for row in rows:
        reaches = [found for r in row.records if (found := reach(r, nll)) is not None]
        if row is top or not reaches:
            continue
        entry = {"label": row.label, "kind": row.kind, "family": row.family,
                 "threads": threads_text(row.records[0].cell.threads),
                 "trained": f"{row.training.planned} · {row.training.verdict}",
                 **_when(reaches, char), "lit": "", "lit_title": ""}
        lit, anchor = _literature_nll(row, ctx, ds)
        if anchor is not None:
            at = _when([found for r in row.records if (found := reach(r, lit)) is not None],
                       char)
            entry["lit"] = (f"{at['minutes']} ({_value_text(lit, char)})" if at["reached"]
                            else f"{at['minutes']} ({_value_text(lit, char)}; {at['best']})")
            entry["lit_title"] = f"{anchor.model}, {cite(anchor)}"
        entries.append(entry)
    if not entries:
        return None
    entries.sort(key=lambda e: (not e["reached"], e["value"] or e["low"], e["label"]))
    fit_s = top.mean("fit s")
    return {"dataset": ds, "rows": entries, "lit": any(e["lit"] for e in entries),
            "target": _value_text(nll, char), "target_row": top.label,
            "target_kind": top.kind,
            "target_how": top.training.reason + (f", fit in {fit_s:,.1f} s" if fit_s else ""),
            "note": TIME_NOTE}


# ---- the time-to-ppl benchmark's JSON --------------------------------------------------------


class BenchmarkError(ValueError):
    """The benchmark's file is not what ``lmladder.perf.time_to_ppl`` writes; the message is
    one line naming the file and the key."""


@dataclass(frozen=True)
class Run:
    """One program's run of the benchmark (as ``time_to_ppl.Run`` writes it)."""

    program: str
    recipe: str
    points: tuple[dict, ...]
    reached: float | None
    not_before: float | None
    test_ppl: float | None
    exit: str


@dataclass(frozen=True)
class Benchmark:
    """A ``time-to-ppl.json``: the target valid perplexity, threads per program, whether the
    programs ran together, their runs, an optional note, the dataset and the file's name."""

    target: float
    threads: int
    together: bool
    runs: tuple[Run, ...]
    note: str = ""
    dataset: str = "ptb"
    source: str = TIME_TO_PPL


def _take(data: dict, key: str, kind, where: str, *, optional: bool = False):
    """``data[key]`` checked to be of ``kind`` ("number": finite int or float; None allowed
    where ``optional``)."""
    if key not in data:
        if optional:
            return None
        raise BenchmarkError(f"{where}: key {key!r} is missing")
    value = data[key]
    if value is None and optional:
        return None
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, int | float) or \
                finite(value) is None:
            raise BenchmarkError(f"{where}: key {key!r} is {value!r}, not a finite number")
        return float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise BenchmarkError(f"{where}: key {key!r} is {type(value).__name__}, "
                             f"not {kind.__name__}")
    return value


def parse_benchmark(data, source: str = TIME_TO_PPL) -> Benchmark:
    """The benchmark of JSON value ``data``; :class:`BenchmarkError` naming ``source`` and the
    first key that is missing or of the wrong type."""
    if not isinstance(data, dict):
        raise BenchmarkError(f"{source}: not a JSON object")
    target = _take(data, "target", "number", source)
    if target <= 1:
        raise BenchmarkError(f"{source}: key 'target' is {target:g}, not a perplexity above 1")
    threads = _take(data, "threads", int, source)
    runs = []
    for i, run in enumerate(_take(data, "runs", list, source)):
        where = f"{source}: runs[{i}]"
        if not isinstance(run, dict):
            raise BenchmarkError(f"{where} is not a JSON object")
        points = _take(run, "points", list, where)
        for j, point in enumerate(points):
            if not isinstance(point, dict):
                raise BenchmarkError(f"{where}.points[{j}] is not a JSON object")
            for key in ("valid_ppl", "seconds"):
                _take(point, key, "number", f"{where}.points[{j}]")
        runs.append(Run(_take(run, "program", str, where), _take(run, "recipe", str, where),
                        tuple(points), _take(run, "reached", "number", where, optional=True),
                        _take(run, "not_before", "number", where, optional=True),
                        _take(run, "test_ppl", "number", where, optional=True),
                        _take(run, "exit", str, where, optional=True) or ""))
    return Benchmark(target, threads, _take(data, "together", bool, source), tuple(runs),
                     _take(data, "note", str, source, optional=True) or "",
                     _take(data, "dataset", str, source, optional=True) or "ptb", source)


def read_benchmark(folder: str | Path) -> tuple[Benchmark | None, str]:
    """The :data:`TIME_TO_PPL` file of results ``folder``: (the benchmark, "") where it is there
    and sound, (None, a one-line problem naming the file and the key) where it is not sound,
    (None, "") where there is none."""
    path = Path(folder) / TIME_TO_PPL
    if not path.is_file():
        return None, ""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        return None, f"{TIME_TO_PPL}: cannot be read ({err})"
    except json.JSONDecodeError as err:
        return None, f"{TIME_TO_PPL}: not JSON ({err.msg} at line {err.lineno})"
    try:
        return parse_benchmark(data), ""
    except BenchmarkError as err:
        return None, str(err)


def _ratio_text(ours: Run, other: Run) -> str:
    if ours.reached is None or other.reached is None:
        return "—"
    text = f"{ours.reached / other.reached:.2f}×"
    if other.not_before:
        text += f" (at most {ours.reached / other.not_before:.2f}× against its earliest)"
    return text


def benchmark_table(bench: Benchmark) -> dict:
    """The benchmark as a table: per program its recipe, when it reached the target (and the
    evaluation before, when it had not yet), its final valid and test perplexity, and our time
    over its own (against the earliest it could have reached it, too)."""
    ours = next((r for r in bench.runs if r.program == OURS), bench.runs[0] if bench.runs else None)
    rows = []
    for run in bench.runs:
        valids = [p["valid_ppl"] for p in run.points]
        if run.reached is not None:
            when = _minutes(run.reached)
        else:
            when = "not reached" + (f" (best valid {min(valids):,.1f})" if valids else "")
        rows.append({
            "program": run.program, "recipe": run.recipe, "reached": when,
            "before": f"not yet at {_minutes(run.not_before)}" if run.not_before else "",
            "valid": f"{valids[-1]:,.1f}" if valids else "—",
            "test": f"{run.test_ppl:,.1f}" if run.test_ppl is not None else "—",
            "ratio": "" if run is ours or ours is None else _ratio_text(ours, run),
            "exit": run.exit})
    how = "together" if bench.together else "one after the other"
    caption = (f"Each program timed to its first validation perplexity at or below "
               f"{bench.target:g} on {bench.dataset}, {threads_text(bench.threads)} each, run "
               f"{how} in one session (python -m lmladder.perf.time_to_ppl; {bench.source}).")
    return {"rows": rows, "caption": caption, "note": bench.note,
            "ours": ours.program if ours else ""}


def time_sections(ctx: Context) -> list[dict]:
    """Per dataset, its time-to-target table and the benchmark of that dataset, where any."""
    bench = ctx.time_to_ppl if isinstance(ctx.time_to_ppl, Benchmark) else None
    parts = []
    for ds in ctx.datasets:
        table = time_to_target(ctx, ds)
        mine = benchmark_table(bench) if bench is not None and bench.dataset == ds else None
        if table is not None or mine is not None:
            parts.append({"dataset": ds, "table": table, "benchmark": mine})
    return parts


__all__ = ["TIME_TO_PPL", "Benchmark", "BenchmarkError", "Reach", "Run", "benchmark_table",
           "parse_benchmark", "reach", "read_benchmark", "target_row", "time_sections",
           "time_to_target"]
