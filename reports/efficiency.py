"""Efficiency: the compressed variants of one trained model (quantized, sparse, pruned) beside
it, with their perplexity, size on disk, scoring speed and memory as ratios to the uncompressed
model -- seed by seed, within one run on one machine.  Rows come from
:mod:`lmladder.reports.rows`; figures are drawn by :mod:`lmladder.reports.plots`."""

from __future__ import annotations

import dataclasses
import re
from collections import defaultdict
from dataclasses import dataclass

from markupsafe import Markup

from lmladder.numbers import finite
from lmladder.record import Record
from lmladder.reports import plots
from lmladder.reports.figures import MAX_DRAWN, drawable, plot, slug
from lmladder.reports.rows import COLUMNS, Context, Row
from lmladder.reports.values import as_text, clip, number_at
from lmladder.results import identity

COMPRESSION = {  # config key -> (its value when off, how a value reads in a variant's name)
    "quantize": ("none", "{}"),
    "sparsity": (0.0, "{:.0%} sparse"),
    "prune": (0.0, "pruned {:g}"),
}
RATIOS = {  # column -> the column of its ratio to the uncompressed model
    "test ppl": "Δ ppl", "size on disk": "× size", "score tok/s": "× speed",
    "peak RSS MiB": "× memory"}
WORTH_A_MENTION = 1.1  # a variant this much smaller or faster than its model is summarised
MAX_MENTIONS = 6  # summary lines per dataset: the variants losing least perplexity
EFFICIENCY_HEADS = {  # column -> unit, in table order
    "test ppl": "per token", "Δ ppl": "vs uncompressed", "size on disk": "MiB",
    "× size": "of uncompressed", "score tok/s": "tokens/s", "× speed": "of uncompressed",
    "peak RSS MiB": "MiB, whole cell", "× memory": "of uncompressed", "n-grams": "count"}


def compression(record: Record) -> dict:
    """The compression a record's model was given, as the config keys of :data:`COMPRESSION`
    that are on, e.g. ``{"quantize": "int8"}``; ``{}`` for an uncompressed model (a key that is
    missing, None or at its "off" value is off)."""
    config = record.cell.config
    return {key: config[key] for key, (off, _) in COMPRESSION.items()
            if config.get(key) is not None and config[key] != off}


def base_identity(record: Record) -> str:
    """The :func:`~lmladder.results.identity` of the model a record's model was compressed
    from: the cell's model, config, budget, dataset, device, scoring, threads and data share,
    with the compression keys (:data:`COMPRESSION`) left out of its config.

    Records that share it are variants of one trained model (the same model entry, trained
    alike on the same data), told apart only by quantization, weight sparsity or n-gram
    pruning; with the seed, it pairs each variant's seed with the uncompressed model's."""
    config = {k: v for k, v in record.cell.config.items() if k not in COMPRESSION}
    return identity(record.replace(cell=dataclasses.replace(record.cell, config=config)))


def _variant_text(settings: dict) -> str:
    """A compression in a few words: "int8", "50% sparse", "pruned 1e-7", "uncompressed"."""
    words = []
    for key, value in settings.items():
        try:
            words.append(COMPRESSION[key][1].format(value))
        except (TypeError, ValueError):  # a value of an unexpected type: shown as it is
            words.append(f"{key}={clip(as_text(value))}")
    # "1e-07" as people write it: "1e-7"
    return re.sub(r"(\d)e([-+])0+(\d)", r"\1e\2\3", " + ".join(words)) or "uncompressed"


def _ngram_count(record: Record) -> float | None:
    """An n-gram model's number of n-grams (all orders): the sum of the "n-grams" column of
    its inspection table; None for other models."""
    for table in record.inspect or ():
        columns = table.get("columns") if isinstance(table, dict) else None
        if not isinstance(columns, list) or "n-grams" not in columns:
            continue
        at = columns.index("n-grams")
        rows = table.get("rows") if isinstance(table.get("rows"), list) else []
        counts = [finite(r[at]) if isinstance(r, list) and len(r) > at else None for r in rows]
        if counts and None not in counts:
            return sum(counts)
    return None


@dataclass(frozen=True)
class Variant:
    """One row of an efficiency table: ``row`` is a model compressed with ``settings``
    (:func:`compression`), ``base`` the run's uncompressed row of the same trained model (the
    row itself when uncompressed; None where the run has none, or no variant to compare) and
    ``model`` its name."""

    row: Row
    settings: dict
    base: Row | None
    model: str

    @property
    def name(self) -> str:
        """E.g. "LSTM small · int8"; a model without variants is just its name."""
        if not self.settings and self.base is None:
            return self.model
        return f"{self.model} · {_variant_text(self.settings)}"

    def ratio(self, column: str) -> float | None:
        """This row's ``column`` over its base's, seed by seed (a seed is compared only with
        the same seed of the base), averaged over the seeds both have; None without any."""
        if self.base is None:
            return None
        path = COLUMNS[column][0]
        base = {r.cell.seed: number_at(r, path) for r in self.base.records}
        ratios = [v / b for r in self.row.records
                  if (v := number_at(r, path)) is not None and (b := base.get(r.cell.seed))]
        return sum(ratios) / len(ratios) if ratios else None


