"""``lmladder``: list what exists, run a matrix, render a report.

    lmladder --version
    lmladder list models|tasks|datasets|matrices
    lmladder task TASK MODEL [--dataset NAME] [--set K=V] [--option K=V] [--data-dir DIR]
                  [--seconds S] [--json]
    lmladder run MATRIX [--results DIR] [--data-dir DIR] [--force] [--only NAME ...] [--no-report]
                        [--threads N] [--time-limit S] [--memory-limit MIB] [--max-seconds S]
                        [--in-process] [--save-models] [--executor local|ray [--address A]]
    lmladder report RESULTS_DIR [-o FILE] [--no-reference]
    lmladder report --compare RUN_A RUN_B [-o FILE]
    lmladder export-arpa (--model-dir DIR | --model NAME --dataset NAME) -o FILE.arpa
    lmladder score MODEL_DIR FILE [--json] [--phases]

While a matrix runs, each cell shows one line: its training bar ("12.5 s / 15 s",
"120k / 500k tokens", "30 / 150 steps"), then the step it is in (scoring valid, scoring test,
a task ...); where stderr is not a terminal, each step is a line of its own.  With
``--executor ray`` cells run side by side on the cluster's nodes: a line says where each cell
starts, and its result line ends with the node it ran on.
Exit codes: 0 all cells fine, 1 some cell failed (or a forced rerun failed and kept the old
record), 2 bad input, 130 interrupted (finished cells are kept; run again to continue where it
stopped).  Every error is one line on stderr; ``-v`` adds the traceback of an unexpected one.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from pathlib import Path

from tqdm.auto import tqdm

from lmladder import interop, query, registry, tasks
from lmladder._version import __version__
from lmladder.api import Budget, ConfigError, Progress, build_config
from lmladder.data import DATASET_HELP, DataError, DataNotFoundError
from lmladder.matrix import tomllib  # tomllib, or tomli on Python 3.10
from lmladder.numbers import first_line
from lmladder.record import RecordError, TaskResult
from lmladder.run import (
    EXECUTORS,
    MATRIX_DIR,
    Cell,
    CellPlan,
    ExecutorError,
    Limits,
    MatrixError,
    Phase,
    ResultsError,
    list_matrices,
    load_matrix,
    prepare_results_dir,
    read_matrix_section,
    run_matrix,
    select_cells,
)

log = logging.getLogger("lmladder")


def _list(what: str) -> int:
    if what == "models":
        entries = registry.models()
        width = max(len(n) for n in entries) + 12
        for name, e in entries.items():
            shown = name + "<id-or-path>" if name.endswith(":") else name
            defaults = ", ".join(f"{k}={v}" for k, v in e.defaults.items())
            origin = "" if e.origin == registry.BUILT_IN else f"  (plugin from {e.origin})"
            print(f"{shown:<{width}} {e.summary}{origin}" + (f"  [{defaults}]" if defaults else ""))
    elif what == "tasks":
        for name in tasks.tasks():
            klass = tasks.task_class(name)
            scores = "; ".join(
                f"{m.name} ({'higher' if m.higher_is_better else 'lower'} is better"
                + (f", chance {m.chance:g})" if m.chance is not None else ")")
                for m in klass.metrics
            )
            print(f"{name:<18} {klass.description}  [{scores}]")
            options = ", ".join(f"{p.name}={p.default!r}" for p in tasks.options_of(klass))
            data = f"  data: {klass.own_data}" if klass.own_data else ""
            print(f"{'':<18} options: {options or 'none'}{data}")
    elif what == "datasets":
        for name, help_ in DATASET_HELP.items():
            print(f"{name:<18} {help_}")
    else:
        _list_matrices()
    return 0


def _list_matrices() -> None:
    """Each shipped matrix with its expected time and description, from the ``[matrix]`` tables
    alone (no model is imported, so this is instant); a broken file is listed as unreadable."""
    rows = []
    for name in list_matrices():
        try:
            spec = read_matrix_section(name)
        except MatrixError as err:
            reason = _one_line(err).removeprefix(f"{MATRIX_DIR / name}.toml: ")
            rows.append((name, f"(unreadable: {reason})", ""))
            continue
        rows.append((name, spec.expected_time or "(time not stated)", spec.description))
    name_width = max((len(r[0]) for r in rows), default=0)
    time_width = max((len(r[1]) for r in rows if r[2]), default=0)
    for name, expected, description in rows:
        line = (f"{name:<{name_width}}  {expected:<{time_width}}  {description}" if description
                else f"{name:<{name_width}}  {expected}")
        print(line.rstrip())


SECONDS_UNITS = ("s", "sec", "second", "seconds")


def format_amount(value: float, unit: str) -> str:
    """``value`` of ``unit`` for a person: seconds as "12.5 s", "2 min 05 s", "1 h 02 min"; counts
    as "950 steps", "12.5k tokens", "1.2M tokens" (3 significant digits); ``unit`` "" gives the
    number alone."""
    if unit in SECONDS_UNITS:
        return _duration(value)
    return f"{_count(value)} {unit}" if unit else _count(value)


def format_progress(done: float, total: float | None, unit: str,
                    elapsed: float | None = None) -> str:
    """How far a bounded piece of work is, "12.5 s / 15 s" or "120k / 500k tokens"; open-ended
    work (``total`` None) reads "3.4k tokens, 12.5 s elapsed" (``elapsed`` in seconds)."""
    seconds = unit in SECONDS_UNITS
    if total is None:
        if seconds:
            return f"{_duration(done)} elapsed"
        amount = format_amount(done, unit)
        return amount if elapsed is None else f"{amount}, {_duration(elapsed)} elapsed"
    if seconds:
        return f"{_duration(done)} / {_duration(total)}"
    return f"{_count(done)} / {_count(total)}" + (f" {unit}" if unit else "")


def _duration(seconds: float) -> str:
    """Seconds with one decimal below a minute (a trailing ".0" dropped), then whole seconds or
    minutes: "12.5 s", "15 s", "2 min 05 s", "3 min", "1 h 02 min"."""
    seconds = float(seconds)
    if not math.isfinite(seconds):  # a broken clock or event must not break the bar
        return "? s"
    seconds = max(0.0, seconds)
    tenths = round(seconds, 1)
    if tenths < 60:
        return f"{tenths:.1f}".removesuffix(".0") + " s"
    whole = round(seconds)
    if whole < 3600:
        minutes, rest = divmod(whole, 60)
        return f"{minutes} min" + (f" {rest:02d} s" if rest else "")
    hours, rest = divmod(whole, 3600)
    return f"{hours} h" + (f" {rest // 60:02d} min" if rest // 60 else "")


def _count(value: float) -> str:
    """A count with 3 significant digits and k/M/B above a thousand: "950", "12.5k", "1.2M"."""
    value = float(value)
    if not math.isfinite(value):
        return "?"
    if abs(value) < 1000:
        return str(round(value)) if value == round(value) else f"{value:.3g}"
    for suffix, scale in (("k", 1e3), ("M", 1e6), ("B", 1e9)):
        text = f"{value / scale:.3g}"
        if abs(float(text)) < 1000:  # 999,950 is "1M", not "1e+03k"
            return text + suffix
    return f"{value / 1e12:,.0f}T"


def clip(text: str, width: int) -> str:
    """``text`` padded to ``width`` characters, or cut to ``width`` with an ellipsis."""
    return text.ljust(width) if len(text) <= width else text[: width - 1] + "…"


LABEL_CAP = 48  # characters; longer labels are cut with an ellipsis in console columns


class _AmountBar(tqdm):
    """A tqdm bar whose numbers are our own text (``amount``): "12.5 s / 15 s", not floats."""

    amount = ""

    @property
    def format_dict(self):
        return {**super().format_dict, "amount": self.amount}


BOUNDED = "{desc}: {percentage:3.0f}%|{bar}| {amount}{postfix}"
OPEN_ENDED = "{desc}: {amount}{postfix}"


class _CellBar:
    """One cell's line while it runs, fed by its callback: the fit's ``Progress`` (a bar with
    units) and the cell's ``Phase`` events (the step it is in).  Where stderr is no terminal (a
    log, CI), tqdm draws nothing, so each phase is written as a line instead.

    ``seconds`` is the cell's time budget, if any: a model that reports open-ended progress
    (EM iterations with no step limit) still gets a time bar, "26 steps, 2.9 s / 3 s"."""

    def __init__(self, label: str, seconds: float | None = None):
        self.label = clip(label, LABEL_CAP).rstrip()
        self.seconds = seconds
        self.bar: _AmountBar | None = None
        self.start = self.fit_start = time.monotonic()

    def _bar(self) -> _AmountBar:
        if self.bar is None:
            self.bar = _AmountBar(desc=f"  {self.label}", leave=False, dynamic_ncols=True,
                                  disable=None, bar_format=OPEN_ENDED)
        return self.bar

    def __call__(self, event: Progress | Phase) -> None:
        bar = self._bar()
        if isinstance(event, Phase):
            if event.name == "fit":
                self.fit_start = time.monotonic()
            self._phase(bar, event)
            return
        elapsed = time.monotonic() - self.fit_start
        if event.total is None and self.seconds:  # count what it did, bar what the clock allows
            bar.bar_format = BOUNDED
            bar.total, bar.n = self.seconds, min(elapsed, self.seconds)
            bar.amount = (f"{format_amount(event.done, event.unit)}, "
                          f"{format_progress(elapsed, self.seconds, 'seconds')}")
        else:
            bar.bar_format = OPEN_ENDED if event.total is None else BOUNDED
            bar.total, bar.n = event.total, event.done
            bar.amount = format_progress(event.done, event.total, event.unit, elapsed)
        bar.set_description_str(f"  {self.label}: fit", refresh=False)
        if event.metrics:
            bar.set_postfix({k: f"{v:.4g}" for k, v in event.metrics.items()}, refresh=False)
        bar.refresh()

    def _phase(self, bar: _AmountBar, phase: Phase) -> None:
        in_cell = _duration(time.monotonic() - self.start)
        if bar.disable:
            tqdm.write(f"    {self.label}: {phase.name} (step {phase.step + 1} of {phase.steps}, "
                       f"{in_cell} into the cell)", file=sys.stderr)
            return
        bar.bar_format = BOUNDED
        bar.total = phase.steps
        bar.n = phase.step
        bar.set_description_str(f"  {self.label}: {phase.name}", refresh=False)
        bar.amount = f"step {phase.step + 1} of {phase.steps}, {in_cell} into the cell"
        bar.set_postfix_str("", refresh=False)
        bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _headline(result: TaskResult) -> str:
    """A task result in a few characters: its first metric, or its status."""
    if result.status != "ok":
        return result.status
    value = next((v for v in map(result.score, (m.name for m in result.metrics))
                  if v is not None), None)
    return "ok" if value is None else f"{value:.3g}"


def _run(args) -> int:
    if args.address is not None and args.executor != "ray":
        raise ExecutorError(f"--address {args.address} names a Ray cluster; add --executor ray")
    if args.in_process and args.executor == "ray":
        raise ExecutorError("--in-process runs cells in this process; it cannot be combined "
                            "with --executor ray")
    matrix = load_matrix(args.matrix)
    limits = Limits(args.threads, args.time_limit, args.memory_limit, args.max_seconds)
    if args.data_dir is not None and not Path(args.data_dir).is_dir():
        raise DataError(f"--data-dir {args.data_dir}: no such folder")
    todo = select_cells(matrix, set(args.only) if args.only else None)
    results = prepare_results_dir(args.results or Path("results") / matrix.name)
    print(f"lmladder: matrix {matrix.name} ({matrix.path}) -> {results}/", file=sys.stderr)
    # columns as wide as the matrix's longest label (capped), so every cell's line aligns
    label_width = min(LABEL_CAP, max(len(_cell_name(c)) for c in todo))
    dataset_width = min(LABEL_CAP, max(len(c.dataset) for c in todo))
    bars: list[_CellBar] = []
    skipped_cells: dict[str, list[str]] = {}  # skip reason -> the cells it skipped
    current: dict = {}  # the running cell's time budget, for its bar
    outer = tqdm(desc="cells", unit="cell", dynamic_ncols=True, disable=None)

    def start(plan, i, n):
        outer.total = n
        outer.n = i
        outer.set_postfix_str(f"{clip(_cell_name(plan), LABEL_CAP).rstrip()} / {plan.dataset}")
        outer.refresh()
        current["seconds"] = plan.fit_budget.seconds

    def end(plan, record):
        for b in bars:
            b.close()
        bars.clear()
        what = f"{clip(_cell_name(plan), label_width)} {clip(plan.dataset, dataset_width)}"
        if record.status == "skipped":
            skipped_cells.setdefault(record.error.message, []).append(
                f"{_cell_name(plan)} on {plan.dataset}")
        node = record.provenance.get("node")
        where = f"  [{node}]" if node else ""
        if record.ok:
            tasks_done = ", ".join(f"{name} {_headline(t)}" for name, t in record.tasks.items())
            tqdm.write(f"  ok      {what} test ppl {record.metric('test', 'ppl'):9.2f}  "
                       f"bpc {record.metric('test', 'bpc'):.3f}"
                       + (f"  | {tasks_done}" if tasks_done else "") + where)
        else:
            first = first_line(record.error.message)
            tqdm.write(f"  {record.status:<7} {what} {first}{where}")

    def placed(cell, node, attempt):
        again = f" (attempt {attempt})" if attempt > 1 else ""
        tqdm.write(f"  started {clip(_cell_name(cell), label_width)} "
                   f"{clip(cell.dataset, dataset_width)} on {node}{again}")

    def factory(label):
        bar = _CellBar(label, current.get("seconds"))
        bars.append(bar)
        return bar

    def wait(cell):
        tqdm.write(f"  waiting {cell.label} / {cell.dataset}: another run is computing it")

    try:
        summary = run_matrix(
            matrix,
            results,
            data_dir=args.data_dir,
            force=args.force,
            only=set(args.only) if args.only else None,
            limits=limits,
            isolated=not args.in_process,
            save_models=args.save_models,
            executor=args.executor,
            address=args.address,
            on_cell_start=start,
            on_cell_end=end,
            on_wait=wait,
            on_cell_placed=placed,
            fit_callback_factory=factory,
        )
    except KeyboardInterrupt:
        outer.close()
        print(
            f"\ninterrupted: finished cells are kept in {results}/; run the same command "
            "again to continue.",
            file=sys.stderr,
        )
        return 130
    outer.n = outer.total or 0
    outer.close()
    print(
        f"{summary.done} cells run, {summary.skipped_existing} already done, "
        f"{len(summary.skipped)} skipped, {len(summary.failed)} failed",
        file=sys.stderr,
    )
    _print_skipped(summary.skipped, skipped_cells)
    for f in summary.failed:
        print(f"FAILED: {f}", file=sys.stderr)
    for k in summary.kept:
        print(f"kept: {k}", file=sys.stderr)
    for note in summary.notes:
        print(f"note: {note}", file=sys.stderr)
    if not args.no_report:
        from lmladder.reports.render import render_report

        out = render_report(results, results / "report.html")
        print(f"report: {out.resolve()}")
    return 1 if summary.failed or summary.kept else 0  # kept: a forced rerun came to nothing


def _cell_name(cell: Cell | CellPlan) -> str:
    """A cell's label as the console shows it, with its share of the training data."""
    return cell.label + ("" if cell.fraction == 1 else f" ({cell.fraction:g} of train)")


