"""Render a folder of result records into one self-contained HTML page, with exports beside it.

The report only reads records (:mod:`lmladder.results`) -- it computes nothing but means and
spreads over seeds, and ratios between numbers already recorded.  It is a list of sections; each
is a function ``Context -> Section | None`` that returns plain data (strings, numbers, lists,
dicts) and names the Jinja template that turns it into markup, so a new kind of content is one
function appended to :data:`SECTIONS` and one template in ``templates/``.  Templates are rendered
with autoescape on; the only markup not escaped is what lmladder itself produced (the plots'
SVG, the model cards and protocol prose of their own modules), wrapped in ``Markup`` here.

Rows are experiments, not labels: records are grouped by :func:`~lmladder.results.identity`
(model, config, budget, dataset, device, scoring, threads) and by code revision, and only the
seeds of one group are averaged.  For each identity the revision with the newest record is the
current one; the others are listed apart as older code.  Two identities that share a label are
told apart by the settings that differ between them.

Beside the user's rows a leaderboard shows *reference rows* (records shipped under
``reports/reference/``, same dataset and vocabulary only, never averaged with the user's) and
*literature rows* (published figures from ``anchors.toml``).  Every row says how much it trained
and whether it converged (:func:`training`); rows that did not are flagged everywhere.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import math
import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from markupsafe import Markup

from lmladder.files import atomic_write
from lmladder.numbers import finite
from lmladder.registry import family_of
from lmladder.reports import plots
from lmladder.reports.anchors import load_anchors
from lmladder.reports.cards import model_cards
from lmladder.reports.jinja import environment
from lmladder.reports.protocol import protocol_prose
from lmladder.reports.sweeps import find_sweeps
from lmladder.reports.values import as_text, clip, value_at
from lmladder.results import (
    STATUSES,
    code_revision,
    identity,
    lmladder_version,
    newest_per,
    record_date,
    scan_records,
)


class ReportError(ValueError):
    """The report cannot be written where it was asked to be; the message is one line."""


@dataclass(frozen=True)
class Section:
    """A titled part of the page: ``template`` (in ``templates/``) renders ``data``."""

    title: str
    template: str
    data: dict = field(default_factory=dict)

    @property
    def anchor(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.title.lower()).strip("-")


COLUMNS = {  # column title -> (path into the record, format)
    "parameters": (("model", "parameters"), "{:,.0f}"),
    "size on disk": (("model", "disk_bytes"), "{:,.2f}"),  # recorded in bytes, shown in MiB
    "valid ppl": (("metrics", "valid", "ppl"), "{:.2f}"),
    "test ppl": (("metrics", "test", "ppl"), "{:.2f}"),
    "test word ppl": (("metrics", "test", "word_ppl"), "{:.2f}"),
    "test bpc": (("metrics", "test", "bpc"), "{:.4f}"),
    # a masked LM's pseudo-perplexity (both sides visible): never ranked against causal ppl
    "test pseudo-ppl (MLM)": (("metrics", "test_pseudo", "pseudo_ppl"), "{:.2f}"),
    "valid nll": (("metrics", "valid", "nll"), "{:.4f}"),
    "top-1": (("metrics", "test_accuracy", "top1"), "{:.1%}"),
    "top-5": (("metrics", "test_accuracy", "top5"), "{:.1%}"),
    "trained tokens": (("fit", "train_tokens"), "{:,.0f}"),
    "train tok/s": (("throughput", "train_tokens_per_s"), "{:,.0f}"),
    "score tok/s": (("throughput", "score_tokens_per_s"), "{:,.0f}"),
    "generate tok/s": (("throughput", "generate_tokens_per_s"), "{:,.0f}"),
    "fit s": (("timing", "fit_s"), "{:.1f}"),
    "valid in fit s": (("fit", "valid_seconds"), "{:.1f}"),
    "peak RSS MiB": (("memory", "rss_peak_mib"), "{:,.0f}"),
}
LOWER_IS_BETTER = {"valid ppl", "test ppl", "test word ppl", "test bpc", "valid nll"}
HIGHER_IS_BETTER = {"top-1", "top-5", "train tok/s", "score tok/s", "generate tok/s"}
# Only these measure how good a model is; the best of a speed or size column is not marked.
QUALITY = {"valid ppl", "test ppl", "test word ppl", "test bpc", "valid nll", "top-1", "top-5"}
UNITS = {  # column -> what its number counts, shown in the header
    "parameters": "count", "valid ppl": "per token", "test ppl": "per token",
    "test word ppl": "per word", "test bpc": "bits/char", "valid nll": "nats/token",
    "test pseudo-ppl (MLM)": "per token", "top-1": "% of tokens", "top-5": "% of tokens",
    "trained tokens": "tokens", "train tok/s": "tokens/s", "score tok/s": "tokens/s",
    "generate tok/s": "tokens/s", "fit s": "seconds", "valid in fit s": "seconds",
    "peak RSS MiB": "MiB", "size on disk": "MiB",
}
SCALES = {"size on disk": 1 / 2**20}  # column -> factor from the recorded unit to the shown one
COUNTS = {"parameters", "trained tokens", "size on disk"}  # sizes: a range over seeds, no spread
SPREAD_NOTE = ("Where a row has several seeds, a value reads mean ± sample standard deviation "
               "over its seeds (n − 1 in the denominator); “seeds” counts them.")


def _normalise(record) -> dict:
    """``record`` with the fields every section relies on made safe to use: ``status`` and the
    cell's model, label, dataset, device and matrix as text, its seed an int or text.  Records
    from :func:`~lmladder.results.scan_records` already are; records passed in directly may not
    be."""
    record = record if isinstance(record, dict) else {}
    cell = record.get("cell") if isinstance(record.get("cell"), dict) else {}
    seed = cell.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int):
        seed = as_text(seed)
    fixed = {k: as_text(cell[k]) if k in cell else "?"
             for k in ("model", "label", "dataset", "device", "matrix")}
    return {**record, "status": as_text(record.get("status")), "cell": {**cell, **fixed,
                                                                       "seed": seed}}


def _seed_order(seed) -> tuple:
    """Sort key for seeds: integers in order, then anything else as text."""
    return (0, seed, "") if isinstance(seed, int) else (1, 0, str(seed))


def _experiment(record: dict) -> tuple[str, str, int | str]:
    """What a record measured, whatever its matrix or label: identity, code revision, seed."""
    return identity(record), code_revision(record), record["cell"]["seed"]


def distinct(records: Iterable[dict]) -> list[dict]:
    """``records`` without repeats of one experiment and status (a cell run again under a
    renamed matrix or label has another key but measured the same thing); the newest is kept."""
    return newest_per(records, lambda r: (*_experiment(r), r["status"]))


# ---- how much a record trained ---------------------------------------------------------------

CONVERGED_STOPS = {  # fit.notes.stopped_by -> why the fit itself decided to stop
    "converged": "converged within its tolerance", "patience": "validation stopped improving",
    "tol": "change below its tolerance"}
BUDGET_STOPS = {"budget": "budget spent", "max_iterations": "iteration limit reached"}
STILL_IMPROVING_NATS = 0.002  # a last validation gain above this means training was cut short


@dataclass(frozen=True)
class Training:
    """How much one record trained and whether it converged.

    ``epochs``: passes over the training split (training tokens / train split tokens);
    ``steps``: optimizer steps or EM iterations (``fit.steps``); ``verdict`` is one of
    "converged", "not converged", "closed form", "not trained", "unknown"; ``reason`` says why in
    a few words; ``budget`` is the cell's budget as text ("12 s", "100,000 tokens") or "".
    """

    epochs: float | None
    steps: int | None
    verdict: str
    reason: str
    budget: str = ""

    @property
    def flagged(self) -> bool:
        return self.verdict == "not converged"

    @property
    def amount(self) -> str:
        """Epochs and steps in a few words, e.g. "0.06 epochs, 90 steps"."""
        parts = []
        if self.epochs is not None:
            count = f"{self.epochs:.2g}" if self.epochs < 10 else f"{self.epochs:,.0f}"
            parts.append(f"{count} epoch{'' if count == '1' else 's'}")
        if self.steps is not None and self.verdict != "closed form":
            parts.append(f"{self.steps:,} steps")
        return ", ".join(parts)

    @property
    def flag(self) -> str:
        """The warning a flagged row carries, else ""."""
        if not self.flagged:
            return ""
        return "⚠ not converged: " + ", ".join(p for p in (self.amount, self.reason) if p)


def _family(record: dict) -> str:
    """:func:`~lmladder.registry.family_of`, "other" for a record whose ``model`` is no dict."""
    return family_of(record) if isinstance(record.get("model"), dict) else "other"


def _budget_text(record: dict) -> str:
    budget = value_at(record, ("budget_used",)) or value_at(record, ("cell", "budget"))
    if not isinstance(budget, dict):
        return ""
    parts = []
    for key, unit in (("seconds", "s"), ("tokens", "tokens"), ("steps", "steps")):
        value = finite(budget.get(key))
        if value is not None:
            parts.append(f"{_count(value)} {unit}")
    return ", ".join(parts)


BUDGET_SPENT = 0.9  # a fit that used this share of its seconds stopped for the clock


def _budget_spent(record: dict, fit: dict) -> bool:
    """The fit stopped because its budget ran out: it used (nearly) all of its seconds, or all
    of its tokens or steps."""
    budget = value_at(record, ("budget_used",)) or value_at(record, ("cell", "budget"))
    if not isinstance(budget, dict):
        return False
    used = {"seconds": finite(fit.get("seconds")) or finite(value_at(record, ("timing", "fit_s"))),
            "tokens": finite(fit.get("train_tokens")), "steps": finite(fit.get("steps"))}
    for key, share in (("seconds", BUDGET_SPENT), ("tokens", 1.0), ("steps", 1.0)):
        limit = finite(budget.get(key))
        if limit and used[key] is not None and used[key] >= share * limit:
            return True
    return False


def training(record: dict) -> Training:
    """The training amount and convergence verdict of ``record``, generic across families.

    In order: no training tokens -> "not trained" (zero-shot); ``fit.notes.stopped_by`` in
    {converged, patience, tol} -> "converged", in {budget, max_iterations} -> "not converged";
    else at least two validation losses (``valid_nll``, nats/token) in ``fit.history`` ->
    "not converged" when the last improved on the one before by more than
    :data:`STILL_IMPROVING_NATS`, else "converged"; a budget used up (seconds, tokens or
    steps) with nothing else to go by -> "not converged"; no history and at most one step ->
    "closed form" (counted n-grams); anything else -> "unknown".
    """
    fit = record.get("fit") if isinstance(record.get("fit"), dict) else {}
    notes = fit.get("notes") if isinstance(fit.get("notes"), dict) else {}
    tokens = finite(fit.get("train_tokens"))
    split = finite(value_at(record, ("dataset", "splits", "train", "tokens")))
    epochs = finite(notes.get("epochs"))
    if epochs is None and tokens is not None and split:
        epochs = tokens / split
    steps = fit.get("steps") if isinstance(fit.get("steps"), int) and not isinstance(
        fit.get("steps"), bool) else None
    budget = _budget_text(record)

    def verdict(v: str, reason: str) -> Training:
        return Training(epochs, steps, v, reason, budget)

    if tokens == 0:
        return verdict("not trained", "zero-shot: no training tokens")
    stopped = notes.get("stopped_by")
    if stopped in CONVERGED_STOPS:
        return verdict("converged", CONVERGED_STOPS[stopped])
    if stopped in BUDGET_STOPS:
        return verdict("not converged", BUDGET_STOPS[stopped])
    history = fit.get("history") if isinstance(fit.get("history"), list) else []
    valid = [v for h in history if isinstance(h, dict)
             and (v := finite(h.get("valid_nll"))) is not None]
    if len(valid) >= 2:
        gain = valid[-2] - valid[-1]
        if gain > STILL_IMPROVING_NATS:
            return verdict("not converged",
                           f"validation still improving ({gain:.3f} nats at the last check)")
        return verdict("converged", "validation loss flat at the end")
    if _budget_spent(record, fit):
        return verdict("not converged", "budget spent")
    if not history and (steps is None or steps <= 1) and tokens:
        return verdict("closed form", "counted in one pass")
    return verdict("unknown", "the record does not say")


# ---- rows: one experiment (identity and code revision), its seeds aggregated ------------------


@dataclass
class Row:
    """The successful records of one identity and one code revision, one per seed."""

    identity: str
    revision: str
    dataset: str
    records: list[dict]
    current: bool = True
    label: str = ""
    kind: str = "own"  # "own": the user's records; "reference": a shipped reference run

    @property
    def family(self) -> str:
        return _family(self.records[0])

    @functools.cached_property
    def training(self) -> Training:
        """How much the row trained: its worst seed (a row is flagged if any seed is)."""
        verdicts = [training(r) for r in self.records]
        return next((t for t in verdicts if t.flagged), verdicts[0])

    @property
    def settings(self) -> str:
        """Everything that defines the experiment, as one line (the label cell's tooltip)."""
        facets = ", ".join(f"{k}={v}" for k, v in _facets(self.records[0]).items())
        return f"identity {self.identity}: {facets}; {self.revision}"

    def values(self, column: str) -> list[float]:
        """The column's number of each seed that has one, in the unit the column shows."""
        path, scale = COLUMNS[column][0], SCALES.get(column, 1)
        return [v * scale for v in (finite(value_at(r, path)) for r in self.records)
                if v is not None]

    def mean(self, column: str) -> float | None:
        values = self.values(column)
        return sum(values) / len(values) if values else None  # inf, not an error, past 1e308

    def text(self, column: str) -> str:
        """``mean ± std`` over seeds (just the value for one seed), or a dash."""
        values, fmt = self.values(column), COLUMNS[column][1]
        if not values:
            return "—"
        if column in COUNTS:
            low, high = fmt.format(min(values)), fmt.format(max(values))
            text = low if low == high else f"{low}–{high}"
        else:
            text = fmt.format(self.mean(column))
        if len(values) > 1 and column not in COUNTS:
            try:
                std = statistics.stdev(values)
            except (OverflowError, ValueError):
                std = float("nan")
            text += " ± " + fmt.format(std)
        if 1 < len(self.records) != len(values):
            text += f" ({len(values)} of {len(self.records)} seeds)"
        return text


def aggregate(records: list[dict], kind: str = "own") -> list[Row]:
    """The successful records as rows, sorted by dataset, current rows first, then test ppl;
    ``kind`` ("own" or "reference") is given to every row.

    Records are grouped by identity and code revision; a seed measured twice (e.g. under two
    matrix names) counts once.  For each identity, the revision with the newest record is
    current; rows of its other revisions have ``current`` False and say so in their label.
    """
    groups = defaultdict(list)
    for r in distinct(r for r in records if r["status"] == "ok"):
        groups[(identity(r), code_revision(r))].append(r)
    rows = [Row(ident, rev, rs[0]["cell"]["dataset"],  # distinct(): one record per seed
                sorted(rs, key=lambda r: _seed_order(r["cell"]["seed"])), kind=kind)
            for (ident, rev), rs in groups.items()]
    newest = {}
    for row in rows:
        stamp = (max(record_date(r) for r in row.records), row.revision)
        newest[row.identity] = max(newest.get(row.identity, stamp), stamp)
    for row in rows:
        row.current = newest[row.identity][1] == row.revision
    _label(rows)

    def order(row: Row):
        ppl = row.mean("test ppl")
        return (row.dataset, not row.current, ppl is None, ppl or 0.0, row.label, row.revision)

    return sorted(rows, key=order)


def _facets(record: dict) -> dict[str, str]:
    """The identity of a record as flat ``name -> short text`` (config keys by their own name)."""
    cell = record["cell"]
    out = {"model": cell["model"], "device": cell["device"]}
    for part in ("budget", "scoring", "threads", "fraction"):
        value = cell.get(part)
        if isinstance(value, dict):
            out.update({f"{part}.{k}": as_text(v) for k, v in value.items()})
        elif value is not None:
            out[part] = as_text(value)
    config = cell.get("config")
    if isinstance(config, dict):
        for k, v in config.items():
            out.setdefault(str(k), as_text(v))
    elif config is not None:
        out["config"] = as_text(config)
    return out


def _label(rows: list[Row]) -> None:
    """Give each row its display label: the cell label(s), then -- where rows of different
    identities on one dataset share it -- the settings that tell them apart (or the identity
    hash), and for rows of an older code revision, that revision."""
    for row in rows:
        row.label = " / ".join(sorted({r["cell"]["label"] for r in row.records}))
    clashes = defaultdict(list)
    for row in rows:
        clashes[(row.dataset, row.label)].append(row)
    for same in clashes.values():
        facets = {row.identity: _facets(row.records[0]) for row in same}
        if len(facets) < 2:
            continue
        names = sorted(set().union(*facets.values()))
        differ = [n for n in names if len({f.get(n) for f in facets.values()}) > 1]
        for row in same:
            f = facets[row.identity]
            if differ == ["fraction"] and _full(row):
                continue  # the whole-data row of a learning curve needs no suffix
            shown = ", ".join(f"{n}={clip(f.get(n, '—'))}" for n in differ[:3])
            if not differ or len(shown) > 60:
                shown = f"identity {row.identity[:8]}"
            elif len(differ) > 3:
                shown += ", …"
            row.label += f" [{shown}]"
    for same in _duplicates(rows):  # a shortened suffix can still clash
        for row in same:
            row.label += f" [identity {row.identity[:8]}]"
    for row in rows:
        if not row.current:
            row.label += f" (older code: {row.revision})"


def _duplicates(rows: list[Row]) -> list[list[Row]]:
    by_label = defaultdict(list)
    for row in rows:
        if row.current:
            by_label[(row.dataset, row.label)].append(row)
    return [same for same in by_label.values() if len({r.identity for r in same}) > 1]


def _dataset_note(records: list[dict]) -> str:
    desc = next((r["dataset"] for r in records if isinstance(r.get("dataset"), dict)), {})
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


def _level(records: list[dict]) -> str:
    return next((r["dataset"]["level"] for r in records if isinstance(r.get("dataset"), dict)
                 and isinstance(r["dataset"].get("level"), str)), "")


def _quality(rows: list[Row]) -> str:
    """The column that ranks a dataset's rows: bpc for character data, else test perplexity."""
    if _level([r for row in rows for r in row.records]) == "char" and any(
            row.values("test bpc") for row in rows):
        return "test bpc"
    return "test ppl"


def _full(row: Row) -> bool:
    """The row trained on the whole training split (not a learning-curve share)."""
    fraction = finite(row.records[0]["cell"].get("fraction"))
    return fraction is None or fraction >= 1


def _mean_at(row: Row, path: tuple[str, ...]) -> float | None:
    """Mean over the row's seeds of the number at ``path`` (e.g. an anchor's metric)."""
    values = [v for v in (finite(value_at(r, path)) for r in row.records) if v is not None]
    return sum(values) / len(values) if values else None


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-") or "x"


def _family_colours() -> dict[str, str]:
    """Family -> hex colour, from the plots so tables and figures agree."""
    colours = getattr(plots, "FAMILY_COLOURS", None)
    if not isinstance(colours, dict):  # an older plots module: one neutral colour
        return {f: "#777777" for f in ("n-gram", "HMM", "RNN", "Transformer", "other")}
    return dict(colours)


def _fmt(column: str, value: float | None) -> str:
    return "—" if value is None else COLUMNS[column][1].format(value)


# ---- literature anchors and reference runs ----------------------------------------------------

PATH_COLUMNS = {".".join(path): name for name, (path, _) in COLUMNS.items()}


def shipped_anchors() -> list:
    """The literature anchors that ship with lmladder (``reports/anchors.toml``)."""
    return load_anchors()


def _higher_is_better(metric: str) -> bool:
    """Direction of a record path such as "metrics.test.ppl" or "tasks.cloze.accuracy"."""
    parts = metric.split(".")
    if parts[0] == "tasks" and len(parts) >= 3:
        spec = next((m for m in _task_metrics(parts[1]) if m.name == parts[2]), None)
        return bool(spec.higher_is_better) if spec is not None else True
    return PATH_COLUMNS.get(metric) in HIGHER_IS_BETTER


def _cite(anchor) -> str:
    """An anchor's source up to its year ("Mikolov 2012", "Zaremba et al. 2014"), else its
    first clause."""
    found = re.match(r"(.*?\b(?:1[89]|20)\d\d)\b", str(anchor.source))
    return (found.group(1) if found else str(anchor.source).split(",")[0]).strip()


def _match_anchor(row: Row, anchors: list, metric: str):
    """The comparable anchor of ``metric`` that stands for this row's model: same family and
    the anchor's first model word (e.g. "KN5", "LSTM") among the label's words.  Of several,
    the one sharing most words with the label ("LSTM medium …" → Zaremba's medium LSTM), then
    the weakest published figure (the smallest published model of that kind)."""
    words = set(re.findall(r"[\w-]+", row.label.lower()))
    found = [a for a in anchors if a.comparable and a.metric == metric
             and a.family == row.family
             and (re.findall(r"[\w-]+", a.model.lower()) or [""])[0] in words]
    if not found:
        return None
    sign = 1 if _higher_is_better(metric) else -1
    return min(found, key=lambda a: (-len(words & set(re.findall(r"[\w-]+", a.model.lower()))),
                                     sign * a.value))


def distance(value: float, anchor) -> str:
    """How far ``value`` is from ``anchor.value``: a signed percentage within 10 %, a ratio
    beyond ("−0.01%", "2.3×")."""
    if anchor.value == 0:
        return f"{value - anchor.value:+.3g}"
    ratio = value / anchor.value
    if abs(ratio - 1) < 0.1:
        return f"{(ratio - 1) * 100:+.2f}%".replace("-", "−")
    return f"{ratio:.2g}×" if ratio < 10 else f"{ratio:,.0f}×"


def matching_reference(records: list[dict], reference: list[dict]) -> list[dict]:
    """The reference records of the datasets in ``records`` whose vocabulary hash equals the
    user's (a different corpus under the same name is never mixed in), without those that
    are the user's own records (the report of the reference folder itself)."""
    vocab = defaultdict(set)
    for r in records:
        sha = value_at(r, ("dataset", "vocab_sha256"))
        if r["status"] == "ok" and isinstance(sha, str):
            vocab[r["cell"]["dataset"]].add(sha)
    mine = {(r.get("key"), record_date(r)) for r in records}
    return [r for r in reference
            if r["status"] == "ok" and (r.get("key"), record_date(r)) not in mine
            and value_at(r, ("dataset", "vocab_sha256")) in vocab.get(r["cell"]["dataset"], ())]


def _count(value: float) -> str:
    """A budget figure as people write it: "180", "22.5", "10,000"."""
    return f"{value:,.0f}" if value == int(value) else f"{value:,.4g}"


def reference_caption(records: list[dict]) -> str:
    """Where reference records come from, in words: "lmladder reference run, commit a77eeff,
    2 CPU cores, training capped at 180 s per cell"."""
    provs = [r["provenance"] for r in records if isinstance(r.get("provenance"), dict)]
    commits = sorted({as_text(p.get("git_commit"))[:7] for p in provs if p.get("git_commit")})
    cores = sorted({p["cpu_count"] for p in provs if isinstance(p.get("cpu_count"), int)})
    parts = ["lmladder reference run"]
    if commits:
        parts.append(f"commit{'s' if len(commits) > 1 else ''} {', '.join(commits)}")
    if cores:
        parts.append(f"{'–'.join(str(c) for c in sorted({cores[0], cores[-1]}))} CPU cores")
    caps = []
    for key, unit in (("seconds", "s"), ("tokens", "tokens"), ("steps", "steps")):
        values = sorted({v for r in records
                         if (v := finite(value_at(r, ("cell", "budget", key)))) is not None})
        if values:
            span = _count(values[0]) + (f"–{_count(values[-1])}" if len(values) > 1 else "")
            caps.append(f"{span} {unit}")
    if caps:
        parts.append(f"training capped at {' / '.join(caps)} per cell")
    return ", ".join(parts)


def load_reference(folder: Path | None = None) -> list[dict]:
    """Every readable record under the shipped ``reports/reference/<matrix>/`` folders (none
    where the folder is missing or empty)."""
    folder = Path(__file__).resolve().parent / "reference" if folder is None else Path(folder)
    if not folder.is_dir():
        return []
    return scan_records(folder).records


# ---- the data every section reads ---------------------------------------------------------------


@dataclass
class Context:
    """The user's records, the matching reference records and the anchors, with their rows."""

    records: list[dict]
    reference: list[dict] = field(default_factory=list)
    anchors: list = field(default_factory=list)
    exports: list[str] = field(default_factory=list)

    def __post_init__(self):
        self.rows = aggregate(self.records)
        self.ref_rows = [row for row in aggregate(self.reference, "reference") if row.current]

    @property
    def datasets(self) -> list[str]:
        return sorted({row.dataset for row in self.rows})

    def measured(self, ds: str, *, full: bool = False) -> list[Row]:
        """The current own rows and the reference rows of ``ds`` (whole training split only
        where ``full``)."""
        rows = [row for row in self.rows if row.current and row.dataset == ds]
        rows += [row for row in self.ref_rows if row.dataset == ds]
        return [row for row in rows if _full(row)] if full else rows

    def anchors_of(self, ds: str) -> list:
        return [a for a in self.anchors if a.dataset in (ds, "*")]


# ---- leaderboards ------------------------------------------------------------------------------

COMPACT = ("parameters", "trained", "train tok/s", "score tok/s")


def _header(column: str, quality: bool) -> dict:
    better = ""
    if quality:
        better = "↓ lower is better" if column in LOWER_IS_BETTER else "↑ higher is better"
    return {"name": column, "unit": UNITS.get(column, ""), "better": better}


def _trained_cell(row: Row | None) -> dict:
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


def leaderboard(rows: list[Row], anchors: list = (), *, quality: str = "test ppl",
                oracle: dict | None = None, mark_best: bool = True) -> dict:
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

    def cell(c: str, value: float | None, text: str | None = None) -> dict:
        return {"text": _fmt(c, value) if text is None else text,
                "value": "" if value is None else repr(value), "flag": "",
                "best": c in best and value is not None and value == best[c]}

    body = []
    for row in rows:
        cells = [_trained_cell(row) if c == "trained" else cell(c, row.mean(c), row.text(c))
                 for c in columns]
        body.append({"kind": row.kind, "label": row.label, "family": row.family,
                     "settings": row.settings, "seeds": len(row.records), "code": row.revision,
                     "cells": cells, "cite": None, "sort": row.mean(quality),
                     # a learning curve's shares are details: the whole-data row ranks
                     "share": not _full(row)})
    for a in anchors:
        column = PATH_COLUMNS[a.metric]
        cells = [_trained_cell(None) if c == "trained"
                 else cell(c, a.value if c == column else None) for c in columns]
        for c in cells:
            c["best"] = False
        body.append({"kind": "literature", "label": a.model, "family": a.family,
                     "settings": a.note or a.source, "seeds": "", "code": "", "cells": cells,
                     "cite": {"source": a.source, "short": _cite(a), "url": a.url, "note": a.note,
                              "comparable": a.comparable},
                     "sort": a.value if column == quality else None})
    if isinstance(oracle, dict):  # an oracle holds {"valid": metrics, "test": metrics}
        cells = [_trained_cell(None) if c == "trained" else cell(
            c, finite(value_at(oracle, COLUMNS[c][0][1:])) if COLUMNS[c][0][0] == "metrics"
            else None) for c in columns]
        for c in cells:
            c["best"] = False
        body.append({"kind": "oracle", "label": "source (oracle)", "family": "", "settings": "",
                     "seeds": "", "code": "", "cells": cells, "cite": None, "sort": None})
    for b in body:
        b["fam"] = _slug(b["family"]) if b["family"] else ""
        if b["cite"] is not None and not re.match(r"https?://", b["cite"]["url"] or ""):
            b["cite"]["url"] = ""  # only web links are ever made clickable
    higher = quality in HIGHER_IS_BETTER
    body.sort(key=lambda r: (r["kind"] == "oracle", r["sort"] is None,
                             -(r["sort"] or 0) if higher else (r["sort"] or 0)))
    return {"columns": [{**_header(c, c in QUALITY), "detail": c not in compact}
                        for c in columns],
            "rows": body,
            # families have revisions of their own: the column matters when lmladder's differ
            "show_code": len({lmladder_version(row.records[0]) for row in rows}) > 1,
            "shares": sum(not _full(row) for row in rows)}


# ---- plots -------------------------------------------------------------------------------------


def _plot(kind: str, *args, **kwargs) -> Markup | None:
    """``plots.<kind>(...)`` as markup, or None where it draws nothing or plots lacks it."""
    draw = getattr(plots, kind, None)
    if draw is None:
        return None
    svg = draw(*args, **kwargs)
    return Markup(svg) if svg else None  # lmladder's own SVG; record text inside is escaped


DRAWABLE = 1e100  # larger magnitudes are corrupt records, not measurements: never drawn


def _drawable(value: float | None) -> bool:
    return value is not None and abs(value) < DRAWABLE


def _point(row: Row, x: float | None, y: float):
    return plots.Point(row.label, row.family, x, y, flagged=row.training.flagged,
                       reference=row.kind == "reference")


MAX_DRAWN = 24  # rows per figure: beyond this, labels become unreadable and figures heavy
MAX_CURVE_POINTS = 60  # points per training curve (evenly thinned, the last one kept)


def _few(points: list, *, front: bool = False, higher: bool = False) -> list:
    """At most :data:`MAX_DRAWN` of ``points`` (``plots.Point``): those on the Pareto front
    (where ``front``), then the best by y."""
    if len(points) <= MAX_DRAWN:
        return points
    keep = list(plots.pareto_front(points)) if front else []
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


def _lines(anchors: list, metric: str) -> list:
    return [plots.Line(a.value, f"{clip(a.model, 28)} {a.value:g} ({_cite(a)})"
                       + ("" if a.comparable else " — not comparable"))
            for a in anchors if a.metric == metric]


def _compute(row: Row) -> tuple[float | None, float | None]:
    """(training FLOPs, training seconds) of a row's first record, each None where unknown."""
    r = row.records[0]
    per_token = finite(value_at(r, ("fit", "notes", "train_flops_per_token")))
    tokens = finite(value_at(r, ("fit", "train_tokens")))
    flops = per_token * tokens if per_token and tokens else None
    seconds = finite(value_at(r, ("fit", "seconds"))) or finite(value_at(r, ("timing", "fit_s")))
    return flops, seconds


def learning_curve_lines(rows: list[Row]) -> dict[str, list[tuple]]:
    """Dataset -> [(label, row kind, [(train tokens, fit s, test ppl)], flagged)] for
    experiments run on several shares of the training data (a share grouped with its whole)."""
    curves = defaultdict(list)
    for row in rows:
        first = row.records[0]
        tokens = finite(value_at(first, ("dataset", "splits", "train", "tokens")))
        ppl, fit_s = finite(row.mean("test ppl")), finite(row.mean("fit s"))
        if tokens is None or ppl is None:
            continue
        whole = {**first, "cell": {**first["cell"], "fraction": 1.0}}
        curves[(row.dataset, row.kind, identity(whole))].append(
            (tokens, fit_s, ppl, row.label, row.training.flagged, row.family))
    out = defaultdict(list)
    for (ds, kind, _), pts in sorted(curves.items()):
        if len(pts) < 2:
            continue
        pts.sort(key=lambda p: p[0])
        label = re.sub(r" \[fraction=[^]]*\]$", "", pts[-1][3])
        out[ds].append((label, kind, [(t, s, p) for t, s, p, *_ in pts], pts[-1][4], pts[-1][5]))
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
    quality = _quality(full or ctx.measured(ds))
    metric = ".".join(COLUMNS[quality][0])
    unit = f"{quality} ({UNITS[quality]}, log scale)"
    lines = _lines(ctx.anchors_of(ds), metric)
    figures = []
    by_params = [_point(row, row.mean("parameters"), y) for row in full
                 if _drawable(y := row.mean(quality)) and _drawable(row.mean("parameters"))]
    figures.append(_plot("pareto", _few(by_params, front=True),
                         title=f"{ds}: {quality} against parameters",
                         x_label="parameters (log scale)", y_label=unit, lines=lines))
    compute = {row.identity + row.kind: _compute(row) for row in full}
    use_flops = all(c[0] for c in compute.values())
    x_label = ("training compute (FLOPs, log scale)" if use_flops else
               "training time (seconds, log scale; FLOPs unknown for some rows)")
    by_compute = [_point(row, x, y) for row in full
                  if _drawable(y := row.mean(quality))
                  and _drawable(x := compute[row.identity + row.kind][0 if use_flops else 1])]
    figures.append(_plot("pareto", _few(by_compute, front=True),
                         title=f"{ds}: {quality} against training", x_label=x_label,
                         y_label=unit, lines=lines))
    series, marks = [], []
    for rows in ([row for row in ctx.rows if row.current], ctx.ref_rows):
        found = learning_curve_lines([row for row in rows if row.dataset == ds]).get(ds, [])
        # the curves ending lowest (crossovers are still found among all of them)
        drawn = sorted(found, key=lambda f: min((p for *_, p in f[2] if _drawable(p)),
                                                 default=math.inf))
        drawn = drawn[:MAX_DRAWN // 2]
        series += [plots.Series(label, family, tuple((t, p) for t, _, p in pts
                                                     if _drawable(t) and _drawable(p)),
                                flagged, kind == "reference")
                   for label, kind, pts, flagged, family in drawn]
        marks += [plots.Mark(c["x"], c["y"], f"{clip(c['winner'], 18)} overtakes")
                  for c in _crossings(ds, [(label, pts) for label, _, pts, *_ in found])]
    figures.append(_plot("curves", series, title=f"{ds}: learning curves",
                         x_label="training tokens (log scale)",
                         y_label="test ppl (per token, log scale)", marks=marks,
                         lines=_lines(ctx.anchors_of(ds), "metrics.test.ppl"),
                         log_x=True, log_y=True))
    hmm = defaultdict(list)
    for row in full:
        states = finite(value_at(row.records[0], ("cell", "config", "states")))
        if row.family == "HMM" and states and _drawable(y := row.mean(quality)):
            hmm[(row.kind, row.records[0]["cell"]["model"])].append((states, y, row))
    hmm_series = [plots.Series(f"{model}" + (" (reference)" if kind == "reference" else ""),
                               "HMM", tuple(sorted((s, y) for s, y, _ in pts)),
                               any(r.training.flagged for *_, r in pts), kind == "reference")
                  for (kind, model), pts in sorted(hmm.items()) if len({p[0] for p in pts}) > 1]
    figures.append(_plot("curves", hmm_series, title=f"{ds}: HMM {quality} against states",
                         x_label="hidden states (log scale)", y_label=unit, log_x=True,
                         log_y=True))
    nats = "nats/char" if _level([r for row in full for r in row.records]) == "char" \
        else "nats/token"
    training_series = []
    for row in _ranked(full, quality)[:MAX_DRAWN // 2]:  # the best rows' curves
        history = value_at(row.records[0], ("fit", "history"))
        pts = tuple((finite(h.get("step", h.get("steps"))), v) for h in history or ()
                    if isinstance(h, dict) and _drawable(v := finite(h.get("valid_nll")))
                    and finite(h.get("step", h.get("steps"))) is not None)
        if len(pts) > 1:
            training_series.append(plots.Series(row.label, row.family, _thin(pts),
                                                row.training.flagged, row.kind == "reference"))
    figures.append(_plot("curves", training_series, title=f"{ds}: training curves",
                         x_label="step (optimizer steps or EM iterations)",
                         y_label=f"validation loss ({nats})",
                         lines=_lines(ctx.anchors_of(ds), "metrics.valid.nll")))
    speed, families = {}, {}
    for row in _ranked(full, quality)[:MAX_DRAWN]:
        if row.kind != "own":  # speeds compare only within one run, on one machine
            continue
        device = row.records[0]["cell"]["device"]
        values = {f"{what} {device}": v for what, c in (("train tok/s", "train tok/s"),
                                                         ("score tok/s", "score tok/s"))
                  if _drawable(v := row.mean(c)) and v > 0}
        if values:
            speed[row.label], families[row.label] = values, row.family
    figures.append(_plot("grouped_bars", speed, families, title=f"{ds}: throughput by model "
                         "and device", x_label="tokens per second (log scale)")
                   if speed else None)
    return [f for f in figures if f is not None]


# ---- efficiency: compressed variants of one trained model -------------------------------------

COMPRESSION = {  # config key -> (its value when off, how a value reads in a variant's name)
    "quantize": ("none", "{}"),
    "sparsity": (0.0, "{:.0%} sparse"),
    "prune": (0.0, "pruned {:g}"),
}
RATIOS = {  # column -> the column of its ratio to the uncompressed model
    "test ppl": "Δ ppl", "size on disk": "× size", "score tok/s": "× speed",
    "peak RSS MiB": "× memory"}
WORTH_A_MENTION = 1.1  # a variant this much smaller or faster than its model is summarised
MAX_MENTIONS = 6  # summary lines per dataset: the variants losing least perplexity


def compression(record: dict) -> dict:
    """The compression a record's model was given, as the config keys of :data:`COMPRESSION`
    that are on, e.g. ``{"quantize": "int8"}``; ``{}`` for an uncompressed model (a key that is
    missing, None or at its "off" value is off)."""
    config = record["cell"].get("config")
    config = config if isinstance(config, dict) else {}
    return {key: config[key] for key, (off, _) in COMPRESSION.items()
            if config.get(key) is not None and config[key] != off}


def base_identity(record: dict) -> str:
    """The :func:`~lmladder.results.identity` of the model a record's model was compressed
    from: the cell's model, config, budget, dataset, device, scoring, threads and data share,
    with the compression keys (:data:`COMPRESSION`) left out of its config.

    Records that share it are variants of one trained model (the same model entry, trained
    alike on the same data), told apart only by quantization, weight sparsity or n-gram
    pruning; with the seed, it pairs each variant's seed with the uncompressed model's."""
    cell = record["cell"]
    config = cell.get("config")
    if isinstance(config, dict):
        config = {k: v for k, v in config.items() if k not in COMPRESSION}
    return identity({"cell": {**cell, "config": config}})


def _variant_text(settings: dict) -> str:
    """A compression in a few words: "int8", "50% sparse", "pruned 1e-7", "uncompressed"."""
    words = []
    for key, value in settings.items():
        try:
            words.append(COMPRESSION[key][1].format(value))
        except (TypeError, ValueError):  # a value of an unexpected type: shown as it is
            words.append(f"{key}={clip(as_text(value))}")
    # "1e-07" as people write it: "1e-7"
    return re.sub(r"(\d)e([-+])0+(\d)", r"\1e\2\3", " + ".join(words)) or "uncompressed"


def _ngram_count(record: dict) -> float | None:
    """An n-gram model's number of n-grams (all orders): the sum of the "n-grams" column of
    its inspection table; None for other models."""
    tables = record.get("inspect") if isinstance(record.get("inspect"), list) else []
    for table in tables:
        columns = table.get("columns") if isinstance(table, dict) else None
        if not isinstance(columns, list) or "n-grams" not in columns:
            continue
        at = columns.index("n-grams")
        rows = table.get("rows") if isinstance(table.get("rows"), list) else []
        counts = [finite(r[at]) if isinstance(r, list) and len(r) > at else None for r in rows]
        if counts and None not in counts:
            return sum(counts)
    return None


@dataclass(frozen=True)
class Variant:
    """One row of an efficiency table: ``row`` is a model compressed with ``settings``
    (:func:`compression`), ``base`` the run's uncompressed row of the same trained model (the
    row itself when uncompressed; None where the run has none, or no variant to compare) and
    ``model`` its name."""

    row: Row
    settings: dict
    base: Row | None
    model: str

    @property
    def name(self) -> str:
        """E.g. "LSTM small · int8"; a model without variants is just its name."""
        if not self.settings and self.base is None:
            return self.model
        return f"{self.model} · {_variant_text(self.settings)}"

    def ratio(self, column: str) -> float | None:
        """This row's ``column`` over its base's, seed by seed (a seed is compared only with
        the same seed of the base), averaged over the seeds both have; None without any."""
        if self.base is None:
            return None
        path = COLUMNS[column][0]
        base = {r["cell"]["seed"]: finite(value_at(r, path)) for r in self.base.records}
        ratios = [v / b for r in self.row.records
                  if (v := finite(value_at(r, path))) is not None
                  and (b := base.get(r["cell"]["seed"]))]
        return sum(ratios) / len(ratios) if ratios else None


def variant_groups(rows: list[Row]) -> list[list[Variant]]:
    """The rows grouped into variants of one trained model (:func:`base_identity`), for the
    groups that have compressed variants or a recorded size on disk.

    A group lists its uncompressed row first, then its variants, largest on disk first; groups
    come in the order of their uncompressed (else first) row's test perplexity.  A model
    alone in its group has no base: there is nothing to compare."""
    groups = defaultdict(list)
    for row in rows:
        groups[base_identity(row.records[0])].append(row)
    out = []
    for same in groups.values():
        alone = len(same) == 1
        if alone and not same[0].values("size on disk"):
            continue
        settings = {id(row): compression(row.records[0]) for row in same}
        base = None if alone else next((row for row in same if not settings[id(row)]), None)
        same.sort(key=lambda row: (row is not base, -(row.mean("size on disk") or 0), row.label))
        model = (base or same[0]).label
        out.append([Variant(row, settings[id(row)], base, model) for row in same])
    return sorted(out, key=lambda g: (g[0].row.mean("test ppl") is None,
                                      g[0].row.mean("test ppl") or 0.0, g[0].model))


def dataset_variants(ctx: Context, ds: str) -> list[list[Variant]]:
    """:func:`variant_groups` of this run's rows of ``ds`` trained on the whole split: sizes,
    speeds and memory compare only within one run, on one machine (no reference rows)."""
    return variant_groups([row for row in ctx.measured(ds, full=True) if row.kind == "own"])


def _times(ratio: float, more: str, less: str) -> str:
    """A ratio as people say it: (0.25, "larger", "smaller") -> "4× smaller", 1.4 -> "1.4×
    larger", 123.4 -> "123× larger"."""
    factor = ratio if ratio >= 1 else 1 / ratio
    return (f"{factor:.2g}" if factor < 10 else f"{factor:,.0f}") + "× " + (
        more if ratio >= 1 else less)


def _change(ratio: float) -> str:
    """A ratio as a signed percentage change: 1.008 -> "+0.80%", 0.99 -> "−1.00%"."""
    return f"{(ratio - 1) * 100:+.2f}%".replace("-", "−")


def _variant_cells(v: Variant) -> dict[str, dict]:
    """Column -> cell (``text``, sortable ``value``) of one efficiency table row."""
    cells = {}
    for column, name in RATIOS.items():
        mean = v.row.mean(column)
        cells[column] = {"text": v.row.text(column) if mean is not None else "",
                         "value": "" if mean is None else repr(mean)}
        ratio = v.ratio(column)
        text = "" if ratio is None else _change(ratio) if column == "test ppl" \
            else f"{ratio:.2f}×"
        cells[name] = {"text": text, "value": "" if ratio is None else repr(ratio)}
    ngrams = next((n for r in v.row.records if (n := _ngram_count(r)) is not None), None)
    cells["n-grams"] = {"text": "" if ngrams is None else f"{ngrams:,.0f}",
                        "value": "" if ngrams is None else repr(ngrams)}
    return cells


EFFICIENCY_HEADS = {  # column -> unit, in table order
    "test ppl": "per token", "Δ ppl": "vs uncompressed", "size on disk": "MiB",
    "× size": "of uncompressed", "score tok/s": "tokens/s", "× speed": "of uncompressed",
    "peak RSS MiB": "MiB, whole cell", "× memory": "of uncompressed", "n-grams": "count"}


def efficiency_table(groups: list[list[Variant]]) -> dict:
    """Template data of one dataset's efficiency table: a row per variant of the models that
    have some (a model alone is in the leaderboard already), the columns of
    :data:`EFFICIENCY_HEADS` that some row has a value in."""
    body = [(v, _variant_cells(v)) for group in groups if len(group) > 1 for v in group]
    columns = [c for c in EFFICIENCY_HEADS if any(cells[c]["text"] for _, cells in body)]
    return {"heads": [{"name": c, "unit": EFFICIENCY_HEADS[c], "better": "", "detail": False}
                      for c in columns],
            "rows": [{"label": v.name, "fam": _slug(v.row.family), "settings": v.row.settings,
                      "seeds": len(v.row.records), "cells": [cells[c] for c in columns]}
                     for v, cells in body]}


def efficiency_plots(ds: str, groups: list[list[Variant]]) -> list[Markup]:
    """Test perplexity against size on disk and against scoring speed, a point per variant,
    the models without variants as single points beside them; at most :data:`MAX_DRAWN` // 2
    models, those with variants first, then by perplexity."""
    shown = sorted(groups, key=lambda group: len(group) == 1)[:MAX_DRAWN // 2]  # stable
    figures = []
    for column, what, unit in (("size on disk", "size on disk", "MiB"),
                               ("score tok/s", "scoring speed", "tokens/s")):
        drawn = {}
        for group in shown:
            drawn[group[0].model] = [
                plots.Point(_variant_text(v.settings) if len(group) > 1 else "", v.row.family,
                            v.row.mean(column), y, flagged=v.row.training.flagged)
                for v in group if _drawable(y := v.row.mean("test ppl"))
                and _drawable(v.row.mean(column))]
        figures.append(_plot("tradeoff", drawn, title=f"{ds}: test ppl against {what}",
                             x_label=f"{what} ({unit}, log scale)",
                             y_label="test ppl (per token, log scale)"))
    return [f for f in figures if f is not None]


def _mention(v: Variant, ds: str) -> str | None:
    """The summary line of a compressed variant that is smaller or faster than its model by
    :data:`WORTH_A_MENTION` at least, e.g. "LSTM small · int8 on ptb: 3.9× smaller, 1.4× faster
    scoring, +0.80% ppl"; None for any other."""
    size, speed, ppl = (v.ratio(c) for c in ("size on disk", "score tok/s", "test ppl"))
    if not v.settings or ppl is None or not (
            (size and 1 / size >= WORTH_A_MENTION) or (speed and speed >= WORTH_A_MENTION)):
        return None
    parts = [_times(size, "larger", "smaller")] if size else []
    if speed:
        parts.append(_times(speed, "faster", "slower") + " scoring")
    return f"{v.name} on {ds}: {', '.join(parts)}, {_change(ppl)} ppl"


def variant_lines(ctx: Context) -> list[str]:
    """One summary line per compressed variant worth a mention (:func:`_mention`), per dataset
    the :data:`MAX_MENTIONS` losing the least perplexity."""
    lines = []
    for ds in ctx.datasets:
        found = [(v.ratio("test ppl"), line) for group in dataset_variants(ctx, ds)
                 for v in group if (line := _mention(v, ds)) is not None]
        lines += [line for _, line in sorted(found)[:MAX_MENTIONS]]
    return lines


# ---- sections -------------------------------------------------------------------------------


def _status_order(status: str) -> tuple[int, str]:
    return (STATUSES.index(status) if status in STATUSES else len(STATUSES), status)


def _value_text(value: float, metric: str) -> str:
    column = PATH_COLUMNS.get(metric)
    return _fmt(column, value) if column else f"{value:.4g}"


def _ranked(rows: list[Row], column: str) -> list[Row]:
    have = [row for row in rows if row.mean(column) is not None]
    return sorted(have, key=lambda row: row.mean(column), reverse=column in HIGHER_IS_BETTER)


def _anchor_line(row: Row, anchor, metric: str) -> str:
    value = _mean_at(row, anchor.path())
    text = (f"{row.label} {_value_text(value, metric)} — literature {anchor.value:g} "
            f"({anchor.model}, {_cite(anchor)}): {distance(value, anchor)}")
    t = row.training
    if t.flagged:
        text += f" — trained {t.amount or 'an unknown amount'}, not converged"
    return text + (" [reference run]" if row.kind == "reference" else "")


def _dataset_summary(ctx: Context, ds: str) -> list[str]:
    rows = ctx.measured(ds, full=True)
    quality = _quality(rows or ctx.measured(ds))
    anchors = ctx.anchors_of(ds)
    lines = []
    for kind, what in (("own", "best of this run"), ("reference", "best reference row")):
        ranked = _ranked([row for row in rows if row.kind == kind], quality)
        if not ranked:
            continue
        top = ranked[0]
        text = f"{what}: {top.label} {quality} {top.text(quality)}"
        if top.training.flagged:
            text += f" ({top.training.flag})"
            steady = next((row for row in ranked if not row.training.flagged), None)
            if steady is not None:
                text += (f"; best converged row: {steady.label} "
                         f"{quality} {steady.text(quality)}")
        lines.append(text)
    own = [row for row in rows if row.kind == "own"]
    for a_metric in sorted({a.metric for a in anchors if a.comparable
                            and a.metric.startswith("metrics.")}):
        higher = _higher_is_better(a_metric)
        path = tuple(a_metric.split("."))
        scored = sorted(((v, row) for row in own if (v := _mean_at(row, path)) is not None),
                        key=lambda vr: -vr[0] if higher else vr[0])
        if not scored:
            continue
        pick = max if higher else min
        top = pick((a for a in anchors if a.comparable and a.metric == a_metric),
                   key=lambda a: a.value)
        value, row = scored[0]
        name = PATH_COLUMNS.get(a_metric, a_metric)
        lines.append(f"best literature figure ({name}): {top.model} {top.value:g} "
                     f"({_cite(top)}); this run's best, {row.label} "
                     f"{_value_text(value, a_metric)}, is {distance(value, top)} of it")
    seen = set()
    own_labels = {row.label for row in rows if row.kind == "own"}
    for row in _ranked(rows, quality) + [r for r in rows if r.mean(quality) is None]:
        if row.kind == "reference" and row.label in own_labels:
            continue  # the user's own row of that model speaks for it
        for a_metric in sorted({a.metric for a in anchors if a.comparable}):
            anchor = _match_anchor(row, anchors, a_metric)
            if anchor is not None and _mean_at(row, anchor.path()) is not None \
                    and (row.identity, row.kind, a_metric) not in seen:
                seen.add((row.identity, row.kind, a_metric))
                lines.append(_anchor_line(row, anchor, a_metric))
    own = [row for row in rows if row.kind == "own"]
    for column, what in (("score tok/s", "scoring"), ("train tok/s", "training")):
        ranked = [row for row in _ranked(own, column) if row.mean(column) > 0]
        if len(ranked) > 1 and ranked[0].mean(column) > ranked[-1].mean(column):
            fast, slow = ranked[0], ranked[-1]
            lines.append(f"{what} speed: {fast.label} ({fast.text(column)} tok/s) is "
                         f"{fast.mean(column) / slow.mean(column):,.0f}× faster than "
                         f"{slow.label} ({slow.text(column)} tok/s), same run")
    return lines


def _task_summary(ctx: Context, ds: str) -> list[str]:
    lines = []
    rows = ctx.measured(ds, full=True)
    for name in _task_names(rows):
        specs = _task_metrics(name)
        if not specs:
            continue
        spec = specs[0]
        scored = [(row, v) for row in rows if (v := _task_mean(row, name, spec.name)) is not None]
        if not scored:
            continue
        scored.sort(key=lambda rv: rv[1], reverse=spec.higher_is_better)
        row, value = scored[0]
        text = f"{name} {spec.name}: best {row.label} {value:.4g}"
        if row.kind == "reference":
            text += " [reference run]"
        if row.training.flagged:
            text += f" ({row.training.flag})"
        if spec.chance is not None:
            text += f"; chance {spec.chance:.3g}"
        metric = f"tasks.{name}.{spec.name}"
        for a in ctx.anchors_of(ds):
            if a.metric == metric:
                text += (f"; literature {a.value:g} ({a.model}, {_cite(a)}"
                         + (f": {distance(value, a)})" if a.comparable
                            else "; not comparable)"))
        lines.append(text)
    return lines


def _first_line(message: str, cell: dict) -> str:
    """The cause of a failure in one line: the message's first line without the parts that
    name one cell (its label, model, seed), so cells failing alike share it."""
    line = (message.strip().splitlines() or [""])[0]
    for part in (cell.get("label"), cell.get("model")):
        if isinstance(part, str) and len(part) > 2:
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


def problem_causes(records: list[dict]) -> list[dict]:
    """Failed and skipped cells, one entry per cause (status, error type, first line of the
    message without cell-specific parts) with the cells it affected."""
    causes = defaultdict(lambda: defaultdict(set))
    details = {}
    for r in distinct(r for r in records if r["status"] != "ok"):
        error = r.get("error") if isinstance(r.get("error"), dict) else {}
        message = as_text(error.get("message") or "")
        cause = (r["status"], as_text(error.get("type") or "no error type recorded"),
                 _first_line(message, r["cell"]))
        details.setdefault(cause, message)
        c = r["cell"]
        causes[cause][(c["label"], c["dataset"], c["device"])].add(c["seed"])
    entries = []
    for cause, cells in sorted(causes.items(), key=lambda kv: kv[0]):
        status, kind, line = cause
        listed = [f"{label} on {ds} ({device}): seed{'s' if len(seeds) > 1 else ''} "
                  + ", ".join(str(s) for s in sorted(seeds, key=_seed_order))
                  for (label, ds, device), seeds in sorted(cells.items())]
        full = details[cause].strip()
        entries.append({"status": status, "type": kind, "message": line,
                        "detail": full if full != line else "", "hint": _hint(full),
                        "count": sum(len(s) for s in cells.values()), "cells": listed})
    return entries


def summary(ctx: Context) -> Section | None:
    """The page's first screen: best rows, distances to the literature, speed ratios,
    compressed variants worth a mention, learning-curve crossovers and one line per cause of
    failure."""
    groups = []
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


def overview(ctx: Context) -> Section:
    records = ctx.records
    provs = sorted((r["provenance"] for r in records if isinstance(r.get("provenance"), dict)),
                   key=lambda p: str(p.get("date") or ""))
    last = provs[-1] if provs else {}
    commits = sorted({as_text(p.get("git_commit") or "unknown")[:10]
                      + (" (dirty)" if p.get("git_dirty") is True else "") for p in provs})
    dates = sorted(str(p["date"]) for p in provs if p.get("date"))
    status = Counter(r["status"] for r in distinct(records))
    cores = last.get("cpu_count")
    devices = ", ".join(sorted({r["cell"]["device"] for r in records}))
    if isinstance(cores, int) and not isinstance(cores, bool):
        devices += f" ({cores} CPU cores)"
    versions = last.get("versions") if isinstance(last.get("versions"), dict) else {}
    platform = ", ".join(as_text(last[k]) if k == "platform" else f"Python {as_text(last[k])}"
                         for k in ("platform", "python") if last.get(k))
    items = [
        ("cells", ", ".join(f"{status[s]} {s}" for s in sorted(status, key=_status_order))),
        ("datasets", ", ".join(sorted({r["cell"]["dataset"] for r in records}))),
        ("devices", devices),
        ("run between", f"{dates[0]} and {dates[-1]}" if dates else ""),
        ("lmladder commit", ", ".join(commits)),
        ("code revisions", "; ".join(sorted({code_revision(r) for r in records}))),
        ("platform", platform),
        ("versions", ", ".join(f"{k} {as_text(v)}" for k, v in versions.items() if v)),
    ]
    if ctx.reference:
        items.append(("reference rows", reference_caption(ctx.reference)))
    return Section("Overview", "overview.html.j2", {"items": items})


def _cards(groups: list[tuple[str, list[dict]]]) -> Markup | None:
    return Markup(model_cards(groups)) if groups else None


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
        oracle = next((r["oracle"] for r in recs if isinstance(r.get("oracle"), dict)), None)
        quality = _quality(current + refs)
        note = _dataset_note(recs)
        if any(len(row.records) > 1 for row in mine):
            note += " " + SPREAD_NOTE
        shown = current + refs
        parts.append({
            "name": ds, "anchor": "ds-" + _slug(ds), "note": note,
            "reference": reference_caption([r for row in refs for r in row.records])
            if refs else "",
            "table": leaderboard(shown, ctx.anchors_of(ds), quality=quality, oracle=oracle),
            "older": leaderboard(older, quality=quality, mark_best=False) if older else None,
            "flagged": sum(row.training.flagged for row in shown),
            "plots": dataset_plots(ctx, ds),
            "cards": _cards([(row.label, row.records) for row in shown]),
        })
    return Section("Results by dataset", "results.html.j2",
                   {"datasets": parts, "older": any(not row.current for row in ctx.rows)})


def _task_names(rows: list[Row]) -> list[str]:
    return sorted({t for row in rows for r in row.records
                   for t in (r.get("tasks") if isinstance(r.get("tasks"), dict) else {})})


def _task_metrics(name: str) -> tuple:
    from lmladder import tasks

    try:
        return tasks.task_class(name).metrics
    except Exception:  # noqa: BLE001 -- a task of a plugin that is not installed here
        return ()


def _task_mean(row: Row, name: str, metric: str) -> float | None:
    values = [v for r in row.records if isinstance(t := (r.get("tasks") or {}).get(name), dict)
              and (v := finite(t.get(metric))) is not None]
    return sum(values) / len(values) if values else None


def _task_cell(row: Row, name: str, spec) -> dict:
    """A task score as ``{"text", "value"}``: mean ± std over seeds, "n/a" where the task
    cannot use the model, the task's status where it did not run, "" where not run at all."""
    results = [(r.get("tasks") or {}).get(name) for r in row.records]
    results = [t for t in results if isinstance(t, dict)]
    if not results:
        return {"text": "", "value": ""}
    values = [v for t in results if (v := finite(t.get(spec.name))) is not None]
    if not values:
        text = "n/a" if results[0].get("status") == "not applicable" else as_text(
            results[0].get("status", "—"))
        return {"text": text, "value": ""}
    text = f"{sum(values) / len(values):.4g}"
    if len(values) > 1:
        text += f" ± {statistics.stdev(values):.2g}"
    return {"text": text, "value": repr(sum(values) / len(values))}


def task_scores(ctx: Context) -> Section | None:
    """One leaderboard per dataset and task: rows (own and reference) by the task's first
    metric, its other metrics as details, chance level and literature rows, and one bar chart
    of the first metric."""
    parts = []
    for ds in ctx.datasets:
        rows = ctx.measured(ds)
        for name in _task_names(rows):
            specs = _task_metrics(name)
            if not specs:
                continue
            body = []
            for row in rows:
                cells = [_task_cell(row, name, spec) for spec in specs]
                if any(c["text"] != "" for c in cells):
                    body.append({"kind": row.kind, "label": row.label, "family": row.family,
                                 "settings": row.settings, "seeds": len(row.records),
                                 "trained": _trained_cell(row), "cells": cells, "cite": None,
                                 "sort": _task_mean(row, name, specs[0].name),
                                 "share": not _full(row)})
            if not body:
                continue
            first = specs[0]
            best = [b["sort"] for b in body if b["sort"] is not None]
            best = (max if first.higher_is_better else min)(best) if best else None
            for b in body:
                b["cells"][0]["best"] = best is not None and b["sort"] == best
            anchors = [a for a in ctx.anchors_of(ds) if a.metric.startswith(f"tasks.{name}.")]
            for a in anchors:
                metric = a.metric.split(".", 2)[2]
                cells = [{"text": f"{a.value:.4g}" if s.name == metric else "—",
                          "value": repr(a.value) if s.name == metric else ""} for s in specs]
                body.append({"kind": "literature", "label": a.model, "family": a.family,
                             "settings": a.note or a.source, "seeds": "",
                             "trained": _trained_cell(None), "cells": cells,
                             "cite": {"source": a.source, "short": _cite(a), "url": a.url,
                                      "note": a.note, "comparable": a.comparable},
                             "sort": a.value if metric == first.name else None})
            for b in body:
                b["fam"] = _slug(b["family"]) if b["family"] else ""
                if b["cite"] is not None and not re.match(r"https?://", b["cite"]["url"] or ""):
                    b["cite"]["url"] = ""
            body.sort(key=lambda b: (b["sort"] is None,
                                     -(b["sort"] or 0) if first.higher_is_better
                                     else (b["sort"] or 0)))
            heads = [{"name": s.name, "unit": "",
                      "better": "↑ higher is better" if s.higher_is_better
                      else "↓ lower is better", "detail": i > 0}
                     for i, s in enumerate(specs)]
            chance = [{"text": "" if s.chance is None else f"{s.chance:.3g}",
                       "value": "" if s.chance is None else repr(s.chance)} for s in specs]
            scored = [row for row in rows if _drawable(_task_mean(row, name, first.name))]
            points = [plots.Point(row.label, row.family, None,
                                  _task_mean(row, name, first.name),
                                  flagged=row.training.flagged,
                                  reference=row.kind == "reference") for row in scored]
            shown = _few([p for p, row in zip(points, scored, strict=True) if _full(row)],
                         higher=first.higher_is_better)
            figure = _plot("bars", shown, title=f"{ds}: {name} {first.name}",
                           y_label=first.name, higher_is_better=first.higher_is_better,
                           chance=first.chance,
                           lines=_lines(anchors, f"tasks.{name}.{first.name}"))
            parts.append({"dataset": ds, "task": name, "heads": heads, "rows": body,
                          "chance": chance, "plot": figure})
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
                       and row.records[0]["cell"]["model"] == model), "other")
        by_key[key].append(plots.Series(f"{model} on {ds}", family, tuple(pts)))
    for key, series in sorted(by_key.items()):
        # the sweeps reaching the lowest perplexity; every one is listed in text below
        series = sorted(series, key=lambda s: min(y for _, y in s.points))[:MAX_DRAWN // 2]
        figures.append(_plot("curves", series, title=f"test ppl against {key}",
                             x_label=key, y_label="test ppl (per token)"))
    lines = [f"{model} on {ds}: " + ", ".join(f"{key}={x:g} → {y:.2f}" for x, y in pts)
             for (model, ds, key), pts in found.items()]
    return Section("Scaling curves", "sweeps.html.j2",
                   {"plots": [f for f in figures if f is not None], "lines": lines})


def problems(ctx: Context) -> Section | None:
    """Failed and skipped cells, one entry per cause with the cells it affected collapsed."""
    causes = problem_causes(ctx.records)
    return Section("Failed and skipped cells", "problems.html.j2",
                   {"causes": causes}) if causes else None


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
    summary,
    overview,
    per_dataset,
    task_scores,
    efficiency,
    sweeps,
    protocol,
    problems,
]


EXPORTS = ("results.csv", "results.md", "results.json")


def render_html(records: list[dict], title: str = "lmladder report",
                unreadable: Iterable[str] = (), *, reference_records: list[dict] | None = None,
                anchors: list | None = None, exports: Iterable[str] = ()) -> str:
    """The report page for ``records``.

    ``unreadable`` lines (see :func:`~lmladder.results.scan_records`) are listed in a section
    of their own; ``reference_records`` are offered as reference rows (only those of a dataset
    and vocabulary of ``records`` are shown); ``anchors`` are the literature figures (None:
    the shipped ones; ``[]``: none); ``exports`` are file names beside the page to link to.
    """
    unreadable = [as_text(line) for line in unreadable]
    records = [_normalise(r) for r in records]
    if not records and not unreadable:
        raise ValueError("no result records to report")
    ctx = _context(records, reference_records, anchors, exports)
    sections = [s for s in (f(ctx) for f in SECTIONS) if s is not None]
    if (section := unreadable_files(unreadable)) is not None:
        sections.insert(1 if records else 0, section)
    matrices = sorted({r["cell"]["matrix"] for r in records})
    colours = [(_slug(f), c) for f, c in _family_colours().items()
               if re.fullmatch(r"#[0-9a-fA-F]{3,8}", str(c))]
    return environment().get_template("report.html.j2").render(
        title=title,
        subtitle=f"matrix: {', '.join(matrices)} — {len(distinct(records))} cells",
        sections=sections, colours=colours, exports=list(ctx.exports),
        datasets=[(ds, "ds-" + _slug(ds)) for ds in ctx.datasets] if ctx.rows else [],
    )


def _context(records, reference_records, anchors, exports) -> Context:
    reference = [_normalise(r) for r in reference_records or ()]
    return Context(records, matching_reference(records, reference),
                   shipped_anchors() if anchors is None else list(anchors), list(exports))


# ---- exports ------------------------------------------------------------------------------------

EXPORT_METRICS = ("test ppl", "test bpc", "test word ppl", "valid ppl", "parameters",
                  "trained tokens", "train tok/s", "score tok/s")


def export_rows(records: list[dict], reference_records: list[dict] | None = None,
                anchors: list | None = None) -> list[dict]:
    """The leaderboard rows of every dataset as flat dicts (dataset, model, family, source
    ("own", "reference", "literature"), the metrics in :data:`EXPORT_METRICS`, epochs, steps,
    converged verdict, citation), as the CSV and Markdown exports write them."""
    ctx = _context([_normalise(r) for r in records], reference_records, anchors, ())
    out = []
    for ds in ctx.datasets:
        for row in ctx.measured(ds):
            t = row.training
            out.append({"dataset": ds, "model": row.label, "family": row.family,
                        "source": row.kind, **{c: row.mean(c) for c in EXPORT_METRICS},
                        "epochs": t.epochs, "steps": t.steps, "converged": t.verdict,
                        "citation": "",
                        # each task's first metric, under the anchors' record path
                        **{f"tasks.{name}.{specs[0].name}": _task_mean(row, name, specs[0].name)
                           for name in _task_names([row])
                           if (specs := _task_metrics(name))}})
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


def _csv(rows: list[dict]) -> str:
    names = list(dict.fromkeys(k for row in rows for k in row))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return buf.getvalue()


def _markdown(rows: list[dict]) -> str:
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
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    lines += ["| " + " | ".join(cell(k, row.get(k)) for k in names) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def render_report(results_dir: str | Path, output: str | Path, *, reference: bool = True) -> Path:
    """Render every record under ``results_dir`` into the HTML file ``output``, and write
    ``results.csv``, ``results.md`` (the leaderboard rows) and ``results.json`` (the merged
    records: the user's and the reference rows shown, a JSON list) beside it.

    ``reference``: show the shipped reference runs beside the user's rows.  Every file is
    replaced atomically (an interrupted render leaves the previous report, and no temporary
    file) and is created with the permissions of any new file (``0666 & ~umask``).  Raises
    :class:`ReportError` when ``output`` is a folder, :class:`FileNotFoundError` when
    ``results_dir`` holds no readable record.
    """
    output = Path(output)
    if output.is_dir():
        raise ReportError(f"{output}: is a folder; give a file name for the report, "
                          f"e.g. {output / 'report.html'}")
    scan = scan_records(results_dir)
    if not scan.records:
        why = f"; {len(scan.unreadable)} could not be read: {scan.unreadable[0]}" \
            if scan.unreadable else ""
        raise FileNotFoundError(f"{results_dir}: no readable result records{why}")
    shipped = load_reference() if reference else []
    anchors = shipped_anchors()
    page = render_html(scan.records, unreadable=scan.unreadable, reference_records=shipped,
                       anchors=anchors, exports=EXPORTS)
    rows = export_rows(scan.records, shipped, anchors)
    merged = scan.records + matching_reference([_normalise(r) for r in scan.records],
                                               [_normalise(r) for r in shipped])
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ReportError(f"{output.parent}: cannot create the report's folder "
                          f"({err.strerror or err})") from None
    atomic_write(output.parent / "results.csv", _csv(rows))
    atomic_write(output.parent / "results.md", _markdown(rows))
    # Python's json reads back the NaN a failed metric may hold; strict readers see null-free
    # records everywhere else
    atomic_write(output.parent / "results.json",
                 json.dumps(merged, indent=1, sort_keys=True, default=str))
    atomic_write(output, page)
    return output

