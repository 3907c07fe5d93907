"""Versioned JSON result records: one file per matrix cell, written atomically.

A record is a plain dict (schema ``API_VERSION``)::

    {"api_version": 1, "key": "...", "status": "ok" | "failed" | "skipped", "error": None | {...},
     "cell": {"matrix", "model", "label", "config", "dataset", "seed", "device", "budget"},
     "model": {"class", "revision", "parameters"}, "dataset": {... Dataset.summary() ...},
     "protocol": {... ContextPolicy ..., "accuracy_tokens", "first_context"},
     "metrics": {"valid": {...}, "test": {...}, "test_accuracy": {...}},
     "oracle": None | {"valid": {...}, "test": {...}},
     "throughput": {"train_tokens_per_s", "score_tokens_per_s", "generate_tokens_per_s"},
     "timing": {"fit_s", "score_valid_s", "score_test_s", "generate_s"},
     "memory": {"rss_start_mib", "rss_peak_mib", "device_peak_mib"},
     "fit": {... FitReport ...}, "inspect": [...], "sample": "...",
     "provenance": {"git_commit", "git_dirty", "date", "python", "platform", "versions", ...}}

Reports read only these files.  ``load_records`` migrates older versions forward.
"""

from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from lmladder._version import __version__

if TYPE_CHECKING:
    import pandas as pd

API_VERSION = 1
PACKAGES = ("numpy", "torch", "transformers", "nltk", "hmmlearn", "pandas", "matplotlib")


def cell_key(cell: dict, code_version: dict) -> str:
    """Stable hash of what determines a cell's result: its config and the code version."""
    blob = json.dumps({"cell": cell, "code": code_version}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def record_path(results_dir: Path, cell: dict, key: str) -> Path:
    def slug(s) -> str:
        return "".join(c if c.isalnum() or c in "-." else "-" for c in str(s))[:40]

    seed = f"seed{cell['seed']}"
    name = "__".join((slug(cell["label"]), slug(cell["dataset"]), seed, slug(cell["device"])))
    return results_dir / f"{name}__{key}.json"


def write_record(path: Path, record: dict) -> None:
    """Write ``record`` to ``path`` atomically: an interrupted run never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(record, f, indent=1, ensure_ascii=False, default=_default)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _default(obj):
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"cannot serialise {type(obj).__name__}")


def read_record(path: Path) -> dict:
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not a valid result file ({err})") from None
    return migrate(record, path)


def migrate(record: dict, path: Path | str = "<record>") -> dict:
    version = record.get("api_version")
    if version != API_VERSION:
        raise ValueError(
            f"{path}: result schema version {version!r} is not supported "
            f"(this lmladder reads version {API_VERSION})"
        )
    return record


def load_records(results_dir: str | Path) -> list[dict]:
    """Every record under ``results_dir`` (recursively), sorted by file name."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise FileNotFoundError(f"{results_dir}: no such results folder")
    return [
        read_record(p) for p in sorted(results_dir.rglob("*.json")) if not p.name.startswith(".")
    ]


def load_results(results_dir: str | Path) -> pd.DataFrame:
    """The records of a results folder as a tidy table: one row per cell.

    Columns: the cell's identity (``matrix``, ``label``, ``model``, ``dataset``, ``seed``,
    ``device``, ``config`` as sorted JSON, ``key``, ``status``, ``error``), its budget
    (``budget_tokens``, ``budget_steps``, ``budget_seconds``), ``parameters``, every metric
    (``valid_ppl``, ``test_bpc``, ``test_accuracy_top1``, ...), throughput (``*_tokens_per_s``),
    timing (``fit_s``, ``score_test_s``, ...), memory (``rss_peak_mib``, ...), ``train_tokens``,
    ``git_commit`` and ``date``.  Metrics of cells that did not finish are missing (NaN).
    """
    import pandas as pd  # only for tables: the runner does not need it

    rows = []
    for r in load_records(results_dir):
        cell = r["cell"]
        row = {k: cell.get(k) for k in ("matrix", "label", "model", "dataset", "seed", "device")}
        row["config"] = json.dumps(cell.get("config", {}), sort_keys=True)
        row.update(key=r["key"], status=r["status"],
                   error=(r.get("error") or {}).get("message"))
        for unit in ("tokens", "steps", "seconds"):
            row[f"budget_{unit}"] = (cell.get("budget") or {}).get(unit)
        row["parameters"] = (r.get("model") or {}).get("parameters")
        row.update(_flatten(r.get("metrics") or {}))
        for section in ("throughput", "timing", "memory"):
            row.update(r.get(section) or {})
        row["train_tokens"] = (r.get("fit") or {}).get("train_tokens")
        prov = r.get("provenance") or {}
        row.update(git_commit=prov.get("git_commit"), date=prov.get("date"))
        rows.append(row)
    return pd.DataFrame(rows)


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}_"))
        else:
            out[prefix + k] = v
    return out


@functools.lru_cache(maxsize=1)
def _git_state() -> tuple[str | None, bool | None]:
    here = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
        if commit.returncode != 0:
            return None, None
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        )
        return commit.stdout.strip(), bool(dirty.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return None, None


def versions() -> dict[str, str | None]:
    out = {"lmladder": __version__}
    for pkg in PACKAGES:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def provenance() -> dict:
    commit, dirty = _git_state()
    return {
        "git_commit": commit,
        "git_dirty": dirty,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "versions": versions(),
        "argv": sys.argv,
    }
