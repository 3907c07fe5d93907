"""ARPA back-off files: export and import of
:class:`~lmladder.baselines.ngram_backoff.BackoffTables`.

Format (as written by SRILM and KenLM): a ``\\data\\`` header with ``ngram j=count`` lines, then
one ``\\j-grams:`` section per order of lines ``log10 p <TAB> w_1 .. w_j [<TAB> log10 backoff]``,
then ``\\end\\``.  A file that starts with gzip's magic bytes is read decompressed (``.arpa.gz``, as
KenLM and SRILM read it); what the reader refuses: :func:`parse_arpa`, :func:`check_sums`.  Values
are written with 10 significant digits, so ln-probabilities survive a
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

import gzip
import logging
import math
import os
import re
import tempfile
import zlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from lmladder.api import Vocab
from lmladder.baselines.ngram_backoff import BackoffTables
from lmladder.baselines.ngram_prune import recompute_backoffs

log = logging.getLogger(__name__)

LN10 = math.log(10.0)
BOS, EOS = "<s>", "</s>"
TMP_PREFIX = ".tmp-"  # lmladder.files.TMP_PREFIX (not imported: a family sees the contract only)
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
    # beside the file, then renamed over it: a reader (or a killed export) never leaves half a
    # file, and a hard link to another file is replaced rather than written through
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{TMP_PREFIX}{os.getpid()}-",
                                   suffix=".arpa")
    except OSError as err:
        raise OSError(err.errno, err.strerror, str(path)) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("\\data\\\n")
            for j, lines in enumerate(sections, 1):
                f.write(f"ngram {j}={len(lines)}\n")
            for j, lines in enumerate(sections, 1):
                f.write(f"\n\\{j}-grams:\n")
                f.write("\n".join(lines))
                f.write("\n")
            f.write("\n\\end\\\n")
        mask = os.umask(0o022)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


SUM_TOLERANCE = 1e-4  # |sum of a next-word distribution - 1| allowed (files round log10 values)
CONTEXTS_CHECKED = 64  # listed contexts per order whose next-word distribution is summed
_NUMBER = re.compile(r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
_NEG_INF = ("-inf", "-infinity")  # a zero probability or backoff, as KenLM reads (and -99)
_HEADER = re.compile(r"ngram[ \t]+([0-9]+)[ \t]*=[ \t]*([0-9]+)")
_SECTION = re.compile(r"\\([0-9]+)-grams:")
GZIP_MAGIC = b"\x1f\x8b"
_OTHER_MAGIC = {b"BZh": "bzip2-compressed", b"\xfd7zXZ\x00": "xz-compressed",
                b"mmap lm ": "a KenLM binary model (build_binary)"}


class ArpaError(ValueError):
    """A file that is not a well-formed ARPA model; one line naming the file and line."""


class Sections(list):
    """:func:`parse_arpa`'s result: a list of the fields of every n-gram line, per order, that
    also knows where each line was (``lines[j - 1][r]``, ``header[j - 1]``: the section's line)
    and how the file was read (``how``)."""

    lines: list[list[int]]
    header: list[int]
    how: str


def _number(text: str, where: str, what: str) -> float:
    """``text`` as ARPA writes numbers: a plain decimal (``-1.25``, ``-2e-05``) or ``-inf``; not
    Python's wider float syntax (``1_6``, ``nan``, ``inf``, ``0x1p3``)."""
    if _NUMBER.fullmatch(text):
        return float(text)
    if text.lower() in _NEG_INF:
        return -math.inf
    raise ArpaError(f"{where}: expected {what} as a decimal number (e.g. -1.25), got {text!r}")


def _open_text(path: Path):
    """``path`` opened as text lines, decompressed when it starts with gzip's magic bytes (as
    KenLM and SRILM read ``.arpa.gz``); returns (file, "gzip" or "plain text")."""
    if path.is_dir():
        raise ArpaError(f"{path}: is a folder, not an ARPA file")
    if path.exists() and not path.is_file():
        raise ArpaError(f"{path}: not a regular file (an ARPA file, plain or gzip-compressed)")
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as err:
        raise ArpaError(f"{path}: cannot be read ({err.strerror or err})") from None
    if not head:
        raise ArpaError(f"{path}, line 1: empty file; an ARPA file (plain text, or gzip-"
                        "compressed) starts with \\data\\")
    for magic, what in _OTHER_MAGIC.items():
        if head.startswith(magic):
            raise ArpaError(f"{path}, line 1: {what}, which lmladder does not read; give the ARPA "
                            "text, plain or gzip-compressed (.arpa.gz)")
    if head.startswith(GZIP_MAGIC):
        return gzip.open(path, "rt", encoding="utf-8"), "gzip-compressed, read decompressed"
    return open(path, encoding="utf-8"), "plain text; gzip is read too"


def parse_arpa(path: str | Path) -> list[list[list[str]]]:
    """The fields of every n-gram line of an ARPA file, per order (index j - 1).

    The file may be gzip-compressed (found by its magic bytes, whatever its name).  It is
    checked as KenLM's reader checks it, and more: a ``\\data\\`` header whose ``ngram j=count``
    lines match the sections, then ``\\1-grams:`` .. ``\\N-grams:`` in order, then ``\\end\\``;
    numbers are plain decimals or ``-inf`` (no ``1_6``, ``nan``, ``inf``); log10 probabilities
    are not positive; backoff weights only below the highest order; no n-gram twice; every
    n-gram's context (first ``j - 1`` words) and suffix (last ``j - 1``) listed; ``<s>`` only
    first and ``</s>`` only last.  Raises :class:`ArpaError` (a ValueError), one line naming
    the file, the line and what was expected.  Text before ``\\data\\`` is a comment.
    """
    path = Path(path)
    f, how = _open_text(path)
    sections = Sections()
    lines_of: list[list[int]] = []
    declared: dict[int, tuple[int, int]] = {}  # order -> (count, line of its header)
    section_line: list[int] = []
    state, lineno, ended = "before", 0, False

    def where(at: int | None = None) -> str:
        return f"{path} ({how}), line {lineno if at is None else at}"

    def fail(what: str, at: int | None = None) -> ArpaError:
        return ArpaError(f"{where(at)}: {what}")

    try:
        with f:
            for lineno, line in enumerate(f, 1):  # noqa: B007 -- lineno is read by fail()
                s = line.strip()
                if not s:
                    continue
                if state == "before":
                    if s == "\\data\\":
                        state = "data"
                    elif _SECTION.fullmatch(s) or s.startswith("ngram ") or s == "\\end\\":
                        raise fail(f"expected \\data\\ before {s!r}")
                    continue  # text before \data\ is a comment
                if s == "\\end\\":
                    ended = True
                    break
                if m := _SECTION.fullmatch(s):
                    j = int(m.group(1))
                    if state == "data" and not declared:
                        raise fail("expected 'ngram 1=COUNT' lines after \\data\\")
                    if j != len(sections) + 1 or j not in declared:
                        raise fail(f"expected \\{len(sections) + 1}-grams: (the header declares "
                                   f"orders 1 to {len(declared)}), got {s!r}")
                    sections.append([])
                    lines_of.append([])
                    section_line.append(lineno)
                    state = "ngrams"
                    continue
                if state == "data":
                    m = _HEADER.fullmatch(s)
                    if not m:
                        raise fail(f"expected 'ngram J=COUNT' or \\1-grams:, got {s[:60]!r}")
                    j, count = int(m.group(1)), int(m.group(2))
                    if j != len(declared) + 1:
                        raise fail(f"expected 'ngram {len(declared) + 1}=COUNT', got {s!r}")
                    declared[j] = (count, lineno)
                    continue
                j, n = len(sections), len(declared)
                fields = s.split()
                if len(fields) not in (j + 1, j + 2):
                    raise fail(f"expected a {j}-gram line 'log10p <TAB> {j} word(s) "
                               f"[<TAB> log10 backoff]', got {s[:60]!r}")
                if len(fields) == j + 2 and j == n:
                    raise fail(f"a {j}-gram of the highest order has no backoff weight, got "
                               f"{s[:60]!r}")
                p = _number(fields[0], where(), "the log10 probability")
                if p > 0:
                    raise fail(f"log10 probability {fields[0]} is positive (p > 1)")
                if len(fields) == j + 2:
                    _number(fields[-1], where(), "the log10 backoff weight")
                words = fields[1 : j + 1]
                if BOS in words[1:] or EOS in words[:-1]:
                    raise fail(f"{BOS} may only begin an n-gram and {EOS} only end one, got "
                               f"{' '.join(words)!r}")
                sections[-1].append(fields)
                lines_of[-1].append(lineno)
    except UnicodeDecodeError:
        raise fail("not UTF-8 text; an ARPA file is text, plain or gzip-compressed",
                   lineno + 1) from None
    except (OSError, EOFError, zlib.error) as err:  # a corrupt or cut gzip stream
        raise fail(f"cannot be read ({getattr(err, 'strerror', None) or err})",
                   lineno + 1) from None
    if state == "before":
        raise fail("no \\data\\ header; is this an ARPA file?")
    if not ended:
        raise fail("end of file without \\end\\; the file is truncated")
    if not sections:
        raise fail("no n-gram sections after the \\data\\ header")
    if len(sections) != len(declared):
        raise fail(f"the header declares orders 1 to {len(declared)}, the file has sections "
                   f"1 to {len(sections)}")
    for j, (fields, (count, at)) in enumerate(zip(sections, declared.values(), strict=True), 1):
        if len(fields) != count:
            raise fail(f"the header declares ngram {j}={count}, the \\{j}-grams: section (line "
                       f"{section_line[j - 1]}) lists {len(fields)}", at)
    _check_listing(sections, lines_of, fail)
    sections.lines, sections.header, sections.how = lines_of, section_line, how
    return sections


def _hashes(fields: list[list[str]], a: int, b: int) -> np.ndarray:
    return np.fromiter((hash(" ".join(f[a:b])) for f in fields), dtype=np.int64,
                       count=len(fields))


def _check_listing(sections, lines_of, fail) -> None:
    """No n-gram twice; every n-gram's context and suffix listed at the order below (compared
    by 64-bit string hashes; equal hashes are compared as text before a duplicate is reported)."""
    below = None
    for j, fields in enumerate(sections, 1):
        full = _hashes(fields, 1, j + 1)
        order = np.argsort(full, kind="stable")
        for i in np.nonzero(np.diff(full[order]) == 0)[0].tolist():
            first, again = sorted((int(order[i]), int(order[i + 1])))
            if fields[first][1 : j + 1] == fields[again][1 : j + 1]:
                raise fail(f"duplicate {j}-gram {' '.join(fields[again][1:j + 1])!r} (first "
                           f"listed on line {lines_of[j - 1][first]})", lines_of[j - 1][again])
        if below is not None:
            for a, b, what in ((1, j, "context"), (2, j + 1, "suffix")):
                part = _hashes(fields, a, b)
                pos = np.minimum(np.searchsorted(below, part), len(below) - 1)
                missing = np.nonzero(below[pos] != part)[0]
                if len(missing):
                    r = int(missing[0])
                    raise fail(f"the {what} {' '.join(fields[r][a:b])!r} of {j}-gram "
                               f"{' '.join(fields[r][1:j + 1])!r} is not listed among the "
                               f"{j - 1}-grams", lines_of[j - 1][r])
        below = full[order]


def check_sums(path: Path, sections: list[list[list[str]]], tables: BackoffTables | None = None,
               vocab: Vocab | None = None, *, strict: bool = True) -> None:
    """Refuse (``strict``) or log a model whose next-word distributions do not sum to one
    within :data:`SUM_TOLERANCE`: the unigram lines of the file (all of them, ``<s>``'s -99
    counting zero), and, when ``tables`` (the file read onto ``vocab``, nothing dropped) is
    given, the full next-word distribution (listed words, and the others by backoff) after
    :data:`CONTEXTS_CHECKED` listed contexts of every order below the highest, evenly spaced
    through the tables.  The message names the file and the line of the unigram section or of
    the context found wanting."""
    lines = getattr(sections, "lines", None)
    header = getattr(sections, "header", None)
    where = f"{path} ({getattr(sections, 'how', 'ARPA')})"
    problem, at = "", None
    total = float(np.sum(10.0 ** np.array([float(f[0]) for f in sections[0]])))
    if not abs(total - 1.0) <= SUM_TOLERANCE:
        problem, at = f"the unigram probabilities sum to {total:.6g}, not 1", \
            header[0] if header else None
    if tables is not None and vocab is not None and not problem:
        n = tables.order
        for j in range(1, n):
            rows = np.unique(np.linspace(0, len(tables.keys[j - 1]) - 1, CONTEXTS_CHECKED)
                             .astype(np.int64))
            toks = tables.ngram_tokens(j)[rows]
            hist = np.full((len(rows), n - 1), -1, dtype=np.int64)
            hist[:, n - 1 - j :] = toks
            sums = np.exp(np.logaddexp.reduce(tables.distributions(hist), axis=1))
            bad = np.nonzero(~(np.abs(sums - 1.0) <= SUM_TOLERANCE))[0]
            if len(bad):
                words = vocab.decode(toks[int(bad[0])])
                if BOS in {f[1] for f in sections[0]} and words[0] == vocab.boundary:
                    words[0] = BOS  # the boundary as context is the sentence start
                problem = (f"p(w | {' '.join(words)}) sums to {sums[int(bad[0])]:.6g} over the "
                           "words, not 1")
                at = next((lines[j - 1][r] for r, f in enumerate(sections[j - 1])
                           if f[1 : j + 1] == words), None) if lines else None
                break
    if not problem:
        return
    what = (f"{where}{f', line {at}' if at else ''}: not a normalised model: {problem} "
            f"(tolerance {SUM_TOLERANCE:g}); its probabilities and backoff weights do not match")
    if strict:
        raise ArpaError(what)
    log.warning("%s", what)


def _values(fields: list[list[str]], col: int) -> np.ndarray:
    v = np.array([float(f[col]) if len(f) > col else 0.0 for f in fields], dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.where(v <= FLOOR, -np.inf, v * LN10)


def read_arpa(path: str | Path, vocab: Vocab, *, aliases: Mapping[str, str | None] | None = None,
              sections: list[list[list[str]]] | None = None,
              strict_sums: bool = True) -> tuple[BackoffTables, bool]:
    """Read an ARPA file onto ``vocab``; returns (tables, cross_boundary).

    ``aliases`` maps ARPA words to vocabulary tokens (``None``: drop the word).  Words outside
    the vocabulary are dropped with their n-grams and the model renormalised over the vocabulary
    (module docstring; a log warning counts them); every vocabulary token must have a unigram.
    The file must be suffix- and prefix-closed (every listed n-gram's last and first ``j - 1``
    words listed), as files from ``lmplz``, SRILM and :func:`write_arpa` are.  ``sections`` is
    :func:`parse_arpa`'s result when the caller has parsed the file already.  A model whose
    next-word distributions do not sum to one (:func:`check_sums`) is refused, or with
    ``strict_sums=False`` read with a log warning.
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
    check_sums(path, sections, None if dropped else tables, vocab, strict=strict_sums)
    if dropped_words:
        log.warning("%s: dropped %d words outside the vocabulary (%d n-grams in all) and "
                    "renormalised over the vocabulary", path, dropped_words, dropped)
        logp[0] -= np.logaddexp.reduce(logp[0])
        tables = recompute_backoffs(tables)
    return tables, cross
