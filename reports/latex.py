"""The report's tables as LaTeX (``results.tex``): one booktabs ``table`` per table of
:func:`lmladder.reports.exports.dataset_tables`, in a document that compiles alone with
``pdflatex`` (packages: booktabs, inputenc utf8, fontenc T1; copy a ``table`` into a paper that
loads booktabs).

Every text cell is escaped (:func:`latex_escape`): LaTeX's special characters
``& % $ # _ { } ~ ^ \\ < > |`` (and the brackets ``[ ]``) are written as themselves, the marks
the tables use (⚠ flagged, † reference run, ± spread, × ratio, dashes) become their LaTeX forms,
line breaks and tabs become spaces, and characters pdflatex cannot typeset with T1 fonts
(control characters, outside Latin-1) become ``?``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Protocol


class _Note(Protocol):
    text: str
    url: str


class Table(Protocol):
    """What the writer reads of a table (:class:`lmladder.reports.exports.Table`); described
    here, not imported, so exports -> latex stays the only import between the two."""

    title: str
    header: list[str]
    align: str
    rows: list[list[str]]
    notes: Sequence[_Note]
    key: str

_SPECIAL = {
    "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
    "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}",
    "<": r"\textless{}", ">": r"\textgreater{}", "|": r"\textbar{}",
    "⚠": r"\textsuperscript{*}", "†": r"\textsuperscript{\dag}", "±": r"$\pm$",
    "×": r"$\times$", "−": r"$-$", "–": "--", "—": "---", "…": r"\ldots{}", "≈": r"$\approx$",
    "“": "``", "”": "''", "‘": "`", "’": "'", "\n": " ", "\r": " ", "\t": " ",
    "[": "{[}", "]": "{]}",  # a row's first cell "[2pt]" would be the optional argument of \\
}
# control characters (C0, DEL, C1) are not typeset either: '?' like characters beyond Latin-1
_PATTERN = re.compile("|".join(re.escape(c) for c in _SPECIAL) + r"|[^\x20-\x7e\xa0-\xff]")


def latex_escape(text: str) -> str:
    """``text`` as LaTeX that typesets it literally (one pass: an escape's own braces and
    backslashes are never escaped again)."""
    return _PATTERN.sub(lambda m: _SPECIAL.get(m.group(0), "?"), str(text))


def _label(key: str) -> str:
    return "tab:" + re.sub(r"[^A-Za-z0-9:-]+", "-", key).strip("-")


def table_latex(table: Table) -> str:
    """One booktabs table: caption above, header, rows, and the notes under the tabular."""
    lines = [r"\begin{table}[htbp]", r"\centering", r"\small",
             rf"\caption{{{latex_escape(table.title)}}}"]
    if table.key:
        lines.append(rf"\label{{{_label(table.key)}}}")
    lines += [rf"\begin{{tabular}}{{{table.align}}}", r"\toprule",
              " & ".join(latex_escape(h) for h in table.header) + r" \\", r"\midrule"]
    lines += [" & ".join(latex_escape(c) for c in row) + r" \\" for row in table.rows]
    lines += [r"\bottomrule", r"\end{tabular}"]
    if table.notes:
        lines += [r"\par\smallskip", r"\begin{minipage}{\linewidth}\footnotesize"]
        lines += [latex_escape(n.text) + (rf" \texttt{{{latex_escape(n.url)}}}" if n.url else "")
                  + r"\par" for n in table.notes]
        lines.append(r"\end{minipage}")
    lines.append(r"\end{table}")
    return "\n".join(lines)


def latex_text(tables: Sequence[Table], title: str = "lmladder results") -> str:
    """A standalone LaTeX document holding every table, one after another."""
    head = [r"\documentclass{article}", r"\usepackage[utf8]{inputenc}",
            r"\usepackage[T1]{fontenc}", r"\usepackage{booktabs}", "",
            r"\begin{document}", rf"\section*{{{latex_escape(title)}}}", ""]
    body = [table_latex(t) + "\n" for t in tables]
    return "\n".join(head + body + [r"\end{document}", ""])
