"""Render a folder of result records into one self-contained HTML page.

The report only reads records (:mod:`lmladder.results`) -- it computes nothing but means and
spreads over seeds.  It is a list of sections; each is a function ``records -> Section | None``
that returns plain data (strings, numbers, lists, dicts) and names the Jinja template that turns
it into markup, so a new kind of content is one function appended to :data:`SECTIONS` and one
template in ``templates/``.  Templates are rendered with autoescape on and nothing that comes
from a record is ever marked safe.

Rows are experiments, not labels: records are grouped by :func:`~lmladder.results.identity`
(model, config, budget, dataset, device, scoring, threads) and by code revision, and only the
seeds of one group are averaged.  For each identity the revision with the newest record is the
current one; the others are listed apart as older code.  Two identities that share a label are
told apart by the settings that differ between them.
"""

from __future__ import annotations

import json
import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import jinja2

from lmladder.files import atomic_write
from lmladder.reports import plots
from lmladder.reports.plots import finite
from lmladder.results import (
    STATUSES,
    code_revision,
    identity,
    lmladder_version,
    newest_per,
    record_date,
    scan_records,
)


class ReportError(ValueError):
    """The report cannot be written where it was asked to be; the message is one line."""


@dataclass(frozen=True)
class Section:
    """A titled part of the page: ``template`` (in ``templates/``) renders ``data``."""

    title: str
    template: str
    data: dict = field(default_factory=dict)

    @property
    def anchor(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.title.lower()).strip("-")


COLUMNS = {  # column title -> (path into the record, format)
    "parameters": (("model", "parameters"), "{:,.0f}"),
    "valid ppl": (("metrics", "valid", "ppl"), "{:.2f}"),
    "test ppl": (("metrics", "test", "ppl"), "{:.2f}"),
    "test word ppl": (("metrics", "test", "word_ppl"), "{:.2f}"),
    "test bpc": (("metrics", "test", "bpc"), "{:.4f}"),
    # a masked LM's pseudo-perplexity (both sides visible): never ranked against causal ppl
    "test pseudo-ppl (MLM)": (("metrics", "test_pseudo", "pseudo_ppl"), "{:.2f}"),
    "top-1": (("metrics", "test_accuracy", "top1"), "{:.1%}"),
    "top-5": (("metrics", "test_accuracy", "top5"), "{:.1%}"),
    "trained tokens": (("fit", "train_tokens"), "{:,.0f}"),
    "train tok/s": (("throughput", "train_tokens_per_s"), "{:,.0f}"),
    "score tok/s": (("throughput", "score_tokens_per_s"), "{:,.0f}"),
    "generate tok/s": (("throughput", "generate_tokens_per_s"), "{:,.0f}"),
    "fit s": (("timing", "fit_s"), "{:.1f}"),
    "valid in fit s": (("fit", "valid_seconds"), "{:.1f}"),
    "peak RSS MiB": (("memory", "rss_peak_mib"), "{:,.0f}"),
}
LOWER_IS_BETTER = {"valid ppl", "test ppl", "test word ppl", "test bpc"}
HIGHER_IS_BETTER = {"top-1", "top-5", "train tok/s", "score tok/s", "generate tok/s"}
COUNTS = {"parameters", "trained tokens"}  # sizes, not measurements: a range, not a spread
SPREAD_NOTE = ("Where a row has several seeds, a value reads mean ± sample standard deviation "
               "over its seeds (n − 1 in the denominator); “seeds” counts them.")


def _get(record, path: Iterable[str]):
    """The value at ``path`` in nested dicts, or None where any step is missing or not a dict."""
    for key in path:
        if not isinstance(record, dict) or record.get(key) is None:
            return None
        record = record[key]
    return record