def variant_groups(rows: list[Row]) -> list[list[Variant]]:
    """The rows grouped into variants of one trained model (:func:`base_identity`), for the
    groups that have compressed variants or a recorded size on disk.

    A group lists its uncompressed row first, then its variants, largest on disk first; groups
    come in the order of their uncompressed (else first) row's test perplexity.  A model
    alone in its group has no base: there is nothing to compare."""
    groups = defaultdict(list)
    for row in rows:
        groups[base_identity(row.records[0])].append(row)
    out = []
    for same in groups.values():
        alone = len(same) == 1
        if alone and not same[0].values("size on disk"):
            continue
        settings = {id(row): compression(row.records[0]) for row in same}
        base = None if alone else next((row for row in same if not settings[id(row)]), None)
        same.sort(key=lambda row: (row is not base, -(row.mean("size on disk") or 0), row.label))
        model = (base or same[0]).label
        out.append([Variant(row, settings[id(row)], base, model) for row in same])
    return sorted(out, key=lambda g: (g[0].row.mean("test ppl") is None,
                                      g[0].row.mean("test ppl") or 0.0, g[0].model))


def dataset_variants(ctx: Context, ds: str) -> list[list[Variant]]:
    """:func:`variant_groups` of this run's rows of ``ds`` trained on the whole split: sizes,
    speeds and memory compare only within one run, on one machine (no reference rows)."""
    return variant_groups([row for row in ctx.measured(ds, full=True) if row.kind == "own"])


def _times(ratio: float, more: str, less: str) -> str:
    """A ratio as people say it: (0.25, "larger", "smaller") -> "4× smaller", 1.4 -> "1.4×
    larger", 123.4 -> "123× larger"."""
    factor = ratio if ratio >= 1 else 1 / ratio
    return (f"{factor:.2g}" if factor < 10 else f"{factor:,.0f}") + "× " + (
        more if ratio >= 1 else less)


def _change(ratio: float) -> str:
    """A ratio as a signed percentage change: 1.008 -> "+0.80%", 0.99 -> "−1.00%"."""
    return f"{(ratio - 1) * 100:+.2f}%".replace("-", "−")


def _variant_cells(v: Variant) -> dict[str, dict]:
    """Column -> cell (``text``, sortable ``value``) of one efficiency table row."""
    cells = {}
    for column, name in RATIOS.items():
        mean = v.row.mean(column)
        cells[column] = {"text": v.row.text(column) if mean is not None else "",
                         "value": "" if mean is None else repr(mean)}
        ratio = v.ratio(column)
        text = "" if ratio is None else _change(ratio) if column == "test ppl" \
            else f"{ratio:.2f}×"
        cells[name] = {"text": text, "value": "" if ratio is None else repr(ratio)}
    ngrams = next((n for r in v.row.records if (n := _ngram_count(r)) is not None), None)
    cells["n-grams"] = {"text": "" if ngrams is None else f"{ngrams:,.0f}",
                        "value": "" if ngrams is None else repr(ngrams)}
    return cells


def efficiency_table(groups: list[list[Variant]]) -> dict:
    """Template data of one dataset's efficiency table: a row per variant of the models that
    have some (a model alone is in the leaderboard already), the columns of
    :data:`EFFICIENCY_HEADS` that some row has a value in."""
    body = [(v, _variant_cells(v)) for group in groups if len(group) > 1 for v in group]
    columns = [c for c in EFFICIENCY_HEADS if any(cells[c]["text"] for _, cells in body)]
    return {"heads": [{"name": c, "unit": EFFICIENCY_HEADS[c], "better": "", "detail": False}
                      for c in columns],
            "rows": [{"label": v.name, "fam": slug(v.row.family), "settings": v.row.settings,
                      "seeds": len(v.row.records), "cells": [cells[c] for c in columns]}
                     for v, cells in body]}


def efficiency_plots(ds: str, groups: list[list[Variant]]) -> list[Markup]:
    """Test perplexity against size on disk and against scoring speed, a point per variant,
    the models without variants as single points beside them; at most :data:`MAX_DRAWN` // 2
    models, those with variants first, then by perplexity."""
    shown = sorted(groups, key=lambda group: len(group) == 1)[:MAX_DRAWN // 2]  # stable
    figures = []
    for column, what, unit in (("size on disk", "size on disk", "MiB"),
                               ("score tok/s", "scoring speed", "tokens/s")):
        drawn = {}
        for group in shown:
            drawn[group[0].model] = [
                plots.Point(_variant_text(v.settings) if len(group) > 1 else "", v.row.family,
                            v.row.mean(column), y, flagged=v.row.training.flagged)
                for v in group if drawable(y := v.row.mean("test ppl"))
                and drawable(v.row.mean(column))]
        figures.append(plot("tradeoff", drawn, title=f"{ds}: test ppl against {what}",
                            x_label=f"{what} ({unit}, log scale)",
                            y_label="test ppl (per token, log scale)"))
    return [f for f in figures if f is not None]


def _mention(v: Variant, ds: str) -> str | None:
    """The summary line of a compressed variant that is smaller or faster than its model by
    :data:`WORTH_A_MENTION` at least, e.g. "LSTM small · int8 on ptb: 3.9× smaller, 1.4× faster
    scoring, +0.80% ppl"; None for any other."""
    size, speed, ppl = (v.ratio(c) for c in ("size on disk", "score tok/s", "test ppl"))
    if not v.settings or ppl is None or not (
            (size and 1 / size >= WORTH_A_MENTION) or (speed and speed >= WORTH_A_MENTION)):
        return None
    parts = [_times(size, "larger", "smaller")] if size else []
    if speed:
        parts.append(_times(speed, "faster", "slower") + " scoring")
    return f"{v.name} on {ds}: {', '.join(parts)}, {_change(ppl)} ppl"


def variant_lines(ctx: Context) -> list[str]:
    """One summary line per compressed variant worth a mention (:func:`_mention`), per dataset
    the :data:`MAX_MENTIONS` losing the least perplexity."""
    lines = []
    for ds in ctx.datasets:
        found = [(v.ratio("test ppl"), line) for group in dataset_variants(ctx, ds)
                 for v in group if (line := _mention(v, ds)) is not None]
        lines += [line for _, line in sorted(found)[:MAX_MENTIONS]]
    return lines
