"""Result records on disk: one JSON file per matrix cell, written atomically, read back as
:class:`~lmladder.record.Record` values (the schema is documented there).

The key hashes the cell (less its label and matrix name, which do not change the numbers) and the
code version, so a renamed matrix or label finds its finished cells.  Reports read only files named
like records; :func:`read_record` migrates older versions forward and names the file and the
problem for anything it cannot read.
"""

from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import json
import os
import platform
import re
import stat
import subprocess
import sys
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmladder._version import __version__
from lmladder.files import LinkError, atomic_write, read_regular
from lmladder.migrate import migrate
from lmladder.record import CellSection, Record, RecordError

if TYPE_CHECKING:
    import pandas as pd

PACKAGES = ("numpy", "torch", "transformers", "nltk", "hmmlearn", "pandas", "matplotlib")


def irregular(path: str | os.PathLike) -> str | None:
    """Why ``path`` exists but is neither a regular file nor a folder (a FIFO, a device, a
    socket): a reason to refuse it before anything opens it (opening a FIFO blocks), or
    ``None`` where it is a file, a folder or absent."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    kind = ("a FIFO" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode)
            or stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode) else "special")
    return f"not a regular file ({kind})"


# Letters of other scripts that look like Latin ones (Unicode's confusables, the common part).
_LOOKALIKES = str.maketrans(
    "АВЕКМНОРСТУХІЈЅԁԛԝΑΒΕΖΗΙΚΜΝΟΡΤΥΧаеорсухіјѕһӏαικνορτυχϲϳıℓ",
    "ABEKMHOPCTYXIJSdqwABEZHIKMNOPTYXaeopcyxijshlaikvoptuxcjil",
)


def label_skeleton(label: str) -> str:
    """What a label looks like: NFKC-normalised, case-folded, format characters (zero-width
    spaces, joiners) dropped and look-alike letters of other scripts (Cyrillic 'а', Greek 'Κ')
    mapped to the Latin ones."""
    text = unicodedata.normalize("NFKC", label)
    text = "".join(c for c in text if unicodedata.category(c) != "Cf")
    return text.translate(_LOOKALIKES).casefold().translate(_LOOKALIKES)


def confusable(a: str, b: str) -> bool:
    """Whether two different labels, one of them not plain ASCII, look the same (see
    :func:`label_skeleton`): a report would show two rows a reader cannot tell apart."""
    return a != b and not (a.isascii() and b.isascii()) and label_skeleton(a) == label_skeleton(b)


def cell_key(cell: dict, code_version: dict) -> str:
    """Stable hash of what determines a cell's result: its config and the code version."""
    blob = json.dumps({"cell": cell, "code": code_version}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def record_path(results_dir: Path, cell: CellSection, key: str) -> Path:
    """Where the record of ``cell`` with ``key`` goes: ``LABEL__DATASET__seedN__DEVICE__KEY.json``
    (each part cut to safe ASCII)."""
    def slug(s) -> str:
        text = "".join(c if c.isascii() and (c.isalnum() or c in "-.") else "-" for c in str(s))
        return text.lstrip(".")[:40] or "-"  # never a hidden file, never '..'

    seed = f"seed{cell.seed}"
    name = "__".join((slug(cell.label), slug(cell.dataset), seed, slug(cell.device)))
    return results_dir / f"{name}__{key}.json"


def write_record(path: Path, record: Record) -> None:
    """Write ``record`` to ``path`` atomically: an interrupted run never leaves half a file."""
    text = json.dumps(record.to_json(), indent=1, ensure_ascii=False, default=json_default)
    try:
        atomic_write(path, text)
    except OSError as err:  # a full disk (ENOSPC) or quota names the record being written
        if err.filename is not None:
            raise
        raise OSError(err.errno, f"{err.strerror or err} (writing the record)", str(path)) from None


def json_default(obj):
    """JSON for what a measurement may hold besides JSON values: numpy scalars and arrays."""
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"cannot serialise {type(obj).__name__}")


RECORD_NAME = re.compile(r"^[^.].*__[0-9a-f]{16}\.json$")


def is_record_name(path: Path) -> bool:
    """Whether ``path`` is named like a record (``LABEL__DATASET__seedN__DEVICE__KEY.json``)."""
    return bool(RECORD_NAME.match(path.name))


