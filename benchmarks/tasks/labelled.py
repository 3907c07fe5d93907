"""Labelled text collections for classification tasks, read from NLTK corpora.

``sentence_polarity`` (Pang & Lee 2005, rt-polarity v1.0: 5,331 positive + 5,331 negative
snippets) and ``movie_reviews`` (Pang & Lee 2004, polarity v2.0: 1,000 + 1,000 reviews) are NLTK
data packages.  They are looked for where NLTK looks (``$NLTK_DATA``, ``~/nltk_data``, ...) after
``nltk_data/`` inside lmladder's data folders (``--data-dir``, ``$LMLADDER_DATA``, the cache);
when none has them, ``nltk.download`` puts them in the cache, and offline the error says which
zip to put where.

Every collection is split once, stratified, with a fixed seed (80% train, 10% valid, 10% test of
each class), so every model and machine sees the same split; its sizes and a fingerprint of the
test texts are part of every result.
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


@dataclass(frozen=True)
class LabelledData:
    name: str
    classes: tuple[str, ...]
    train: LabelledSplit
    valid: LabelledSplit
    test: LabelledSplit

    def summary(self) -> dict:
        blob = json.dumps([list(t) for t in self.test.texts]).encode()
        return {
            "name": self.name,
            "classes": list(self.classes),
            "split": {"seed": SPLIT_SEED, "fractions": list(FRACTIONS), "stratified": True},
            "sizes": {s: len(getattr(self, s).texts) for s in ("train", "valid", "test")},
            "test_sha256": hashlib.sha256(blob).hexdigest(),
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
    classes, per_class = _read(COLLECTIONS[name], data_dir)
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
