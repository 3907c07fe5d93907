"""lmladder's n-gram family as two whole programs, to time against KenLM's ``lmplz`` and ``query``.

Usage::

    python -m lmladder.perf.ngram_tools estimate --order 5 --text train.txt --out DIR [--arpa F]
    python -m lmladder.perf.ngram_tools query DIR [--text test.txt]      # default: stdin

``estimate`` does what ``lmplz -o N --text train.txt --arpa F`` does, from the text: read and split
it, build the vocabulary (:func:`read_vocab_and_ids`: lmladder's word vocabulary, as
:func:`lmladder.data.build_word_vocab` makes it), fit modified Kneser-Ney and write the model as
lmladder's checkpoint folder (``model.json`` + ``state.npz``, binary); ``--arpa`` also writes the
ARPA text file ``lmplz`` writes.

``query`` does what ``query -v summary BINARY < text`` does: load the model, read the text, split
it into words, map them to ids (a word outside the vocabulary is ``<unk>``) with one end of
sentence per line, score every token (the line's words and its ``</s>``, each line from ``<s>``,
as KenLM counts them) and print the token count, the total log10 probability and the perplexity
``10 ** (-total / tokens)``.  On stderr it prints the seconds of each phase: ``load`` (the
checkpoint), ``numba_code`` (the first compiled call, the vocabulary's table for reading: numba
sets up its compiler and loads the cached machine code, or compiles it on a machine's first run),
``read`` (reading the bytes and mapping them to ids in one compiled pass,
:mod:`lmladder.baselines.ngram_text`), ``first_call`` (the scoring kernel's code and the model's
hash tables) and ``score``.  Importing numba (~0.3 s) is part of the process's start.

``estimate`` reads the text in blocks of lines, so memory does not grow with a list of every
word; ``query`` reads it whole as bytes, which are smaller than its ids.
"""

from __future__ import annotations

import argparse
import io
import itertools
import math
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, TextIO

import numpy as np

from lmladder.api import CheckpointError, Vocab
from lmladder.baselines.ngram import NGramLM
from lmladder.data import EOS, word_vocab

if TYPE_CHECKING:  # numba, which the reader needs, is imported by query only (estimate: ~0.3 s)
    from lmladder.baselines.ngram_text import WordReader

BLOCK = 1 << 20  # characters of text split at a time (a few MB of word strings)


def _blocks(text: TextIO, boundary: str) -> Iterator[list[str]]:
    """The words of ``text``, a block of lines at a time, with ``boundary`` after every line."""
    while lines := text.readlines(BLOCK):
        words = f" {boundary} ".join(lines).split()
        words.append(boundary)  # the join put one between the lines; the last line needs its own
        yield words


def read_ids(data: bytes, reader: WordReader) -> np.ndarray:
    """The words of the UTF-8 text ``data`` as int64 ids of the reader's word vocabulary, one
    boundary per line, in one compiled pass (:mod:`lmladder.baselines.ngram_text`); words the
    vocabulary lacks are its unknown word (ValueError naming the first such word if it has
    none)."""
    from lmladder.baselines.ngram_text import UNKNOWN

    ids = reader.ids(data)
    vocab = reader.vocab
    if vocab.unk_id is None and (ids == UNKNOWN).any():
        # the error path only: split in Python to name the word
        text = io.StringIO(data.decode("utf-8", errors="replace"))
        words = itertools.chain.from_iterable(_blocks(text, vocab.boundary))
        word = next(itertools.islice(words, int(np.argmax(ids == UNKNOWN)), None))
        raise ValueError(f"the word {word!r} is not in the vocabulary, which has no unknown "
                         "word to map it to")
    return ids


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


def _read_bytes(path: str | None) -> bytes:
    """The whole text to score, as bytes (9 MB for 1.65 M tokens: less than its ids)."""
    if path is None:
        return sys.stdin.buffer.read()
    try:
        with open(path, "rb") as f:
            return f.read()
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


def query(model_dir: str, text: str | None) -> tuple[int, float, dict[str, float]]:
    """Score the text with the saved model (module docstring): tokens, total log10 probability
    and the seconds of each phase."""
    from lmladder.baselines.ngram_text import WordReader

    clock = time.perf_counter()
    model = _load(model_dir)
    loaded = time.perf_counter()
    reader = WordReader(model.vocab_)  # the first compiled call: numba loads its machine code
    ready_to_read = time.perf_counter()
    try:
        ids = read_ids(_read_bytes(text), reader)
    except ValueError as err:
        raise SystemExit(f"--text {text or '(stdin)'}: {err}") from None
    read = time.perf_counter()
    model.token_logprobs(ids[:1])  # first call: the kernel's code, the hash tables
    ready = time.perf_counter()
    total = float(model.token_logprobs(ids).sum()) / math.log(10.0)
    scored = time.perf_counter()
    return len(ids), total, {"load": loaded - clock, "numba_code": ready_to_read - loaded,
                             "read": read - ready_to_read,
                             "first_call": ready - read, "score": scored - ready}


def _load(model_dir: str) -> NGramLM:
    try:
        return NGramLM.load(model_dir)
    except (CheckpointError, TypeError, OSError) as err:
        raise SystemExit(f"{model_dir}: not an n-gram model folder ({err}); write one with "
                         "`python -m lmladder.perf.ngram_tools estimate`") from None


def _report(seconds: dict[str, float]) -> None:
    print("seconds\t" + "\t".join(f"{k} {v:.3f}" for k, v in seconds.items()), file=sys.stderr)


def main(argv: Iterable[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    est = sub.add_parser("estimate", help="text -> modified Kneser-Ney model (as lmplz)")
    est.add_argument("--order", type=int, default=5)
    est.add_argument("--text", required=True, help="training text, one sentence per line")
    est.add_argument("--out", required=True, help="model folder to write (model.json, state.npz)")
    est.add_argument("--arpa", default=None, help="also write the model as this ARPA file")
    qry = sub.add_parser("query", help="score a text with a saved model (as query -v summary)")
    qry.add_argument("model", help="model folder written by estimate (or lmladder's fit)")
    qry.add_argument("--text", default=None, help="text to score (default: stdin)")
    args = ap.parse_args(None if argv is None else list(argv))
    if args.command == "estimate":
        if not 1 <= args.order <= 32:
            raise SystemExit(f"--order {args.order}: must be in [1, 32]")
        _report(estimate(args.text, args.out, order=args.order, arpa=args.arpa))
        return
    tokens, total, seconds = query(args.model, args.text)
    print(f"tokens\t{tokens}\nlog10_prob\t{total:.6f}\n"
          f"perplexity\t{10 ** (-total / max(tokens, 1)):.10g}")
    _report(seconds)


if __name__ == "__main__":
    main()
