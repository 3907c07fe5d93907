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

Files that lie: ``model.json`` and ``state.npz`` are read only as regular files, never through a
symbolic link (``save`` writes none; a planted one could point anywhere), and ``save`` refuses a
model folder, ``state.npz`` or ``model.json`` that is a link rather than write through it.  The
arrays' shapes are read from the archive's headers (:func:`state_shapes`) before any array is
loaded, and an array whose header claims more bytes than the archive holds is refused; families
compare their config's sizes with those shapes before building anything of the config's size
(:func:`config_mismatch` names the config key).
This module imports nothing of lmladder but :mod:`lmladder.vocab` (it is part of the contract
layer, so the link checks of :mod:`lmladder.files` are repeated here in a few lines).
"""

from __future__ import annotations

import errno
import json
import math
import os
import stat
import tempfile
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
        with _open_regular(path) as f:
            text = f.read().decode("utf-8")
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
    (created if missing); return the folder.  A ``directory``, ``state.npz`` or ``model.json``
    that is a symbolic link is refused (OSError naming it), never written through."""
    directory = Path(directory)
    _refuse_link(directory)
    directory.mkdir(parents=True, exist_ok=True)
    # each file appears whole or not at all (written aside, then renamed); model.json last,
    # so a folder with a model.json has the state it describes
    _write_aside(directory / "state.npz", lambda f: np.savez(f, **arrays))
    text = json.dumps(meta, ensure_ascii=False, indent=1)
    _write_aside(directory / "model.json", lambda f: f.write(text.encode("utf-8")))
    return directory


class _LinkRefused(OSError):
    """What :class:`lmladder.files.LinkError` is, for a model folder (this module cannot import
    it): ``str()`` is one line naming the link."""

    def __str__(self) -> str:
        return f"{self.filename}: {self.strerror}"


def _refuse_link(path: Path) -> None:
    if path.is_symlink():
        raise _LinkRefused(errno.ELOOP, "is a symbolic link; lmladder does not write through "
                                        "links in a model folder: remove it", str(path))


def _write_aside(path: Path, write: Callable[[Any], object]) -> None:
    """``write(file)`` into a new temporary file beside ``path`` (``O_CREAT | O_EXCL |
    O_NOFOLLOW``, a random name), then rename it over ``path`` (which must not be a link)."""
    _refuse_link(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            if hasattr(os, "fchmod"):  # a new file's permissions, not mkstemp's 0600
                mask = os.umask(0o022)
                os.umask(mask)
                os.fchmod(f.fileno(), 0o666 & ~mask)
        _refuse_link(path)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _open_regular(path: Path):
    """``path`` opened for reading as a binary file, refusing a symbolic link and anything but a
    regular file (a FIFO would block, a device never end) with :class:`CheckpointError`;
    FileNotFoundError and other OSErrors as ``open`` raises them."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    if path.is_symlink():
        raise CheckpointError(f"{path}: is a symbolic link; lmladder does not read a checkpoint "
                              "through links (save() writes none): remove it")
    try:
        fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0))
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise CheckpointError(f"{path}: is a symbolic link; lmladder does not read a "
                                  "checkpoint through links: remove it") from None
        raise
    f = os.fdopen(fd, "rb")
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        f.close()
        raise CheckpointError(f"{path}: not a regular file")
    return f


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


def state_shapes(path: str | Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """The (shape, dtype) of every array of a checkpoint's ``state.npz``, read from the archive's
    headers alone: nothing of an array's size is allocated.  An array whose header claims more
    bytes than the archive holds for it, or an array of Python objects, is refused with
    :class:`CheckpointError` naming the file and the array."""
    path = Path(path)
    with _reading(path), _open_regular(path) as f:
        return _shapes(path, f)


def _shapes(path: Path, f) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    out = {}
    with zipfile.ZipFile(f) as z:
        for info in z.infolist():
            name = info.filename.removesuffix(".npy")
            with z.open(info) as member:
                version = np.lib.format.read_magic(member)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(member)
                elif version == (2, 0):
                    shape, _, dtype = np.lib.format.read_array_header_2_0(member)
                else:
                    shape, _, dtype = np.lib.format._read_array_header(member, version)
                header = member.tell()
            if dtype.hasobject:
                raise CheckpointError(f"{path}: array {name!r} holds Python objects (pickles "
                                      "are never loaded)")
            nbytes = math.prod(shape) * dtype.itemsize
            if header + nbytes > info.file_size:
                raise CheckpointError(
                    f"{path}: array {name!r} claims shape {tuple(shape)} ({nbytes} bytes) but "
                    f"the archive holds {max(info.file_size - header, 0)} bytes for it "
                    "(damaged or edited)")
            out[name] = (tuple(shape), dtype)
    return out


class _reading:
    """Turns what reading a ``state.npz`` can raise into :class:`CheckpointError`."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        return self

    def __exit__(self, kind, err, tb):
        if err is None or isinstance(err, CheckpointError):
            return False
        if isinstance(err, FileNotFoundError):
            raise CheckpointError(f"{self.path}: missing") from err
        if isinstance(err, (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError,
                            SyntaxError, TypeError)):
            raise CheckpointError(f"{self.path}: not a readable .npz archive "
                                  f"({_reason(err)})") from err
        return False


def read_state_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """Every array of a checkpoint's ``state.npz`` (no pickles), or :class:`CheckpointError`;
    the headers are checked first (:func:`state_shapes`), so an array that claims more bytes
    than the file holds is refused before anything is allocated for it."""
    path = Path(path)
    with _reading(path), _open_regular(path) as f:
        _shapes(path, f)
        f.seek(0)
        with np.load(f, allow_pickle=False) as npz:
            if not isinstance(npz, np.lib.npyio.NpzFile):
                raise CheckpointError(f"{path}: not an .npz archive of named arrays")
            return {k: npz[k] for k in npz.files}


def config_mismatch(name: str, got: tuple[int, ...], want: tuple[int, ...],
                    config: Mapping[str, Any], vocab_size: int | None = None) -> str:
    """One line saying that array ``name`` of shape ``got`` does not fit the shape ``want`` that
    ``config`` needs, naming the config key(s) whose value appears in ``want`` but not in
    ``got`` (an edited ``hidden=20000`` against a saved 200) -- for a family to raise as
    ValueError before it builds anything of the config's size."""
    keys = [f"{k}={v}" for k, v in config.items()
            if isinstance(v, int) and not isinstance(v, bool) and v in want and v not in got
            and v != vocab_size]
    which = f"the config's {', '.join(keys)}" if keys else "this config"
    vocab = f" and a vocabulary of {vocab_size}" if vocab_size is not None else ""
    return (f"array {name!r} has shape {tuple(got)}, but {which} (model.json){vocab} needs "
            f"{tuple(want)}; model.json does not describe this state")


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
