"""The files written beside the page, for papers, READMEs and notebooks (:func:`write_exports`):

``results.md``
    One leaderboard per dataset -- Model | Params | Trained | Valid | Test | Lit. | × Lit. --
    with the learning-curve rows (a share of the training data) in a table of their own, flagged
    rows marked ⚠ with why under the table, and literature figures that are not comparable (or
    have no row here) as notes, never in a column (:func:`dataset_tables`).
``results.tex``
    The same tables as booktabs LaTeX, one ``table`` each, in a document that compiles alone
    (:mod:`lmladder.reports.latex`).
``results.csv``
    Typed: one row per record (one seed of one experiment), own and reference, with the columns
    of :data:`CSV_COLUMNS` and the task scores, with each task's significance rank (tied rows
    share one) -- numbers as plain numbers in the unit the column's name says, text that a
    spreadsheet would run as a formula neutralised (:func:`csv_text`).
``results.json``
    The records shown (written by :mod:`lmladder.reports.render`).

Rounding in the tables: perplexity 1 decimal, bits per character and nats 3, parameters in
millions (``4.65M``); the CSV keeps every digit.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lmladder.files import atomic_write
from lmladder.numbers import finite
from lmladder.record import Record
from lmladder.reports.anchors import Anchor, cite, match_anchor
from lmladder.reports.latex import latex_text
from lmladder.reports.leaderboard import row_key, task_ranks
from lmladder.reports.reference import count_text, reference_caption
from lmladder.reports.rows import (
    COLUMNS,
    PATH_COLUMNS,
    Context,
    Row,
    Training,
    quality,
    task_mean,
    task_names,
    task_specs,
    training,
)
from lmladder.reports.values import number_at, value_at

EXPORT_FILES = ("results.csv", "results.md", "results.tex")  # what write_exports writes
PAGE_EXPORTS = (*EXPORT_FILES, "results.json")  # the page links these (render.py)
EXPORT_METRICS = ("test ppl", "test bpc", "test word ppl", "valid ppl", "parameters",
                  "trained tokens", "train tok/s", "score tok/s")


# ---- how much a row trained, and why it is flagged ---------------------------------------------


def _epochs_text(value: float) -> str:
    return f"{value:,.1f}" if value >= 1 else f"{value:.2g}"


def trained_text(record: Record) -> str:
    """Planned / actual training of ``record`` in a few words: "7 / 5,000 steps, cut at 180 s",
    "0.55 / 13 epochs, cut at 180 s", "1 epoch" (counted n-grams).

    The plan is the budget's steps or tokens (as applied to the cell: scaled for a learning-curve
    share), else the config's ``max_epochs``; without one, the amount trained alone.  "cut at"
    names a seconds budget the fit used up (90% or more of it).
    """
    t = training(record)
    budget = {**dict(record.cell.budget or {}),
              **{k: v for k, v in dict(record.budget_used or {}).items() if v is not None}}
    fit = dict(record.fit or {})
    planned = [(finite(budget.get("steps")), t.steps, "steps"),
               (finite(budget.get("tokens")), finite(fit.get("train_tokens")), "tokens"),
               (finite(record.cell.config.get("max_epochs")), t.epochs, "epochs")]
    text = t.amount or "—"
    for plan, done, unit in planned:
        if plan is not None and done is not None:
            show = _epochs_text if unit == "epochs" else count_text
            text = f"{show(done)} / {show(plan)} {unit}"
            break
    seconds = finite(budget.get("seconds"))
    used = finite(fit.get("seconds")) or number_at(record, ("timing", "fit_s"))
    if seconds and used is not None and used >= 0.9 * seconds and t.verdict != "closed form":
        text += f", cut at {count_text(seconds)} s"
    return text


def flags(t: Training) -> list[str]:
    """Why a row's training cannot be taken as finished: "not converged: budget spent",
    "under 1 epoch", "convergence unknown"; [] for a converged, counted or zero-shot row."""
    out = []
    if t.verdict == "not converged":
        out.append(f"not converged: {t.reason}" if t.reason else "not converged")
    elif t.verdict == "unknown":
        out.append("convergence unknown")
    if t.epochs is not None and t.epochs < 1 and t.verdict not in ("closed form", "not trained"):
        out.append("under 1 epoch")
    return out


def _worst(row: Row) -> Record:
    """The record of ``row`` that stands for its training: a flagged seed if any."""
    return next((r for r in row.records if flags(training(r))), row.records[0])


# ---- numbers of a dataset's quality metric -----------------------------------------------------


@dataclass(frozen=True)
class Metric:
    """The quality metric of a dataset's tables: ``name`` ("ppl" or "bpc") at
    ``metrics.valid.<name>`` and ``metrics.test.<name>``, shown with ``digits`` decimals."""

    name: str
    digits: int

    def path(self, split: str) -> tuple[str, ...]:
        return ("metrics", split, self.name)

    def text(self, value: float | None) -> str:
        return "—" if value is None else f"{value:,.{self.digits}f}"


PPL, BPC = Metric("ppl", 1), Metric("bpc", 3)


def metric_of(rows: list[Row]) -> Metric:
    """Bits per character for character data (:func:`lmladder.reports.rows.quality`), else
    perplexity."""
    return BPC if quality(rows) == "test bpc" else PPL


def _values(row: Row, path: tuple[str, ...]) -> list[float]:
    return [v for v in (number_at(r, path) for r in row.records) if v is not None]


def _std(values: list[float]) -> float | None:
    """Sample standard deviation (n − 1) over seeds; None for fewer than two."""
    if len(values) < 2:
        return None
    try:
        return statistics.stdev(values)
    except (OverflowError, ValueError):
        return None


def mean_text(row: Row, path: tuple[str, ...], metric: Metric) -> str:
    """Mean over the row's seeds, with "± std" where it has several."""
    values = _values(row, path)
    if not values:
        return "—"
    text = metric.text(sum(values) / len(values))
    std = _std(values)
    return text if std is None else f"{text} ± {metric.text(std)}"


