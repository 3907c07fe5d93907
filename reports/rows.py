"""Rows: the report's unit.  A row is one experiment -- the successful records of one
:func:`~lmladder.results.identity` and one code revision, one per seed -- aggregated over its
seeds, with its display label, its training amount and convergence verdict (:func:`training`).

Records are grouped by identity (model, config, budget, dataset, device, scoring, threads, data
share) and by code revision, and only the seeds of one group are averaged.  For each identity
the revision with the newest record is the current one; the others are listed apart as older
code.  Two identities that share a label are told apart by the settings that differ between
them.  :class:`Context` holds what every section reads: the user's records and rows, the
matching reference rows and the literature anchors.
"""

from __future__ import annotations

import functools
import re
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from lmladder.numbers import finite
from lmladder.record import MetricSpec, Record
from lmladder.reports.anchors import Anchor
from lmladder.reports.reference import count_text
from lmladder.reports.values import as_text, clip, mapping_at, number_at, value_at
from lmladder.results import code_revision, identity, newest_per

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
PATH_COLUMNS = {".".join(path): name for name, (path, _) in COLUMNS.items()}


def fmt(column: str, value: float | None) -> str:
    return "—" if value is None else COLUMNS[column][1].format(value)


def _experiment(record: Record) -> tuple[str, str, int]:
    """What a record measured, whatever its matrix or label: identity, code revision, seed."""
    return identity(record), code_revision(record), record.cell.seed


def distinct(records: Iterable[Record]) -> list[Record]:
    """``records`` without repeats of one experiment and status (a cell run again under a
    renamed matrix or label has another key but measured the same thing); the newest is kept."""
    return newest_per(records, lambda r: (*_experiment(r), r.status))


# Registry names of the floor models: a uniform model (p = 1/|V|) and a unigram.  Every table
# shows their rows; a row worse than its dataset's FLOOR row is greyed and never ranked.
BASELINES = ("uniform", "unigram")
FLOOR = "unigram"


# ---- how much a record trained ---------------------------------------------------------------

CONVERGED_STOPS = {  # fit.notes.stopped_by -> why the fit itself decided to stop
    "converged": "converged within its tolerance", "patience": "validation stopped improving",
    "tol": "change below its tolerance"}
BUDGET_STOPS = {"budget": "budget spent", "max_iterations": "iteration limit reached"}
# A last validation gain above this many nats per epoch of training between the last two checks
# means training was cut short (another epoch would still lower the perplexity by > 2 %); where
# the history does not say how many tokens lay between them, more than STILL_IMPROVING_NATS.
STILL_IMPROVING_PER_EPOCH = 0.02
STILL_IMPROVING_NATS = 0.002
BUDGET_SPENT = 0.9  # a fit that used this share of its seconds stopped for the clock


ITERATIVE = ("converged", "not converged", "unknown")  # verdicts of a fit that iterates


