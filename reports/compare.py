"""Two result folders side by side: ``lmladder report --compare RUN_A RUN_B``.

Experiments are matched across the folders by :func:`lmladder.results.identity` (model, config,
budget, dataset, device, scoring, threads, share of the training data -- not the label, matrix or
seed).  Within a folder, the newest record per experiment and seed is used, from the newest code
revision of that experiment only (older code is counted and left out, never averaged in).  Seeds
are aggregated per side: mean and sample standard deviation (``ddof=1``).

For each metric the page shows A, B, the ratio B/A and a verdict ("better", "worse", "same within
noise"; "changed" for a metric whose direction is unknown).  A change is flagged only beyond noise:

* both sides have >= 2 seeds: ``|mean_B - mean_A| > z * SE`` with the standard error of the
  difference ``SE = sqrt(s_A**2 / n_A + s_B**2 / n_B)`` (``z`` = 2 by default), *and* the relative
  change ``|mean_B - mean_A| / |mean_A|`` above the metric kind's tolerance;
* otherwise: the relative change above the kind's tolerance alone.

Default tolerances (:data:`DEFAULT_THRESHOLDS`, overridable per call):

* ``quality`` 0.001 (0.1%): perplexity, bits per character, accuracy and task scores of a fixed
  seed are deterministic on the same code and machine, so a small relative tolerance only absorbs
  floating-point summation order;
* ``speed`` 0.10 (10%): tokens per second and fit seconds; repeated timings of one cell on a
  shared 2-core machine vary by about that much;
* ``memory`` 0.10 (10%): peak resident memory (MiB) moves with allocator and import order.

Failed or skipped cells (and tasks that did not run) are shown with their status, not compared;
experiments present in one folder only are listed in tables of their own.  The page is rendered
from records only, with autoescape on; nothing from a record is marked safe.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lmladder.files import atomic_write, check_output
from lmladder.numbers import finite
from lmladder.record import Record, TaskResult
from lmladder.reports.jinja import environment
from lmladder.reports.render import ReportError
from lmladder.reports.values import number_at
from lmladder.results import (
    IDENTITY,
    code_revision,
    identity,
    lmladder_version,
    newest_per,
    scan_records,
)

DEFAULT_THRESHOLDS: dict[str, float] = {
    "quality": 0.001,  # relative tolerance: deterministic metrics of a fixed seed
    "speed": 0.10,  # relative tolerance: throughput and fit time
    "memory": 0.10,  # relative tolerance: peak resident memory
    "z": 2.0,  # multiple of the standard error of the difference (both sides >= 2 seeds)
}

BETTER, WORSE, SAME, CHANGED, NOT_COMPARED = (
    "better", "worse", "same within noise", "changed", "not compared")
VERDICT_CLASS = {BETTER: "better", WORSE: "worse", SAME: "same", CHANGED: "changed",
                 NOT_COMPARED: "none"}  # CSS class of a verdict cell


@dataclass(frozen=True)
class Metric:
    """One compared quantity: where it lives in a record, its kind and its direction.

    ``path`` is the chain of keys into the record (``("metrics", "test", "ppl")``); ``kind`` picks
    the tolerance (``"quality"``, ``"speed"`` or ``"memory"``); ``higher_is_better`` is ``None``
    where the direction is unknown (a task result that carries no metric specs).  ``task`` names
    the task for task scores, whose value only counts where that task's status is "ok".
    """

    key: str
    title: str
    path: tuple[str, ...]
    kind: str
    higher_is_better: bool | None
    task: str | None = None

    @property
    def direction(self) -> str:
        return {True: "higher is better", False: "lower is better"}.get(
            self.higher_is_better, "direction unknown")


BASE_METRICS: tuple[Metric, ...] = (
    Metric("test_ppl", "test ppl", ("metrics", "test", "ppl"), "quality", False),
    Metric("valid_ppl", "valid ppl", ("metrics", "valid", "ppl"), "quality", False),
    Metric("test_bpc", "test bpc", ("metrics", "test", "bpc"), "quality", False),
    Metric("top1", "top-1 accuracy", ("metrics", "test_accuracy", "top1"), "quality", True),
)
COST_METRICS: tuple[Metric, ...] = (
    Metric("train_tps", "train tok/s", ("throughput", "train_tokens_per_s"), "speed", True),
    Metric("score_tps", "score tok/s", ("throughput", "score_tokens_per_s"), "speed", True),
    Metric("generate_tps", "generate tok/s", ("throughput", "generate_tokens_per_s"), "speed",
           True),
    Metric("fit_s", "fit s", ("timing", "fit_s"), "speed", False),
    Metric("rss_peak_mib", "peak RSS MiB", ("memory", "rss_peak_mib"), "memory", False),
)
_TASK_BOOKKEEPING = {"status", "seed", "seconds"}


@dataclass(frozen=True)
class Verdict:
    """The outcome for one metric of one experiment: ``word`` (one of "better", "worse", "same
    within noise", "changed", "not compared"), the ratio ``mean_B / mean_A`` (``None`` where it is
    undefined) and a one-line ``reason`` giving the numbers behind the word."""

    word: str
    ratio: float | None
    reason: str


def thresholds_with(overrides: Mapping[str, float] | None) -> dict[str, float]:
    """:data:`DEFAULT_THRESHOLDS` updated by ``overrides``; unknown keys and values that are not
    non-negative numbers are a :class:`ValueError` naming the key."""
    merged = dict(DEFAULT_THRESHOLDS)
    for key, value in (overrides or {}).items():
        if key not in DEFAULT_THRESHOLDS:
            raise ValueError(f"unknown comparison threshold {key!r}; "
                             f"valid: {', '.join(DEFAULT_THRESHOLDS)}")
        if finite(value) is None or value < 0:
            raise ValueError(f"comparison threshold {key!r} must be a number >= 0, not {value!r}")
        merged[key] = float(value)
    return merged


def judge(values_a: Sequence[float], values_b: Sequence[float], *, kind: str,
          higher_is_better: bool | None,
          thresholds: Mapping[str, float] | None = None) -> Verdict:
    """The verdict for one metric given its per-seed values on each side (see the module
    docstring for the rule).  An empty side gives "not compared"."""
    limits = thresholds_with(thresholds)
    if not values_a or not values_b:
        return Verdict(NOT_COMPARED, None, "no value on one side")
    mean_a, mean_b = statistics.fmean(values_a), statistics.fmean(values_b)
    diff = mean_b - mean_a
    ratio = mean_b / mean_a if mean_a != 0 else None
    relative = abs(diff) / abs(mean_a) if mean_a != 0 else (0.0 if diff == 0 else math.inf)
    tolerance = limits[kind]
    beyond = relative > tolerance
    reason = f"change {relative:.2%} vs tolerance {tolerance:.2%}"
    if len(values_a) >= 2 and len(values_b) >= 2:
        stderr = math.sqrt(statistics.variance(values_a) / len(values_a)
                           + statistics.variance(values_b) / len(values_b))
        band = limits["z"] * stderr
        beyond = beyond and abs(diff) > band
        reason += f"; |B - A| = {abs(diff):.4g} vs {limits['z']:g} x SE = {band:.4g}"
    if not beyond:
        return Verdict(SAME, ratio, reason)
    if higher_is_better is None:
        return Verdict(CHANGED, ratio, reason)
    return Verdict(BETTER if (diff > 0) == higher_is_better else WORSE, ratio, reason)


# ---- reading the folders ----------------------------------------------------------------------


@dataclass
class Folder:
    """One side: its path, the records compared (newest per experiment and seed, newest code),
    the number left out as older code, and the unreadable files' one-line reasons."""

    path: Path
    records: list[Record]
    older: int = 0
    unreadable: list[str] = field(default_factory=list)

    def by_identity(self) -> dict[str, list[Record]]:
        groups: dict[str, list[Record]] = defaultdict(list)
        for r in self.records:
            groups[identity(r)].append(r)
        return groups