def _print_skipped(lines: list[str], by_reason: dict[str, list[str]]) -> None:
    """One line per cause of skipped cells (twelve cells skipped for a missing corpus are one
    line naming them, then the reason once), then the skipped tasks one by one."""
    for reason, names in by_reason.items():
        shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
        cells_ = "1 cell" if len(names) == 1 else f"{len(names)} cells"
        print(f"skipped: {cells_} ({shown}): {reason}", file=sys.stderr)
    for line in lines:
        if not any(line.endswith(f": {reason}") for reason in by_reason):
            print(f"skipped: {line}", file=sys.stderr)


def _report(args) -> int:
    if args.compare:
        return _compare(args)
    if args.results_dir is None:
        raise ResultsError("report needs RESULTS_DIR, or --compare RUN_A RUN_B")
    from lmladder.reports.render import render_report

    results = Path(args.results_dir)
    out = render_report(results, Path(args.output) if args.output else results / "report.html",
                        reference=not args.no_reference, left_out=_left_out)
    print(f"report: {out.resolve()}")
    return 0


def _left_out(line: str) -> None:
    """A file the report leaves out (named on the page too), on stderr."""
    print(f"left out: {line}", file=sys.stderr)


def _compare(args) -> int:
    """``report --compare RUN_A RUN_B``: a side-by-side page of two results folders."""
    if args.results_dir is not None:
        raise ResultsError("give RESULTS_DIR or --compare RUN_A RUN_B, not both")
    run_a, run_b = (Path(p) for p in args.compare)
    for run in (run_a, run_b):
        if not run.is_dir():
            raise ResultsError(f"--compare {run}: no such results folder")
    from lmladder.reports.compare import render_compare
    out = render_compare(run_a, run_b, Path(args.output) if args.output else run_b / "compare.html",
                         left_out=_left_out)
    print(f"report: {Path(out).resolve()}")
    return 0