@dataclass(frozen=True)
class Training:
    """How much one record trained and whether it converged.

    ``epochs``: passes over the training split (training tokens / train split tokens);
    ``steps``: optimizer steps or EM iterations (``fit.steps``); ``verdict`` is one of
    "converged", "not converged", "closed form", "not trained", "unknown"; ``reason`` says why in
    a few words; ``budget`` is the cell's budget as text ("12 s", "100,000 tokens") or "";
    ``planned`` is what was trained against what was planned, in a few words ("7 / 5,000 steps,
    0.11 epochs, cut at 180 s"; :func:`planned_actual`).
    """

    epochs: float | None
    steps: int | None
    verdict: str
    reason: str
    budget: str = ""
    planned: str = ""
    iterations: int | None = None  # passes of a fit that counts iterations (:func:`iterations`)

    @property
    def short(self) -> bool:
        """The model trained (it is not zero-shot) and saw less than one pass of its data."""
        return self.verdict != "not trained" and self.epochs is not None and self.epochs < 1

    @property
    def converged(self) -> bool:
        """True only where the fit finished: verdict "converged" or "closed form", and at
        least one epoch where the epochs are known."""
        return self.verdict in ("converged", "closed form") and not self.short

    @property
    def flagged(self) -> bool:
        """The row's numbers say what the budget bought, not what the model can do: verdict
        "not converged" or "unknown", or a trained model under one epoch.  A zero-shot model
        ("not trained") is neither flagged nor converged."""
        return self.verdict in ("not converged", "unknown") or self.short

    @property
    def amount(self) -> str:
        """Epochs and steps in a few words, e.g. "0.06 epochs, 90 steps"."""
        n = self.iterations
        parts = [] if n is None else [f"{n:,} iteration{'' if n == 1 else 's'}"]
        if self.epochs is not None:
            parts.append(epochs_text(self.epochs))
        if self.steps is not None and self.verdict != "closed form":
            parts.append(f"{self.steps:,} steps")
        return ", ".join(parts)

    @property
    def why(self) -> str:
        """Why a flagged row is flagged, in a few words ("" where it is not)."""
        if not self.flagged:
            return ""
        words = {"not converged": "not converged", "unknown": "convergence unknown"}
        parts = [words[self.verdict]] if self.verdict in words else []
        if self.short:
            parts.append("under 1 epoch")
        return ", ".join(parts)

    @property
    def flag(self) -> str:
        """The warning a flagged row carries, else ""."""
        if not self.flagged:
            return ""
        return f"⚠ {self.why}: " + ", ".join(p for p in (self.amount, self.reason) if p)


def epochs_text(epochs: float) -> str:
    count = f"{epochs:.2g}" if epochs < 10 else f"{epochs:,.0f}"
    return f"{count} epoch{'' if count == '1' else 's'}"


def _budget(record: Record) -> dict:
    """The budget the fit was given: as applied (scaled and capped), else as planned."""
    return dict(record.budget_used or record.cell.budget or {})


def _budget_text(record: Record) -> str:
    budget = _budget(record)
    parts = []
    for key, unit in (("seconds", "s"), ("tokens", "tokens"), ("steps", "steps")):
        value = finite(budget.get(key))
        if value is not None:
            parts.append(f"{count_text(value)} {unit}")
    return ", ".join(parts)


def _budget_spent(record: Record, fit: dict) -> bool:
    """The fit stopped because its budget ran out: it used (nearly) all of its seconds, or all
    of its tokens or steps."""
    budget = _budget(record)
    used = {"seconds": finite(fit.get("seconds")) or number_at(record, ("timing", "fit_s")),
            "tokens": finite(fit.get("train_tokens")), "steps": finite(fit.get("steps"))}
    for key, share in (("seconds", BUDGET_SPENT), ("tokens", 1.0), ("steps", 1.0)):
        limit = finite(budget.get(key))
        if limit and used[key] is not None and used[key] >= share * limit:
            return True
    return False


