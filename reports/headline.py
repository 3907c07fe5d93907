"""The page's opening: the headline table (family × dataset, the best converged row with its
literature figure and training), the budget that bounds the run, the rows below the unigram
floor, and the threads and caps the cells ran under -- all read from the records.

A row that is flagged (not converged, convergence unknown, under one epoch) or worse than its
dataset's unigram row is never a headline's best row: the headline names the best flagged row
beside it instead, so a reader sees what the budget bought.
"""

from __future__ import annotations

from collections import Counter

from lmladder.numbers import finite
from lmladder.reports.leaderboard import literature_of, times_literature
from lmladder.reports.reference import count_text
from lmladder.reports.rows import COLUMNS, Context, Row, quality, ranked


def _eligible(row: Row) -> bool:
    return not row.training.flagged and not row.below_floor


def _budget_figure(row: Row) -> str | None:
    """The first limit the cell planned for its fit (before a learning curve's scaling), seconds
    before tokens before steps: "180 s", "80,000 tokens"; None if unbounded."""
    budget = row.records[0].cell.budget
    for key, unit in (("seconds", "s"), ("tokens", "tokens"), ("steps", "steps")):
        if (value := finite(budget.get(key))) is not None:
            return f"{count_text(value)} {unit}"
    return None


def _threads(row: Row) -> int | None:
    return row.records[0].cell.threads


def threads_text(threads: int | None) -> str:
    return "threads unknown" if threads is None else f"{threads} thread{'s' * (threads != 1)}"


def headline(ctx: Context) -> list[dict]:
    """One entry per dataset and family: the family's best converged row on the whole training
    split (own or reference; never a flagged row or one below the unigram floor) by the
    dataset's quality column, its value, the literature figure standing for it and measured /
    literature, and its training (actual / planned).  Where a family has no such row,
    ``model`` is empty and ``note`` names its best flagged row."""
    out = []
    for ds in ctx.datasets:
        rows = ctx.measured(ds, full=True)
        column = quality(rows)
        metrics = [".".join(COLUMNS[column][0])]
        anchors = [a for a in ctx.anchors_of(ds) if a.comparable]
        for family in sorted({row.family for row in rows}):
            order = ranked([row for row in rows if row.family == family], column)
            best = next((row for row in order if _eligible(row)), None)
            entry = {"dataset": ds, "family": family, "column": column, "model": "",
                     "kind": "", "value": "—", "lit": "—", "lit_title": "", "times": "—",
                     "trained": "", "note": ""}
            if best is None:
                shown = [row for row in rows if row.family == family]
                flagged = [row for row in ranked(shown, column) if row.training.flagged]
                entry["note"] = "no converged row"
                if flagged:
                    top = flagged[0]
                    entry["note"] += (f"; best flagged: {top.label} {top.text(column)} "
                                      f"({top.training.why}: {top.training.planned})")
                elif any(row.below_floor for row in shown):
                    entry["note"] = "every row is worse than the unigram row"
                out.append(entry)
                continue
            anchor = literature_of(best, anchors, metrics)
            entry.update(model=best.label, kind=best.kind, value=best.text(column),
                         trained=f"{best.training.planned} · {best.training.verdict}")
            if anchor is not None:
                ratio = times_literature(best, anchor)
                entry.update(lit=f"{anchor.value:g}", lit_title=f"{anchor.model}, {anchor.source}",
                             times="—" if ratio is None else f"{ratio:.2f}×")
            out.append(entry)
    return out


def _or(names: list[str], word: str = "or") -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + f" {word} " + names[-1]


