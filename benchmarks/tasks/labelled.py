"""Labelled text collections for classification tasks, read from NLTK corpora.

``sentence_polarity`` (Pang & Lee 2005, rt-polarity v1.0: 5,331 positive + 5,331 negative
snippets) and ``movie_reviews`` (Pang & Lee 2004, polarity v2.0: 1,000 + 1,000 reviews) are NLTK
data packages.  They are looked for where NLTK looks (``$NLTK_DATA``, ``~/nltk_data``, ...) after
``nltk_data/`` inside lmladder's data folders (``--data-dir``, ``$LMLADDER_DATA``, the cache);
when none has them, ``nltk.download`` puts them in the cache, and offline the error says which
zip to put where.

Two protocols, both stratified and seeded, so every model and machine sees the same texts:

* **fixed split** (:func:`load_labelled`, the default of the tasks): every collection is split
  once with :data:`SPLIT_SEED` into 80% train, 10% valid, 10% test of each class; its sizes and
  a fingerprint of the test texts are part of every result.
* **k-fold cross-validation** (:func:`load_folds`, the literature's protocol: Wang & Manning 2012
  report 10-fold CV on both collections, Pang & Lee 2004 on movie_reviews): every text is a test
  text in exactly one of ``k`` folds.  Each class's texts are shuffled with
  ``numpy.random.default_rng(FOLD_SEED)`` (the classes in order, one generator) and dealt to the
  folds in turn, the deal going on from class to class where the last one stopped, so fold sizes
  differ by at most one text overall and per class.  A fold trains on the texts of the other
  ``k - 1`` folds; with ``valid_share > 0`` a stratified part of them (``round(valid_share * n)``
  of each class's ``n`` training texts, drawn with ``default_rng([FOLD_SEED, fold])``) is held
  out as the fold's validation texts instead.  ``valid_share = 0`` (the default) is the
  literature's protocol: no validation texts, training on all ``k - 1`` folds.

  Worked example, 2 classes of 5 texts, ``k = 3``: class 0's shuffled texts go to folds
  0, 1, 2, 0, 1; class 1's, going on, to folds 2, 0, 1, 2, 0 -- fold sizes 4, 3, 3, each fold
  holding 1 or 2 texts of each class.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass

import numpy as np

from lmladder.data import DataNotFoundError, data_roots

SPLIT_SEED = 0
FRACTIONS = (0.8, 0.1, 0.1)  # train, valid, test of each class
FOLD_SEED = 0  # the shuffle of k-fold cross-validation (load_folds)


@dataclass(frozen=True)
class Collection:
    """A labelled NLTK corpus: its package, reader class and arguments, and what a text is."""

    package: str
    description: str
    reader: str  # a class of nltk.corpus.reader
    fileids: str
    cat_pattern: str
    encoding: str
    unit: str  # "sents": every sentence is a text; "files": every file is a text


COLLECTIONS = {
    "sentence_polarity": Collection(
        "sentence_polarity", "rt-polarity: 5,331 + 5,331 movie-review snippets (Pang & Lee 2005)",
        "CategorizedSentencesCorpusReader", r"rt-polarity\.(neg|pos)", r"rt-polarity\.(neg|pos)",
        "utf-8", "sents"),
    "movie_reviews": Collection(
        "movie_reviews", "1,000 + 1,000 full movie reviews (Pang & Lee 2004)",
        "CategorizedPlaintextCorpusReader", r"(?!\.).*\.txt", r"(neg|pos)/.*", "ascii", "files"),
}


@dataclass(frozen=True)
class LabelledSplit:
    texts: tuple[tuple[str, ...], ...]  # lower-cased tokens
    labels: np.ndarray  # int64 index into the collection's classes

    def identity(self) -> dict:
        """What identifies these texts in order, for
        :func:`~lmladder.tasks.items_fingerprint`: the texts and their labels."""
        return {"texts": [list(t) for t in self.texts], "labels": self.labels.tolist()}

    def subset(self, index: np.ndarray) -> LabelledSplit:
        """The texts at ``index`` (int64 positions), in that order."""
        return LabelledSplit(tuple(self.texts[i] for i in index), self.labels[index])


@dataclass(frozen=True)
class LabelledData:
    name: str
    classes: tuple[str, ...]
    train: LabelledSplit
    valid: LabelledSplit
    test: LabelledSplit

    def summary(self) -> dict:
        return {
            "name": self.name,
            "classes": list(self.classes),
            "split": {"seed": SPLIT_SEED, "fractions": list(FRACTIONS), "stratified": True},
            "sizes": self.sizes(),
            "test_sha256": texts_sha256(self.test),
        }

    def sizes(self) -> dict[str, int]:
        return {s: len(getattr(self, s).texts) for s in ("train", "valid", "test")}


def texts_sha256(split: LabelledSplit) -> str:
    """SHA-256 of a split's texts in order (JSON lists of tokens), as results record them."""
    return hashlib.sha256(json.dumps([list(t) for t in split.texts]).encode()).hexdigest()


