"""Hyperparameter sweeps found in records: a model run at three or more values of one config key
(render.py draws them with :func:`lmladder.reports.plots.curves`)."""

from __future__ import annotations

import json
from collections import defaultdict

from lmladder.numbers import finite
from lmladder.record import Record
from lmladder.results import IDENTITY, code_revision


def _test_ppl(record: Record) -> float | None:
    ppl = record.metric("test", "ppl")
    return ppl if ppl is not None and ppl > 0 else None


def find_sweeps(records: list[Record]) -> dict[tuple[str, str, str], list[tuple[float, float]]]:
    """(registry model, dataset, key) -> [(value, mean test ppl)] where exactly one numeric
    config key takes ≥3 values among the successful cells of one model on one dataset.

    Cells are compared only within one budget, device, scoring protocol, thread count and code
    revision; several seeds of one value become their mean.  Where two such groups sweep the
    same key of one model on one dataset, the model name is followed by what tells them apart.
    """
    groups = defaultdict(list)
    for r in records:
        if not r.ok or _test_ppl(r) is None:
            continue
        cell = r.cell.to_json()
        rest = {k: cell.get(k) for k in IDENTITY if k not in ("model", "config", "dataset")}
        rest["code"] = code_revision(r)
        groups[(r.cell.model, r.cell.dataset, json.dumps(rest, sort_keys=True,
                                                           default=str))].append(r)
    out = {}
    for (model, ds, rest), rs in sorted(groups.items()):
        if len(rs) < 3:
            continue
        configs = [r.cell.config for r in rs]
        keys = sorted(set().union(*configs))
        varying = [k for k in keys if len({repr(c.get(k)) for c in configs}) > 1]
        if len(varying) != 1:
            continue
        k = varying[0]
        by_value = defaultdict(list)
        for r, config in zip(rs, configs, strict=True):
            by_value[repr(config.get(k))].append((config.get(k), _test_ppl(r)))
        xs = [pairs[0][0] for pairs in by_value.values()]
        if len(xs) < 3 or any(finite(x) is None for x in xs):
            continue
        name = model if (model, ds, k) not in out else f"{model} ({rest})"
        out[(name, ds, k)] = sorted(
            (pairs[0][0], sum(p for _, p in pairs) / len(pairs)) for pairs in by_value.values()
        )
    return out