def read_record(path: Path) -> Record:
    """The record in ``path``, migrated to :data:`~lmladder.record.API_VERSION` and checked;
    :class:`RecordError` names the file and what is wrong with it (unreadable, not UTF-8, not
    JSON, not a record, a schema version this lmladder does not know, a field a report could
    not trust) -- and refuses a symbolic link or anything but a regular file."""
    if irregular(path):  # a FIFO would block the reader forever
        raise RecordError(f"{path}: {irregular(path)}, not a result record")
    try:  # never through a link: a shared folder could point a record at any file
        text = read_regular(path).decode("utf-8")
    except LinkError:
        raise RecordError(f"{path}: is a symbolic link; lmladder does not read records through "
                          "links in a results folder: remove it") from None
    except OSError as err:
        raise RecordError(f"{path}: cannot be read ({err.strerror or err})") from None
    except UnicodeDecodeError:
        raise RecordError(f"{path}: not a result record (not UTF-8 text)") from None
    if not text.strip():
        raise RecordError(f"{path}: empty file (a record that was never completely written)")
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as err:
        reason = err.msg if isinstance(err, json.JSONDecodeError) else "nested too deeply"
        raise RecordError(f"{path}: not valid JSON ({reason}); its cell will be rerun") from None
    return parse_record(data, path)


def parse_record(data: Any, where: str | Path = "<record>") -> Record:
    """A record from its JSON object, whatever schema version it was written with: migrated
    (:func:`lmladder.migrate.migrate`) and checked (:meth:`Record.from_json`)."""
    if not isinstance(data, dict):
        raise RecordError(f"{where}: a JSON {type(data).__name__}, not a result record")
    record = Record.from_json(migrate(data, where), where)
    for section in ("metrics", "oracle"):
        for split, values in (getattr(record, section) or {}).items():
            ppl = values.get("ppl") if isinstance(values, dict) else None
            if ppl is not None and not (isinstance(ppl, (int, float)) and ppl >= 1 - 1e-9):
                # a perplexity is exp(mean -ln p) >= 1: anything less is a broken record, and
                # would top every ranking
                raise RecordError(f"{where}: {section}.{split}.ppl is {ppl!r}; a perplexity is a "
                                  "finite number >= 1 (the record is left out)")
    return record


@dataclass
class Scan:
    """What a results folder holds: its readable records (one per key, the newest) and the
    record-named files that could not be read, each with a one-line reason."""

    records: list[Record] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)