@dataclass(frozen=True)
class Folds:
    """A collection dealt into ``k`` stratified cross-validation folds (:func:`load_folds`).

    ``texts`` holds every text of the collection, class by class in corpus order; ``fold_of[i]``
    is the fold in which text ``i`` is a test text.  :meth:`fold` gives fold ``i``'s training,
    validation and test texts."""

    name: str
    classes: tuple[str, ...]
    texts: LabelledSplit
    fold_of: np.ndarray  # int64 (n,), values 0..k-1
    k: int
    valid_share: float = 0.0

    def fold(self, i: int) -> tuple[LabelledData, np.ndarray]:
        """Fold ``i`` as a :class:`LabelledData` (train: the other folds less the held-out
        validation texts; test: fold ``i``; each in corpus order) and the positions of its test
        texts in :attr:`texts` (int64, ascending)."""
        if not 0 <= i < self.k:
            raise IndexError(f"fold {i} of {self.k}")
        test = np.flatnonzero(self.fold_of == i)
        rest = np.flatnonzero(self.fold_of != i)
        held = np.zeros(len(rest), dtype=bool)
        if self.valid_share > 0:
            rng = np.random.default_rng([FOLD_SEED, i])
            for label in range(len(self.classes)):
                mine = np.flatnonzero(self.texts.labels[rest] == label)
                held[rng.permutation(mine)[:round(self.valid_share * len(mine))]] = True
        data = LabelledData(self.name, self.classes, self.texts.subset(rest[~held]),
                            self.texts.subset(rest[held]), self.texts.subset(test))
        return data, test

    def summary(self) -> dict:
        """The collection and the protocol as results record them: classes, the folds' seed,
        ``k`` and validation share, the number of texts and the SHA-256 of every text in
        order."""
        return {
            "name": self.name,
            "classes": list(self.classes),
            "split": {"protocol": f"{self.k}-fold CV", "seed": FOLD_SEED, "folds": self.k,
                      "stratified": True, "valid_share": self.valid_share},
            "sizes": {"texts": len(self.texts.texts),
                      "per_class": np.bincount(self.texts.labels,
                                               minlength=len(self.classes)).tolist()},
            "texts_sha256": texts_sha256(self.texts),
        }


@contextlib.contextmanager
def _nltk_search(paths: list[str]):
    import nltk

    saved = list(nltk.data.path)
    nltk.data.path[:0] = paths
    try:
        yield nltk
    finally:
        nltk.data.path[:] = saved


