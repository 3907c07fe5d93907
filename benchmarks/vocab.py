"""The token <-> id mapping every dataset and model shares.

A :class:`Vocab` is frozen: ids are positions in ``tokens``, and its :attr:`Vocab.sha256` is what
a checkpoint records so it never loads onto another vocabulary.  The boundary token ends every
line and is the history before the first token of a stream::

    tokens    ("<eos>", "<unk>", "the", "cat")     id = position
    encode    ["the", "dog", "<eos>"] -> [2, 1, 0]  ("dog" is out of vocabulary: <unk>)
    detokenize [2, 3, 0, 2] -> "the cat\nthe"        separator between tokens, boundary = newline

This module imports nothing of lmladder.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence

import numpy as np


class Vocab:
    """A frozen token <-> id mapping.

    Parameters
    ----------
    tokens:
        Every token, id = position.  Must be unique.
    boundary:
        The token that ends a line (``"<eos>"`` for words, ``"\\n"`` for characters).  It is also
        the context a model has seen before the first token of a stream.
    unk:
        The token out-of-vocabulary input is mapped to, or ``None`` when the vocabulary is closed.
    separator:
        What stands between two tokens of one line in running text: ``" "`` for words, ``""`` for
        characters.  ``detokenize`` uses it to give text-level models (and bits per character)
        the text back.
    """

    def __init__(
        self, tokens: Sequence[str], *, boundary: str, unk: str | None = None, separator: str = " "
    ):
        self.tokens: tuple[str, ...] = tuple(tokens)
        self.index: dict[str, int] = {t: i for i, t in enumerate(self.tokens)}
        if len(self.index) != len(self.tokens):
            raise ValueError("vocabulary tokens must be unique")
        if boundary not in self.index:
            raise ValueError(f"boundary token {boundary!r} is not in the vocabulary")
        if unk is not None and unk not in self.index:
            raise ValueError(f"unknown-word token {unk!r} is not in the vocabulary")
        self.boundary = boundary
        self.unk = unk
        self.separator = separator
        self.boundary_id = self.index[boundary]
        self.unk_id = None if unk is None else self.index[unk]

    def __len__(self) -> int:
        return len(self.tokens)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(self.sha256)

    def encode(self, tokens: Sequence[str]) -> np.ndarray:
        """Token strings to an int64 array; unknown tokens map to ``unk`` (KeyError if closed)."""
        if self.unk_id is None:
            return np.fromiter((self.index[t] for t in tokens), dtype=np.int64, count=len(tokens))
        get, unk = self.index.get, self.unk_id
        return np.fromiter((get(t, unk) for t in tokens), dtype=np.int64, count=len(tokens))

    def decode(self, ids: Sequence[int] | np.ndarray) -> list[str]:
        return [self.tokens[int(i)] for i in ids]

    def detokenize(self, ids: Sequence[int] | np.ndarray) -> str:
        """Running text for ``ids``: tokens joined by ``separator``, each boundary a newline."""
        out, line = [], []
        for i in ids:
            if int(i) == self.boundary_id:
                out.append(self.separator.join(line) + "\n")
                line = []
            else:
                line.append(self.tokens[int(i)])
        out.append(self.separator.join(line))
        return "".join(out)

    def to_dict(self) -> dict:
        return {
            "tokens": list(self.tokens),
            "boundary": self.boundary,
            "unk": self.unk,
            "separator": self.separator,
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> Vocab:
        return cls(d["tokens"], boundary=d["boundary"], unk=d["unk"], separator=d["separator"])

    @property
    def sha256(self) -> str:
        """A fingerprint of the vocabulary; checkpoints refuse to load onto another one."""
        blob = json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()
