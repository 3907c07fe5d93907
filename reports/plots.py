"""Matplotlib figures for the report, returned as base64 PNG so the page needs no network.

Every text drawn here that comes from a record (labels, dataset names, config keys) goes through
:func:`plain`, so a label such as ``$\\frac{$`` is drawn as written instead of being parsed as
mathtext (which raises on malformed input and would stop the whole report).
"""

from __future__ import annotations

import base64
import io
import json
import math
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker as ticker  # noqa: E402

from lmladder.results import IDENTITY, code_revision  # noqa: E402

# A user's matplotlibrc may turn on LaTeX; record text must never reach a TeX or mathtext parser.
_RC = {"text.usetex": False}


def plain(text) -> str:
    """``text`` as matplotlib draws it literally: every ``$`` escaped, so no mathtext parsing.

    Matplotlib parses a string as mathtext when it holds an even, non-zero number of unescaped
    ``$``; ``\\$`` is drawn as ``$``.  Escaping every ``$`` leaves none unescaped, and an
    already-escaped ``\\$`` in the input comes out as it went in.
    """
    return str(text).replace("$", r"\$")


def png_base64(fig) -> str:
    """The figure as a base64-encoded PNG (ASCII); the figure is closed."""
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def perplexity_bars(panels: dict[str, list[tuple[str, float]]], oracles: dict[str, float]):
    """Test perplexity by row, one panel per dataset, log scale; the oracle as a dashed line.

    ``panels`` maps a dataset to ``[(row label, mean test perplexity)]`` (labels unique within a
    dataset; values finite and positive); ``oracles`` maps a dataset to the source's perplexity.
    """
    panels = {ds: sorted(rows, key=lambda r: r[1]) for ds, rows in panels.items() if rows}
    sizes = [len(rows) for rows in panels.values()]
    with matplotlib.rc_context(_RC):
        fig, axes = plt.subplots(len(panels), 1, squeeze=False,
                                 figsize=(9, 0.32 * sum(sizes) + 1.3 * len(sizes)),
                                 gridspec_kw={"height_ratios": sizes})
        for ax, (ds, rows) in zip(axes[:, 0], panels.items(), strict=True):
            labels, values = zip(*reversed(rows), strict=True)
            ys = range(len(values))
            ax.barh(ys, values, color="#4a78b5")
            ax.set_yticks(ys, labels=[plain(label) for label in labels])
            for y, v in zip(ys, values, strict=True):
                ax.text(v, y, f" {v:.1f}", va="center", fontsize=8)
            oracle = oracles.get(ds)
            if oracle is not None:
                ax.axvline(oracle, ls="--", color="#b5484a", label=f"source {oracle:.1f}")
                ax.legend(loc="lower right", fontsize=8)
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 3.0, 5.0)))
            ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda x, _: f"{x:g}"))
            ax.xaxis.set_minor_formatter(ticker.NullFormatter())
            ax.set_title(plain(ds))
            ax.set_xlabel("test perplexity (log scale)")
        fig.tight_layout()
    return fig


def finite(value) -> float | None:
    """``value`` as a float if it is a finite real number (not a bool), else None: records may
    hold anything where a number is expected."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer beyond a float's range
        return None
    return number if math.isfinite(number) else None


def _test_ppl(record: dict) -> float | None:
    metrics = record.get("metrics")
    test = metrics.get("test") if isinstance(metrics, dict) else None
    ppl = finite(test.get("ppl")) if isinstance(test, dict) else None
    return ppl if ppl is not None and ppl > 0 else None


def find_sweeps(records: list[dict]) -> dict[tuple[str, str, str], list[tuple[float, float]]]:
    """(registry model, dataset, key) -> [(value, mean test ppl)] where exactly one numeric
    config key takes ≥3 values among the successful cells of one model on one dataset.

    Cells are compared only within one budget, device, scoring protocol, thread count and code
    revision; several seeds of one value become their mean.  Where two such groups sweep the
    same key of one model on one dataset, the model name is followed by what tells them apart.
    """
    groups = defaultdict(list)
    for r in records:
        cell = r["cell"]
        if r["status"] != "ok" or _test_ppl(r) is None:
            continue
        rest = {k: cell.get(k) for k in IDENTITY if k not in ("model", "config", "dataset")}
        rest["code"] = code_revision(r)
        groups[(cell["model"], cell["dataset"], json.dumps(rest, sort_keys=True,
                                                             default=str))].append(r)
    out = {}
    for (model, ds, rest), rs in sorted(groups.items()):
        if len(rs) < 3:
            continue
        configs = [c if isinstance(c, dict) else {} for c in (r["cell"].get("config") for r in rs)]
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


def sweep_curves(sweeps: dict[tuple[str, str, str], list[tuple[float, float]]]):
    """One panel per sweep: test perplexity against the swept value (log2 x when it spans ≥8×)."""
    with matplotlib.rc_context(_RC):
        fig, axes = plt.subplots(1, len(sweeps), figsize=(4.6 * len(sweeps), 3.4), squeeze=False)
        for ax, ((model, ds, key), pts) in zip(axes[0], sweeps.items(), strict=True):
            xs, ys = zip(*pts, strict=True)
            ax.plot(xs, ys, "o-", color="#4a78b5")
            if min(xs) > 0 and max(xs) / min(xs) >= 8:
                ax.set_xscale("log", base=2)
            ax.set_xlabel(plain(key))
            ax.set_ylabel("test perplexity")
            ax.set_title(plain(f"{model} on {ds}"))
            ax.grid(alpha=0.3)
        fig.tight_layout()
    return fig


def learning_curves(panels: dict[str, list[tuple[str, list[tuple[float, float, float]]]]]):
    """Per dataset, test perplexity against training tokens (left) and fit seconds (right),
    log-log; ``panels`` maps a dataset to ``[(label, [(tokens, fit s, ppl), ...])]``."""
    with matplotlib.rc_context(_RC):
        fig, axes = plt.subplots(len(panels), 2, figsize=(10, 3.6 * len(panels)), squeeze=False)
        for (left, right), (ds, lines) in zip(axes, panels.items(), strict=True):
            for label, pts in lines:
                tokens, seconds, ppl = zip(*pts, strict=True)
                left.plot(tokens, ppl, "o-", label=plain(label))
                timed = [(s, p) for s, p in zip(seconds, ppl, strict=True) if s]
                if timed:
                    right.plot(*zip(*timed, strict=True), "o-", label=plain(label))
            for ax, xlabel in ((left, "training tokens"), (right, "fit seconds")):
                ax.set_xscale("log")
                ax.set_yscale("log")
                for axis in (ax.xaxis, ax.yaxis):
                    axis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
                    axis.set_major_formatter(ticker.FuncFormatter(
                        lambda v, _: f"{v:,.0f}" if v >= 10 else f"{v:g}"))
                    axis.set_minor_formatter(ticker.NullFormatter())
                ax.set_xlabel(xlabel)
                ax.set_ylabel("test perplexity")
                ax.set_title(plain(ds))
                ax.grid(alpha=0.3, which="both")
            left.legend(fontsize=7)
        fig.tight_layout()
    return fig
