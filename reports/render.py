"""Render a folder of result records into one self-contained HTML page, with exports beside it.

The report reads :class:`~lmladder.record.Record` values only -- validated when read
(:func:`lmladder.results.scan_records`) -- and computes nothing but means and spreads over
seeds, and ratios between numbers already recorded.  It flows::

    records ──rows.aggregate──▶ Row (identity × code revision, seeds averaged; rows.py)
      │  + reference.matching_reference (shipped runs, same vocabulary; reference.py)
      │  + anchors (literature figures; anchors.py)
      ▼
    Context ──sections.SECTIONS──▶ Section (template + data; sections.py, leaderboard.py,
      │                              figures.py, efficiency.py, cards.py, protocol.py)
      ▼
    report.html (templates/report.html.j2) + results.csv / .md / .json (exports.py)

Templates are rendered with autoescape on; the only markup not escaped is what lmladder itself
produced (the plots' SVG, the model cards and protocol prose of their own modules).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from pathlib import Path

from lmladder.files import atomic_write, check_output
from lmladder.record import Record
from lmladder.reports.anchors import Anchor, distance, load_anchors
from lmladder.reports.efficiency import base_identity, compression, variant_groups
from lmladder.reports.exports import PAGE_EXPORTS as EXPORTS
from lmladder.reports.exports import export_rows as _export_rows
from lmladder.reports.exports import write_exports
from lmladder.reports.figures import family_colours, slug
from lmladder.reports.jinja import environment
from lmladder.reports.reference import load_reference, matching_reference, reference_caption
from lmladder.reports.rows import Context, Row, aggregate, distinct, training
from lmladder.reports.sections import SECTIONS, Section, unreadable_files
from lmladder.reports.timing import Benchmark, read_benchmark
from lmladder.reports.values import as_text
from lmladder.results import scan_records

__all__ = ["EXPORTS", "SECTIONS", "Context", "ReportError", "Row", "Section", "aggregate",
           "base_identity", "compression", "distance", "export_rows", "load_reference",
           "matching_reference", "reference_caption", "render_html", "render_report",
           "shipped_anchors", "training", "variant_groups"]


class ReportError(ValueError):
    """The report cannot be written where it was asked to be; the message is one line."""


def shipped_anchors() -> list[Anchor]:
    """The literature anchors that ship with lmladder (``reports/anchors.toml``)."""
    return load_anchors()


def context(records: list[Record], reference_records: list[Record] | None = None,
            anchors: list[Anchor] | None = None, exports: Iterable[str] = (), *,
            time_to_ppl: Benchmark | None = None, file_problems: Iterable[str] = ()) -> Context:
    """What every section reads: ``records``, the reference records matching them (same
    dataset and vocabulary), the anchors (None: the shipped ones), the export file names, the
    time-to-ppl benchmark and the problems with files beside the records."""
    return Context(list(records), matching_reference(records, list(reference_records or ())),
                   shipped_anchors() if anchors is None else list(anchors), list(exports),
                   time_to_ppl, [as_text(line) for line in file_problems])


def render_html(records: list[Record], title: str = "lmladder report",
                unreadable: Iterable[str] = (), *, reference_records: list[Record] | None = None,
                anchors: list[Anchor] | None = None, exports: Iterable[str] = (),
                time_to_ppl: Benchmark | None = None, file_problems: Iterable[str] = ()) -> str:
    """The report page for ``records``.

    ``unreadable`` lines (see :func:`~lmladder.results.scan_records`) are listed in a section
    of their own; ``reference_records`` are offered as reference rows (only those of a dataset
    and vocabulary of ``records`` are shown); ``anchors`` are the literature figures (None:
    the shipped ones; ``[]``: none); ``exports`` are file names beside the page to link to;
    ``time_to_ppl`` is the time-to-ppl benchmark shown beside its dataset's time-to-target
    table (:mod:`lmladder.reports.timing`); ``file_problems`` are one-line notes on files
    beside the records that could not be used, listed with the failed cells.
    """
    unreadable = [as_text(line) for line in unreadable]
    if not records and not unreadable:
        raise ValueError("no result records to report")
    ctx = context(records, reference_records, anchors, exports, time_to_ppl=time_to_ppl,
                  file_problems=file_problems)
    sections = [s for s in (f(ctx) for f in SECTIONS) if s is not None]
    if (section := unreadable_files(unreadable)) is not None:
        sections.insert(1 if records else 0, section)
    matrices = sorted({r.cell.matrix for r in records})
    colours = [(slug(f), c) for f, c in family_colours().items()
               if re.fullmatch(r"#[0-9a-fA-F]{3,8}", str(c))]
    return environment().get_template("report.html.j2").render(
        title=title,
        subtitle=f"matrix: {', '.join(matrices)} — {len(distinct(records))} cells",
        sections=sections, colours=colours, exports=list(ctx.exports),
        datasets=[(ds, "ds-" + slug(ds)) for ds in ctx.datasets] if ctx.rows else [],
    )


def export_rows(records: list[Record], reference_records: list[Record] | None = None,
                anchors: list[Anchor] | None = None) -> list[dict]:
    """The leaderboard rows of every dataset as flat dicts, one per row and literature figure
    (:func:`lmladder.reports.exports.export_rows`; the files beside the page are written by
    :func:`~lmladder.reports.exports.write_exports`)."""
    return _export_rows(context(records, reference_records, anchors))


def render_report(results_dir: str | Path, output: str | Path, *, reference: bool = True,
                  left_out: Callable[[str], object] = lambda line: None) -> Path:
    """Render every record under ``results_dir`` into the HTML file ``output``, and write
    ``results.csv``, ``results.md``, ``results.tex`` (the tables per dataset and one typed CSV
    row per record: :func:`lmladder.reports.exports.write_exports`) and ``results.json`` (the
    merged records: the user's and the reference rows shown, a JSON list) beside it.  A
    ``time-to-ppl.json`` in ``results_dir`` (the benchmark ``python -m
    lmladder.perf.time_to_ppl --out``) is shown beside its dataset's time-to-target table.

    ``reference``: show the shipped reference runs beside the user's rows.  Every file is
    replaced atomically (an interrupted render leaves the previous report, and no temporary
    file) and is created with the permissions of any new file (``0666 & ~umask``).  Files that
    are not valid records are listed on the page, never ranked, and each one's line ("FILE:
    reason") is given to ``left_out`` (the command line prints it).  Raises :class:`ReportError`
    when ``output`` is a folder, :class:`FileNotFoundError` when ``results_dir`` holds no
    readable record, and refuses an output (or an export beside it) that would overwrite an input
    (:func:`lmladder.files.check_output`).
    """
    output = Path(output)
    if output.is_dir():
        raise ReportError(f"{output}: is a folder; give a file name for the report, "
                          f"e.g. {output / 'report.html'}")
    check_output(output, results=[Path(results_dir)], error=ReportError)
    for name in EXPORTS:  # written beside the page: they must not overwrite an input either
        check_output(output.parent / name, results=[Path(results_dir)],
                     flag=f"-o {output}: the export", error=ReportError)
    scan = scan_records(results_dir)
    if not scan.records:
        why = f"; {len(scan.unreadable)} could not be read: {scan.unreadable[0]}" \
            if scan.unreadable else ""
        raise FileNotFoundError(f"{results_dir}: no readable result records{why}")
    for line in scan.unreadable:
        left_out(line)
    shipped = load_reference() if reference else []
    anchors = shipped_anchors()
    bench, problem = read_benchmark(results_dir)
    page = render_html(scan.records, unreadable=scan.unreadable, reference_records=shipped,
                       anchors=anchors, exports=EXPORTS, time_to_ppl=bench,
                       file_problems=[problem] if problem else [])
    merged = scan.records + matching_reference(scan.records, shipped)
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ReportError(f"{output.parent}: cannot create the report's folder "
                          f"({err.strerror or err})") from None
    write_exports(context(scan.records, shipped, anchors), output.parent)
    atomic_write(output.parent / "results.json",
                 json.dumps([r.to_json() for r in merged], indent=1, sort_keys=True))
    atomic_write(output, page)
    return output