def _text(value) -> str:
    """A record value as one short line of text (JSON for containers)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)


def _normalise(record) -> dict:
    """``record`` with the fields every section relies on made safe to use: ``status`` and the
    cell's model, label, dataset, device and matrix as text, its seed an int or text.  Records
    from :func:`~lmladder.results.scan_records` already are; records passed in directly may not
    be."""
    record = record if isinstance(record, dict) else {}
    cell = record.get("cell") if isinstance(record.get("cell"), dict) else {}
    seed = cell.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int):
        seed = _text(seed)
    fixed = {k: _text(cell[k]) if k in cell else "?"
             for k in ("model", "label", "dataset", "device", "matrix")}
    return {**record, "status": _text(record.get("status")), "cell": {**cell, **fixed,
                                                                       "seed": seed}}


def _seed_order(seed) -> tuple:
    """Sort key for seeds: integers in order, then anything else as text."""
    return (0, seed, "") if isinstance(seed, int) else (1, 0, str(seed))


def _experiment(record: dict) -> tuple[str, str, int | str]:
    """What a record measured, whatever its matrix or label: identity, code revision, seed."""
    return identity(record), code_revision(record), record["cell"]["seed"]


def distinct(records: Iterable[dict]) -> list[dict]:
    """``records`` without repeats of one experiment and status (a cell run again under a
    renamed matrix or label has another key but measured the same thing); the newest is kept."""
    return newest_per(records, lambda r: (*_experiment(r), r["status"]))


# ---- rows: one experiment (identity and code revision), its seeds aggregated ------------------


@dataclass
class Row:
    """The successful records of one identity and one code revision, one per seed."""

    identity: str
    revision: str
    dataset: str
    records: list[dict]
    current: bool = True
    label: str = ""

    @property
    def settings(self) -> str:
        """Everything that defines the experiment, as one line (the label cell's tooltip)."""
        facets = ", ".join(f"{k}={v}" for k, v in _facets(self.records[0]).items())
        return f"identity {self.identity}: {facets}; {self.revision}"

    def values(self, column: str) -> list[float]:
        path = COLUMNS[column][0]
        return [v for v in (finite(_get(r, path)) for r in self.records) if v is not None]

    def mean(self, column: str) -> float | None:
        values = self.values(column)
        return sum(values) / len(values) if values else None  # inf, not an error, past 1e308

    def text(self, column: str) -> str:
        """``mean ± std`` over seeds (just the value for one seed), or a dash."""
        values, fmt = self.values(column), COLUMNS[column][1]
        if not values:
            return "—"
        if column in COUNTS:
            low, high = fmt.format(min(values)), fmt.format(max(values))
            text = low if low == high else f"{low}–{high}"
        else:
            text = fmt.format(self.mean(column))
        if len(values) > 1 and column not in COUNTS:
            try:
                std = statistics.stdev(values)
            except (OverflowError, ValueError):
                std = float("nan")
            text += " ± " + fmt.format(std)
        if 1 < len(self.records) != len(values):
            text += f" ({len(values)} of {len(self.records)} seeds)"
        return text


def aggregate(records: list[dict]) -> list[Row]:
    """The successful records as rows, sorted by dataset, current rows first, then test ppl.

    Records are grouped by identity and code revision; a seed measured twice (e.g. under two
    matrix names) counts once.  For each identity, the revision with the newest record is
    current; rows of its other revisions have ``current`` False and say so in their label.
    """
    groups = defaultdict(list)
    for r in distinct(r for r in records if r["status"] == "ok"):
        groups[(identity(r), code_revision(r))].append(r)
    rows = [Row(ident, rev, rs[0]["cell"]["dataset"],  # distinct(): one record per seed
                sorted(rs, key=lambda r: _seed_order(r["cell"]["seed"])))
            for (ident, rev), rs in groups.items()]
    newest = {}
    for row in rows:
        stamp = (max(record_date(r) for r in row.records), row.revision)
        newest[row.identity] = max(newest.get(row.identity, stamp), stamp)
    for row in rows:
        row.current = newest[row.identity][1] == row.revision
    _label(rows)

    def order(row: Row):
        ppl = row.mean("test ppl")
        return (row.dataset, not row.current, ppl is None, ppl or 0.0, row.label, row.revision)

    return sorted(rows, key=order)


def _facets(record: dict) -> dict[str, str]:
    """The identity of a record as flat ``name -> short text`` (config keys by their own name)."""
    cell = record["cell"]
    out = {"model": cell["model"], "device": cell["device"]}
    for part in ("budget", "scoring", "threads", "fraction"):
        value = cell.get(part)
        if isinstance(value, dict):
            out.update({f"{part}.{k}": _text(v) for k, v in value.items()})
        elif value is not None:
            out[part] = _text(value)
    config = cell.get("config")
    if isinstance(config, dict):
        for k, v in config.items():
            out.setdefault(str(k), _text(v))
    elif config is not None:
        out["config"] = _text(config)
    return out


def _short(text: str, limit: int = 20) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _label(rows: list[Row]) -> None:
    """Give each row its display label: the cell label(s), then -- where rows of different
    identities on one dataset share it -- the settings that tell them apart (or the identity
    hash), and for rows of an older code revision, that revision."""
    for row in rows:
        row.label = " / ".join(sorted({r["cell"]["label"] for r in row.records}))
    clashes = defaultdict(list)
    for row in rows:
        clashes[(row.dataset, row.label)].append(row)
    for same in clashes.values():
        facets = {row.identity: _facets(row.records[0]) for row in same}
        if len(facets) < 2:
            continue
        names = sorted(set().union(*facets.values()))
        differ = [n for n in names if len({f.get(n) for f in facets.values()}) > 1]
        for row in same:
            f = facets[row.identity]
            shown = ", ".join(f"{n}={_short(f.get(n, '—'))}" for n in differ[:3])
            if not differ or len(shown) > 60:
                shown = f"identity {row.identity[:8]}"
            elif len(differ) > 3:
                shown += ", …"
            row.label += f" [{shown}]"
    for same in _duplicates(rows):  # a shortened suffix can still clash
        for row in same:
            row.label += f" [identity {row.identity[:8]}]"
    for row in rows:
        if not row.current:
            row.label += f" (older code: {row.revision})"


def _duplicates(rows: list[Row]) -> list[list[Row]]:
    by_label = defaultdict(list)
    for row in rows:
        if row.current:
            by_label[(row.dataset, row.label)].append(row)
    return [same for same in by_label.values() if len({r.identity for r in same}) > 1]


def _table(rows: list[Row], oracle: dict | None = None, mark_best: bool = True) -> dict:
    """Template data for a results table: the columns any row has a value in, the best mean of
    each metric column marked (if ``mark_best``), a ``code`` column where rows come from several
    lmladder versions, and the source's own scores (``oracle``) as a last row."""
    columns = [c for c in COLUMNS if any(row.values(c) for row in rows)]
    best = {}
    for c in columns if mark_best else ():
        means = [m for m in (row.mean(c) for row in rows) if m is not None]
        if c in LOWER_IS_BETTER:
            best[c] = min(means)
        elif c in HIGHER_IS_BETTER:
            best[c] = max(means)
    body = [{"label": row.label, "settings": row.settings, "seeds": len(row.records),
             "code": row.revision,
             "cells": [{"text": row.text(c), "best": c in best and row.mean(c) == best[c]}
                       for c in columns]}
            for row in rows]
    oracle_cells = None
    if isinstance(oracle, dict):  # an oracle holds {"valid": metrics, "test": metrics}
        oracle_cells = []
        for c in columns:
            path, fmt = COLUMNS[c]
            v = finite(_get(oracle, path[1:])) if path[0] == "metrics" else None
            oracle_cells.append("—" if v is None else fmt.format(v))
    return {"columns": columns, "rows": body, "oracle": oracle_cells,
            # families have revisions of their own: the column matters when lmladder's differ
            "show_code": len({lmladder_version(row.records[0]) for row in rows}) > 1}


def _dataset_note(records: list[dict]) -> str:
    desc = next((r["dataset"] for r in records if isinstance(r.get("dataset"), dict)), {})
    facts = []
    if isinstance(desc.get("level"), str):
        facts.append(f"{desc['level']}-level")
    vocab = finite(desc.get("vocab_size"))
    if vocab is not None:
        facts.append(f"vocabulary {vocab:,.0f}")
    tokens, chars = (finite(_get(desc, ("splits", "test", k))) for k in ("tokens", "chars"))
    if tokens is not None:
        facts.append(f"test {tokens:,.0f} tokens"
                     + (f" ({chars:,.0f} characters)" if chars is not None else ""))
    return ("; ".join(facts) + ". " if facts else "") + (
        "Perplexity is per model token; word ppl is per whitespace word plus one per line; "
        "bpc is bits per character of running text."
    )


# ---- sections -------------------------------------------------------------------------------


def _status_order(status: str) -> tuple[int, str]:
    return (STATUSES.index(status) if status in STATUSES else len(STATUSES), status)


def overview(records: list[dict]) -> Section:
    provs = sorted((r["provenance"] for r in records if isinstance(r.get("provenance"), dict)),
                   key=lambda p: str(p.get("date") or ""))
    last = provs[-1] if provs else {}
    commits = sorted({_text(p.get("git_commit") or "unknown")[:10]
                      + (" (dirty)" if p.get("git_dirty") is True else "") for p in provs})
    dates = sorted(str(p["date"]) for p in provs if p.get("date"))
    status = Counter(r["status"] for r in distinct(records))
    cores = last.get("cpu_count")
    devices = ", ".join(sorted({r["cell"]["device"] for r in records}))
    if isinstance(cores, int) and not isinstance(cores, bool):
        devices += f" ({cores} CPU cores)"
    versions = last.get("versions") if isinstance(last.get("versions"), dict) else {}
    platform = ", ".join(_text(last[k]) if k == "platform" else f"Python {_text(last[k])}"
                         for k in ("platform", "python") if last.get(k))
    items = [
        ("cells", ", ".join(f"{status[s]} {s}" for s in sorted(status, key=_status_order))),
        ("datasets", ", ".join(sorted({r["cell"]["dataset"] for r in records}))),
        ("devices", devices),
        ("run between", f"{dates[0]} and {dates[-1]}" if dates else ""),
        ("lmladder commit", ", ".join(commits)),
        ("code revisions", "; ".join(sorted({code_revision(r) for r in records}))),
        ("platform", platform),
        ("versions", ", ".join(f"{k} {_text(v)}" for k, v in versions.items() if v)),
    ]
    return Section("Overview", "overview.html.j2", {"items": items})


def per_dataset(records: list[dict]) -> Section | None:
    rows = aggregate(records)
    if not rows:
        return None
    tables, panels, oracle_ppl = [], {}, {}
    for ds in sorted({row.dataset for row in rows}):
        mine = [row for row in rows if row.dataset == ds]
        current = [row for row in mine if row.current]
        older = [row for row in mine if not row.current]
        recs = [r for row in current + older for r in row.records]
        oracle = next((r["oracle"] for r in recs if isinstance(r.get("oracle"), dict)), None)
        note = _dataset_note(recs)
        if any(len(row.records) > 1 for row in mine):
            note += " " + SPREAD_NOTE
        tables.append({"name": ds, "note": note, "table": _table(current, oracle),
                       "older": _table(older, mark_best=False) if older else None})
        panels[ds] = [(row.label, ppl) for row in current
                      if (ppl := finite(row.mean("test ppl"))) is not None and ppl > 0]
        if (ppl := finite(_get(oracle, ("test", "ppl")))) is not None and ppl > 0:
            oracle_ppl[ds] = ppl
    png = (plots.png_base64(plots.perplexity_bars(panels, oracle_ppl))
           if any(panels.values()) else None)
    return Section("Results by dataset", "results.html.j2",
                   {"datasets": tables, "png": png,
                    "older": any(not row.current for row in rows)})


def sweeps(records: list[dict]) -> Section | None:
    """Curves for a registry model run with several values of one numeric hyperparameter."""
    current = [r for row in aggregate(records) if row.current for r in row.records]
    found = plots.find_sweeps(current)
    if not found:
        return None
    return Section("Scaling curves", "sweeps.html.j2",
                   {"png": plots.png_base64(plots.sweep_curves(found))})


def task_scores(records: list[dict]) -> Section | None:
    """Every task's metrics per dataset: one row per experiment (seeds averaged), "n/a" where
    the task cannot use the model, the chance level of each metric as a last row."""
    rows = [row for row in aggregate(records) if row.current]
    names = sorted({t for row in rows for r in row.records
                    for t in (r.get("tasks") if isinstance(r.get("tasks"), dict) else {})})
    if not names:
        return None
    specs = {name: _task_metrics(name) for name in names}
    columns = [(name, spec) for name in names for spec in specs[name]]
    tables = []
    for ds in sorted({row.dataset for row in rows}):
        body = []
        for row in (row for row in rows if row.dataset == ds):
            cells = [_task_cell(row, name, spec) for name, spec in columns]
            if any(c != "" for c in cells):
                body.append({"label": row.label, "settings": row.settings,
                             "seeds": len(row.records), "cells": cells})
        chance = ["" if spec.chance is None else f"{spec.chance:.3g}" for _, spec in columns]
        if body:
            tables.append({"name": ds, "rows": body, "chance": chance})
    heads = [{"task": name, "metric": spec.name,
              "better": "higher" if spec.higher_is_better else "lower"} for name, spec in columns]
    return Section("Task scores", "tasks.html.j2", {"heads": heads, "datasets": tables})


def _task_metrics(name: str) -> tuple:
    from lmladder import tasks

    try:
        return tasks.task_class(name).metrics
    except Exception:  # noqa: BLE001 -- a task of a plugin that is not installed here
        return ()


def _task_cell(row: Row, name: str, spec) -> str:
    results = [(r.get("tasks") or {}).get(name) for r in row.records]
    results = [t for t in results if isinstance(t, dict)]
    if not results:
        return ""
    values = [v for t in results if (v := finite(t.get(spec.name))) is not None]
    if not values:
        return "n/a" if results[0].get("status") == "not applicable" else _text(
            results[0].get("status", "—"))
    text = f"{sum(values) / len(values):.4g}"
    if len(values) > 1:
        text += f" ± {statistics.stdev(values):.2g}"
    return text


def learning_curves(records: list[dict]) -> Section | None:
    """Test perplexity against training tokens and training time for experiments run on several
    shares of the training data, and where one curve overtakes another."""
    curves = defaultdict(list)  # (dataset, label) -> [(train tokens, fit s, test ppl)]
    for row in aggregate(records):
        if not row.current:
            continue
        first = row.records[0]
        tokens = finite(_get(first, ("dataset", "splits", "train", "tokens")))
        ppl, fit_s = finite(row.mean("test ppl")), finite(row.mean("fit s"))
        if tokens is None or ppl is None:
            continue
        whole = {**first, "cell": {**first["cell"], "fraction": 1.0}}
        curves[(row.dataset, identity(whole))].append((tokens, fit_s, ppl, row.label))
    curves = {k: sorted(v) for k, v in curves.items() if len(v) > 1}
    if not curves:
        return None
    panels = defaultdict(list)
    for (ds, _), pts in curves.items():
        label = re.sub(r" \[fraction=[^]]*\]$", "", pts[-1][3])
        panels[ds].append((label, [(t, s, p) for t, s, p, _ in pts]))
    crossings = [c for ds, lines in panels.items() for c in _crossings(ds, lines)]
    return Section("Learning curves", "curves.html.j2",
                   {"png": plots.png_base64(plots.learning_curves(panels)),
                    "crossings": crossings})


def _crossings(ds: str, lines: list) -> list[dict]:
    """Pairs of curves of one dataset whose order flips between two shared training sizes."""
    out = []
    for a_label, a_pts in lines:
        for b_label, b_pts in lines:
            a = {t: p for t, _, p in a_pts}
            b = {t: p for t, _, p in b_pts}
            shared = sorted(set(a) & set(b))
            for lo, hi in zip(shared, shared[1:], strict=False):
                if a[lo] > b[lo] and a[hi] < b[hi]:  # a was worse, then better
                    out.append({"dataset": ds, "winner": a_label, "loser": b_label,
                                "between": f"{lo:,.0f} and {hi:,.0f}"})
    return out


def _cell_text(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.6g}"
    return _text(value)


def _inspect_table(table) -> dict | None:
    """Template data for one ``inspect`` entry ``{"title", "columns", "rows"}``, or None."""
    if not isinstance(table, dict):
        return None
    columns = table.get("columns") if isinstance(table.get("columns"), list) else []
    rows = table.get("rows") if isinstance(table.get("rows"), list) else []
    return {"title": _text(table.get("title", "")),
            "columns": [_text(c) for c in columns],
            "rows": [[_cell_text(v) for v in (row if isinstance(row, list) else [row])]
                     for row in rows]}


def _heading(row: Row, record: dict) -> str:
    seed = f", seed {record['cell']['seed']}" if len(row.records) > 1 else ""
    return f"{row.label} on {row.dataset}{seed}"


def inspections(records: list[dict]) -> Section | None:
    parts = []
    for row in aggregate(records):
        for r in row.records:
            inspect = r.get("inspect")
            for table in inspect if isinstance(inspect, list) else []:
                if (t := _inspect_table(table)) is not None:
                    parts.append({**t, "title": f"{_heading(row, r)}: {t['title']}"})
    return Section("Inside the models", "inspect.html.j2", {"tables": parts}) if parts else None


def samples(records: list[dict]) -> Section | None:
    parts = [{"title": _heading(row, r), "text": r["sample"]}
             for row in aggregate(records) for r in row.records
             if isinstance(r.get("sample"), str) and r["sample"]]
    return Section("Generated samples", "samples.html.j2", {"samples": parts}) if parts else None


def problems(records: list[dict]) -> Section | None:
    """Failed and skipped cells, one entry per cause (status, error type and message) with the
    cells it affected as a compact list."""
    causes = defaultdict(lambda: defaultdict(set))
    for r in distinct(r for r in records if r["status"] != "ok"):
        error = r.get("error") if isinstance(r.get("error"), dict) else {}
        cause = (r["status"], _text(error.get("type") or "no error type recorded"),
                 _text(error.get("message") or ""))
        c = r["cell"]
        causes[cause][(c["label"], c["dataset"], c["device"])].add(c["seed"])
    if not causes:
        return None
    entries = []
    for (status, kind, message), cells in sorted(causes.items(), key=lambda kv: kv[0]):
        listed = [f"{label} on {ds} ({device}): seed{'s' if len(seeds) > 1 else ''} "
                  + ", ".join(str(s) for s in sorted(seeds, key=_seed_order))
                  for (label, ds, device), seeds in sorted(cells.items())]
        entries.append({"status": status, "type": kind, "message": message,
                        "count": sum(len(s) for s in cells.values()), "cells": listed})
    return Section("Failed and skipped cells", "problems.html.j2", {"causes": entries})


def protocol(records: list[dict]) -> Section:
    from lmladder import scoring

    seen = {}
    for r in records:
        if isinstance(r.get("protocol"), dict) and r["protocol"]:
            seen[_text(r["protocol"])] = [f"{k} = {_text(v)}" for k, v in r["protocol"].items()]
    return Section("Scoring protocol", "protocol.html.j2",
                   {"rows": list(seen.values()), "doc": (scoring.__doc__ or "").strip()})


def unreadable_files(lines: list[str]) -> Section | None:
    """The record-named files that could not be read, one line each (from the scan)."""
    if not lines:
        return None
    return Section("Files that could not be read", "unreadable.html.j2", {"lines": list(lines)})


SECTIONS: list[Callable[[list[dict]], Section | None]] = [
    overview,
    per_dataset,
    task_scores,
    learning_curves,
    sweeps,
    inspections,
    samples,
    problems,
    protocol,
]


def _environment() -> jinja2.Environment:
    loader = jinja2.PackageLoader("lmladder.reports", "templates")
    return jinja2.Environment(loader=loader, autoescape=True, undefined=jinja2.StrictUndefined,
                              trim_blocks=True, lstrip_blocks=True)


def render_html(records: list[dict], title: str = "lmladder report",
                unreadable: Iterable[str] = ()) -> str:
    """The report page for ``records``; ``unreadable`` lines (see
    :func:`~lmladder.results.scan_records`) are listed in a section of their own."""
    unreadable = [_text(line) for line in unreadable]
    records = [_normalise(r) for r in records]
    if not records and not unreadable:
        raise ValueError("no result records to report")
    sections = [s for s in (f(records) for f in SECTIONS) if s is not None]
    if (section := unreadable_files(unreadable)) is not None:
        sections.insert(1 if records else 0, section)
    matrices = sorted({r["cell"]["matrix"] for r in records})
    return _environment().get_template("report.html.j2").render(
        title=title,
        subtitle=f"matrix: {', '.join(matrices)} — {len(distinct(records))} cells",
        sections=sections,
    )


def render_report(results_dir: str | Path, output: str | Path) -> Path:
    """Render every record under ``results_dir`` into the HTML file ``output``.

    The file is replaced atomically (an interrupted render leaves the previous report, and no
    temporary file) and is created with the permissions of any new file (``0666 & ~umask``).
    Raises :class:`ReportError` when ``output`` is a folder, :class:`FileNotFoundError` when
    ``results_dir`` holds no readable record.
    """
    output = Path(output)
    if output.is_dir():
        raise ReportError(f"{output}: is a folder; give a file name for the report, "
                          f"e.g. {output / 'report.html'}")
    scan = scan_records(results_dir)
    if not scan.records:
        why = f"; {len(scan.unreadable)} could not be read: {scan.unreadable[0]}" \
            if scan.unreadable else ""
        raise FileNotFoundError(f"{results_dir}: no readable result records{why}")
    page = render_html(scan.records, unreadable=scan.unreadable)
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ReportError(f"{output.parent}: cannot create the report's folder "
                          f"({err.strerror or err})") from None
    atomic_write(output, page)
    return output