def params_text(value: float | None) -> str:
    """Parameters as papers write them: "4.65M", "160k", "912"."""
    if value is None:
        return "—"
    if value >= 1e9:
        return f"{value / 1e9:.3g}B"
    if value >= 1e6:
        return f"{value / 1e6:.3g}M"
    return f"{value / 1e3:.3g}k" if value >= 1e3 else f"{value:.0f}"


def literature(row: Row, anchors: list[Anchor], metric: Metric) -> Anchor | None:
    """The comparable anchor standing for ``row``'s model at the table's test metric
    (:func:`lmladder.reports.anchors.match_anchor`); learning-curve rows have none."""
    if not row.full:
        return None
    return match_anchor(row.label, row.family, anchors, ".".join(metric.path("test")),
                        higher_is_better=False)


def ratio_text(value: float | None, anchor: Anchor | None) -> str:
    if value is None or anchor is None or anchor.value == 0:
        return "—"
    return f"{value / anchor.value:.2f}×"


# ---- the tables of results.md and results.tex --------------------------------------------------


@dataclass(frozen=True)
class Note:
    """A line under a table, with the web address of its source ("" where none)."""

    text: str
    url: str = ""


@dataclass
class Table:
    """One table of the Markdown and LaTeX exports: cells as plain text (Unicode marks such as
    ⚠, †, ±, × are turned into each format's own by its writer), ``align`` one of "l"/"r" per
    column, ``notes`` the lines printed under it."""

    title: str
    header: list[str]
    align: str
    rows: list[list[str]] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    key: str = ""  # a label for cross references, e.g. "ptb" or "ptb-curve"


MAIN_HEADER = ["Model", "Params", "Trained", "Valid", "Test", "Lit.", "× Lit."]
CURVE_HEADER = ["Model", "Share of train", "Train tokens", "Trained", "Valid", "Test"]
FLAG, REFERENCE = "⚠", "†"


def _name(row: Row, notes: list[str]) -> str:
    """The model cell: the row's label, † for a reference run, ⚠ (and a note) where flagged."""
    name = row.label + (f" {REFERENCE}" if row.kind == "reference" else "")
    why = flags(training(_worst(row)))
    if why:
        notes.append(Note(f"{FLAG} {row.label}: {'; '.join(why)}."))
        name += f" {FLAG}"
    return name


def _order(metric: Metric) -> Callable[[Row], tuple]:
    def key(row: Row) -> tuple:
        values = _values(row, metric.path("test"))
        mean = sum(values) / len(values) if values else math.inf
        return (mean, row.label)
    return key


def _reference_note(rows: list[Row]) -> list[Note]:
    records = [r for row in rows if row.kind == "reference" for r in row.records]
    return [Note(f"{REFERENCE} {reference_caption(records)}.")] if records else []


