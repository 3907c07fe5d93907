"""``lmladder``: list what exists, run a matrix, render a report.

    lmladder --version
    lmladder list models|tasks|datasets|matrices
    lmladder task TASK MODEL [--dataset NAME] [--data-dir DIR] [--seconds S] [--json]
    lmladder run MATRIX [--results DIR] [--data-dir DIR] [--force] [--only NAME ...] [--no-report]
                        [--threads N] [--time-limit S] [--memory-limit MIB] [--max-seconds S]
                        [--in-process]
    lmladder report RESULTS_DIR [-o FILE]

Exit codes: 0 all cells fine, 1 some cell failed (or a forced rerun failed and kept the old
record), 2 bad input, 130 interrupted (finished cells are kept; run again to continue where it
stopped).  Every error is one line on stderr; ``-v`` adds the traceback of an unexpected one.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from tqdm.auto import tqdm

from lmladder import registry, tasks
from lmladder._version import __version__
from lmladder.api import Budget, ConfigError, Progress, build_config
from lmladder.data import DATASET_HELP, DataError, DataNotFoundError
from lmladder.results import RecordError
from lmladder.run import (
    Limits,
    MatrixError,
    ResultsError,
    list_matrices,
    load_matrix,
    prepare_results_dir,
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
    elif what == "datasets":
        for name, help_ in DATASET_HELP.items():
            print(f"{name:<18} {help_}")
    else:
        for name in list_matrices():
            print(f"{name:<18} {load_matrix(name).spec.description}")
    return 0


class _FitBar:
    """A tqdm bar fed by a model's progress callback."""

    def __init__(self, label: str):
        self.label = label
        self.bar: tqdm | None = None

    def __call__(self, p: Progress) -> None:
        if self.bar is None:
            self.bar = tqdm(
                total=p.total,
                desc=f"  fit {self.label}",
                unit=p.unit,
                leave=False,
                dynamic_ncols=True,
                disable=None,
            )
        if p.total is not None and self.bar.total != p.total:
            self.bar.total = p.total
        self.bar.n = p.done
        if p.metrics:
            self.bar.set_postfix({k: f"{v:.4g}" for k, v in p.metrics.items()}, refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _headline(result: dict) -> str:
    """A task result in a few characters: its first metric, or its status."""
    if result.get("status") != "ok":
        return result.get("status", "?")
    value = next((v for k, v in result.items() if k not in ("status", "seconds", "seed")
                  and isinstance(v, float)), None)
    return "ok" if value is None else f"{value:.3g}"


def _run(args) -> int:
    matrix = load_matrix(args.matrix)
    limits = Limits(args.threads, args.time_limit, args.memory_limit, args.max_seconds)
    if args.data_dir is not None and not Path(args.data_dir).is_dir():
        raise DataError(f"--data-dir {args.data_dir}: no such folder")
    select_cells(matrix, set(args.only) if args.only else None)
    results = prepare_results_dir(args.results or Path("results") / matrix.name)
    print(f"lmladder: matrix {matrix.name} ({matrix.path}) -> {results}/", file=sys.stderr)
    bars: list[_FitBar] = []
    outer = tqdm(desc="cells", unit="cell", dynamic_ncols=True, disable=None)

    def start(cell, i, n):
        outer.total = n
        outer.n = i
        outer.set_postfix_str(f"{cell.label} / {cell.dataset}")
        outer.refresh()

    def end(cell, record):
        for b in bars:
            b.close()
        bars.clear()
        m = record.get("metrics", {}).get("test")
        share = "" if cell.fraction == 1 else f" ({cell.fraction:g} of train)"
        what = f"{cell.label + share:<22} {cell.dataset:<16}"
        if record["status"] == "ok":
            tasks_done = ", ".join(f"{name} {_headline(t)}"
                                   for name, t in (record.get("tasks") or {}).items())
            tqdm.write(f"  ok      {what} test ppl {m['ppl']:9.2f}  bpc {m['bpc']:.3f}"
                       + (f"  | {tasks_done}" if tasks_done else ""))
        else:
            first = record["error"]["message"].splitlines()[0]
            tqdm.write(f"  {record['status']:<7} {what} {first}")

    def factory(label):
        bar = _FitBar(label)
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
            on_cell_start=start,
            on_cell_end=end,
            on_wait=wait,
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
    for s in summary.skipped:
        print(f"skipped: {s}", file=sys.stderr)
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
    return 1 if summary.failed else 0


def _report(args) -> int:
    from lmladder.reports.render import render_report

    results = Path(args.results_dir)
    out = render_report(results, Path(args.output) if args.output else results / "report.html")
    print(f"report: {out.resolve()}")
    return 0


def _task(args) -> int:
    budget = build_config(Budget, {k: v for k, v in (("tokens", args.tokens),
                          ("steps", args.steps), ("seconds", args.seconds)) if v is not None},
                          where="budget")
    result = tasks.run_task(args.task, args.model, dataset=args.dataset, data_dir=args.data_dir,
                            budget=budget, seed=args.seed)
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

    task = sub.add_parser("task", help="run one task for one model (lmladder list tasks)")
    task.add_argument("task", help="a task name (lmladder list tasks)")
    task.add_argument("model", help="a model name (lmladder list models)")
    task.add_argument("--dataset", default="ptb", help="the corpus the model is fitted on")
    task.add_argument("--data-dir", help="folder holding the corpora (else $LMLADDER_DATA, cache)")
    task.add_argument("--seed", type=_seed, default=0, help="seed of the task's items")
    task.add_argument("--tokens", type=_positive(int), help="fit budget: training tokens")
    task.add_argument("--steps", type=_positive(int),
                      help="fit budget: optimizer steps or EM iterations")
    task.add_argument("--seconds", type=_positive(float), help="fit budget: wall-clock seconds")
    task.add_argument("--json", action="store_true", help="print the whole result as JSON")

    rep = sub.add_parser("report", help="render the HTML report of a results folder")
    rep.add_argument("results_dir")
    rep.add_argument("-o", "--output", help="HTML file (default: RESULTS_DIR/report.html)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        if args.command == "list":
            return _list(args.what)
        if args.command == "run":
            return _run(args)
        if args.command == "task":
            return _task(args)
        return _report(args)
    except BrokenPipeError:  # e.g. `lmladder list models | head`: the reader has gone
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 -- so the exit flush cannot fail
        return 0
    except (
        MatrixError,
        ResultsError,
        _report_error(),
        ConfigError,
        DataError,
        RecordError,
        registry.UnknownNameError,
        registry.ModelImportError,
        OSError,
    ) as err:
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
    if isinstance(err, DataNotFoundError):  # says what to put where, a line per file
        return text
    return text.replace("\n", "; ")


if __name__ == "__main__":
    sys.exit(main())
