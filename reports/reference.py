"""Regenerate the reference runs that ship with lmladder (``reports/reference/``).

    python -m lmladder.reports.reference [--max-seconds 180] [--threads 1] [--data-dir DIR]

runs the full matrices (``ptb``, ``shakespeare``, ``wikitext2``: their tasks and learning curves
included) with every cell's training capped at ``--max-seconds``, one folder of result records
per matrix under ``reports/reference/`` (or ``--out DIR``), then renders them into
``report.html`` there (with ``results.csv`` and ``results.md``).  Every report shows these
records beside the user's own rows for the datasets they share, marked with their commit,
machine and cap.  Like any run it resumes where it stopped; ``--force`` recomputes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lmladder.cli import main as lmladder
from lmladder.reports.render import render_report

REFERENCE = Path(__file__).resolve().parent / "reference"
MATRICES = ("ptb", "shakespeare", "wikitext2")


def regenerate(out: Path = REFERENCE, *, max_seconds: float = 180, threads: int = 1,
               data_dir: str | None = None, matrices=MATRICES, force: bool = False) -> int:
    """Run each matrix into ``out/<matrix>``; the worst exit code of the runs."""
    worst = 0
    for name in matrices:
        argv = ["run", name, "--results", str(out / name), "--no-report",
                "--max-seconds", f"{max_seconds:g}", "--threads", str(threads)]
        argv += ["--data-dir", data_dir] if data_dir else []
        argv += ["--force"] if force else []
        code = lmladder(argv)
        if code == 130:
            return code
        worst = max(worst, code)
    out = render_report(out, out / "report.html")
    print(f"report: {out.resolve()}")
    return worst


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lmladder.reports.reference",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=REFERENCE, help="where the records go")
    p.add_argument("--max-seconds", type=float, default=180, help="training cap per cell")
    p.add_argument("--threads", type=int, default=1, help="torch threads per cell")
    p.add_argument("--data-dir", help="folder holding the corpora (else $LMLADDER_DATA, cache)")
    p.add_argument("--matrix", nargs="+", default=list(MATRICES), choices=MATRICES)
    p.add_argument("--force", action="store_true", help="recompute finished cells")
    args = p.parse_args(argv)
    return regenerate(args.out, max_seconds=args.max_seconds, threads=args.threads,
                      data_dir=args.data_dir, matrices=args.matrix, force=args.force)


if __name__ == "__main__":
    sys.exit(main())