def budget_lines(ctx: Context) -> list[str]:
    """What the budget did to the run, one line per (own or reference, budget, threads) that
    cut at least one row short: "at 180 s on 1 thread no RNN or Transformer row reached 1
    epoch" (the user's rows first; "reference run at ..." for the shipped ones), and how many
    trained rows are flagged."""
    rows = [row for ds in ctx.datasets for row in ctx.measured(ds, full=True)]
    groups: dict[tuple, list[Row]] = {}
    for row in rows:
        figure = _budget_figure(row)
        if figure is not None and row.training.epochs is not None \
                and row.training.verdict not in ("closed form", "not trained"):
            groups.setdefault((row.kind != "own", figure, _threads(row) or 0), []).append(row)
    lines = []
    for (reference, figure, threads), group in sorted(groups.items()):
        short = [row for row in group if row.training.short]
        if not short:
            continue
        where = ("reference run " if reference else "") + \
            f"at {figure} on {threads_text(threads or None)}"
        counts = {f: (sum(row.training.short for row in group if row.family == f),
                      sum(row.family == f for row in group))
                  for f in sorted({row.family for row in group})}
        none = [f for f, (k, n) in counts.items() if k == n]
        some = [f"{k} of {n} {f} rows" for f, (k, n) in counts.items() if 0 < k < n]
        text = where
        if none:
            text += f" no {_or(none)} row reached 1 epoch"
        if some:
            text += (", and " if none else " ") + _or(some, "and") + (
                " did not either" if none else " did not reach 1 epoch")
        lines.append(text + ": their numbers say what the budget bought, not what the "
                     "models can do; they are flagged ⚠ and never a headline's best row")
    unknown = [row for row in rows if row.training.verdict == "unknown"]
    if unknown:
        one = len(unknown) == 1
        lines.append(f"{len(unknown)} row{'' if one else 's'} with no convergence verdict in "
                     f"{'its record' if one else 'their records'} (unknown) "
                     f"{'is' if one else 'are'} flagged too")
    return lines


def floor_lines(ctx: Context) -> list[str]:
    """Per dataset with a unigram row: how many rows are worse than it, greyed and not
    ranked."""
    lines = []
    for ds, floor in sorted(ctx.floors.items()):
        rows = ctx.measured(ds, full=True)
        column = quality(rows)
        below = [row for row in rows if row.below_floor]
        if below:
            names = ", ".join(row.label for row in below[:4]) + (", …" if len(below) > 4 else "")
            lines.append(f"{ds}: {len(below)} row{'s' * (len(below) != 1)} worse than the "
                         f"unigram row ({column} {floor.text(column)}) "
                         f"{'are' if len(below) != 1 else 'is'} greyed and not ranked: {names}")
    return lines


def run_conditions(ctx: Context) -> list[tuple[str, str]]:
    """Overview items: the threads each cell ran on, the fit budgets as planned (with counts of
    cells) and the per-cell time and memory limits, from the records' ``cell`` and
    ``limits``."""
    records = ctx.records
    threads = Counter(threads_text(r.cell.threads) for r in records)
    budgets = Counter(_budget_text(r.cell.budget) for r in records)
    limits = Counter(_limits_text(r.limits or {}) for r in records)
    cores = sorted({p for r in records if isinstance(p := r.provenance.get("cpu_count"), int)
                    and not isinstance(p, bool)})

    def counted(c: Counter) -> str:
        if len(c) == 1:
            return next(iter(c)) + (" (every cell)" if len(records) > 1 else "")
        return "; ".join(f"{k}: {n} cell{'s' * (n != 1)}" for k, n in c.most_common())

    items = [("threads per cell", counted(threads)
              + (f"; the machine had {', '.join(map(str, cores))} CPU cores" if cores else ""))]
    items.append(("fit budget (planned)", counted(budgets)))
    items.append(("limits per cell", counted(limits)))
    return items


def _budget_text(budget) -> str:
    parts = [f"{count_text(v)} {unit}" for key, unit in
             (("seconds", "s"), ("tokens", "tokens"), ("steps", "steps"), ("epochs", "epochs"))
             if (v := finite(budget.get(key))) is not None]
    return ", ".join(parts) or "none (until the model stops)"


def _limits_text(limits) -> str:
    seconds, mib = finite(limits.get("time_limit_s")), finite(limits.get("memory_limit_mib"))
    parts = [f"time {count_text(seconds)} s" if seconds is not None else "no time limit",
             f"memory {count_text(mib)} MiB" if mib is not None else "no memory limit"]
    return ", ".join(parts)