def _anchor_note(a: Anchor, metric: Metric, why: str) -> Note:
    note = f"; {a.note}" if a.note else ""
    value = metric.text(a.value) if a.metric.endswith(f".{metric.name}") else f"{a.value:,.4g}"
    url = a.url if re.fullmatch(r"https?://[^\s<>]+", a.url or "") else ""
    return Note(f"{why}: {a.model}, {a.metric} = {value} ({cite(a)}{note}).", url)


def main_table(ds: str, rows: list[Row], anchors: list[Anchor]) -> Table:
    """Dataset ``ds``'s leaderboard of the rows trained on all its training data, sorted by the
    test metric; its notes name flagged rows, the reference runs, and the literature figures of
    the dataset's language-modelling metrics that are not comparable or match no row."""
    metric = metric_of(rows)
    table = Table(f"{ds}: test {metric.name}, lower is better", list(MAIN_HEADER), "lrlrrrr",
                  key=ds)
    matched, flagged = set(), []
    for row in sorted((r for r in rows if r.full), key=_order(metric)):
        anchor = literature(row, anchors, metric)
        values = _values(row, metric.path("test"))
        test = sum(values) / len(values) if values else None
        if anchor is not None:
            matched.add(anchor)
        params = _values(row, ("model", "parameters"))
        table.rows.append([
            _name(row, flagged), params_text(max(params) if params else None),
            trained_text(_worst(row)), mean_text(row, metric.path("valid"), metric),
            mean_text(row, metric.path("test"), metric),
            "—" if anchor is None else metric.text(anchor.value), ratio_text(test, anchor)])
    table.notes += flagged + _reference_note(rows)
    for a in anchors:
        if not a.metric.startswith("metrics.") or a in matched:
            continue
        table.notes.append(_anchor_note(a, metric, "Literature, not comparable" if not
                                        a.comparable else "Literature, no row here"))
    return table


def curve_name(row: Row) -> str:
    """The model a learning-curve row belongs to: its label without the share that tells its
    points apart ("KN5 [fraction=0.5]" -> "KN5")."""
    return re.sub(r" \[fraction=[^],\]]*\]", "", row.label)


def curve_table(ds: str, rows: list[Row]) -> Table | None:
    """The learning curves of ``ds``: each model trained on shares of the training data (and
    its whole-data row), by model then share; None where there are none."""
    names = {curve_name(row) for row in rows if not row.full}
    if not names:
        return None
    metric = metric_of(rows)
    table = Table(f"{ds}: learning curves (test {metric.name} against the share of training "
                  "data)", list(CURVE_HEADER), "lrrlrr", key=f"{ds}-curve")
    curve = sorted((row for row in rows if curve_name(row) in names),
                   key=lambda row: (curve_name(row), row.kind, row.records[0].cell.fraction))
    flagged = []
    for row in curve:
        name, share = curve_name(row), f"{row.records[0].cell.fraction:g}"
        why = flags(training(_worst(row)))
        if why:
            flagged.append(Note(f"{FLAG} {name} at {share}: {'; '.join(why)}."))
        mark = (f" {REFERENCE}" if row.kind == "reference" else "") + (f" {FLAG}" if why else "")
        tokens = _values(row, ("fit", "train_tokens"))
        table.rows.append([name + mark, share, count_text(max(tokens)) if tokens else "—",
                           trained_text(_worst(row)),
                           mean_text(row, metric.path("valid"), metric),
                           mean_text(row, metric.path("test"), metric)])
    table.notes += flagged + _reference_note(curve)
    return table


def dataset_tables(ctx: Context) -> list[Table]:
    """Every dataset's leaderboard, then its learning curves where it has any."""
    out = []
    for ds in ctx.datasets:
        rows = ctx.measured(ds)
        out.append(main_table(ds, rows, ctx.anchors_of(ds)))
        if (curve := curve_table(ds, rows)) is not None:
            out.append(curve)
    return out


# ---- Markdown ----------------------------------------------------------------------------------

_MARKDOWN_SPECIAL = str.maketrans(
    {c: "\\" + c for c in "\\`*_[]|"} | {"<": "&lt;", ">": "&gt;", "&": "&amp;"}
    # a line break ends a table row; other control characters have no place in a cell
    | {chr(c): " " for c in [*range(0x20), 0x7F, 0x85, 0x2028, 0x2029] if c != 0x09})
_SAFE_URL = re.compile(r"https?://[^\s<>\"'`\\]+")


