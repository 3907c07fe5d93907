"""The exports written beside the page: the leaderboard rows of every dataset as CSV and
Markdown (:func:`export_rows`), the records shown as JSON."""

from __future__ import annotations

import csv
import io
import math

from lmladder.reports.rows import COLUMNS, PATH_COLUMNS, Context, task_mean, task_names, task_specs

EXPORTS = ("results.csv", "results.md", "results.json")
EXPORT_METRICS = ("test ppl", "test bpc", "test word ppl", "valid ppl", "parameters",
                  "trained tokens", "train tok/s", "score tok/s")


def export_rows(ctx: Context) -> list[dict]:
    """The leaderboard rows of every dataset as flat dicts (dataset, model, family, source
    ("own", "reference", "literature"), the metrics in :data:`EXPORT_METRICS`, epochs, steps,
    converged verdict, citation), as the CSV and Markdown exports write them."""
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


def csv_text(rows: list[dict]) -> str:
    names = list(dict.fromkeys(k for row in rows for k in row))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return buf.getvalue()


def markdown_text(rows: list[dict]) -> str:
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
