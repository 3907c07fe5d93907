"""ARPA back-off files: export and import of
:class:`~lmladder.baselines.ngram_backoff.BackoffTables`.

Format (as written by SRILM and KenLM): a ``\\data\\`` header with ``ngram j=count`` lines, then
one ``\\j-grams:`` section per order of lines ``log10 p <TAB> w_1 .. w_j [<TAB> log10 backoff]``,
then ``\\end\\``.  Values are written with 10 significant digits, so ln-probabilities survive a
round trip to about 1e-9; ln p = -inf (``mle``) is written as -99 and read back as -inf.

Boundary and unknown-word mapping
---------------------------------
* With ``cross_boundary=False`` the boundary token (``<eos>``) is written as ``</s>`` where it is
  predicted and as ``<s>`` where it is context; the unigram ``<s>`` gets log10 p = -99 and carries
  the backoff weight of the sentence start, as in KenLM and SRILM files.  Reading, a file with
  ``<s>`` or ``</s>`` is taken to follow that convention, and both map to the boundary token.
* With ``cross_boundary=True`` the boundary is written under its own name (``<eos>``) as an
  ordinary word and the file has no ``<s>``/``</s>`` (KenLM's ``query`` would add its own, so its
  scores then differ from ours).
* Every other token is written verbatim.  PTB's ``<unk>`` is an ordinary word of the vocabulary and
  is written as ``<unk>``, which KenLM and SRILM read as their unknown word: a query tool then gives
  any out-of-vocabulary word the probability we learned for PTB's ``<unk>`` -- the usual mapping.
  (KenLM's ``lmplz`` refuses ``<unk>`` in training text; a file it made from PTB with ``<unk>``
  renamed, say to ``<unk>_``, also lists its own zero-count ``<unk>``: read it with
  ``aliases={"<unk>_": "<unk>", "<unk>": None}``.)
* Tokens containing whitespace (character-level vocabularies) cannot be written.
* Reading onto a vocabulary that lacks some words of the file drops those words with their
  n-grams, then renormalises: the unigrams are rescaled to sum to one over the vocabulary and every
  backoff weight is recomputed (:func:`lmladder.baselines.ngram_prune.recompute_backoffs`, as
  SRILM's ``ngram -limit-vocab -renorm``), so every next-token distribution sums to one.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from lmladder.api import Vocab
from lmladder.baselines.ngram_backoff import BackoffTables
from lmladder.baselines.ngram_prune import recompute_backoffs

log = logging.getLogger(__name__)

LN10 = math.log(10.0)
BOS, EOS = "<s>", "</s>"
FLOOR = -99.0  # log10 written for probability zero, and read back as zero


def _fmt(values: np.ndarray) -> list[str]:
    """ln values as ARPA's log10 text, 10 significant digits (``FLOOR`` for zero probability).

    A list of Python strings: ``%``-formatting a list is about three times faster than
    ``np.char.mod``, and writing is mostly formatting."""
    log10 = np.asarray(values, dtype=np.float64) / LN10
    log10 = np.where(np.isneginf(log10) | (log10 < FLOOR), FLOOR, log10)
    return list(map("%.10g".__mod__, log10.tolist()))


def write_arpa(tables: BackoffTables, vocab: Vocab, path: str | Path, *,
               cross_boundary: bool) -> Path:
    """Write ``tables`` (over ``vocab``) to ``path`` as an ARPA file; returns the path.

    The words of an order-``j`` n-gram are its first word and the words of its suffix, whose
    text the order below made already (keys name the suffix's row), so each line costs one
    string concatenation."""
    path = Path(path)
    bad = [t for t in vocab.tokens if not t or any(c.isspace() for c in t)]
    if bad:
        raise ValueError(f"ARPA words cannot be empty or contain whitespace: {bad[:5]!r}")
    b, n, v = vocab.boundary_id, tables.order, tables.vocab_size
    if not cross_boundary:
        clash = [t for t in vocab.tokens if t in (BOS, EOS) and t != vocab.boundary]
        if clash:
            raise ValueError(f"vocabulary tokens {clash} clash with the ARPA sentence markers")
    last = list(vocab.tokens)  # a token as the last word of an n-gram, and as any other word
    first = list(vocab.tokens)
    if not cross_boundary:
        last[b], first[b] = EOS, BOS
    sections: list[list[str]] = []
    words = last
    for j in range(1, n + 1):
        if j > 1:
            k = tables.keys[j - 1]
            suffix, head = k // v, k % v
            if not cross_boundary and j > 2 and (tables.keys[j - 2][suffix] % v == b).any():
                raise ValueError("an n-gram has the boundary inside its context; export with "
                                 "cross_boundary=True")
            below = words
            words = [f"{first[x]} {below[r]}"
                     for x, r in zip(head.tolist(), suffix.tolist(), strict=True)]
        lines = [f"{p}\t{w}" for p, w in zip(_fmt(tables.logp[j - 1]), words, strict=True)]
        if j < n:
            has = tables.bow[j - 1] != 0
            if j == 1 and not cross_boundary:
                has[b] = False  # the boundary's backoff belongs to <s>, written below
            weights = _fmt(tables.bow[j - 1][has])
            for r, weight in zip(np.nonzero(has)[0].tolist(), weights, strict=True):
                lines[r] += "\t" + weight
        if j == 1 and not cross_boundary:
            bos = f"{FLOOR:.10g}\t{BOS}"
            if n > 1 and tables.bow[0][b] != 0:
                bos += "\t" + _fmt(tables.bow[0][b : b + 1])[0]
            lines.append(bos)
        sections.append(lines)
    with open(path, "w", encoding="utf-8") as f:
        f.write("\\data\\\n")
        for j, lines in enumerate(sections, 1):
            f.write(f"ngram {j}={len(lines)}\n")
        for j, lines in enumerate(sections, 1):
            f.write(f"\n\\{j}-grams:\n")
            f.write("\n".join(lines))
            f.write("\n")
        f.write("\n\\end\\\n")
    return path


def parse_arpa(path: str | Path) -> list[list[list[str]]]:
    """The fields of every n-gram line of an ARPA file, per order (index j - 1); ValueError
    naming the file and line for anything that is not ARPA."""
    path = Path(path)
    sections: list[list[list[str]]] = []
    declared: list[int] = []
    current = None
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            s = line.strip()
            if not s:
                continue
            if s == "\\data\\":
                current = "data"
            elif s == "\\end\\":
                break
            elif s.startswith("\\") and s.endswith("-grams:"):
                j = int(s[1 : -len("-grams:")])
                if j != len(sections) + 1:
                    raise ValueError(f"{path}, line {lineno}: section {s} out of order")
                sections.append([])
                current = j
            elif current == "data" and s.startswith("ngram "):
                declared.append(int(s.split("=")[1]))
            elif isinstance(current, int):
                fields = s.split()
                if len(fields) not in (current + 1, current + 2):
                    raise ValueError(f"{path}, line {lineno}: expected {current} words, got {s!r}")
                sections[-1].append(fields)
            elif current is None:
                continue  # text before \data\ is a comment
            else:
                raise ValueError(f"{path}, line {lineno}: unexpected {s!r}")
    if not sections:
        raise ValueError(f"{path}: no n-gram sections; is this an ARPA file?")
    got = [len(s) for s in sections]
    if declared and declared != got:
        raise ValueError(f"{path}: header declares {declared} n-grams per order, found {got}")
    return sections


def _values(fields: list[list[str]], col: int) -> np.ndarray:
    v = np.array([float(f[col]) if len(f) > col else 0.0 for f in fields], dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.where(v <= FLOOR, -np.inf, v * LN10)


def read_arpa(path: str | Path, vocab: Vocab, *, aliases: Mapping[str, str | None] | None = None,
              sections: list[list[list[str]]] | None = None) -> tuple[BackoffTables, bool]:
    """Read an ARPA file onto ``vocab``; returns (tables, cross_boundary).

    ``aliases`` maps ARPA words to vocabulary tokens (``None``: drop the word).  Words outside
    the vocabulary are dropped with their n-grams and the model renormalised over the vocabulary
    (module docstring; a log warning counts them); every vocabulary token must have a unigram.
    The file must be suffix- and prefix-closed (every listed n-gram's last and first ``j - 1``
    words listed), as files from ``lmplz``, SRILM and :func:`write_arpa` are.  ``sections`` is
    :func:`parse_arpa`'s result when the caller has parsed the file already.
    """
    path = Path(path)
    if sections is None:
        sections = parse_arpa(path)
    v, b = len(vocab), vocab.boundary_id
    aliases = dict(aliases or {})
    unigram_words = {f[1] for f in sections[0]}
    cross = BOS not in unigram_words and EOS not in unigram_words
    ids: dict[str, int] = {}
    for t, i in vocab.index.items():
        if cross or i != b:
            ids[t] = i
    for src, dst in aliases.items():
        ids.pop(src, None)
        if dst is not None:
            ids[src] = vocab.index[dst]

    keys, logp, bow = [np.arange(v, dtype=np.int64)], [], []
    uni_p = np.full(v, np.nan)
    uni_b = np.zeros(v)
    probs, bows = _values(sections[0], 0), _values(sections[0], 2)
    dropped = 0
    for f, p, w in zip(sections[0], probs, bows, strict=True):
        word = f[1]
        if not cross and word == BOS:
            uni_b[b] = w
        elif not cross and word == EOS:
            uni_p[b] = p
        elif word in ids:
            uni_p[ids[word]], uni_b[ids[word]] = p, w
        else:
            dropped += 1
    dropped_words = dropped
    missing = [vocab.tokens[i] for i in np.nonzero(np.isnan(uni_p))[0][:10]]
    if missing:
        raise ValueError(f"{path}: no unigram for vocabulary token(s) {missing}; map them with "
                         f"aliases=")
    logp.append(uni_p)
    bow.append(uni_b)
    tables = BackoffTables(v, keys, logp, bow)
    n = len(sections)
    for j in range(2, n + 1):
        fields = sections[j - 1]
        toks = np.full((len(fields), j), -1, dtype=np.int64)
        for r, f in enumerate(fields):
            for i, word in enumerate(f[1 : j + 1]):
                if not cross and word in (BOS, EOS):
                    if (word == BOS) != (i == 0) or (word == EOS) != (i == j - 1):
                        raise ValueError(f"{path}: {word} misplaced in {' '.join(f[1:j + 1])!r}")
                    toks[r, i] = b
                else:
                    toks[r, i] = ids.get(word, -1)
        keep = (toks >= 0).all(axis=1)
        dropped += int((~keep).sum())
        toks = toks[keep]
        suffix = tables.rows_of(toks[:, 1:])
        if (suffix < 0).any():
            bad = " ".join(vocab.decode(toks[np.argmax(suffix < 0)]))
            raise ValueError(f"{path}: the suffix of {j}-gram {bad!r} is not listed; the file is "
                             f"not suffix-closed")
        k = suffix * v + toks[:, 0]
        order = np.argsort(k, kind="stable")
        k = k[order]
        if (np.diff(k) == 0).any():
            raise ValueError(f"{path}: duplicate {j}-grams (after aliases)")
        keys.append(k)
        logp.append(_values(fields, 0)[keep][order])
        bow.append(_values(fields, j + 1)[keep][order] if j < n else np.zeros(len(k)))
    bow[-1] = np.zeros(len(keys[-1]))
    for j in range(2, n + 1):
        tables.context_index(j)  # checks prefix closure now rather than at the first query
    if dropped_words:
        log.warning("%s: dropped %d words outside the vocabulary (%d n-grams in all) and "
                    "renormalised over the vocabulary", path, dropped_words, dropped)
        logp[0] -= np.logaddexp.reduce(logp[0])
        tables = recompute_backoffs(tables)
    return tables, cross