def markdown_escape(text: str) -> str:
    """``text`` as one Markdown table cell: pipes, emphasis, links, HTML and entities (``&``)
    taken literally, line breaks and control characters as spaces."""
    return str(text).translate(_MARKDOWN_SPECIAL)


def markdown_link(url: str) -> str:
    """``url`` as a Markdown autolink (``<https://...>``) when it is a plain http(s) address,
    else as escaped text: a note's address can never open HTML."""
    return f"<{url}>" if _SAFE_URL.fullmatch(url) else markdown_escape(url)


def markdown_tables(tables: Sequence[Table], title: str = "lmladder results") -> str:
    """The tables as GitHub-flavoured Markdown, each under a heading with its notes below."""
    out = [f"# {markdown_escape(title)}", ""]
    for t in tables:
        out += [f"## {markdown_escape(t.title)}", "",
                "| " + " | ".join(markdown_escape(h) for h in t.header) + " |",
                "|" + "".join("---:|" if a == "r" else "---|" for a in t.align)]
        out += ["| " + " | ".join(markdown_escape(c) for c in row) + " |" for row in t.rows]
        out += [""] + [markdown_escape(n.text) + (f" {markdown_link(n.url)}" if n.url else "")
                       + "  " for n in t.notes] + ([""] if t.notes else [])
    return "\n".join(out).rstrip() + "\n"


# ---- the typed CSV -----------------------------------------------------------------------------

CSV_COLUMNS = (  # name, type, meaning (unit)
    ("dataset", str, "dataset name"),
    ("source", str, "own (this run) or reference (a shipped lmladder reference run)"),
    ("label", str, "the row's label in the report (learning-curve rows name their share)"),
    ("model", str, "registry name of the model"),
    ("family", str, "model family"),
    ("seed", int, "seed of this record"),
    ("n_seeds", int, "seeds (records) averaged in the report's row"),
    ("fraction", float, "share of the training split trained on (1 = all)"),
    ("token", str, "what one token is (word, char): the unit of ppl and nll"),
    ("params", int, "parameters (count)"),
    ("train_tokens", int, "training tokens seen (tokens)"),
    ("epochs", float, "passes over the training split"),
    ("steps", int, "optimizer steps or EM iterations"),
    ("budget_seconds", float, "training budget (s), as applied to the cell"),
    ("budget_tokens", int, "training budget (tokens), as applied to the cell"),
    ("budget_steps", int, "training budget (steps)"),
    ("fit_seconds", float, "training wall time (s)"),
    ("verdict", str, "converged, not converged, closed form, not trained or unknown"),
    ("flags", str, "why training is not finished ('; '-separated), empty if none"),
    ("trained", str, "planned / actual training, as in results.md"),
    ("valid_ppl", float, "validation perplexity (per token)"),
    ("test_ppl", float, "test perplexity (per token)"),
    ("test_word_ppl", float, "test perplexity per word"),
    ("valid_bpc", float, "validation bits per character"),
    ("test_bpc", float, "test bits per character"),
    ("valid_nll", float, "validation negative log-likelihood (nats/token)"),
    ("test_nll", float, "test negative log-likelihood (nats/token)"),
    ("test_top1", float, "test next-token accuracy (share of tokens, 0-1)"),
    ("test_ppl_std", float, "spread: sample std of test_ppl over the row's seeds"),
    ("test_bpc_std", float, "spread: sample std of test_bpc over the row's seeds"),
    ("valid_ppl_std", float, "spread: sample std of valid_ppl over the row's seeds"),
    ("lit_value", float, "comparable literature figure for the row (same metric as lit_metric)"),
    ("lit_metric", str, "record path of lit_value, e.g. metrics.test.ppl"),
    ("lit_source", str, "citation of lit_value"),
    ("x_lit", float, "this record's value of lit_metric divided by lit_value"),
    ("train_tokens_per_s", float, "training throughput (tokens/s)"),
    ("score_tokens_per_s", float, "scoring throughput (tokens/s)"),
    ("disk_bytes", int, "size of the saved model (bytes)"),
    ("rss_peak_mib", float, "peak resident memory (MiB)"),
    ("identity", str, "hash of what the experiment measured (seeds of one row share it)"),
    ("key", str, "the record's key (its file name)"),
)
# Columns read straight from a record path.
_PATHS = {
    "params": ("model", "parameters"), "train_tokens": ("fit", "train_tokens"),
    "fit_seconds": ("timing", "fit_s"), "valid_ppl": ("metrics", "valid", "ppl"),
    "test_ppl": ("metrics", "test", "ppl"), "test_word_ppl": ("metrics", "test", "word_ppl"),
    "valid_bpc": ("metrics", "valid", "bpc"), "test_bpc": ("metrics", "test", "bpc"),
    "valid_nll": ("metrics", "valid", "nll"), "test_nll": ("metrics", "test", "nll"),
    "test_top1": ("metrics", "test_accuracy", "top1"),
    "train_tokens_per_s": ("throughput", "train_tokens_per_s"),
    "score_tokens_per_s": ("throughput", "score_tokens_per_s"),
    "disk_bytes": ("model", "disk_bytes"), "rss_peak_mib": ("memory", "rss_peak_mib"),
}
_TYPES = {name: kind for name, kind, _ in CSV_COLUMNS}


