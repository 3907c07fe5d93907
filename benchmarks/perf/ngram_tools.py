"""lmladder's n-gram estimation as a whole program, to time against KenLM's ``lmplz``.

Usage::

    python -m lmladder.perf.ngram_tools estimate --order 5 --text train.txt --out DIR [--arpa F]

``estimate`` does what ``lmplz -o N --text train.txt --arpa F`` does, from the text: read and split
it, build the vocabulary (:func:`read_vocab_and_ids`: lmladder's word vocabulary, as
:func:`lmladder.data.build_word_vocab` makes it), fit modified Kneser-Ney and write the model as
lmladder's model folder (``model.json``, ``state.npz`` and the query image ``tables.bin``);
``--arpa`` also writes the ARPA text file ``lmplz`` writes.  It reads the text in blocks of lines,
so memory does not grow with a list of every word.  Scoring is ``lmladder score DIR FILE``
(:mod:`lmladder.query`), the counterpart of KenLM's ``query``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TextIO

import numpy as np

from lmladder.api import Vocab
from lmladder.baselines.ngram import NGramLM
from lmladder.data import EOS, word_vocab

BLOCK = 1 << 20  # characters of text split at a time (a few MB of word strings)


def _blocks(text: TextIO, boundary: str) -> Iterator[list[str]]:
    """The words of ``text``, a block of lines at a time, with ``boundary`` after every line."""
    while lines := text.readlines(BLOCK):
        words = f" {boundary} ".join(lines).split()
        words.append(boundary)  # the join put one between the lines; the last line needs its own
        yield words


def read_vocab_and_ids(text: TextIO) -> tuple[Vocab, np.ndarray]:
    """The word vocabulary of ``text`` (by falling count, then alphabetically; ``<eos>`` counted
    once per line, ``<unk>`` added if absent: :func:`lmladder.data.word_vocab`) and the
    text's ids in it, int64 ``(N,)``.

    One pass: words are numbered as first seen, counted, then renumbered by frequency.
    """
    first_seen: dict[str, int] = {EOS: 0}
    setdefault = first_seen.setdefault
    parts = []
    for words in _blocks(text, EOS):
        ids = [setdefault(w, len(first_seen)) for w in words]
        parts.append(np.array(ids, dtype=np.int32))
    seen = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)
    del parts
    counts = np.bincount(seen, minlength=len(first_seen)).tolist()
    vocab = word_vocab(dict(zip(first_seen, counts, strict=True)))
    new_id = np.array([vocab.index[w] for w in first_seen], dtype=np.int64)
    return vocab, new_id[seen]


def _open_text(path: str | None) -> TextIO:
    if path is None:
        return sys.stdin
    try:
        return open(path, encoding="utf-8")
    except OSError as err:
        raise SystemExit(f"--text {path}: cannot read ({err.strerror}); give a UTF-8 text "
                         "file") from None


def estimate(text: str, out: str, *, order: int, arpa: str | None) -> dict[str, float]:
    """Read, fit and write (module docstring); the seconds of each phase."""
    clock = time.perf_counter()
    with _open_text(text) as f:
        vocab, ids = read_vocab_and_ids(f)
    read = time.perf_counter()
    model = NGramLM(order=order, smoothing="modified-kneser-ney")
    model.fit(ids, vocab)
    del ids
    fitted = time.perf_counter()
    model.save(out)
    saved = time.perf_counter()
    seconds = {"read": read - clock, "fit": fitted - read, "write": saved - fitted}
    if arpa:
        model.to_arpa(arpa)
        seconds["write_arpa"] = time.perf_counter() - saved
    return seconds


def _report(seconds: dict[str, float]) -> None:
    print("seconds\t" + "\t".join(f"{k} {v:.3f}" for k, v in seconds.items()), file=sys.stderr)


def main(argv: Iterable[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    est = sub.add_parser("estimate", help="text -> modified Kneser-Ney model (as lmplz)")
    est.add_argument("--order", type=int, default=5)
    est.add_argument("--text", required=True, help="training text, one sentence per line")
    est.add_argument("--out", required=True, help="model folder to write (model.json, state.npz, "
                     "tables.bin)")
    est.add_argument("--arpa", default=None, help="also write the model as this ARPA file")
    args = ap.parse_args(None if argv is None else list(argv))
    if not 1 <= args.order <= 32:
        raise SystemExit(f"--order {args.order}: must be in [1, 32]")
    _report(estimate(args.text, args.out, order=args.order, arpa=args.arpa))


if __name__ == "__main__":
    main()
