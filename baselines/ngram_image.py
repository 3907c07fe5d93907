"""The n-gram model's query image: its hashed backoff tables as one buffer, built in memory after
a fit and saved beside the checkpoint as one file that scoring memory-maps.

The layout and the compiled code that reads it are :mod:`lmladder.baselines.ngram_kernels`.
:func:`build` makes the image from :class:`~lmladder.baselines.ngram_backoff.BackoffTables`
(numpy); :func:`save` writes it as ``tables.bin`` in a model folder; :func:`open_image` maps
that file read-only, so loading costs no parse and no copy, and every process scoring with the
same model shares its pages.  Opening imports neither numpy nor anything of the harness:
``lmladder score`` (:mod:`lmladder.query`) runs on this module alone.

A saved file is replaced, never rewritten: lmladder writes a new file and renames it over the old
one, so a process scoring from the old mapping goes on unchanged.  Copying another file *into*
``tables.bin`` (``cp`` writes the same file in place) changes what every process mapping it reads,
and cutting it short stops them with SIGBUS, as with any memory-mapped model (KenLM's binary
files alike): replace it with ``mv`` or save the model again.
"""

from __future__ import annotations

import mmap
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmladder.baselines.ngram_kernels import (
    CROSS_BOUNDARY,
    FLAT,
    HEADER_FIXED,
    MAGIC,
    VERSION,
    Image,
    ImageError,
    TextScorer,
    fill_order,
    fill_words,
    layout,
    table_slots,
    unigram_hashes,
    word_table_slots,
)
from lmladder.files import atomic_writer, open_nofollow

if TYPE_CHECKING:
    from lmladder.api import Vocab

FILE_NAME = "tables.bin"
WHERE = "a model folder"

__all__ = ["FILE_NAME", "Image", "ImageError", "build", "fits", "open_image", "read_ids", "save",
           "text_scorer"]