def _typed(name: str, value):
    """``value`` as the column's type (an int column's integral float becomes an int)."""
    if value is None:
        return None
    kind = _TYPES.get(name, float)
    if kind is str:
        return str(value)
    value = finite(value)
    if kind is int and value is not None and value == int(value):
        return int(value)
    return value


def _rank_note(rank: dict) -> str:
    """The marks of a task rank cell in words: "tied", "untested", both or ""."""
    return ", ".join(word for word, on in (("tied", rank["text"].startswith("=")),
                                           ("untested", rank["untested"])) if on)


def _csv_row(ds: str, row: Row, record: Record, anchor: Anchor | None,
             ranks: dict[str, dict]) -> dict:
    t = training(record)
    budget = {**dict(record.cell.budget or {}),
              **{k: v for k, v in dict(record.budget_used or {}).items() if v is not None}}
    out = {"dataset": ds, "source": row.kind, "label": row.label, "model": record.cell.model,
           "family": row.family, "seed": record.cell.seed, "n_seeds": len(row.records),
           "fraction": record.cell.fraction, "token": value_at(record.dataset, ("level",)),
           **{name: number_at(record, path) for name, path in _PATHS.items()},
           "epochs": t.epochs, "steps": t.steps, "budget_seconds": budget.get("seconds"),
           "budget_tokens": budget.get("tokens"), "budget_steps": budget.get("steps"),
           "verdict": t.verdict, "flags": "; ".join(flags(t)), "trained": trained_text(record),
           "identity": row.identity, "key": record.key}
    if out["fit_seconds"] is None:
        out["fit_seconds"] = finite(value_at(record.fit, ("seconds",)))
    for name in ("test_ppl", "test_bpc", "valid_ppl"):
        out[f"{name}_std"] = _std(_values(row, _PATHS[name]))
    if anchor is not None:
        mine = number_at(record, anchor.path())
        out.update(lit_value=anchor.value, lit_metric=anchor.metric,
                   lit_source=anchor.source + (f" <{anchor.url}>" if anchor.url else ""),
                   x_lit=None if mine is None or anchor.value == 0 else mine / anchor.value)
    ranked = {}  # typed already: an int and a text
    for name in task_names([row]):
        for spec in task_specs([row], name):
            result = record.tasks.get(name)
            out[f"task_{name}_{spec.name}"] = None if result is None else result.score(spec.name)
        if name in ranks:
            ranked[f"task_{name}_rank"] = ranks[name]["rank"]
            ranked[f"task_{name}_rank_note"] = _rank_note(ranks[name])
    return {**{name: _typed(name, out.get(name)) for name, _, _ in CSV_COLUMNS},
            **{k: _typed(k, v) for k, v in out.items() if k not in _TYPES}, **ranked}


def record_rows(ctx: Context) -> list[dict]:
    """One typed dict per record shown (own and reference rows of every dataset), with the
    columns of :data:`CSV_COLUMNS` (None where a record has no such number), one
    ``task_<task>_<metric>`` column per task metric (floats) and, for a row ranked in the task's
    table, ``task_<task>_rank`` (its significance rank, an int: tied rows share one) and
    ``task_<task>_rank_note`` ("tied", "untested", both, or empty; :func:`task_ranks`)."""
    out = []
    for ds in ctx.datasets:
        rows = ctx.measured(ds)
        metric, anchors = metric_of(rows), ctx.anchors_of(ds)
        ranks = task_ranks(ctx.measured(ds, full=True))
        for row in rows:
            anchor = literature(row, anchors, metric)
            out += [_csv_row(ds, row, r, anchor, ranks.get(row_key(row), {}))
                    for r in row.records]
    return out


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value):
    """A text cell that a spreadsheet would evaluate (OWASP's CSV injection list: starting with
    =, +, -, @, a tab or a carriage return, also after leading spaces or other white space,
    which spreadsheets skip) with a leading ``'``, so it shows as text; numbers are left as
    numbers."""
    if isinstance(value, str) and (value.startswith(_FORMULA_START)
                                   or value.lstrip().startswith(_FORMULA_START)):
        return "'" + value
    return value


