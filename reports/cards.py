"""Model cards: one collapsed ``<details>`` per leaderboard row, telling what the model was.

A card holds what a reader needs to trust a row without opening the JSON: the model (class,
family, revision), its configuration, its parameter count, the budget it was given and what it
used (seconds, training tokens, epochs, steps, why it stopped), a thinned table of its fit
history, up to :data:`MAX_TABLES` of its ``inspect`` tables (HMM states, n-gram discounts), its
generated sample, examples a task kept (translations, continuations) and the provenance of the
run.  Where a row has several seeds, the card shows the first seed's details and says how many
seeds there are.

Cards are small on purpose (a page may hold 500 of them): histories are cut to at most
:data:`MAX_HISTORY_ROWS` rows, samples to :data:`MAX_SAMPLE_CHARS` characters, task examples to
:data:`MAX_TASK_EXAMPLES`.  Nothing is computed here beyond epochs (training tokens over the
training split's tokens) and the choice of rows to show.  A value that a record lacks is left
out, or shown as a dash where a table needs a cell: the text ``None`` never reaches the page.

Markup lives in ``templates/cards.html.j2``, rendered with autoescape on; nothing that comes
from a record is marked safe.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from markupsafe import Markup

from lmladder.numbers import finite
from lmladder.record import Record, TaskResult
from lmladder.reports.jinja import environment
from lmladder.reports.values import as_text, clip, mapping_at, number_at, value_at

MAX_HISTORY_ROWS = 20
MAX_TABLES = 3
MAX_SAMPLE_CHARS = 600
MAX_TASK_EXAMPLES = 3
MAX_NOTES = 8
MAX_EXAMPLE_CHARS = 300

# History keys shown first, in this order (counters, then time, then losses); others follow in
# the order the record gives them.  Headers name their unit where the key alone does not.
HISTORY_ORDER = ("states", "pass", "iteration", "step", "steps", "tokens", "seconds", "loss",
                 "train_nll", "valid_nll", "lr")
HISTORY_HEADS = {"seconds": "seconds (wall clock)", "loss": "train loss (nats/token)",
                 "train_nll": "train nll (nats/token)", "valid_nll": "valid nll (nats/token)",
                 "lr": "learning rate"}
# fit.notes keys that the training facts already show in their own words
NOTES_SHOWN = {"epochs", "stopped_by", "passes"}


def model_cards(groups: Sequence[tuple[str, list[Record]]]) -> Markup:
    """The HTML of one collapsed card per leaderboard row.

    ``groups``: ``(row label as the leaderboard shows it, the row's result records, one per
    seed)``.  Returns markup ready to be placed in a page (every value from a record escaped),
    starting with the small stylesheet the cards need; an empty string for no groups.
    """
    cards = [card_data(label, records) for label, records in groups if records]
    if not cards:
        return Markup("")
    seen: dict[str, int] = {}
    for card in cards:  # ids stay unique where two rows read alike
        seen[card["anchor"]] = seen.get(card["anchor"], 0) + 1
        if seen[card["anchor"]] > 1:
            card["anchor"] += f"-{seen[card['anchor']]}"
    return Markup(environment().get_template("cards.html.j2").render(cards=cards))


def card_data(label: str, records: list[Record]) -> dict[str, Any]:
    """Template data for the card of one row (``records``: its seeds, first seed first)."""
    record = records[0]
    cell, model = record.cell, record.model or {}
    seeds = [_show(r.cell.seed) for r in records]
    parameters = finite(model.get("parameters"))
    return {
        "label": as_text(label),
        "anchor": "card-" + _slug(f"{label}-{cell.dataset}"),
        "dataset": cell.dataset,
        "family": record.family,
        "model_class": as_text(model.get("class") or cell.model or "unknown"),
        "revision": _show(model.get("revision")),
        "parameters": f"{parameters:,.0f}" if parameters is not None else None,
        "seeds": len(records),
        "seed_note": _seed_note(seeds),
        "config": _pairs(cell.config),
        "training": _training(record),
        "notes": _notes(mapping_at(record.fit, ("notes",))),
        "history": history_table(value_at(record.fit, ("history",))),
        "tables": inspect_tables(record.inspect),
        "sample": _sample(record.sample),
        "examples": task_examples(record.tasks),
        "provenance": _provenance(record),
    }


# ---- values as text ----------------------------------------------------------------------------


def _missing(value) -> bool:
    """Whether a value says nothing: None, empty text or an empty container."""
    return value is None or (isinstance(value, (str, list, dict, tuple)) and len(value) == 0)


def _show(value) -> str | None:
    """A short display text for ``value``, or None where it is missing.  Integers get thousands
    separators, floats four significant digits, booleans read ``true``/``false``."""
    if _missing(value):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value.is_integer() and abs(value) < 1e15:  # a count stored as float: 1,093,632
            return f"{value:,.0f}"
        return f"{value:.4g}"
    return as_text(value)


def _cell(value) -> dict[str, str]:
    """A table cell: its text and its kind, which is its CSS class: ``""`` for a number
    (right-aligned, the cards' default, so 500 cards do not repeat a class on every number),
    ``text`` (left-aligned) or ``missing`` (a dash)."""
    shown = _show(value)
    if shown is None:
        return {"text": "—", "kind": "missing"}
    return {"text": shown, "kind": "" if finite(value) is not None else "text"}


def _pairs(mapping: dict) -> list[tuple[str, str]]:
    """``key = value`` rows of a mapping, missing values left out."""
    return [(str(k), shown) for k, v in mapping.items() if (shown := _show(v)) is not None]


def _slug(text: str) -> str:
    kept = "".join(ch.lower() if ch.isalnum() else "-" for ch in text)
    return "-".join(part for part in kept.split("-") if part)[:80] or "row"


def _seed_note(seeds: list[str]) -> str:
    if len(seeds) == 1:
        return f"seed {seeds[0]}"
    return (f"{len(seeds)} seeds ({', '.join(seeds)}); the details below are seed "
            f"{seeds[0]}'s")


# ---- training amount -----------------------------------------------------------------------------


def _budget_text(budget: Mapping) -> str | None:
    """A budget (``tokens``, ``steps``, ``seconds``) as ``12 s, 1,000 steps``."""
    units = (("seconds", "s"), ("tokens", "tokens"), ("steps", "steps"))
    parts = [f"{_show(budget[key])} {unit}" for key, unit in units
             if finite(budget.get(key)) is not None]
    return ", ".join(parts) if parts else None


def _training(record: Record) -> list[tuple[str, str]]:
    """How much the model trained, as ``(fact, value)`` rows."""
    fit = record.fit or {}
    notes = mapping_at(fit, ("notes",))
    facts = []
    given = _budget_text(record.cell.budget)
    facts.append(("budget", given or "no limit"))
    applied = _budget_text(record.budget_used or {})
    if applied is not None and applied != given:
        # the harness scales a budget with the training share and caps it (run --max-seconds)
        share = record.cell.fraction
        why = f" (for {share:.0%} of the training data)" if share < 1 else ""
        facts.append(("budget as applied", applied + why))
    seconds, valid_s = finite(fit.get("seconds")), finite(fit.get("valid_seconds"))
    if seconds is not None:
        used = f"{seconds:.1f} s"
        if valid_s:
            used += f", of which {valid_s:.1f} s validation"
        facts.append(("fit time", used))
    tokens = finite(fit.get("train_tokens"))
    if tokens is not None:
        text = f"{tokens:,.0f}"
        if (epochs := _epochs(record, tokens)) is not None:
            text += f" ({epochs:.3g} epoch{'' if epochs == 1 else 's'})"
        facts.append(("training tokens", text))
    if (steps := _show(fit.get("steps"))) is not None:
        facts.append(("steps", steps))
    if (passes := _show(notes.get("passes"))) is not None:
        facts.append(("passes over the data", passes))
    if (stop := _show(notes.get("stopped_by"))) is not None:
        facts.append(("stopped by", stop))
    return facts


def _epochs(record: Record, tokens: float) -> float | None:
    """Epochs as the model reported them, else training tokens / training split tokens."""
    reported = number_at(record, ("fit", "notes", "epochs"))
    if reported is not None:
        return reported
    split = number_at(record, ("dataset", "splits", "train", "tokens"))
    return tokens / split if split else None


def _notes(notes: Mapping) -> list[tuple[str, str]]:
    """The scalar ``fit.notes`` the training facts do not already show (lists such as discounts
    are in the inspect tables), at most :data:`MAX_NOTES`."""
    rows = [(str(k), _show(v)) for k, v in notes.items()
            if k not in NOTES_SHOWN and not isinstance(v, (list, dict)) and not _missing(v)]
    return rows[:MAX_NOTES]


# ---- fit history --------------------------------------------------------------------------------


def thin(n: int, limit: int) -> list[int]:
    """Indices of at most ``limit`` of ``n`` points: all of them if they fit, else the first,
    the last and evenly spaced ones between (``limit >= 2``)."""
    if n <= limit:
        return list(range(n))
    return sorted({round(i * (n - 1) / (limit - 1)) for i in range(limit)})


def history_table(history, limit: int = MAX_HISTORY_ROWS) -> dict | None:
    """A compact table of a fit history (a list of dicts), or None for no history.

    The points that carry a validation score are shown where there are at least two, else
    every point; either way at most ``limit`` rows (:func:`thin`).  Columns that are empty in
    every shown row are left out, and columns with one value in every row are moved to the
    caption (``states = 16 in every row``)."""
    points = [p for p in history if isinstance(p, dict)] if isinstance(history, list) else []
    if not points:
        return None
    validated = [p for p in points if finite(p.get("valid_nll")) is not None]
    chosen = validated if len(validated) >= 2 else points
    shown = [chosen[i] for i in thin(len(chosen), limit)]
    keys = [k for k in HISTORY_ORDER if any(k in p for p in shown)]
    keys += [k for p in shown for k in p if k not in keys]
    keys = list(dict.fromkeys(k for k in keys if any(not _missing(p.get(k)) for p in shown)))
    constant = []
    if len(shown) > 1:
        constant = [k for k in keys if len({as_text(p.get(k)) for p in shown}) == 1]
    columns = [k for k in keys if k not in constant]
    what = "validation points" if chosen is validated else "points"
    caption = (f"{len(shown)} of {len(chosen)} {what}" if len(shown) < len(chosen)
               else f"all {len(chosen)} {what}")
    if constant:
        caption += "; " + ", ".join(f"{k} = {_show(shown[0][k])}" for k in constant)
        caption += " in every row"
    return {"caption": caption,
            "columns": [HISTORY_HEADS.get(k, str(k)) for k in columns],
            "rows": [[_cell(p.get(k)) for k in columns] for p in shown]}


# ---- inspect tables ------------------------------------------------------------------------------


def prune_table(columns: list, rows: list) -> tuple[list, list]:
    """``columns`` and ``rows`` without the rows, then the columns, that hold no value at all
    (None or empty in every cell): an n-gram model without discounts shows no D1/D2/D3+."""
    rows = [row if isinstance(row, list) else [row] for row in rows]
    rows = [row for row in rows if any(not _missing(v) for v in row)]
    width = max([len(columns), *(len(row) for row in rows)])
    rows = [row + [None] * (width - len(row)) for row in rows]
    columns = list(columns) + [""] * (width - len(columns))
    keep = [j for j in range(width) if any(not _missing(row[j]) for row in rows)]
    return [columns[j] for j in keep], [[row[j] for j in keep] for row in rows]


def inspect_tables(inspect, limit: int = MAX_TABLES) -> dict:
    """Template data for a record's ``inspect`` entries: at most ``limit`` tables, pruned
    (:func:`prune_table`), with the number of tables left out."""
    entries = [t for t in inspect if isinstance(t, dict)] if isinstance(inspect, list) else []
    tables = []
    for entry in entries[:limit]:
        columns = entry.get("columns") if isinstance(entry.get("columns"), list) else []
        rows = entry.get("rows") if isinstance(entry.get("rows"), list) else []
        columns, rows = prune_table(columns, rows)
        if rows:
            tables.append({"title": as_text(entry.get("title", "")),
                           "columns": [_show(c) or "" for c in columns],
                           "rows": [[_cell(v) for v in row] for row in rows]})
    return {"tables": tables, "left_out": max(0, len(entries) - limit)}


# ---- samples and task examples -----------------------------------------------------------------


def _sample(sample: str | None) -> dict | None:
    if not sample:
        return None
    note = (f"the first {MAX_SAMPLE_CHARS:,} of {len(sample):,} characters"
            if len(sample) > MAX_SAMPLE_CHARS else "")
    return {"text": clip(sample, MAX_SAMPLE_CHARS), "note": note}


def task_examples(tasks: Mapping[str, TaskResult],
                  limit: int = MAX_TASK_EXAMPLES) -> list[dict]:
    """The examples tasks kept (the ``samples`` of a task result: dicts such as ``source``,
    ``reference``, ``output``), at most ``limit`` per task, as small tables."""
    out = []
    for name, result in sorted(tasks.items()):
        samples = result.scores.get("samples")
        samples = [s for s in samples if isinstance(s, dict)] if isinstance(samples, list) else []
        if not samples:
            continue
        columns = list(dict.fromkeys(str(k) for s in samples[:limit] for k in s))
        rows = [[_example_cell(s.get(k)) for k in columns] for s in samples[:limit]]
        out.append({"task": str(name), "columns": columns, "rows": rows,
                    "note": f"{min(limit, len(samples))} of {len(samples)} examples kept"})
    return out


def _example_cell(value) -> dict[str, str]:
    cell = _cell(value)
    return {**cell, "text": clip(cell["text"], MAX_EXAMPLE_CHARS)}


# ---- provenance ----------------------------------------------------------------------------------


def _provenance(record: Record) -> list[tuple[str, str]]:
    prov, cell = record.provenance, record.cell
    facts = []
    if (commit := _show(prov.get("git_commit"))) is not None:
        facts.append(("commit", commit[:10] + (" (uncommitted changes)"
                                                if prov.get("git_dirty") is True else "")))
    version = _show(mapping_at(prov, ("versions",)).get("lmladder"))
    for name, value in (("lmladder", version), ("date", _show(prov.get("date"))),
                        ("machine", _join(prov.get("machine"), prov.get("platform"))),
                        ("CPU cores", _show(prov.get("cpu_count"))),
                        ("threads", _show(cell.threads)),
                        ("device", _show(cell.device)),
                        ("matrix", _show(cell.matrix))):
        if value is not None:
            facts.append((name, value))
    return facts


def _join(*values: Any) -> str | None:
    shown = [s for v in values if (s := _show(v)) is not None]
    return ", ".join(shown) if shown else None


# ---- rendering -----------------------------------------------------------------------------------