def build(tables: Any, vocab: Vocab | None = None, *, cross_boundary: bool = False) -> Image:
    """The image of ``tables`` (a :class:`~lmladder.baselines.ngram_backoff.BackoffTables`:
    orders ``2..n`` hashed, see the kernels' docstring) in memory, with the words of ``vocab``
    to read text by (none: the image scores ids only)."""
    import numpy as np

    shape = _layout(tables, vocab)
    image = np.zeros(shape[1][3] // 8, dtype=np.int64)
    _fill(image.view(np.uint8), shape, tables, vocab, cross_boundary)
    return Image(image)


def save(tables: Any, vocab: Vocab, folder: str | os.PathLike, *,
         cross_boundary: bool = False) -> Path:
    """Write the image of ``tables`` (see :func:`build`) as ``folder/tables.bin``, whole or
    absent and never through a link, filling the file's pages in place: nothing is built in
    memory first, and each order's pages leave this process once filled, so a save costs
    little more memory than its largest order (the estimate program's peak is its fit's)."""
    import numpy as np

    path = Path(folder) / FILE_NAME
    shape = _layout(tables, vocab)
    total = shape[1][3]
    # not synced to disk: a file cut short by a crash is refused on opening (its size does not
    # match its header) and rebuilt from state.npz
    with atomic_writer(path, where=WHERE, sync=False) as f:
        os.ftruncate(f.fileno(), total)
        with mmap.mmap(f.fileno(), total) as mapped:
            raw = np.frombuffer(mapped, dtype=np.uint8)

            def release(start: int, stop: int) -> None:
                page = mmap.PAGESIZE
                start, stop = -(-start // page) * page, stop // page * page
                if stop > start and hasattr(mapped, "madvise"):
                    mapped.madvise(mmap.MADV_DONTNEED, start, stop - start)

            _fill(raw, shape, tables, vocab, cross_boundary, release)
            del raw
    return path


def _layout(tables: Any, vocab: Vocab | None) -> tuple[list[bytes], tuple]:
    """The words of ``vocab`` (UTF-8) and :func:`layout` of the image of ``tables`` with them."""
    words = [t.encode("utf-8") for t in vocab.tokens] if vocab is not None else []
    slots = [table_slots(len(k)) for k in tables.keys[1:]]
    return words, layout(tables.order, tables.vocab_size, sum(map(len, words)),
                         word_table_slots(len(words)), slots)


def _fill(raw, shape: tuple, tables: Any, vocab: Vocab | None, cross_boundary: bool,
          release=None) -> None:
    """Write the image into ``raw`` (uint8, zeros, of the image's size), laid out as ``shape``
    (:func:`_layout`); ``release(start, stop)`` is told each order's bytes once written."""
    import numpy as np

    v, n = tables.vocab_size, tables.order
    words, (header, starts, sections, _) = shape
    blob = b"".join(words)
    word_slots = word_table_slots(len(words))
    image = raw.view(np.int64)
    sha = vocab.sha256.encode("ascii") if vocab is not None else b""
    flags = (FLAT if tables.flat else 0) | (CROSS_BOUNDARY if cross_boundary else 0)
    ids = [vocab.boundary_id, -1 if vocab.unk_id is None else vocab.unk_id] if vocab else [-1, -1]
    image[: HEADER_FIXED // 8 - 8] = [int.from_bytes(MAGIC, "little"), VERSION, n, v, flags,
                                      *ids, len(blob), word_slots, *starts]
    raw[HEADER_FIXED - 64: HEADER_FIXED - 64 + len(sha)] = np.frombuffer(sha, np.uint8)
    image[HEADER_FIXED // 8: header // 8] = sections

    def section(start: int, count: int, dtype=np.int64) -> np.ndarray:
        return raw[start: start + 8 * count].view(dtype)

    raw[starts[0]: starts[0] + len(blob)] = np.frombuffer(blob, np.uint8)
    offsets = section(starts[1], v + 1)
    table = section(starts[2], word_slots)
    table[:] = -1
    if words:
        np.cumsum([len(w) for w in words], out=offsets[1:])
        fill_words(table, raw[starts[0]: starts[0] + max(len(blob), 1)], offsets)
    section(starts[3], v, np.float64)[:] = tables.logp[0]
    section(starts[4], v, np.float64)[:] = tables.bow[0]
    below_slot = np.arange(v, dtype=np.int64)
    below_hash = np.empty(v, dtype=np.uint64)
    unigram_hashes(below_hash)
    for j in range(2, n + 1):
        keys_at, values_at, size, width, key = sections[5 * (j - 2): 5 * (j - 1)]
        keys = section(keys_at, size) if key == 8 else raw[keys_at: keys_at + 4 * size].view(
            np.uint32)
        keys[:] = -1 if key == 8 else np.iinfo(np.uint32).max
        rows = len(tables.keys[j - 1])
        slot_of, hash_of = np.empty(rows, dtype=np.int64), np.empty(rows, dtype=np.uint64)
        fill_order(keys, section(values_at, width * size, np.float64), width,
                   np.ascontiguousarray(tables.keys[j - 1], dtype=np.int64),
                   np.ascontiguousarray(tables.logp[j - 1], dtype=np.float64),
                   np.ascontiguousarray(tables.bow[j - 1], dtype=np.float64),
                   below_slot, below_hash, v, slot_of, hash_of)
        below_slot, below_hash = slot_of, hash_of
        if release is not None:
            release(keys_at, values_at + 8 * width * size)


def text_scorer(folder: str, meta: dict[str, Any], block: int) -> TextScorer | None:
    """What ``lmladder score`` streams a text through for the saved model ``folder``, whose
    ``model.json`` is ``meta``: a scorer over its mapped ``tables.bin``, or None where there is
    none to use (no file, or a vocabulary of characters, which the word reader does not read).
    ImageError naming the file when it is damaged or belongs to another model."""
    config, vocab = meta.get("config"), meta.get("vocab")
    path = os.path.join(folder, FILE_NAME)
    if (not isinstance(config, dict) or not isinstance(vocab, dict)
            or vocab.get("separator") != " " or not os.path.lexists(path)):
        return None
    image = open_image(path)
    tokens = vocab.get("tokens")
    if not fits(image, order=config.get("order"), vocab_sha256=meta.get("vocab_sha256"),
                vocab_size=len(tokens) if isinstance(tokens, list) else -1,
                cross_boundary=bool(config.get("cross_boundary", False)),
                flat=config.get("smoothing") == "add-k"):
        raise ImageError(f"{path}: does not match {os.path.join(folder, 'model.json')}")
    return TextScorer(image, block)


def fits(image: Image, *, order: int, vocab_size: int, vocab_sha256: str, cross_boundary: bool,
         flat: bool, ngrams: list[int] | None = None) -> bool:
    """Whether ``image`` is the one of a model with this order, vocabulary (its size and
    sha256), boundary rule and smoothing kind (add-k: flat) -- and, given the n-grams per order
    ``2..n`` of its tables, their sizes."""
    return (image.order == order and image.vocab_size == vocab_size
            and image.vocab_sha256.decode("ascii") == vocab_sha256
            and image.cross_boundary == cross_boundary and image.flat == flat
            and (ngrams is None or image.slots == [table_slots(k) for k in ngrams]))


def read_ids(image: Image, data: bytes):
    """The words of the UTF-8 ``data`` as int64 ids of the image's vocabulary and one boundary
    per line (the kernels' reading rule), in one compiled pass; a word the vocabulary lacks is
    its unknown word, or ValueError naming it (and its line) if it has none."""
    import numpy as np

    out = np.empty(len(data) + 1, dtype=np.int64)
    count, _, first = image.ids(data, out)
    if first >= 0 and image.unk < 0:
        word = data[first:].split(None, 1)[0].decode("utf-8", errors="replace")
        line = data.count(b"\n", 0, first) + 1
        raise ValueError(f"line {line}: the word {word!r} is not in "
                         "the vocabulary, which has no unknown word to map it to")
    return out[:count].copy()


def open_image(path: str | os.PathLike) -> Image:
    """The image saved at ``path``, memory-mapped read-only.  OSError as ``open`` raises it (a
    link or anything but a regular file is refused), :class:`ImageError` naming the file for a
    file that is not a whole image."""
    fd = open_nofollow(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0), where=WHERE)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(22, "not a regular file", str(path))
        if info.st_size == 0:
            raise ImageError(f"{path}: empty, not an n-gram image")
        # read-only and shared; MAP_POPULATE maps every page in one call instead of a page
        # fault per page on first touch (a query touches nearly every page of a hash table)
        mapped = mmap.mmap(fd, 0, flags=mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0),
                           prot=mmap.PROT_READ)
    finally:
        os.close(fd)
    try:
        return Image(mapped)
    except ImageError as err:
        mapped.close()
        raise ImageError(f"{path}: {err}") from None