def csv_field(value) -> str:
    """One CSV field: text quoted (RFC 4180: inner quotes doubled, so a comma, CR or newline
    inside stays text) and neutralised (:func:`neutralise`); a number bare, in full precision
    (``repr``); None empty, which every reader takes as missing."""
    if value is None:
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return repr(value)
    return '"' + str(neutralise(str(value))).replace('"', '""') + '"'


def csv_text(rows: list[dict]) -> str:
    """``rows`` as CSV, the columns in first-seen order, one ``\\n``-terminated line per row
    (:func:`csv_field`: text quoted, numbers bare, None empty)."""
    names = list(dict.fromkeys(k for row in rows for k in row))
    lines = [",".join(csv_field(n) for n in names)]
    lines += [",".join(csv_field(row.get(n)) for n in names) for row in rows]
    return "\n".join(lines) + "\n"


# ---- writing them ------------------------------------------------------------------------------


def write_exports(ctx: Context, folder: str | Path, title: str = "lmladder results") -> list[Path]:
    """Write ``results.csv``, ``results.md`` and ``results.tex`` (:data:`EXPORT_FILES`) of
    ``ctx`` into ``folder``, each atomically; returns their paths."""
    folder = Path(folder)
    tables = dataset_tables(ctx)
    texts = {"results.csv": csv_text(record_rows(ctx)),
             "results.md": markdown_tables(tables, title),
             "results.tex": latex_text(tables, title)}
    for name, text in texts.items():
        atomic_write(folder / name, text)
    return [folder / name for name in EXPORT_FILES]


# ---- the flat leaderboard rows (render.export_rows; no file is written from them) -------------


def export_rows(ctx: Context) -> list[dict]:
    """The leaderboard rows of every dataset as flat dicts (dataset, model, family, source
    ("own", "reference", "literature"), the metrics in :data:`EXPORT_METRICS`, epochs, steps,
    converged verdict, citation)."""
    out = []
    for ds in ctx.datasets:
        for row in ctx.measured(ds):
            t = row.training
            out.append({"dataset": ds, "model": row.label, "family": row.family,
                        "source": row.kind, **{c: row.mean(c) for c in EXPORT_METRICS},
                        "epochs": t.epochs, "steps": t.steps, "converged": t.verdict,
                        "citation": "",
                        # each task's first metric, under the anchors' record path
                        **{f"tasks.{name}.{specs[0].name}": task_mean(row, name, specs[0].name)
                           for name in task_names([row])
                           if (specs := task_specs([row], name))}})
        for a in ctx.anchors_of(ds):
            column = PATH_COLUMNS.get(a.metric, a.metric)
            out.append({"dataset": ds, "model": a.model, "family": a.family,
                        "source": "literature",
                        **{c: a.value if c == column else None for c in EXPORT_METRICS},
                        **({} if column in EXPORT_METRICS else {column: a.value}),
                        "epochs": None, "steps": None,
                        "converged": "" if a.comparable else "not comparable",
                        "citation": a.source + (f" <{a.url}>" if a.url else "")})
    return out


def markdown_text(rows: list[dict]) -> str:
    """:func:`export_rows` as one flat Markdown table."""
    names = list(dict.fromkeys(k for row in rows for k in row))

    def cell(name: str, value) -> str:
        if value is None:
            return ""
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                return str(value)
            if name in COLUMNS and not name.startswith("top-"):
                return COLUMNS[name][1].format(value)
            return f"{value:,.3g}" if name == "epochs" else f"{value:,.4g}"
        return markdown_escape(str(value))

    lines = ["| " + " | ".join(map(markdown_escape, names)) + " |", "|" + "---|" * len(names)]
    lines += ["| " + " | ".join(cell(k, row.get(k)) for k in names) + " |" for row in rows]
    return "\n".join(lines) + "\n"
