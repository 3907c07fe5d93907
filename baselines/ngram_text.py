"""Word text to vocabulary ids in one compiled pass over the bytes (numba), as KenLM's ``query``
reads its input.

Why: splitting a text into Python strings and looking each up in a dict took 0.28-0.4 s for PTB's
test split x20 (1.65 M tokens), more than scoring it; scanning the UTF-8 bytes and probing a hash
table of the vocabulary's words takes 0.11 s with the file's reading (2 busy cores), and makes no
string object per word.

What counts as a word is what ``str.split()`` does on the decoded text: runs of anything but
Unicode whitespace (the ASCII controls 9-13 and 28-31, space, U+0085, U+00A0, U+1680,
U+2000-U+200A, U+2028, U+2029, U+202F, U+205F, U+3000).  Lines end at ``\\n`` only (a ``\\r``
before it is whitespace), and every line, the last one included when the text does not end in
``\\n``, is followed by the boundary token: ``"a b\\n\\nc"`` reads ``a b <eos> <eos> c <eos>``.
"""

from __future__ import annotations

import numba
import numpy as np

from lmladder.api import Vocab

_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)
UNKNOWN = -1  # the id of a word the vocabulary lacks when it has no unknown word


@numba.njit(cache=True)
def _hash(data, start, stop):
    """FNV-1a of ``data[start:stop]`` (uint8)."""
    h = _FNV_OFFSET
    for i in range(start, stop):
        h = (h ^ np.uint64(data[i])) * _FNV_PRIME
    return h


@numba.njit(cache=True)
def _space(data, i):
    """Bytes of the whitespace character starting at ``data[i]`` (``str.split``'s), or 0."""
    b = data[i]
    if b == 32 or 9 <= b <= 13 or 28 <= b <= 31:
        return 1
    n = len(data)
    if b == 0xC2 and i + 1 < n and (data[i + 1] == 0x85 or data[i + 1] == 0xA0):
        return 2
    if i + 2 >= n:
        return 0
    c, d = data[i + 1], data[i + 2]
    if b == 0xE1 and c == 0x9A and d == 0x80:  # U+1680
        return 3
    if b == 0xE2 and c == 0x80 and (d <= 0x8A or d == 0xA8 or d == 0xA9 or d == 0xAF):
        return 3  # U+2000-U+200A, U+2028, U+2029, U+202F (0x80 <= d: a continuation byte)
    if b == 0xE2 and c == 0x81 and d == 0x9F:  # U+205F
        return 3
    if b == 0xE3 and c == 0x80 and d == 0x80:  # U+3000
        return 3
    return 0


@numba.njit(cache=True)
def _build(blob, offsets):
    """Open-addressing table of word ids (int64, -1 = free, at most half full) keyed by the
    hash of each word's bytes ``blob[offsets[w]:offsets[w + 1]]``."""
    size = 2
    while size < 2 * (len(offsets) - 1):
        size *= 2
    table = np.full(size, -1, dtype=np.int64)
    for w in range(len(offsets) - 1):
        s = np.int64(_hash(blob, offsets[w], offsets[w + 1]) & np.uint64(size - 1))
        while table[s] >= 0:
            s = (s + 1) & (size - 1)
        table[s] = w
    return table


@numba.njit(cache=True)
def _find(table, blob, offsets, data, start, stop, h, missing):
    """The id of the word ``data[start:stop]`` (hashed to ``h`` by :func:`_hash`), or
    ``missing``."""
    mask = len(table) - 1
    s = np.int64(h & np.uint64(mask))
    length = stop - start
    while table[s] >= 0:
        w = table[s]
        lo = offsets[w]
        if offsets[w + 1] - lo == length:
            same = True
            for i in range(length):
                if blob[lo + i] != data[start + i]:
                    same = False
                    break
            if same:
                return w
        s = (s + 1) & mask
    return missing


@numba.njit(cache=True)
def _encode(data, blob, offsets, table, boundary, missing):
    """int64 ids of ``data``'s words and line ends (module docstring)."""
    out = np.empty(max(16, len(data) // 4), dtype=np.int64)
    n = 0
    i = 0
    while i < len(data):
        if n + 2 > len(out):  # room for a word and a boundary
            grown = np.empty(2 * len(out), dtype=np.int64)
            grown[:n] = out[:n]
            out = grown
        if data[i] == 10:  # '\n'
            out[n] = boundary
            n += 1
            i += 1
            continue
        width = _space(data, i)
        if width:
            i += width
            continue
        start = i
        h = _FNV_OFFSET
        while i < len(data):
            b = data[i]
            if not 32 < b < 128 and (b == 10 or _space(data, i)):  # printable ASCII: in a word
                break
            h = (h ^ np.uint64(b)) * _FNV_PRIME
            i += 1
        out[n] = _find(table, blob, offsets, data, start, i, h, missing)
        n += 1
    if len(data) and data[len(data) - 1] != 10:  # the last line has no '\n' of its own
        out[n] = boundary  # the room kept for a word and a boundary
        n += 1
    return out[:n].copy()


class WordReader:
    """Reads texts as ids of one word vocabulary (module docstring); the vocabulary's table is
    built once per reader."""

    def __init__(self, vocab: Vocab) -> None:
        self.vocab = vocab
        words = [t.encode("utf-8") for t in vocab.tokens]
        self._blob = np.frombuffer(b"".join(words) or b"\0", dtype=np.uint8)
        self._offsets = np.zeros(len(words) + 1, dtype=np.int64)
        np.cumsum([len(w) for w in words], out=self._offsets[1:])
        self._table = _build(self._blob, self._offsets)
        self._boundary = vocab.boundary_id
        self._missing = UNKNOWN if vocab.unk_id is None else vocab.unk_id

    def ids(self, data: bytes) -> np.ndarray:
        """int64 ``(N,)``: the ids of the words of the UTF-8 ``data`` and a boundary after every
        line; a word the vocabulary lacks is its unknown word, or ``UNKNOWN`` if it has none."""
        return _encode(np.frombuffer(data, dtype=np.uint8), self._blob, self._offsets,
                       self._table, self._boundary, self._missing)
