"""Render a folder of result records into one self-contained HTML page.

The report only reads records (:mod:`lmladder.results`) -- it computes no new metrics.  It is a
list of sections; each is a function ``records -> Section | None``, so a new kind of content is
one function appended to :data:`SECTIONS`.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jinja2
import pandas as pd

from lmladder.reports import plots
from lmladder.results import load_records


@dataclass(frozen=True)
class Section:
    title: str
    html: str

    @property
    def anchor(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.title.lower()).strip("-")


COLUMNS = {  # column title -> (path into the record, format)
    "parameters": (("model", "parameters"), "{:,.0f}"),
    "valid ppl": (("metrics", "valid", "ppl"), "{:.2f}"),
    "test ppl": (("metrics", "test", "ppl"), "{:.2f}"),
    "test word ppl": (("metrics", "test", "word_ppl"), "{:.2f}"),
    "test bpc": (("metrics", "test", "bpc"), "{:.4f}"),
    "top-1": (("metrics", "test_accuracy", "top1"), "{:.1%}"),
    "top-5": (("metrics", "test_accuracy", "top5"), "{:.1%}"),
    "trained tokens": (("fit", "train_tokens"), "{:,.0f}"),
    "train tok/s": (("throughput", "train_tokens_per_s"), "{:,.0f}"),
    "score tok/s": (("throughput", "score_tokens_per_s"), "{:,.0f}"),
    "generate tok/s": (("throughput", "generate_tokens_per_s"), "{:,.0f}"),
    "fit s": (("timing", "fit_s"), "{:.1f}"),
    "peak RSS MiB": (("memory", "rss_peak_mib"), "{:,.0f}"),
}
LOWER_IS_BETTER = {"valid ppl", "test ppl", "test word ppl", "test bpc"}
HIGHER_IS_BETTER = {"top-1", "top-5", "train tok/s", "score tok/s", "generate tok/s"}


def _get(record: dict, path: tuple[str, ...]):
    for key in path:
        if not isinstance(record, dict) or record.get(key) is None:
            return None
        record = record[key]
    return record


def results_frame(records: list[dict]) -> pd.DataFrame:
    """One row per successful record: identity columns plus every entry of :data:`COLUMNS`."""
    rows = []
    for r in records:
        if r["status"] != "ok":
            continue
        c = r["cell"]
        row = {
            "model": c["label"],
            "registry": c["model"],
            "dataset": c["dataset"],
            "seed": c["seed"],
            "device": c["device"],
            "matrix": c["matrix"],
        }
        for name, (path, _) in COLUMNS.items():
            row[name] = _get(r, path)
        rows.append(row)
    return pd.DataFrame(rows)


def _table(df: pd.DataFrame, oracle: dict | None = None) -> str:
    """HTML table; the best value of each metric column is marked, an oracle row is appended."""
    cols = [c for c in COLUMNS if c in df and df[c].notna().any()]
    best = {}
    for c in cols:
        if c in LOWER_IS_BETTER:
            best[c] = df[c].min()
        elif c in HIGHER_IS_BETTER:
            best[c] = df[c].max()
    head = "".join(f"<th>{html.escape(c)}</th>" for c in ["model", *cols])
    body = []
    for _, row in df.iterrows():
        cells = [f"<td>{html.escape(str(row['model']))}</td>"]
        for c in cols:
            v = row[c]
            text = "—" if pd.isna(v) else COLUMNS[c][1].format(v)
            cls = ' class="best"' if c in best and not pd.isna(v) and v == best[c] else ""
            cells.append(f"<td{cls}>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    if oracle:
        cells = ["<td>source (oracle)</td>"]
        for c in cols:
            path = COLUMNS[c][0]  # an oracle holds {"valid": metrics, "test": metrics}
            v = _get(oracle, path[1:]) if path[0] == "metrics" else None
            cells.append(f"<td>{'—' if v is None else COLUMNS[c][1].format(v)}</td>")
        body.append('<tr class="oracle">' + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _mean_over_seeds(df: pd.DataFrame) -> pd.DataFrame:
    metric_cols = [c for c in COLUMNS if c in df]
    grouped = df.groupby(["model", "dataset", "device"], sort=False)[metric_cols].mean()
    grouped["seeds"] = df.groupby(["model", "dataset", "device"], sort=False)["seed"].nunique()
    return grouped.reset_index()


def _oracles(records: list[dict]) -> dict[str, dict]:
    return {r["cell"]["dataset"]: r["oracle"] for r in records if r.get("oracle")}


# ---- sections -------------------------------------------------------------------------------


def overview(records: list[dict]) -> Section:
    prov = [r["provenance"] for r in records]
    commits = sorted(
        {
            (p.get("git_commit") or "unknown")[:10] + (" (dirty)" if p.get("git_dirty") else "")
            for p in prov
        }
    )
    dates = sorted(p["date"] for p in prov)
    versions = prov[-1]["versions"] if prov else {}
    status = pd.Series([r["status"] for r in records]).value_counts().to_dict()
    datasets = sorted({r["cell"]["dataset"] for r in records})
    devices = sorted({r["cell"]["device"] for r in records})
    items = [
        ("cells", ", ".join(f"{n} {s}" for s, n in status.items())),
        ("datasets", ", ".join(datasets)),
        ("devices", ", ".join(devices) + f" ({prov[-1]['cpu_count']} CPU cores)" if prov else ""),
        ("run between", f"{dates[0]} and {dates[-1]}" if dates else ""),
        ("lmladder commit", ", ".join(commits)),
        ("platform", prov[-1]["platform"] + ", Python " + prov[-1]["python"] if prov else ""),
        ("versions", ", ".join(f"{k} {v}" for k, v in versions.items() if v)),
    ]
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td style='text-align:left'>{html.escape(v)}</td></tr>"
        for k, v in items
    )
    return Section("Overview", f"<table>{rows}</table>")


def per_dataset(records: list[dict]) -> Section | None:
    df = results_frame(records)
    if df.empty:
        return None
    oracles = _oracles(records)
    parts = []
    for ds, sub in df.groupby("dataset", sort=True):
        sub = _mean_over_seeds(sub).sort_values("test ppl")
        desc = next(
            r["dataset"] for r in records if r["cell"]["dataset"] == ds and r.get("dataset")
        )
        splits = desc["splits"]
        note = (
            f"{desc['level']}-level, vocabulary {desc['vocab_size']:,}; test "
            f"{splits['test']['tokens']:,} tokens ({splits['test']['chars']:,} characters). "
            "Perplexity is per model token; word ppl is per whitespace word plus one per line; "
            "bpc is bits per character of running text."
        )
        if (sub["seeds"] > 1).any():
            note += " Metrics are means over seeds."
        parts.append(f"<h3>{html.escape(ds)}</h3><p class='note'>{html.escape(note)}</p>")
        parts.append(_table(sub, oracles.get(ds)))
    parts.append(plots.img(plots.perplexity_bars(df, oracles)))
    return Section("Results by dataset", "".join(parts))


def sweeps(records: list[dict]) -> Section | None:
    """Curves for a registry model run with several values of one numeric hyperparameter."""
    found = plots.find_sweeps(records)
    if not found:
        return None
    parts = ["<p class='note'>Test perplexity as one hyperparameter varies, all else equal.</p>"]
    parts.append(plots.img(plots.sweep_curves(found)))
    return Section("Scaling curves", "".join(parts))


def inspections(records: list[dict]) -> Section | None:
    parts = []
    for r in records:
        for table in r.get("inspect") or []:
            title = f"{r['cell']['label']} on {r['cell']['dataset']}: {table['title']}"
            df = pd.DataFrame(table["rows"], columns=table["columns"])
            parts.append(f"<h3>{html.escape(title)}</h3>"
                         + df.to_html(index=False, border=0, na_rep="—"))
    return Section("Inside the models", "".join(parts)) if parts else None


def samples(records: list[dict]) -> Section | None:
    parts = []
    for r in records:
        if r["status"] == "ok" and r.get("sample"):
            parts.append(
                f"<h3>{html.escape(r['cell']['label'])} on "
                f"{html.escape(r['cell']['dataset'])}</h3>"
                f"<pre>{html.escape(r['sample'])}</pre>"
            )
    if not parts:
        return None
    return Section(
        "Generated samples",
        "<p class='note'>100 tokens sampled at temperature 1 "
        "after one boundary token, seeded by the cell's seed.</p>" + "".join(parts),
    )


def problems(records: list[dict]) -> Section | None:
    bad = [r for r in records if r["status"] != "ok"]
    if not bad:
        return None
    parts = []
    for r in bad:
        c = r["cell"]
        parts.append(
            f"<h3 class='fail'>{html.escape(r['status'])}: {html.escape(c['label'])} on "
            f"{html.escape(c['dataset'])} (seed {c['seed']}, {html.escape(c['device'])})"
            f"</h3><pre>{html.escape(r['error']['type'])}: "
            f"{html.escape(r['error']['message'])}</pre>"
        )
    return Section("Failed and skipped cells", "".join(parts))


def protocol(records: list[dict]) -> Section:
    from lmladder import scoring

    seen = {}
    for r in records:
        if r.get("protocol"):
            seen[repr(sorted(r["protocol"].items()))] = r["protocol"]
    rows = "".join(
        "<tr>"
        + "".join(
            f"<td style='text-align:left'>{html.escape(f'{k} = {v}')}</td>" for k, v in p.items()
        )
        + "</tr>"
        for p in seen.values()
    )
    doc = html.escape((scoring.__doc__ or "").strip())
    return Section("Scoring protocol", f"<table>{rows}</table><pre>{doc}</pre>")


SECTIONS: list[Callable[[list[dict]], Section | None]] = [
    overview,
    per_dataset,
    sweeps,
    inspections,
    samples,
    problems,
    protocol,
]


def render_html(records: list[dict], title: str = "lmladder report") -> str:
    if not records:
        raise ValueError("no result records to report")
    sections = [s for s in (f(records) for f in SECTIONS) if s is not None]
    matrices = sorted({r["cell"]["matrix"] for r in records})
    loader = jinja2.PackageLoader("lmladder.reports", "templates")
    env = jinja2.Environment(loader=loader, autoescape=True)
    return env.get_template("report.html.j2").render(
        title=title,
        subtitle=f"matrix: {', '.join(matrices)} — {len(records)} cells",
        sections=sections,
    )


def render_report(results_dir: str | Path, output: str | Path) -> Path:
    """Render every record under ``results_dir`` into the HTML file ``output``."""
    records = load_records(results_dir)
    if not records:
        raise FileNotFoundError(f"{results_dir}: no result records (*.json) found")
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(render_html(records), encoding="utf-8")
    return output
