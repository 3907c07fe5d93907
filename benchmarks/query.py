"""``lmladder score MODEL FILE``: score a text with a saved model, as KenLM's ``query`` does.

    lmladder score results/ptb/kn5.model test.txt          # tokens, OOVs, log10 prob, perplexity
    lmladder score kn5.model - --json < test.txt           # stdin, one JSON object
    lmladder score kn5.model test.txt --phases             # + seconds of each phase on stderr

``MODEL`` is a saved model folder (``lmladder run --save-models``, ``model.save(DIR)``).  The text
is read as the dataset loaders read a corpus: every line's words (``str.split``) and one boundary
token after each line (characters for a character-level model), a word the vocabulary lacks
scored as its unknown word and counted as an OOV (refused, with its line, by a vocabulary that
has none).  Every token is scored from the start of the text under the model's own history rule;
the log10 probability is the sum over all tokens and the perplexity ``10 ** (-log10 / tokens)``.

The lean path
-------------
An n-gram folder holds ``tables.bin``, its query image (:mod:`lmladder.baselines.ngram_image`):
this program then maps that file read-only and streams the text through the compiled reader and
walk in blocks of lines (:data:`LEAN`), importing no numpy, torch, pandas, matplotlib, report or
registry, so a whole process costs what KenLM's ``query`` costs (``python -m lmladder.perf.ngram``).
Any other folder -- another family, a character vocabulary, an n-gram saved without its image --
is loaded by :func:`lmladder.load_model` and scored through the contract's ``token_logprobs``.

``--phases`` prints ``seconds<TAB>name value...`` on stderr: ``open`` (checking ``model.json``,
mapping the image or loading the model), then on the lean path ``read_score`` (reading the text,
mapping words to ids and scoring them, block by block), else ``read`` and ``score``; what the
process spends before and after them is the interpreter's start and its imports.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import sys
import time

BLOCK = 1 << 16  # bytes of text read, mapped and scored at a time (< 1 MiB of ids)
# The families that score a saved folder without loading the model: the saved class -> the
# "module:function" that opens the folder's text scorer, or returns None when the folder has no
# file to score with (named as strings, as the registry names families: the harness imports no
# family).  The scorer is fed blocks of whole lines (``feed(block, last)``) and counts
# ``tokens``, ``misses`` (OOVs), ``first_miss`` (the block's first, when ``closed``: the
# vocabulary has no unknown word) and ``total`` (sum of ln p).
LEAN = {"lmladder.baselines.ngram:NGramLM": "lmladder.baselines.ngram_image:text_scorer"}
HELP = "score a text with a saved model (as KenLM's query)"


class ScoreError(ValueError):
    """A model folder or text ``lmladder score`` cannot use; the message is one line that names
    the path and what to do."""


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("model", help="a saved model folder (lmladder run --save-models, or "
                        "model.save(DIR))")
    parser.add_argument("text", help="the text to score, one sentence per line ('-': stdin)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--phases", action="store_true",
                        help="print the seconds of each phase on stderr")
    return parser


def run(args: argparse.Namespace) -> int:
    """Score, print, and return the exit code (0; a :class:`ScoreError` or OSError propagates)."""
    clock = time.perf_counter()
    meta = _read_meta(args.model)
    lean = _lean_scorer(args.model, meta)
    opened = time.perf_counter()
    with _open_text(args.text) as text:
        if lean is not None:
            figures, phases = _score_lean(lean, text, args.text)
        else:
            figures, phases = _score_loaded(args.model, text, args.text)
    phases = {"open": opened - clock + phases.pop("open", 0.0), **phases}
    if args.json:
        print(json.dumps(figures))
    else:
        for key, value in figures.items():
            print(f"{key}\t{value:.6f}" if key == "log10_prob" else
                  f"{key}\t{value:.10g}" if isinstance(value, float) else f"{key}\t{value}")
    if args.phases:
        print("seconds\t" + "\t".join(f"{k} {v:.3f}" for k, v in phases.items()),
              file=sys.stderr)
    return 0


def _figures(tokens: int, oov: int, total_ln: float) -> dict:
    log10 = total_ln / math.log(10.0)
    return {"tokens": tokens, "oov": oov, "log10_prob": log10,
            "perplexity": 10 ** (-log10 / tokens)}


# -- the model folder -----------------------------------------------------------------------------


def _read_meta(folder: str) -> dict:
    """``folder/model.json`` as a dict with a ``class``, or :class:`ScoreError`."""
    from lmladder.files import read_regular

    path = os.path.join(folder, "model.json")
    if not os.path.isdir(folder):
        what = "is not a folder" if os.path.exists(folder) else "does not exist"
        raise ScoreError(f"{folder}: {what}; give a saved model folder (lmladder run "
                         "--save-models writes RECORD.model/)")
    try:
        meta = json.loads(read_regular(path, where="a model folder"))
    except FileNotFoundError:
        raise ScoreError(f"{path}: missing; is {folder} a model folder written by save() or "
                         "lmladder run --save-models?") from None
    except (ValueError, UnicodeDecodeError) as err:
        raise ScoreError(f"{path}: not valid JSON, truncated or damaged ({err})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("class"), str):
        raise ScoreError(f"{path}: not a saved model's model.json (no 'class')")
    return meta


def _lean_scorer(folder: str, meta: dict):
    """The text scorer of a folder whose family scores it without loading the model (see
    :data:`LEAN`), or None: the model is loaded in full.  A damaged or foreign lean file is
    loaded in full too, and the family's loader says why on stderr."""
    target = LEAN.get(meta["class"])
    if target is None:
        return None
    module, _, name = target.partition(":")
    try:
        return getattr(importlib.import_module(module), name)(folder, meta, BLOCK)
    except (ValueError, OSError):
        return None


