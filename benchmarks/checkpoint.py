"""Checkpoints are data: the folder ``LanguageModel.save`` writes and ``load`` reads.

One folder per model, no pickles::

    <folder>/
      model.json   {"format_version": 1,
                    "class": "lmladder.baselines.ngram:NGramLM",   module:qualname
                    "revision": 1,                                  the class's revision
                    "config": {"order": 3, ...},                   hyperparameters, verbatim
                    "vocab": {"tokens": [...], "boundary": "<eos>", "unk": "<unk>",
                              "separator": " "},
                    "vocab_sha256": "9f2c..."}                     Vocab.sha256 of "vocab"
      state.npz    the model's learned arrays by name (``_state_arrays``), read with
                   ``allow_pickle=False``

Each file is written aside and renamed into place, ``model.json`` last, so a folder with a
``model.json`` has the state it describes.  Every reader here refuses a damaged folder with a
:class:`CheckpointError` whose message names the file and what is wrong.
This module imports nothing of lmladder but :mod:`lmladder.vocab`.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from lmladder.vocab import Vocab

FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint folder cannot be loaded; the message names the file and what is wrong."""


CHECKPOINT_KEYS = ("format_version", "class", "config", "vocab", "vocab_sha256")


def read_checkpoint(directory: str | Path) -> dict[str, Any]:
    """The ``model.json`` of a checkpoint folder: a JSON object with every key ``save`` writes
    and a supported format version, else :class:`CheckpointError` naming the file."""
    directory = Path(directory)
    if not directory.is_dir():
        what = "is not a folder" if directory.exists() else "does not exist"
        raise CheckpointError(f"{directory}: checkpoint folder {what}")
    path = directory / "model.json"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise CheckpointError(f"{path}: missing; is {directory} a checkpoint folder "
                              "written by save()?") from err
    except (OSError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path}: cannot be read ({_reason(err)})") from err
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path}: not valid JSON, truncated or damaged ({err})") from err
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: must hold a JSON object, got {type(meta).__name__}")
    missing = [k for k in CHECKPOINT_KEYS if k not in meta]
    if missing:
        raise CheckpointError(f"{path}: missing key(s) {', '.join(map(repr, missing))}")
    if meta["format_version"] != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: unsupported checkpoint format {meta['format_version']!r} "
            f"(this lmladder reads format {FORMAT_VERSION})"
        )
    if not isinstance(meta["class"], str):
        raise CheckpointError(f"{path}: 'class' must be a string, got {meta['class']!r}")
    return meta


def write_checkpoint(directory: str | Path, meta: Mapping[str, Any],
                     arrays: Mapping[str, np.ndarray]) -> Path:
    """Write ``meta`` as ``model.json`` and ``arrays`` as ``state.npz`` into ``directory``
    (created if missing); return the folder."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    # each file appears whole or not at all (written aside, then renamed); model.json last,
    # so a folder with a model.json has the state it describes
    with open(directory / ".state.npz.tmp", "wb") as f:
        np.savez(f, **arrays)
    os.replace(directory / ".state.npz.tmp", directory / "state.npz")
    (directory / ".model.json.tmp").write_text(json.dumps(meta, ensure_ascii=False, indent=1))
    os.replace(directory / ".model.json.tmp", directory / "model.json")
    return directory


def read_vocab(meta: Mapping[str, Any], path: str | Path) -> Vocab:
    """The vocabulary of a checkpoint's ``meta`` (what :func:`read_checkpoint` returned for the
    ``model.json`` at ``path``), checked against its recorded hash, else
    :class:`CheckpointError`."""
    try:
        vocab = Vocab.from_dict(meta["vocab"])
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: the vocabulary is damaged ({_reason(err)})") from err
    if vocab.sha256 != meta["vocab_sha256"]:
        raise CheckpointError(f"{path}: vocabulary does not match its recorded hash")
    return vocab


def read_state_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """Every array of a checkpoint's ``state.npz`` (no pickles), or :class:`CheckpointError`."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            if not isinstance(npz, np.lib.npyio.NpzFile):
                raise CheckpointError(f"{path}: not an .npz archive of named arrays")
            return {k: npz[k] for k in npz.files}
    except CheckpointError:
        raise
    except FileNotFoundError as err:
        raise CheckpointError(f"{path}: missing") from err
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as err:
        raise CheckpointError(f"{path}: not a readable .npz archive ({_reason(err)})") from err


def restore_state(path: str | Path, restore: Callable[[dict[str, np.ndarray]], None]) -> None:
    """Read the arrays of the ``state.npz`` at ``path`` and hand them to ``restore`` (a model's
    ``_load_state_arrays``); what ``restore`` refuses -- a missing array, one that does not fit
    the vocabulary or config -- becomes a :class:`CheckpointError` naming the file."""
    path = Path(path)
    arrays = read_state_arrays(path)
    try:
        restore(arrays)
    except CheckpointError:
        raise
    except KeyError as err:
        raise CheckpointError(
            f"{path}: missing array {err.args[0]!r} "
            f"(it holds {', '.join(sorted(arrays)) or 'no arrays'})"
        ) from err
    except (ValueError, TypeError, RuntimeError, IndexError) as err:
        raise CheckpointError(f"{path}: {_reason(err)}") from err


def check_state_array(
    arrays: Mapping[str, np.ndarray],
    name: str,
    shape: tuple[int | None, ...],
    kind: str = "f",
) -> np.ndarray:
    """``arrays[name]`` after checking its shape (``None`` = any size) and dtype kind
    (``"f"`` float, ``"i"`` integer, ``"u"`` unsigned); ValueError naming the array otherwise.
    Families call it from ``_load_state_arrays`` so a checkpoint that does not fit the
    vocabulary or config is refused at load time, not as an IndexError while scoring."""
    if name not in arrays:
        raise KeyError(name)
    a = np.asarray(arrays[name])
    ok_shape = a.ndim == len(shape) and all(
        want is None or got == want for got, want in zip(a.shape, shape, strict=True)
    )
    if not ok_shape:
        want = "(" + ", ".join("any" if d is None else str(d) for d in shape) + ")"
        raise ValueError(f"array {name!r} has shape {a.shape}, expected {want}")
    kinds = {"f": "f", "i": "iu", "u": "u"}[kind]
    if a.dtype.kind not in kinds and not (a.size == 0 and a.dtype.kind in "fiu"):
        raise ValueError(f"array {name!r} has dtype {a.dtype}, expected "
                         f"{ {'f': 'floating point', 'i': 'integer', 'u': 'unsigned'}[kind]}")
    return a


def _reason(err: BaseException) -> str:
    """An exception as one short line (KeyError's repr-quoting removed)."""
    text = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
    return " ".join(text.split()) or type(err).__name__