def _read(c: Collection, data_dir) -> tuple[list[str], list[list[tuple[str, ...]]]]:
    from nltk.corpus import reader as readers
    from nltk.corpus.util import LazyCorpusLoader

    roots = [str(r / "nltk_data") for r in data_roots(data_dir)]
    with _nltk_search(roots) as nltk:
        corpus = LazyCorpusLoader(c.package, getattr(readers, c.reader), c.fileids,
                                  cat_pattern=c.cat_pattern, encoding=c.encoding)
        try:
            corpus.ensure_loaded()
        except LookupError:
            fetched = nltk.download(c.package, download_dir=roots[-1], quiet=True)
            if not fetched:
                raise DataNotFoundError(
                    f"NLTK corpus {c.package!r} ({c.description}) is not on this machine and "
                    f"could not be downloaded. Put {c.package}.zip (from the NLTK data index, or "
                    f"`python -m nltk.downloader -d DIR {c.package}` on a machine online) into "
                    f"corpora/ under one of: " + ", ".join([*roots, *nltk.data.path])
                ) from None
            corpus.ensure_loaded()
        classes = sorted(corpus.categories())
        if c.unit == "sents":
            texts = [[tuple(w.lower() for w in s) for s in corpus.sents(categories=k)]
                     for k in classes]
        else:
            texts = [[tuple(w.lower() for w in corpus.words(f)) for f in corpus.fileids(k)]
                     for k in classes]
    return classes, texts


def load_labelled(name: str, data_dir=None) -> LabelledData:
    """Collection ``name`` (a key of :data:`COLLECTIONS`) with its fixed stratified split."""
    classes, per_class = _read(_collection(name), data_dir)
    rng = np.random.default_rng(SPLIT_SEED)
    parts: dict[str, tuple[list, list]] = {s: ([], []) for s in ("train", "valid", "test")}
    for label, texts in enumerate(per_class):
        order = rng.permutation(len(texts))
        cut = np.cumsum([round(f * len(texts)) for f in FRACTIONS[:2]])
        for split, idx in zip(parts, np.split(order, cut), strict=True):
            parts[split][0].extend(texts[i] for i in idx)
            parts[split][1].extend([label] * len(idx))
    splits = {name: LabelledSplit(tuple(t), np.array(y, dtype=np.int64))
              for name, (t, y) in parts.items()}
    return LabelledData(name, tuple(classes), **splits)


def load_folds(name: str, data_dir=None, *, k: int = 10, valid_share: float = 0.0) -> Folds:
    """Collection ``name`` dealt into ``k`` stratified cross-validation folds (see the module
    docstring: seed :data:`FOLD_SEED`, deal order, ``valid_share``)."""
    classes, per_class = _read(_collection(name), data_dir)
    check_folds(k, min(len(t) for t in per_class), name)
    valid_share = check_valid_share(valid_share)
    rng = np.random.default_rng(FOLD_SEED)
    texts, labels, fold_of = [], [], []
    dealt = 0
    for label, mine in enumerate(per_class):
        folds = np.empty(len(mine), dtype=np.int64)
        folds[rng.permutation(len(mine))] = (dealt + np.arange(len(mine))) % k
        dealt += len(mine)
        texts.extend(mine)
        labels.extend([label] * len(mine))
        fold_of.append(folds)
    return Folds(name, tuple(classes), LabelledSplit(tuple(texts), np.array(labels, np.int64)),
                 np.concatenate(fold_of), k, float(valid_share))


def check_folds(k: object, smallest_class: int | None = None, name: str = "") -> int:
    """``k`` as a number of folds: an integer of at least 2 and, given the smallest class's
    size, at most that (every fold must test every class); else a ValueError saying so."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2:
        raise ValueError(f"folds must be an integer >= 2 (k-fold cross-validation) or None "
                         f"(the fixed split), got {k!r}")
    if smallest_class is not None and k > smallest_class:
        raise ValueError(f"folds={k} exceeds the {smallest_class} texts of {name!r}'s smallest "
                         f"class: every fold must hold a text of every class")
    return int(k)


def check_valid_share(share: object) -> float:
    """``share`` as the held-out share of a fold's training texts: a number in [0, 0.5), else
    a ValueError saying so."""
    if (isinstance(share, bool) or not isinstance(share, (int, float, np.floating))
            or not 0.0 <= share < 0.5):
        raise ValueError(f"valid_share must be a number in [0, 0.5) (the share of each class's "
                         f"training texts a fold holds out for validation), got {share!r}")
    return float(share)


def _collection(name: str) -> Collection:
    if name not in COLLECTIONS:
        raise ValueError(f"unknown labelled collection {name!r}; one of {sorted(COLLECTIONS)}")
    return COLLECTIONS[name]