def _task(args) -> int:
    budget = build_config(Budget, {k: v for k, v in (("tokens", args.tokens),
                          ("steps", args.steps), ("seconds", args.seconds)) if v is not None},
                          where="budget")
    try:
        result = tasks.run_task(args.task, args.model, dataset=args.dataset,
                                data_dir=args.data_dir, budget=budget, seed=args.seed,
                                overrides=_assignments(args.set, "--set"),
                                options=_assignments(args.option, "--option"))
    except ValueError as err:  # a task refusing this model or corpus: too few words, ...
        if isinstance(err, DataError):
            raise
        raise ConfigError(f"task {args.task}: {str(err).removeprefix(f'{args.task}: ')}") from err
    if args.json:
        print(json.dumps(result, indent=1, ensure_ascii=False))
        return 0
    if result["status"] != "ok":
        print(f"{args.task} / {args.model}: not applicable: {result['reason']}")
        return 0
    for spec in tasks.task_class(args.task).metrics:
        interval = result.get(f"{spec.name}_ci95")
        shown = f"  95% [{interval[0]:.4g}, {interval[1]:.4g}]" if interval else ""
        chance = f"  (chance {spec.chance:g})" if spec.chance is not None else ""
        print(f"{spec.name:<20} {result[spec.name]:.4g}{shown}{chance}")
    return 0