def scan_records(results_dir: str | Path) -> Scan:
    """Every record under ``results_dir`` (recursively, sorted by file name).  Only files named
    like records are read; temporary files, kept failed attempts and other JSON are not."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        what = "is a file, not a results folder" if results_dir.exists() else "no such folder"
        raise FileNotFoundError(f"{results_dir}: {what}")
    scan, records, paths = Scan(), [], {}
    for path in sorted(results_dir.rglob("*.json")):
        if not is_record_name(path):
            continue
        if not path.is_file():  # a FIFO or device named like a record: never opened
            if path.is_dir():
                scan.unreadable.append(f"{path}: a folder named like a result record; rename "
                                       "or remove it (it is left out)")
            elif irregular(path):
                scan.unreadable.append(f"{path}: {irregular(path)}, not a result record")
            continue
        try:
            records.append(read_record(path))
            paths[id(records[-1])] = path
        except RecordError as err:
            scan.unreadable.append(str(err))
    records = _without_lookalike_labels(records, paths, scan)
    scan.records = sorted(newest_per(records, lambda r: r.key),
                          key=lambda r: (r.cell.label, r.cell.dataset, r.cell.seed, r.key))
    return scan


def _without_lookalike_labels(records: list[Record], paths: dict, scan: Scan) -> list[Record]:
    """Leave out, with a line in ``scan.unreadable``, the records whose label only looks like
    another record's (:func:`confusable`: 'КN5' in Cyrillic beside 'KN5'); labels are shown
    as given, so a report would hold two rows a reader takes for one.  The label the most
    records carry (then the plain-ASCII one) stays."""
    counts: dict[str, int] = {}
    for r in records:
        counts[r.label] = counts.get(r.label, 0) + 1
    by_skeleton: dict[str, list[str]] = {}
    for label in sorted(counts, key=lambda x: (-counts[x], not x.isascii(), x)):
        by_skeleton.setdefault(label_skeleton(label), []).append(label)
    kept_label = {label: group[0] for group in by_skeleton.values() for label in group}
    out = []
    for r in records:
        first = kept_label[r.label]
        if first != r.label and confusable(r.label, first):
            scan.unreadable.append(
                f"{paths[id(r)]}: label {r.label!r} looks like the label {first!r} of other "
                f"records (characters that look alike: {ascii(r.label)}); rename it (the record "
                "is left out)")
        else:
            out.append(r)
    return out


def newest_per(records: Iterable[Record], key: Callable[[Record], object]) -> list[Record]:
    """One record per ``key(record)``, the newest by its date (the later one on a tie)."""
    newest: dict = {}
    for r in records:
        k = key(r)
        if k not in newest or r.date >= newest[k].date:
            newest[k] = r
    return list(newest.values())


def load_records(results_dir: str | Path) -> list[Record]:
    """The readable records under ``results_dir`` (see :func:`scan_records`)."""
    return scan_records(results_dir).records


IDENTITY = ("model", "config", "budget", "dataset", "device", "scoring", "threads", "fraction")


def identity(record: Record) -> str:
    """What makes two records the same experiment up to the seed: the cell's model, config,
    budget, dataset, device, scoring, threads and share of the training data (not its label,
    matrix, seed or the tasks it ran)."""
    cell = record.cell.to_json()
    blob = json.dumps({k: cell.get(k) for k in IDENTITY}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def lmladder_version(record: Record) -> str | None:
    """The lmladder version that wrote a record (``None`` if it does not say)."""
    versions = record.provenance.get("versions")
    return versions.get("lmladder") if isinstance(versions, dict) else None


def code_revision(record: Record) -> str:
    """The code that computed a record: lmladder's version, the model's revision and the
    record schema, e.g. ``lmladder 0.2.0, model revision 1``.  Records of one identity but
    different code revisions are different results."""
    version = lmladder_version(record)
    revision = (record.model or {}).get("revision")
    return f"lmladder {version or '?'}, model revision {revision if revision is not None else '?'}"


def load_results(results_dir: str | Path) -> pd.DataFrame:
    """The records of a results folder as a tidy table: one row per cell.

    Columns: the cell's identity (``matrix``, ``label``, ``model``, ``dataset``, ``seed``,
    ``device``, ``threads``, ``fraction`` of the training data, ``config`` as sorted JSON,
    ``key``, ``status``, ``error``), its budget
    (``budget_tokens``, ``budget_steps``, ``budget_seconds``), ``parameters``, every metric
    (``valid_ppl``, ``test_bpc``, ``test_accuracy_top1``, ...), throughput (``*_tokens_per_s``),
    timing (``fit_s``, ``score_test_s``, ...), memory (``rss_peak_mib``, ...), ``train_tokens``,
    each task's status and numeric scores (``task_cloze_accuracy``, ...), ``git_commit`` and
    ``date``.  Metrics of cells that did not finish are missing (NaN).
    """
    import pandas as pd  # only for tables: the runner does not need it

    rows = []
    for r in load_records(results_dir):
        cell = r.cell
        row = {k: getattr(cell, k) for k in ("matrix", "label", "model", "dataset", "seed",
                                             "device", "threads", "fraction")}
        row["config"] = json.dumps(dict(cell.config), sort_keys=True)
        row.update(key=r.key, status=r.status, error=r.error and r.error.message)
        for unit in ("tokens", "steps", "seconds"):
            row[f"budget_{unit}"] = cell.budget.get(unit)
        row["parameters"] = (r.model or {}).get("parameters")
        row.update(_flatten(r.metrics or {}))
        for section in (r.throughput, r.timing, r.memory):
            row.update(section or {})
        row["train_tokens"] = (r.fit or {}).get("train_tokens")
        for task, result in r.tasks.items():
            row[f"task_{task}_status"] = result.status
            row.update({f"task_{task}_{k}": v for k, v in result.scores.items()
                        if isinstance(v, (int, float)) and not isinstance(v, bool)})
        row.update(git_commit=r.provenance.get("git_commit"), date=r.provenance.get("date"))
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
