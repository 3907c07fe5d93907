"""Matplotlib figures for the report, embedded as base64 PNG so the page needs no network."""

from __future__ import annotations

import base64
import io
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker as ticker  # noqa: E402
import pandas as pd  # noqa: E402


def img(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode()
    return f'<img alt="plot" src="data:image/png;base64,{data}">'


def perplexity_bars(df: pd.DataFrame, oracles: dict[str, dict]):
    """Test perplexity by model, one panel per dataset, log scale; the oracle as a dashed line."""
    datasets = sorted(df["dataset"].unique())
    rows = [df[df["dataset"] == ds]["model"].nunique() for ds in datasets]
    fig, axes = plt.subplots(len(datasets), 1, figsize=(9, 0.32 * sum(rows) + 1.3 * len(rows)),
                             squeeze=False, gridspec_kw={"height_ratios": rows})
    for ax, ds in zip(axes[:, 0], datasets, strict=True):
        sub = df[df["dataset"] == ds].groupby("model")["test ppl"].mean().sort_values()
        ax.barh(sub.index[::-1], sub.values[::-1], color="#4a78b5")
        for y, v in enumerate(sub.values[::-1]):
            ax.text(v, y, f" {v:.1f}", va="center", fontsize=8)
        oracle = (oracles.get(ds) or {}).get("test")
        if oracle:
            ax.axvline(oracle["ppl"], ls="--", color="#b5484a", label=f"source {oracle['ppl']:.1f}")
            ax.legend(loc="lower right", fontsize=8)
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 3.0, 5.0)))
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda x, _: f"{x:g}"))
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        ax.set_title(ds)
        ax.set_xlabel("test perplexity (log scale)")
    fig.tight_layout()
    return fig


def find_sweeps(records: list[dict]) -> dict[tuple[str, str, str], list[tuple[float, float]]]:
    """(registry model, dataset, key) -> [(value, mean test ppl)] where exactly one numeric
    config key takes ≥3 values among the successful cells of one model on one dataset."""
    groups = defaultdict(list)
    for r in records:
        if r["status"] == "ok":
            groups[(r["cell"]["model"], r["cell"]["dataset"])].append(r)
    out = {}
    for (model, ds), rs in groups.items():
        if len(rs) < 3:
            continue
        keys = set().union(*(r["cell"]["config"] for r in rs))
        varying = [k for k in keys if len({repr(r["cell"]["config"].get(k)) for r in rs}) > 1]
        if len(varying) != 1:
            continue
        k = varying[0]
        by_value = defaultdict(list)  # several seeds of one value become their mean
        for r in rs:
            by_value[r["cell"]["config"].get(k)].append(r["metrics"]["test"]["ppl"])
        if len(by_value) >= 3 and all(isinstance(x, (int, float)) for x in by_value):
            out[(model, ds, k)] = sorted((x, sum(v) / len(v)) for x, v in by_value.items())
    return out


def sweep_curves(sweeps: dict[tuple[str, str, str], list[tuple[float, float]]]):
    fig, axes = plt.subplots(1, len(sweeps), figsize=(4.6 * len(sweeps), 3.4), squeeze=False)
    for ax, ((model, ds, key), pts) in zip(axes[0], sweeps.items(), strict=True):
        xs, ys = zip(*pts, strict=True)
        ax.plot(xs, ys, "o-", color="#4a78b5")
        if min(xs) > 0 and max(xs) / min(xs) >= 8:
            ax.set_xscale("log", base=2)
        ax.set_xlabel(key)
        ax.set_ylabel("test perplexity")
        ax.set_title(f"{model} on {ds}")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