def read_folder(path: str | Path) -> Folder:
    """The records of one results folder, ready to compare; :class:`ReportError` (naming the
    path) for a missing folder or one without a readable record."""
    path = Path(path)
    try:
        scan = scan_records(path)
    except FileNotFoundError as err:
        raise ReportError(str(err)) from None
    if not scan.records:
        why = f"; {len(scan.unreadable)} could not be read: {scan.unreadable[0]}" \
            if scan.unreadable else ""
        raise ReportError(f"{path}: no readable result records{why}")
    newest = newest_per(scan.records, lambda r: (identity(r), r.cell.seed))
    groups: dict[str, list[Record]] = defaultdict(list)
    for r in newest:
        groups[identity(r)].append(r)
    kept, older = [], 0
    for group in groups.values():
        latest = code_revision(_newest(group))
        same = [r for r in group if code_revision(r) == latest]
        kept += same
        older += len(group) - len(same)
    return Folder(path, kept, older, list(scan.unreadable))


def folder_summary(folder: Folder) -> dict:
    """What the page says about a folder: path, record count, commits, dates, machines."""
    commits, machines, versions, dates = Counter(), Counter(), Counter(), []
    for r in folder.records:
        prov = r.provenance
        commit = str(prov.get("git_commit") or "unknown")[:10]
        commits[commit + (" (uncommitted changes)" if prov.get("git_dirty") else "")] += 1
        cpus = prov.get("cpu_count")
        machine = f"{prov.get('machine') or '?'}, {cpus if cpus is not None else '?'} CPUs"
        machines[f"{machine}, {prov.get('platform') or 'unknown platform'}"] += 1
        versions[f"lmladder {lmladder_version(r) or '?'}"] += 1
        if r.date:
            dates.append(r.date)
    return {
        "path": str(folder.path),
        "records": len(folder.records),
        "older": folder.older,
        "unreadable": len(folder.unreadable),
        "commits": _counted(commits),
        "machines": _counted(machines),
        "versions": _counted(versions),
        "dates": f"{min(dates)} to {max(dates)}" if dates else "unknown",
        "devices": ", ".join(sorted({r.cell.device for r in folder.records})),
    }