# -- the text -------------------------------------------------------------------------------------


def _open_text(name: str):
    if name == "-":
        if sys.stdin is None:
            raise ScoreError("-: there is no standard input to read; give a text file")
        return os.fdopen(os.dup(sys.stdin.fileno()), "rb")
    if os.path.isdir(name):
        raise ScoreError(f"{name}: is a folder; give a text file, one sentence per line")
    try:
        return open(name, "rb")  # noqa: SIM115 -- closed by run's with
    except OSError as err:
        raise ScoreError(f"{name}: cannot read ({err.strerror}); give a UTF-8 text file, one "
                         "sentence per line") from None


def _missing_word(data: bytes, offset: int, name: str, lines_before: int) -> ScoreError:
    line = lines_before + data.count(b"\n", 0, offset) + 1
    word = data[offset:].split(None, 1)[0].decode("utf-8", errors="replace")
    return ScoreError(f"{name} line {line}: the word {word!r} is not in the model's vocabulary, "
                      "which has no unknown word to score it as")


def _score_lean(scorer, text, name: str) -> tuple[dict, dict]:
    """Stream ``text`` through a lean scorer, a block of whole lines at a time (a line longer
    than a block is read whole first)."""
    pending, lines = bytearray(), 0
    clock = time.perf_counter()
    while True:
        block = text.read(BLOCK)
        last = not block
        pending += block
        cut = len(pending) if last else pending.rfind(b"\n") + 1
        if cut:
            with memoryview(pending) as view:
                scorer.feed(view[:cut], last)
            if scorer.first_miss >= 0 and scorer.closed:
                raise _missing_word(bytes(pending[:cut]), scorer.first_miss, name, lines)
            lines += pending.count(b"\n", 0, cut)
            del pending[:cut]
        if last:
            break
    if scorer.tokens == 0:
        raise ScoreError(f"{name}: no words to score")
    return (_figures(scorer.tokens, scorer.misses, scorer.total),
            {"read_score": time.perf_counter() - clock})


def _score_loaded(folder: str, text, name: str) -> tuple[dict, dict]:
    """Any saved model, loaded in full and scored through the contract."""
    import numpy as np

    from lmladder.api import CheckpointError
    from lmladder.registry import ModelImportError, UnknownNameError, load_model

    clock = time.perf_counter()
    try:
        model = load_model(folder)
    except (CheckpointError, UnknownNameError, ModelImportError) as err:
        raise ScoreError(err.args[0] if isinstance(err, KeyError) else str(err)) from None
    vocab = model.vocab_
    loaded = time.perf_counter()
    # bytes that are not UTF-8 make a token the vocabulary lacks, as in the compiled reader
    content = text.read().decode("utf-8", errors="replace")
    if vocab.separator == "":  # characters; a newline is the boundary token
        tokens = list(content)
    else:
        tokens = [w for line in content.split("\n") for w in (*line.split(), vocab.boundary)]
        if content.endswith("\n") or not content:  # no line after the last line end
            tokens = tokens[:-1]
    missing = [t for t in tokens if t not in vocab.index]
    if missing and vocab.unk_id is None:
        at = tokens.index(missing[0])
        line = tokens[:at].count(vocab.boundary) + 1
        raise ScoreError(f"{name} line {line}: the token {missing[0]!r} is not in the model's "
                         "vocabulary, which has no unknown token to score it as")
    if not tokens:
        raise ScoreError(f"{name}: no tokens to score")
    ids = vocab.encode(tokens)
    read = time.perf_counter()
    logprobs = np.asarray(model.token_logprobs(ids), dtype=np.float64)
    scored = time.perf_counter()
    return (_figures(len(ids), len(missing), math.fsum(logprobs.tolist())),
            {"open": loaded - clock, "read": read - loaded, "score": scored - read})


def main(argv: list[str] | None = None) -> int:
    """``lmladder score`` on its own: errors are one line on stderr (exit 2)."""
    parser = add_arguments(argparse.ArgumentParser(prog="lmladder score", description=HELP))
    args = parser.parse_args(argv)
    try:
        return run(args)
    except BrokenPipeError:  # e.g. `lmladder score m t.txt | head -1`: the reader has gone
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 -- so the exit flush cannot fail
        return 0
    except (ScoreError, OSError) as err:
        print(f"lmladder score: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
