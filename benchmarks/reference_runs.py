"""Regenerate the reference runs that ship with lmladder (``reports/reference/``).

    python -m lmladder.reference_runs [--max-seconds 180] [--threads 1] [--data-dir DIR]

runs ``cpu-ladder`` -- every rung trained to convergence with its CPU recipe, to its own token
budgets (about 1 h 10 min on 2 cores; start the command twice at once and the two runs share
the cells) -- and the full matrices (``ptb``, ``shakespeare``, ``wikitext2``: their tasks and
learning curves included) with every cell's training capped at ``--max-seconds`` (what a short
budget shows, and the report flags), one folder of result records per matrix under
``reports/reference/`` (or ``--out DIR``), then renders them into ``report.html`` there (with
``results.csv``, ``results.md`` and ``results.tex``).  Every report shows these
records beside the user's own rows for the datasets they share (:mod:`lmladder.reports.reference`
loads them).  The shipped records name no path of the machine that made them: the data folder
reads ``<data dir>`` (:func:`make_portable`).  Like any run it resumes where it stopped;
``--force`` recomputes.

This is the harness's command, not the report's: it runs the CLI, and the report only reads.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lmladder.reports.reference import REFERENCE
from lmladder.results import is_record_name, read_record, write_record

MATRICES = ("cpu-ladder", "ptb", "shakespeare", "wikitext2")
UNCAPPED = ("cpu-ladder",)  # trained to their recipes' own budgets, never capped
DATA_DIR = "<data dir>"  # stands for the folder the corpora were read from
RESULTS = "<results>"  # stands for the results folder a run wrote into
COMMAND = "python -m lmladder.reference_runs"


def regenerate(out: Path = REFERENCE, *, max_seconds: float = 180, threads: int = 1,
               data_dir: str | None = None, matrices=MATRICES, force: bool = False) -> int:
    """Run each matrix into ``out/<matrix>``; the worst exit code of the runs."""
    from lmladder.cli import main as lmladder
    from lmladder.reports.render import render_report

    worst = 0
    for name in matrices:
        argv = ["run", name, "--results", str(out / name), "--no-report", "--threads", str(threads)]
        argv += [] if name in UNCAPPED else ["--max-seconds", f"{max_seconds:g}"]
        argv += ["--data-dir", data_dir] if data_dir else []
        argv += ["--force"] if force else []
        code = lmladder(argv)
        if code == 130:
            return code
        worst = max(worst, code)
    make_portable(out)
    out = render_report(out, out / "report.html")
    print(f"report: {out.resolve()}")
    return worst


def portable_argv(argv: list[str]) -> list[str]:
    """``argv`` naming no path of this machine: the ``--data-dir`` value becomes ``<data dir>``,
    the ``--results`` value ``<results>``, any other absolute path ``<path>``; a program given
    by its path becomes ``lmladder`` (the CLI) or this module's command."""
    if not argv:
        return []
    program = argv[0]
    if program.startswith("/"):
        program = "lmladder" if Path(program).name == "lmladder" else COMMAND
    rest = [DATA_DIR if before == "--data-dir" else RESULTS if before == "--results"
            else "<path>" if a.startswith("/") else a
            for before, a in zip(argv, argv[1:], strict=False)]
    return [program, *rest]


def make_portable(folder: Path) -> int:
    """Rewrite the records under ``folder`` so that they name no path of this machine: the
    dataset's ``source.root`` becomes ``<data dir>`` and ``provenance.argv`` is made portable
    (:func:`portable_argv`).  Returns the number of records rewritten."""
    changed = 0
    for path in sorted(p for p in folder.rglob("*.json") if is_record_name(p)):
        record = read_record(path)
        dataset = dict(record.dataset or {})
        source = dict(dataset.get("source") or {})
        argv = list(record.provenance.get("argv") or [])
        portable = portable_argv(argv)
        if source.get("root") not in (None, DATA_DIR) or portable != argv:
            if "root" in source:
                source["root"] = DATA_DIR
                dataset["source"] = source
            provenance = {**record.provenance, "argv": portable}
            changes = {"dataset": dataset} if record.dataset is not None else {}
            write_record(path, record.replace(provenance=provenance, **changes))
            changed += 1
    return changed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=COMMAND, description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=REFERENCE, help="where the records go")
    p.add_argument("--max-seconds", type=float, default=180,
                   help="training cap per cell of the capped matrices (not cpu-ladder)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per cell")
    p.add_argument("--data-dir", help="folder holding the corpora (else $LMLADDER_DATA, cache)")
    p.add_argument("--matrix", nargs="+", default=list(MATRICES), choices=MATRICES)
    p.add_argument("--force", action="store_true", help="recompute finished cells")
    args = p.parse_args(argv)
    return regenerate(args.out, max_seconds=args.max_seconds, threads=args.threads,
                      data_dir=args.data_dir, matrices=args.matrix, force=args.force)


if __name__ == "__main__":
    sys.exit(main())