def _counted(counter: Counter) -> list[str]:
    return [f"{name} ({n} record{'s' if n != 1 else ''})" for name, n in counter.most_common()]


# ---- values and cells -------------------------------------------------------------------------


def _newest(records: list[Record]) -> Record:
    return max(records, key=lambda r: r.date)


def _task_result(record: Record, task: str) -> TaskResult | None:
    return record.tasks.get(task)


def task_metrics(records: Sequence[Record]) -> list[Metric]:
    """The task scores present in ``records`` (status "ok"), in task and declaration order.

    Tasks contribute the metrics their results declare (name, direction), as the records carry
    them; a result without metric specs (a task an old record's lmladder could not describe)
    contributes its float-valued scores, with the direction unknown."""
    present: dict[str, set[str]] = {}
    specs: dict[str, tuple[tuple[str, bool | None], ...]] = {}
    for r in records:
        for name, result in r.tasks.items():
            if result.status == "ok":
                present.setdefault(name, set()).update(
                    k for k in result.scores if result.score(k) is not None)
            if result.metrics and name not in specs:
                specs[name] = tuple((m.name, m.higher_is_better) for m in result.metrics)
    metrics = []
    for name in sorted(present):
        found = specs.get(name)
        if found is None:
            found = tuple((k, None) for k in sorted(present[name]) if k not in _TASK_BOOKKEEPING
                          and any(isinstance(t.scores.get(k), float) for r in records
                                  if (t := r.tasks.get(name)) is not None))
        metrics += [Metric(f"task:{name}:{metric}", f"{name} {metric}", ("tasks", name, metric),
                           "quality", higher, task=name)
                    for metric, higher in found if metric in present[name]]
    return metrics


def _values(records: list[Record], metric: Metric) -> list[float]:
    out = []
    for r in records:
        if not r.ok:
            continue
        if metric.task is not None and getattr(_task_result(r, metric.task), "status",
                                               None) != "ok":
            continue
        value = number_at(r, metric.path)
        if value is not None:
            out.append(value)
    return out


def _status(records: list[Record], metric: Metric) -> str:
    """What to show on a side without a value: the cells' or the task's status."""
    if not records:
        return "absent"
    statuses = Counter(r.status for r in records if not r.ok)
    if metric.task is not None:
        statuses.update(getattr(_task_result(r, metric.task), "status", None) or "not run"
                        for r in records if r.ok)
    return ", ".join(sorted(statuses)) or "—"


def fmt(value: float | None) -> str:
    """A number for the page: 4 significant digits, thousands separated from 10,000 up."""
    if value is None:
        return "—"
    if abs(value) >= 1e4:
        return f"{value:,.0f}"
    return f"{value:#.4g}".rstrip(".")  # '#' keeps trailing zeros: 148.0, not 148


def _side_cell(records: list[Record], values: list[float], metric: Metric) -> dict:
    if not values:
        return {"text": _status(records, metric), "value": "", "status": True, "title": ""}
    mean = statistics.fmean(values)
    text, title = fmt(mean), f"{len(values)} seed(s)"
    if len(values) >= 2:
        spread = statistics.stdev(values)
        text += f" ± {fmt(spread)}"
        title += f", mean ± sample std {fmt(mean)} ± {fmt(spread)}"
    return {"text": text, "value": repr(mean), "status": False, "title": title}