def _assignments(pairs: list[str] | None, flag: str) -> dict:
    """``KEY=VALUE`` arguments as a dict; a value is read as a TOML value (``500``, ``2e-3``,
    ``true``, ``[1, 2]``, ``"text"``), else taken as text."""
    out: dict = {}
    for pair in pairs or ():
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"{flag} {pair!r}: expected KEY=VALUE, e.g. {flag} items=500")
        if key in out:
            raise ConfigError(f"{flag} gives {key!r} twice")
        try:
            out[key] = tomllib.loads(f"value = {text}")["value"]
        except tomllib.TOMLDecodeError:
            out[key] = text
    return out


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line (the usage is one ``--help`` away)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not (value > 0 and value < float("inf")):
            raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"must be from 0 to {2**32 - 1}, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="lmladder", description=__doc__.split("\n\n")[0])
    p.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    p.add_argument("--version", action="version", version=f"lmladder {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    ls = sub.add_parser("list", help="list models, tasks, datasets or matrices")
    ls.add_argument("what", choices=["models", "tasks", "datasets", "matrices"])

    run = sub.add_parser("run", help="run a benchmark matrix and render its report")
    run.add_argument("matrix", help="a matrix name (lmladder list matrices) or a TOML file")
    run.add_argument("--results", help="results folder (default: results/<matrix>)")
    run.add_argument("--data-dir", help="folder holding the corpora (else $LMLADDER_DATA, cache)")
    run.add_argument("--force", action="store_true", help="rerun cells that are already done")
    run.add_argument("--only", nargs="+", metavar="NAME", help="only these models (name or label)")
    run.add_argument("--no-report", action="store_true", help="do not render the HTML report")
    run.add_argument("--threads", type=_positive(int), metavar="N",
                     help="torch threads per cell (default: the matrix's, else CPUs - 1)")
    run.add_argument("--time-limit", type=_positive(float), metavar="S",
                     help="stop a cell after S seconds and record it as failed "
                     "(default: the matrix's, else 1800 or 2x its time budget + 600)")
    run.add_argument("--max-seconds", type=_positive(float), metavar="S",
                     help="cap every cell's training at S seconds (added to its budget, so "
                          "capped cells are cells of their own)")
    run.add_argument("--memory-limit", type=_positive(int), metavar="MIB",
                     help="address-space limit of each cell's process, in MiB")
    run.add_argument("--in-process", action="store_true",
                     help="run cells in this process (debugging: no limits, a crash ends the run)")
    run.add_argument("--save-models", action="store_true",
                     help="keep each ok cell's fitted model beside its record, as "
                          "RECORD.model/ (lmladder.load_model reads it)")
    run.add_argument("--executor", choices=EXECUTORS, default="local",
                     help="where cells run: one after another here (local), or as tasks of a "
                          "Ray cluster (ray; pip install 'lmladder[ray]')")
    run.add_argument("--address", metavar="auto|HOST:PORT",
                     help="with --executor ray: the cluster to join (default: start Ray on this "
                          "machine's CPUs)")

    task = sub.add_parser("task", help="run one task for one model (lmladder list tasks)")
    task.add_argument("task", help="a task name (lmladder list tasks)")
    task.add_argument("model", help="a model name (lmladder list models)")
    task.add_argument("--dataset", help="the corpus the model is fitted on (default ptb; tasks "
                      "with their own data, e.g. rt-polarity or translation, take none)")
    task.add_argument("--set", action="append", metavar="KEY=VALUE",
                      help="a model config value, e.g. --set hidden=100 (repeatable)")
    task.add_argument("--option", action="append", metavar="KEY=VALUE",
                      help="a task option, e.g. --option items=500 or --option folds=10 "
                      "(repeatable; lmladder list tasks)")
    task.add_argument("--data-dir", help="folder holding the corpora (else $LMLADDER_DATA, cache)")
    task.add_argument("--seed", type=_seed, default=0, help="seed of the task's items")
    task.add_argument("--tokens", type=_positive(int), help="fit budget: training tokens")
    task.add_argument("--steps", type=_positive(int),
                      help="fit budget: optimizer steps or EM iterations")
    task.add_argument("--seconds", type=_positive(float), help="fit budget: wall-clock seconds")
    task.add_argument("--json", action="store_true", help="print the whole result as JSON")

    rep = sub.add_parser("report", help="render the HTML report of a results folder, or "
                         "compare two")
    rep.add_argument("results_dir", nargs="?", help="a results folder (lmladder run --results)")
    rep.add_argument("--no-reference", action="store_true",
                     help="leave out lmladder's shipped reference rows")
    rep.add_argument("--compare", nargs=2, metavar=("RUN_A", "RUN_B"),
                     help="a side-by-side page of two results folders, with per-metric ratios")
    rep.add_argument("-o", "--output", help="HTML file (default: RESULTS_DIR/report.html, or "
                     "RUN_B/compare.html with --compare)")
    interop.add_export_arpa_parser(sub)
    query.add_arguments(sub.add_parser("score", help=query.HELP))
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        commands = {"list": lambda a: _list(a.what), "run": _run, "task": _task,
                    "export-arpa": interop.export_arpa, "score": query.run, "report": _report}
        return commands[args.command](args)
    except BrokenPipeError:  # e.g. `lmladder list models | head`: the reader has gone
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 -- so the exit flush cannot fail
        return 0
    except (MatrixError, ResultsError, ExecutorError, interop.ExportError, _report_error(),
            ConfigError, DataError, RecordError, registry.UnknownNameError,
            registry.ModelImportError, query.ScoreError, OSError) as err:
        print(f"lmladder: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 -- a bug, not a user mistake: still one line
        log.debug("unexpected error", exc_info=True)
        print(f"lmladder: internal error: {type(err).__name__}: {_one_line(err)} (run with -v "
              "for the traceback, and please report it)", file=sys.stderr)
        return 3


def _report_error() -> type[Exception]:
    from lmladder.reports.render import ReportError

    return ReportError


def _one_line(err: BaseException) -> str:
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        return f"{err.filename}: {err.strerror}"
    text = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
    # DataNotFoundError says what to put where, a line per file
    return text if isinstance(err, DataNotFoundError) else text.replace("\n", "; ")


if __name__ == "__main__":
    sys.exit(main())