def _seconds(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 else f"{value:.2g}"


def iterations(record: Record) -> int | None:
    """The passes over its data of a fit that counts iterations (EM, an HMM's passes):
    ``fit.notes.passes``, else the last ``iteration`` or ``pass`` number in ``fit.history``;
    None where the fit counts only steps, tokens or epochs."""
    fit = dict(record.fit or {})
    passes = mapping_at(fit, ("notes",)).get("passes")
    if isinstance(passes, int) and not isinstance(passes, bool):
        return passes
    history = fit.get("history") if isinstance(fit.get("history"), list) else []
    counted = [n for h in history if isinstance(h, dict) for key in ("iteration", "pass")
               if (n := finite(h.get(key))) is not None]
    return int(max(counted)) if counted else None


def planned_actual(record: Record, epochs: float | None, iterative: bool) -> str:
    """What the fit did against what was planned, in a few words: iterations (the config's
    ``max_iterations``, :func:`iterations`), planned steps, tokens and epochs (the config's
    ``max_epochs``) as "actual / planned", epochs and steps otherwise as
    they were, and a seconds budget as "cut at 180 s" where the fit used it up, else "9.4 s of
    60 s".  ``iterative``: the fit takes steps (an n-gram's single count is not one)."""
    budget, fit = _budget(record), dict(record.fit or {})
    actual = {"steps": finite(fit.get("steps")), "tokens": finite(fit.get("train_tokens"))}
    parts = []
    if (done := iterations(record)) is not None:  # planned: the config's max_iterations
        plan = finite(value_at(record.cell.config, ("max_iterations",)))
        parts.append(f"{done:,}" + (f" / {count_text(plan)}" if plan else "") + " iterations")
    for key in ("steps", "tokens"):
        plan = finite(budget.get(key))
        if plan is not None and actual[key] is not None:
            parts.append(f"{count_text(actual[key])} / {count_text(plan)} {key}")
        elif key == "steps" and iterative and actual[key] is not None:
            parts.append(f"{count_text(actual[key])} steps")
    plan = finite(budget.get("epochs")) or finite(value_at(record.cell.config, ("max_epochs",)))
    if plan is not None and epochs is not None:
        parts.append(f"{epochs:.2g} / {count_text(plan)} epochs")
    elif epochs is not None:
        parts.append(epochs_text(epochs))
    seconds = finite(budget.get("seconds"))
    spent = finite(fit.get("seconds")) or number_at(record, ("timing", "fit_s"))
    if seconds is not None and spent is not None:
        parts.append(f"cut at {count_text(seconds)} s" if spent >= BUDGET_SPENT * seconds
                     else f"{_seconds(spent)} s of {count_text(seconds)} s")
    elif spent is not None:
        parts.append(f"{_seconds(spent)} s")
    return ", ".join(parts)


def training(record: Record) -> Training:
    """The training amount and convergence verdict of ``record``, generic across families.

    In order: no training tokens -> "not trained" (zero-shot); ``fit.notes.stopped_by`` in
    {converged, patience, tol} -> "converged", in {budget, max_iterations} -> "not converged";
    else at least two validation losses (``valid_nll``, nats/token) in ``fit.history`` ->
    "not converged" when the last improved on the one before by more than
    :data:`STILL_IMPROVING_PER_EPOCH` nats per epoch trained between them (by more than
    :data:`STILL_IMPROVING_NATS` where the history has no token counts), else "converged"; a
    budget used up (seconds, tokens or steps) with nothing else to go by -> "not converged"; no
    history and at most one step -> "closed form" (counted n-grams); anything else -> "unknown".
    """
    fit = dict(record.fit or {})
    notes = mapping_at(fit, ("notes",))
    tokens = finite(fit.get("train_tokens"))
    split = number_at(record, ("dataset", "splits", "train", "tokens"))
    epochs = finite(notes.get("epochs"))
    if epochs is None and tokens is not None and split:
        epochs = tokens / split
    steps = fit.get("steps")
    steps = steps if isinstance(steps, int) and not isinstance(steps, bool) else None
    budget = _budget_text(record)

    def verdict(v: str, reason: str) -> Training:
        return Training(epochs, steps, v, reason, budget,
                        planned_actual(record, epochs, v in ITERATIVE), iterations(record))

    if tokens == 0:
        return verdict("not trained", "zero-shot: no training tokens")
    stopped = notes.get("stopped_by")
    if stopped in CONVERGED_STOPS:
        return verdict("converged", CONVERGED_STOPS[stopped])
    if stopped in BUDGET_STOPS:
        return verdict("not converged", BUDGET_STOPS[stopped])
    history = fit.get("history") if isinstance(fit.get("history"), list) else []
    checks = [h for h in history if finite(value_at(h, ("valid_nll",))) is not None]
    if len(checks) >= 2:
        return verdict(*_last_gain(checks[-2], checks[-1], split))
    if _budget_spent(record, fit):
        return verdict("not converged", "budget spent")
    if not history and (steps is None or steps <= 1) and tokens:
        return verdict("closed form", "counted in one pass")
    return verdict("unknown", "the record does not say")


def _last_gain(before: dict, last: dict, split: float | None) -> tuple[str, str]:
    """The verdict and reason from the last two validation checks: the gain per epoch trained
    between them where the history has tokens (and the train split's size is known), else the
    gain itself."""
    gain = before["valid_nll"] - last["valid_nll"]
    a, b = finite(before.get("tokens")), finite(last.get("tokens"))
    if a is not None and b is not None and b > a and split:
        rate = gain / ((b - a) / split)
        if rate > STILL_IMPROVING_PER_EPOCH:
            return "not converged", (f"validation still improving ({rate:.3f} nats per epoch at "
                                     "the last check)")
        return "converged", f"validation flat at the end ({rate:.3f} nats per epoch)"
    if gain > STILL_IMPROVING_NATS:
        return "not converged", f"validation still improving ({gain:.3f} nats at the last check)"
    return "converged", "validation loss flat at the end"


# ---- rows: one experiment (identity and code revision), its seeds aggregated ------------------


@dataclass
class Row:
    """The successful records of one identity and one code revision, one per seed."""

    identity: str
    revision: str
    dataset: str
    records: list[Record]
    current: bool = True
    label: str = ""
    kind: str = "own"  # "own": the user's records; "reference": a shipped reference run
    below_floor: bool = False  # worse than its dataset's unigram row: greyed, never ranked

    @property
    def family(self) -> str:
        return self.records[0].family

    @property
    def baseline(self) -> bool:
        """The row is one of the floor models every table shows (:data:`BASELINES`)."""
        return self.records[0].cell.model in BASELINES

    @functools.cached_property
    def training(self) -> Training:
        """How much the row trained: its worst seed (a row is flagged if any seed is)."""
        verdicts = [training(r) for r in self.records]
        return next((t for t in verdicts if t.flagged), verdicts[0])

    @property
    def settings(self) -> str:
        """Everything that defines the experiment, as one line (the label cell's tooltip)."""
        facets = ", ".join(f"{k}={v}" for k, v in facets_of(self.records[0]).items())
        return f"identity {self.identity}: {facets}; {self.revision}"

    def values(self, column: str) -> list[float]:
        """The column's number of each seed that has one, in the unit the column shows."""
        path, scale = COLUMNS[column][0], SCALES.get(column, 1)
        return [v * scale for v in (number_at(r, path) for r in self.records) if v is not None]

    def mean(self, column: str) -> float | None:
        values = self.values(column)
        return sum(values) / len(values) if values else None  # inf, not an error, past 1e308

    def mean_at(self, path: tuple[str, ...]) -> float | None:
        """Mean over the seeds of the number at a record ``path`` (e.g. an anchor's metric)."""
        values = [v for v in (number_at(r, path) for r in self.records) if v is not None]
        return sum(values) / len(values) if values else None

    def text(self, column: str) -> str:
        """``mean ± std`` over seeds (just the value for one seed), or a dash."""
        values, form = self.values(column), COLUMNS[column][1]
        if not values:
            return "—"
        if column in COUNTS:
            low, high = form.format(min(values)), form.format(max(values))
            text = low if low == high else f"{low}–{high}"
        else:
            text = form.format(self.mean(column))
        if len(values) > 1 and column not in COUNTS:
            try:
                std = statistics.stdev(values)
            except (OverflowError, ValueError):
                std = float("nan")
            text += " ± " + form.format(std)
        if 1 < len(self.records) != len(values):
            text += f" ({len(values)} of {len(self.records)} seeds)"
        return text

    @property
    def full(self) -> bool:
        """The row trained on the whole training split (not a learning-curve share)."""
        return self.records[0].cell.fraction >= 1


def aggregate(records: list[Record], kind: str = "own") -> list[Row]:
    """The successful records as rows, sorted by dataset, current rows first, then test ppl;
    ``kind`` ("own" or "reference") is given to every row.

    Records are grouped by identity and code revision; a seed measured twice (e.g. under two
    matrix names) counts once.  For each identity, the revision with the newest record is
    current; rows of its other revisions have ``current`` False and say so in their label.
    """
    groups = defaultdict(list)
    for r in distinct(r for r in records if r.ok):
        groups[(identity(r), code_revision(r))].append(r)
    rows = [Row(ident, rev, rs[0].cell.dataset,  # distinct(): one record per seed
                sorted(rs, key=lambda r: r.cell.seed), kind=kind)
            for (ident, rev), rs in groups.items()]
    newest = {}
    for row in rows:
        stamp = (max(r.date for r in row.records), row.revision)
        newest[row.identity] = max(newest.get(row.identity, stamp), stamp)
    for row in rows:
        row.current = newest[row.identity][1] == row.revision
    _label(rows)

    def order(row: Row):
        ppl = row.mean("test ppl")
        return (row.dataset, not row.current, ppl is None, ppl or 0.0, row.label, row.revision)

    return sorted(rows, key=order)


def facets_of(record: Record) -> dict[str, str]:
    """The identity of a record as flat ``name -> short text`` (config keys by their own name)."""
    cell = record.cell
    out = {"model": cell.model, "device": cell.device}
    for part in ("budget", "scoring"):
        out.update({f"{part}.{k}": as_text(v) for k, v in getattr(cell, part).items()})
    for part in ("threads", "fraction"):
        if (value := getattr(cell, part)) is not None:
            out[part] = as_text(value)
    for k, v in cell.config.items():
        out.setdefault(str(k), as_text(v))
    return out


_BUDGET_WORDS = re.compile(
    r"(?:~|about |up to |max(?:imum)? )?\d[\d,.]*\s*[kKM]?\s*(?:min(?:ute)?s?|s|secs?|seconds?|h|"
    r"hours?|(?:EM |optimi[sz]er )?steps?|epochs?|tokens?|iterations?|passes|pass)",
    re.IGNORECASE)


def model_name(label: str) -> str:
    """A cell label without the budget it may state: the parts of a parenthesis that are a
    budget ("5 min", "5,000 steps", "20 epochs") go, and the parenthesis with them when nothing
    else is left ("LSTM 2x256 tied (5 min)" -> "LSTM 2x256 tied").  Budgets are shown planned
    against actual in their own column, where the record says what was trained."""

    def keep(found: re.Match) -> str:
        parts = re.split(r";|,(?!\d)", found.group(2))
        kept = [p for p in parts if not _BUDGET_WORDS.fullmatch(p.strip())]
        if len(kept) == len(parts):  # no budget in it: the label's own text, as written
            return found.group(0)
        return f"{found.group(1)}({','.join(kept).strip()})" if kept else ""

    name = re.sub(r"(\s*)\(([^()]*)\)", keep, label).strip()
    return name or label


def _label(rows: list[Row]) -> None:
    """Give each row its display label: the cell label(s), then -- where rows of different
    identities on one dataset share it -- the settings that tell them apart (or the identity
    hash), and for rows of an older code revision, that revision."""
    for row in rows:
        row.label = " / ".join(sorted({model_name(r.cell.label) for r in row.records}))
    clashes = defaultdict(list)
    for row in rows:
        clashes[(row.dataset, row.label)].append(row)
    for same in clashes.values():
        facets = {row.identity: facets_of(row.records[0]) for row in same}
        if len(facets) < 2:
            continue
        # budgets have their own column ("trained"): never in a label
        names = sorted(n for n in set().union(*facets.values()) if not n.startswith("budget."))
        differ = [n for n in names if len({f.get(n) for f in facets.values()}) > 1]
        for row in same:
            f = facets[row.identity]
            if differ == ["fraction"] and row.full:
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


def level(records: list[Record]) -> str:
    """The token level ("word", "char") of the first record that says, else ""."""
    return next((lv for r in records
                 if isinstance(lv := (r.dataset or {}).get("level"), str)), "")


def mark_below_floor(rows: list[Row]) -> Row | None:
    """Mark the rows of one dataset (whole training split) that are worse than its unigram
    row by the dataset's quality column (:func:`quality`); the user's own unigram row is the
    floor where there is one, else the reference's.  Returns the floor row, or None."""
    column = quality(rows)
    floors = [row for row in rows if row.records[0].cell.model == FLOOR
              and row.mean(column) is not None]
    floor = min(floors, key=lambda row: row.kind != "own", default=None)
    if floor is None:
        return None
    limit = floor.mean(column)
    for row in rows:
        value = row.mean(column)
        row.below_floor = value is not None and (
            value < limit if column in HIGHER_IS_BETTER else value > limit)
    return floor


def quality(rows: list[Row]) -> str:
    """The column that ranks a dataset's rows: bpc for character data, else test perplexity."""
    if level([r for row in rows for r in row.records]) == "char" and any(
            row.values("test bpc") for row in rows):
        return "test bpc"
    return "test ppl"


def ranked(rows: list[Row], column: str) -> list[Row]:
    """``rows`` with a value in ``column``, best first; by a quality column, rows worse than
    their dataset's unigram row are left out (they are never ranked)."""
    have = [row for row in rows if row.mean(column) is not None
            and not (column in QUALITY and row.below_floor)]
    return sorted(have, key=lambda row: row.mean(column), reverse=column in HIGHER_IS_BETTER)


# ---- task scores: the metric specs travel in the records --------------------------------------


def task_names(rows: list[Row]) -> list[str]:
    return sorted({t for row in rows for r in row.records for t in r.tasks})


def task_specs(rows: list[Row], name: str) -> tuple[MetricSpec, ...]:
    """The metrics task ``name`` reports (direction, chance), as its results in ``rows`` record
    them, this run's own rows before the shipped reference's (older records may list them in
    another order); () where none does (a record of a task this lmladder could not describe)."""
    mine_first = sorted(rows, key=lambda row: row.kind != "own")
    return next((result.metrics for row in mine_first for r in row.records
                 if (result := r.tasks.get(name)) is not None and result.metrics), ())


def task_mean(row: Row, name: str, metric: str) -> float | None:
    values = [v for r in row.records if (result := r.tasks.get(name)) is not None
              and (v := result.score(metric)) is not None]
    return sum(values) / len(values) if values else None


def higher_is_better(metric: str, rows: list[Row]) -> bool:
    """Direction of a record path such as "metrics.test.ppl" or "tasks.cloze.accuracy" (a
    task's direction from the specs its results in ``rows`` carry)."""
    parts = metric.split(".")
    if parts[0] == "tasks" and len(parts) >= 3:
        spec = next((m for m in task_specs(rows, parts[1]) if m.name == parts[2]), None)
        return bool(spec.higher_is_better) if spec is not None else True
    return PATH_COLUMNS.get(metric) in HIGHER_IS_BETTER


# ---- the data every section reads ---------------------------------------------------------------


@dataclass
class Context:
    """The user's records, the matching reference records and the anchors, with their rows;
    the time-to-ppl benchmark found beside the records, and one line per file there that
    could not be used."""

    records: list[Record]
    reference: list[Record] = field(default_factory=list)
    anchors: list[Anchor] = field(default_factory=list)
    exports: list[str] = field(default_factory=list)
    time_to_ppl: object = None  # the results folder's time-to-ppl.json (reports/timing.py)
    file_problems: list[str] = field(default_factory=list)  # files beside records, unusable

    def __post_init__(self):
        self.rows = aggregate(self.records)
        self.ref_rows = [row for row in aggregate(self.reference, "reference") if row.current]
        self.floors = {ds: floor for ds in self.datasets
                       if (floor := mark_below_floor(self.measured(ds, full=True)))}

    @property
    def datasets(self) -> list[str]:
        return sorted({row.dataset for row in self.rows})

    def measured(self, ds: str, *, full: bool = False) -> list[Row]:
        """The current own rows and the reference rows of ``ds`` (whole training split only
        where ``full``)."""
        rows = [row for row in self.rows if row.current and row.dataset == ds]
        rows += [row for row in self.ref_rows if row.dataset == ds]
        return [row for row in rows if row.full] if full else rows

    def anchors_of(self, ds: str) -> list[Anchor]:
        return [a for a in self.anchors if a.dataset in (ds, "*")]