def _cells(group_a: list[Record], group_b: list[Record], metric: Metric, limits) -> dict:
    values_a, values_b = _values(group_a, metric), _values(group_b, metric)
    verdict = judge(values_a, values_b, kind=metric.kind,
                    higher_is_better=metric.higher_is_better, thresholds=limits)
    return {
        "a": _side_cell(group_a, values_a, metric),
        "b": _side_cell(group_b, values_b, metric),
        "ratio": "—" if verdict.ratio is None else f"{verdict.ratio:.3f}",
        "ratio_value": "" if verdict.ratio is None else repr(verdict.ratio),
        "verdict": verdict.word,
        "verdict_class": VERDICT_CLASS[verdict.word],
        "verdict_value": {BETTER: 2, CHANGED: 1, SAME: 0, WORSE: -1}.get(verdict.word, ""),
        "reason": verdict.reason,
    }


# ---- rows and tables --------------------------------------------------------------------------


def _facets(record: Record) -> dict[str, str]:
    cell = record.cell.to_json()
    return {k: json.dumps(cell.get(k), sort_keys=True, default=str) for k in IDENTITY}


def _labels(groups: dict[str, list[Record]]) -> dict[str, str]:
    """A label per experiment; experiments of one dataset that share a label get what differs
    between them in brackets (model, config, budget, ...)."""
    base = {ident: _newest(rs).cell.label for ident, rs in groups.items()}
    clashes: dict[tuple, list[str]] = defaultdict(list)
    for ident, rs in groups.items():
        clashes[(base[ident], rs[0].cell.dataset)].append(ident)
    labels = dict(base)
    for idents in clashes.values():
        if len(idents) < 2:
            continue
        facets = {i: _facets(groups[i][0]) for i in idents}
        differ = [k for k in IDENTITY if len({facets[i][k] for i in idents}) > 1]
        for i in idents:
            labels[i] = f"{base[i]} [{', '.join(f'{k}={facets[i][k]}' for k in differ)}]"
    return labels


def _seeds(records: list[Record]) -> str:
    ok = sorted(r.cell.seed for r in records if r.ok)
    text = f"{len(ok)}" if ok else "0"
    failed = Counter(r.status for r in records if not r.ok)
    if failed:
        text += " (" + ", ".join(f"{n} {s}" for s, n in sorted(failed.items())) + ")"
    return text


def comparison_tables(a: Folder, b: Folder,
                      thresholds: Mapping[str, float] | None = None) -> list[dict]:
    """The matched experiments of two folders, one table per dataset (sorted by name).

    Each table is ``{"name", "metrics": [Metric, ...], "rows": [...], "counts": Counter of
    verdicts}``; a row has ``label``, ``family``, ``device``, ``seeds_a``, ``seeds_b`` and
    ``cells``, one per metric in the table's order, each with ``a``/``b`` (``text``, ``value``),
    ``ratio``, ``verdict`` and ``reason``.  Only metrics with a value in some row are columns.
    """
    limits = thresholds_with(thresholds)
    groups_a, groups_b = a.by_identity(), b.by_identity()
    both = {i: groups_a[i] + groups_b[i] for i in groups_a.keys() & groups_b.keys()}
    labels = _labels(both)
    by_dataset: dict[str, list[str]] = defaultdict(list)
    for ident, records in both.items():
        by_dataset[records[0].cell.dataset].append(ident)
    tables = []
    for dataset in sorted(by_dataset):
        idents = sorted(by_dataset[dataset], key=lambda i: (labels[i], i))
        records = [r for i in idents for r in both[i]]
        metrics = [m for m in (*BASE_METRICS, *task_metrics(records), *COST_METRICS)
                   if any(_values(both[i], m) for i in idents)]
        rows = []
        for ident in idents:
            ra, rb = groups_a[ident], groups_b[ident]
            newest = _newest(ra + rb)
            label_a = _newest(ra).cell.label
            rows.append({
                "label": labels[ident],
                "title": f"label in A: {label_a}; code A: {code_revision(ra[0])}; "
                         f"code B: {code_revision(rb[0])}",
                "family": newest.family,
                "device": newest.cell.device,
                "seeds_a": _seeds(ra), "seeds_b": _seeds(rb),
                "cells": [_cells(ra, rb, m, limits) for m in metrics],
            })
        counts = Counter(c["verdict"] for row in rows for c in row["cells"])
        tables.append({"name": dataset, "metrics": metrics, "rows": rows, "counts": counts})
    return tables


def _only_in(mine: Folder, other: Folder) -> list[dict]:
    groups, others = mine.by_identity(), other.by_identity()
    alone = {i: rs for i, rs in groups.items() if i not in others}
    labels = _labels(alone)
    namesakes: dict[tuple, list[Record]] = defaultdict(list)  # the other folder's, by label
    for records in others.values():
        newest = _newest(records)
        namesakes[(newest.cell.label, newest.cell.dataset)].append(newest)
    rows = []
    for ident, records in alone.items():
        newest = _newest(records)
        near = namesakes.get((newest.cell.label, newest.cell.dataset), [])
        ppl = _values(records, BASE_METRICS[0])
        rows.append({
            "label": labels[ident], "family": newest.family,
            "dataset": newest.cell.dataset, "device": newest.cell.device,
            "seeds": _seeds(records),
            "status": ", ".join(sorted({r.status for r in records})),
            "ppl": fmt(statistics.fmean(ppl)) if ppl else "—",
            "ppl_value": repr(statistics.fmean(ppl)) if ppl else "",
            "note": _namesake_note(newest, near),
        })
    return sorted(rows, key=lambda row: (row["dataset"], row["label"]))


def _namesake_note(record: Record, namesakes: list[Record]) -> str:
    """Why an experiment found no partner although the other folder has its label: what
    differs (budget, config, ...), so that a changed budget is not mistaken for a lost cell."""
    if not namesakes:
        return ""
    mine = _facets(record)
    differ = min(([k for k, v in _facets(other).items() if mine[k] != v] for other in namesakes),
                 key=len)  # the closest namesake: one fraction of a curve differs least
    return f"the other folder has this label with another {', '.join(differ)}"


def compare_html(a: Folder, b: Folder, thresholds: Mapping[str, float] | None = None) -> str:
    """The comparison page of two read folders (see :func:`read_folder`) as HTML text."""
    limits = thresholds_with(thresholds)
    tables = comparison_tables(a, b, limits)
    totals = Counter()
    for t in tables:
        totals.update(t["counts"])
    return environment().get_template("compare.html.j2").render(
        title=f"lmladder comparison: {a.path.name or a.path} vs {b.path.name or b.path}",
        folders=[("A", folder_summary(a)), ("B", folder_summary(b))],
        tables=tables,
        totals=totals,
        verdicts=(BETTER, WORSE, CHANGED, SAME, NOT_COMPARED),
        experiments=sum(len(t["rows"]) for t in tables),
        only_a=_only_in(a, b),
        only_b=_only_in(b, a),
        limits=limits,
    )


def _same_folder(a: str | Path, b: str | Path) -> bool:
    """Whether two paths are one folder (the same path, or links/``..`` resolving to it)."""
    try:
        return Path(a).resolve() == Path(b).resolve() or Path(a).samefile(b)
    except OSError:
        return False


def render_compare(run_a: str | Path, run_b: str | Path, output: str | Path,
                   thresholds: Mapping[str, float] | None = None, *,
                   left_out: Callable[[str], object] = lambda line: None) -> Path:
    """Write the side-by-side page of the result folders ``run_a`` and ``run_b`` to ``output``.

    ``thresholds`` overrides entries of :data:`DEFAULT_THRESHOLDS` (``quality``, ``speed``,
    ``memory``: relative tolerances, e.g. 0.001 = 0.1%; ``z``: multiple of the standard error of
    the difference used where both sides have >= 2 seeds).  The HTML file is self-contained (no
    network resource) and written atomically; returns its path.  Each file of either folder
    that is not a valid record is listed on the page and its line given to ``left_out``.
    Raises :class:`ReportError` (one line, naming the path) for a missing folder, a folder
    without readable records, two paths of one folder, an unknown threshold or an output that
    cannot be written.
    """
    output = Path(output)
    if output.is_dir():
        raise ReportError(f"{output}: is a folder; give a file name for the comparison, "
                          f"e.g. {output / 'compare.html'}")
    check_output(output, results=[Path(run_a), Path(run_b)], error=ReportError)
    try:
        limits = thresholds_with(thresholds)
    except ValueError as err:
        raise ReportError(str(err)) from None
    if _same_folder(run_a, run_b):
        raise ReportError(f"--compare {run_a} {run_b}: both name the same results folder "
                          f"({Path(run_a).resolve()}); compare two different runs")
    folders = read_folder(run_a), read_folder(run_b)
    for line in (x for folder in folders for x in folder.unreadable):
        left_out(line)
    page = compare_html(*folders, limits)
    try:
        atomic_write(output, page)
    except OSError as err:
        raise ReportError(f"{output}: cannot write the comparison "
                          f"({err.strerror or err})") from None
    return output
