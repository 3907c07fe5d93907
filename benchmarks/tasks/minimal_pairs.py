"""Minimal pairs: does the model give a grammatical sentence more probability than a minimally
different ungrammatical one?

The BLiMP protocol (Warstadt et al. 2020, "BLiMP: The Benchmark of Linguistic Minimal Pairs for
English", TACL 8; after Marvin & Linzen 2018, "Targeted Syntactic Evaluation of Language Models",
EMNLP): an item is a pair of sentences of the same length that differ in one word or in the
order of two adjacent words, one grammatical and one not; the model is right when it gives the
grammatical one the higher probability.  BLiMP itself is written in cased, punctuated English
with many words outside PTB's 10,000, so lmladder generates its pairs from the dataset's own test
text (BLiMP's jsonl files are not read).

The generator
-------------
1. **A POS tagger** -- NLTK's averaged perceptron (``PerceptronTagger(load=False)``, 3 passes,
   Python's ``random`` seeded with :data:`TAGGER_SEED` for its shuffles) -- is trained on the
   10,948 POS-tagged sentences of NLTK's ``conll2000`` (train.txt + test.txt, 259,104 tokens, WSJ
   sections 15-18 and 20), normalised the way the dataset's text is: lower-cased when the
   vocabulary has no capitals, pure numbers (``1,000``, ``3.5``, ``1\\/2``) written ``N`` when the
   vocabulary has ``N`` and no digit-only words (PTB), punctuation the vocabulary lacks dropped
   and other words outside the vocabulary written ``<unk>`` (PTB: 229,513 tokens remain) -- so it
   is trained on text like the text it tags.  Tested on NLTK's treebank sample (WSJ sections
   00-01, 3,914 sentences) normalised for PTB, it tags 92.1% of tokens right (93.8% of those that
   are not ``<unk>``), and of the items the rules below find with its tags, 94%, 92%, 98%, 95%
   and 88% (by phenomenon, in order) are found with the treebank's own tags too -- most others
   differ by a lower-cased proper noun tagged NN (*the artist has*), a pair as good; 2 and 5
   passes do about as well.  Training and tagging PTB's test split take tens of seconds, so the
   tags are cached (memory, and JSON under ``<cache>/lmladder/minimal-pairs/``).
2. **It tags the dataset's test split**, and the rules below find candidate items in each test
   line (at most one per line and phenomenon, chosen at random, so that one line cannot weigh
   much).  The grammatical sentence is always the test line as written -- real text -- and the
   ungrammatical one is made from it:

   * ``subject-verb agreement``: a noun directly followed by a verb of the same number -- NN then
     a singular form, NNS then a plural one -- whose number is swapped (*the company is* ->
     *the company are*).  The verb pairs are is/are, has/have, does/do, was/were and every
     (VBZ, VBP) pair of the tagged corpus related by English spelling (says/say, goes/go,
     tries/try) of which each form is tagged as a verb in at least half of its occurrences
     there (not *plans*/*plan*, mostly nouns) and both are in the model's vocabulary.  A noun
     phrase after a noun and a conjunction is left out (*office space and housing is* ->
     *are* would be grammatical).
   * ``agreement across a prepositional phrase``: the same swap where a prepositional phrase
     whose noun has the other number stands between the subject and the verb -- head NN/NNS, a
     preposition (``of``, ``in``, ``for`` ... tagged IN), an optional determiner, adjectives or
     numbers, then nouns -- and the verb agrees with the head, not with the nearer noun (*the
     price of the shares is* -> *the price of the shares are*): Marvin & Linzen's attractor
     case, where a model that looks only at the previous word or two prefers the wrong verb.
   * ``determiner-noun agreement``: this/that before NN, these/those before NNS (tagged DT, the
     noun not followed by another noun), the determiner's number swapped (*this year* -> *these
     year*).  that/those only after a preposition (*of those companies*), because after a verb
     *that* can start a clause (*say those firms rose* -> *say that firms rose* is grammatical).
   * ``determiner-noun order``: the/a/an then NN/NNS, swapped (*the company said* -> *company
     the said*), the noun not followed by a noun, adjective, number or determiner (else
     *gave the investors shares* -> *gave investors the shares* would stay grammatical).
   * ``adjective-noun order``: a determiner, JJ, NN/NNS, swapped to noun then adjective (*the
     big company* -> *the company big*), with the same condition after the noun; adjectives that
     may follow a noun (*available*, *possible* and the rest of :data:`POSTNOMINAL`, all ``-able``
     and ``-ible`` words) are left out.

   No agreement item hinges on a ``<unk>`` noun (*some <unk> have* could be *some crime has*),
   and no order item moves a ``<unk>``: its number and word class are unknown.
3. **Balance.**  Within each verb or determiner pair, the items where the grammatical sentence
   has the singular form and those where it has the plural one are drawn in equal numbers (one
   of each at a time), so a model that knows only word frequencies -- a unigram model -- is right
   on exactly half of the agreement items; on the order items both sentences hold the same words
   and it ties (1/2 each).  Chance is 50% for every phenomenon, and a unigram model scores it.
   ``items`` caps each phenomenon (rounded down to an even number for the agreement ones); the
   draw uses ``numpy.random.default_rng([seed, k])`` for the k-th phenomenon of
   :data:`PHENOMENA`, so a dataset and a seed give the same items on every machine, whichever
   phenomena are asked for.

No test sentence is seen in training: conll2000's text is WSJ sections 15-18 and 20, inside PTB's
training sections (0-20), so sentences taken from it would be scored by a KN5 that memorised
them; the pairs are therefore made from the dataset's test split (PTB: sections 23-24) and the
tagged WSJ text only teaches the tagger.

Scoring, as :mod:`lmladder.tasks.cloze`: each sentence is scored on its own -- after one boundary
token, its own ``<eos>`` included (:func:`~lmladder.tasks.cloze.sentence_logprobs`) -- and an
item counts 1 when ln p(good) > ln p(bad), 1/2 when they are equal (within 1e-9 nats: the same
words summed in another order), 0 otherwise.  Accuracy is given overall and per phenomenon with
95% Wilson intervals, with per-item credits for paired tests between rows.

Measured on PTB (seed 0, the default 1,000 items per phenomenon; n-gram models fitted on
ptb.train.txt; accuracy and its 95% Wilson interval; items drawn / candidates found)::

    phenomenon (items / candidates)       uniform, unigram  add-one bigram      KN5
    subject-verb agreement (738 / 1,036)  0.500             .813 [.783, .839]   .824 [.795, .850]
    agreement across a PP (34 / 45)       0.500             .324 [.191, .492]   .382 [.239, .550]
    determiner-noun agreement (68 / 207)  0.500             .765 [.651, .850]   .765 [.651, .850]
    determiner-noun order (1,000 / 1,821) 0.500             .996 [.990, .998]   .994 [.987, .997]
    adjective-noun order (629 / 629)      0.500             .895 [.869, .917]   .912 [.887, .932]
    all (2,469)                           0.500             .900 [.887, .911]   .908 [.895, .918]

The n-gram models do well where the evidence is within a word or two of the change and fall
below chance across an attractor, where the nearer noun is the one they see (the case Marvin &
Linzen built to separate models that track structure from those that do not).  PTB's test split
holds few attractor items (34 once balanced), so that row's interval is wide.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lmladder.api import Vocab
from lmladder.corpus import UNK, Dataset
from lmladder.data import DataNotFoundError, data_roots
from lmladder.files import atomic_write
from lmladder.tasks import (
    MetricSpec,
    Subject,
    Task,
    items_fingerprint,
    paired_block,
    paired_entry,
    wilson_interval,
)
from lmladder.tasks.cloze import sentence_logprobs

PHENOMENA = (
    "subject-verb agreement",
    "agreement across a prepositional phrase",
    "determiner-noun agreement",
    "determiner-noun order",
    "adjective-noun order",
)
AGREEMENT = frozenset(PHENOMENA[:3])  # balanced per lexical pair; the rest swap two words

TAGGED_CORPUS = "conll2000"  # the NLTK package the tagger is trained on
TAGGER_SEED = 0
TAGGER_PASSES = 3  # 2 and 5 passes find nearly the same items (measured, module docstring)
CACHE_VERSION = 2  # of the cached tagging (tags and verb pairs): part of its key
MIN_COVERAGE = 0.5  # of the tagged corpus's words the vocabulary must hold (PTB: 94%)
TIE_NATS = 1e-9  # |ln p(good) - ln p(bad)| up to this is a tie (float summation order)

IRREGULAR_VERBS = (("is", "are", "VBZ", "VBP"), ("has", "have", "VBZ", "VBP"),
                   ("does", "do", "VBZ", "VBP"), ("was", "were", "VBD", "VBD"))
DETERMINERS = (("this", "these"), ("that", "those"))
AFTER_PREPOSITION = frozenset({"that"})  # elsewhere "that" may start a clause: only after one
PREPOSITIONS = frozenset({
    "of", "in", "for", "on", "at", "with", "from", "by", "about", "under", "over", "among",
    "into", "through", "during", "against", "without", "between", "near", "behind", "like"})
ARTICLES = frozenset({"the", "a", "an"})
POSTNOMINAL = frozenset({  # adjectives that can follow their noun (the funds available)
    "available", "possible", "necessary", "involved", "concerned", "present", "responsible",
    "required", "needed", "enough", "alone", "else", "elect", "designate", "general", "proper",
    "due", "outstanding", "remaining", "left", "ahead", "aplenty", "galore", "ago", "old",
    "long", "high", "wide", "deep", "tall", "later", "earlier", "apart", "aside", "previous",
    "prior", "following", "past", "before", "after"})
NOUN = frozenset({"NN", "NNS", "NNP", "NNPS"})
NOT_AFTER_NP = NOUN | {"JJ", "JJR", "JJS", "CD", "DT", "PRP$", "PDT"}
INSIDE_NP = NOUN | {"JJ", "JJR", "JJS", "CD", "DT", "PRP$", "POS"}
PUNCTUATION = frozenset({",", ".", ":", "``", "''", "(", ")", "-LRB-", "-RRB-", "#", "$", "SYM"})
log = logging.getLogger(__name__)
_NUMBER = re.compile(r"^[\d.,:\\/-]*\d[\d.,:\\/-]*$")

Tagged = Sequence[Sequence[tuple[str, str]]]  # sentences of (word, Penn tag)


@dataclass(frozen=True)
class MinimalPair:
    """One item: ``good`` (a test line as written) and ``bad`` (the same length, one word
    swapped for its other number or two adjacent words swapped), as word strings.  ``line`` is
    the test line's index, ``position`` the first word that differs, ``key`` the lexical pair
    ("is/are") or swap ("the+NN"), ``plural`` whether ``good`` holds the plural form."""

    phenomenon: str
    good: tuple[str, ...]
    bad: tuple[str, ...]
    line: int
    position: int
    key: str
    plural: bool = False

    def identity(self) -> list:
        return [self.phenomenon, self.line, self.position, " ".join(self.bad)]


@dataclass(frozen=True)
class Normaliser:
    """Writes tagged text the way a dataset writes its text (see the module docstring)."""

    vocab: Vocab
    lower: bool
    number: str | None

    @classmethod
    def for_vocab(cls, vocab: Vocab) -> Normaliser:
        words = [t for t in vocab.tokens if t not in (vocab.boundary, vocab.unk, "N")]
        lower = not any(w != w.lower() for w in words)  # PTB: lower case but for its N
        digits_kept = any(_NUMBER.match(w) for w in words)
        return cls(vocab, lower, "N" if "N" in vocab.index and not digits_kept else None)

    def __call__(self, sentence: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
        out = []
        for word, tag in sentence:
            if tag == "-NONE-":  # treebank's empty elements
                continue
            w = word.lower() if self.lower else word
            if self.number and _NUMBER.match(w):
                w = self.number
            if w not in self.vocab.index:
                if tag in PUNCTUATION or self.vocab.unk is None:
                    continue
                w = self.vocab.unk
            out.append((w, tag))
        return out


@dataclass(frozen=True)
class Lexicon:
    """Verb pairs: singular form -> (plural form, singular tag, plural tag), and back."""

    singular: dict[str, tuple[str, str, str]]
    plural: dict[str, tuple[str, str, str]]

    @classmethod
    def from_tagged(cls, sentences: Tagged, vocab: Vocab) -> Lexicon:
        tags: dict[str, Counter] = defaultdict(Counter)
        for sentence in sentences:
            for word, tag in sentence:
                tags[word][tag] += 1

        def verb_share(word: str, verb_tags: set[str]) -> float:
            n = sum(tags[word].values())
            return sum(tags[word][t] for t in verb_tags) / n if n else 0.0

        pairs = [p for p in IRREGULAR_VERBS if tags[p[0]][p[2]] and tags[p[1]][p[3]]]
        taken = {w for p in pairs for w in p[:2]}
        for word in sorted(w for w in tags if tags[w]["VBZ"] and w not in taken):
            stems = [word[:-1]] if word.endswith("s") else []
            if word.endswith("es"):
                stems.append(word[:-2])
            if word.endswith("ies"):
                stems.append(word[:-3] + "y")
            stems = [s for s in stems if tags[s]["VBP"] and s not in taken]
            if not stems:
                continue
            stem = max(stems, key=lambda s: (tags[s]["VBP"], s))
            if verb_share(word, {"VBZ"}) >= 0.5 and verb_share(stem, {"VB", "VBP"}) >= 0.5:
                pairs.append((word, stem, "VBZ", "VBP"))
                taken |= {word, stem}
        known = vocab.index
        pairs = [p for p in pairs if p[0] in known and p[1] in known
                 and vocab.unk not in p[:2] and vocab.boundary not in p[:2]]
        return cls({s: (p, ts, tp) for s, p, ts, tp in pairs},
                   {p: (s, ts, tp) for s, p, ts, tp in pairs})

    def __len__(self) -> int:
        return len(self.singular)

    def swap(self, word: str, tag: str) -> tuple[str, str, bool] | None:
        """(other form, "sg/pl" key, word is plural) for a verb of the lexicon tagged as one."""
        if word in self.singular and tag == self.singular[word][1]:
            other = self.singular[word][0]
            return other, f"{word}/{other}", False
        if word in self.plural and tag == self.plural[word][2]:
            other = self.plural[word][0]
            return other, f"{other}/{word}", True
        return None


def _number(tag: str) -> bool | None:
    return {"NN": False, "NNS": True}.get(tag)


def candidates(words: Sequence[str], tags: Sequence[str], line: int, lexicon: Lexicon,
               unk: str | None = UNK) -> list[MinimalPair]:
    """Every minimal pair the rules of the module docstring find in one tagged line.  No pair
    hinges on ``unk``: its number and word class are unknown (*some <unk> have* could be
    *some crime has*)."""
    words, n, out = tuple(words), len(words), []

    def known(*positions: int) -> bool:
        return all(words[j] != unk for j in positions)

    def replaced(i: int, word: str) -> tuple[str, ...]:
        return (*words[:i], word, *words[i + 1:])

    def swapped(i: int) -> tuple[str, ...]:
        return (*words[:i], words[i + 1], words[i], *words[i + 2:])

    def ends_np(j: int) -> bool:  # nothing after position j continues its noun phrase
        return j + 1 >= n or tags[j + 1] not in NOT_AFTER_NP

    def coordinated(j: int) -> bool:  # the noun phrase ending at j follows "noun and/or"
        k = j - 1
        while k >= 0 and tags[k] in INSIDE_NP:
            k -= 1
        return k >= 1 and tags[k] == "CC" and tags[k - 1] in NOUN

    for i in range(n):
        verb = lexicon.swap(words[i], tags[i]) if i else None
        if verb is not None:
            other, key, plural = verb
            if _number(tags[i - 1]) is plural and known(i - 1) and not coordinated(i - 1):
                out.append(MinimalPair(PHENOMENA[0], words, replaced(i, other), line, i, key,
                                       plural))
            head = _attracted_head(tags, words, i)
            if head is not None and _number(tags[head]) is plural \
                    and _number(tags[i - 1]) is (not plural) and known(head, i - 1) \
                    and not coordinated(head):
                out.append(MinimalPair(PHENOMENA[1], words, replaced(i, other), line, i, key,
                                       plural))
        if i + 1 < n and tags[i] == "DT":
            for singular, plural_form in DETERMINERS:
                if words[i] not in (singular, plural_form) or not ends_np(i + 1):
                    continue
                plural = words[i] == plural_form
                if _number(tags[i + 1]) is not plural or not known(i + 1):
                    continue
                if singular in AFTER_PREPOSITION and not (
                        i and words[i - 1] in PREPOSITIONS | {"to"}
                        and tags[i - 1] in ("IN", "TO")):
                    continue
                other = singular if plural else plural_form
                out.append(MinimalPair(PHENOMENA[2], words, replaced(i, other), line, i,
                                       f"{singular}/{plural_form}", plural))
            if (words[i] in ARTICLES and tags[i + 1] in ("NN", "NNS") and ends_np(i + 1)
                    and known(i + 1)):
                out.append(MinimalPair(PHENOMENA[3], words, swapped(i), line, i,
                                       f"{words[i]}+{tags[i + 1]}"))
        if (0 < i < n - 1 and tags[i] == "JJ" and tags[i - 1] == "DT"
                and tags[i + 1] in ("NN", "NNS") and ends_np(i + 1) and known(i, i + 1)
                and words[i] not in POSTNOMINAL and not words[i].endswith(("able", "ible"))):
            out.append(MinimalPair(PHENOMENA[4], words, swapped(i), line, i, f"JJ+{tags[i + 1]}"))
    return out


def _attracted_head(tags: Sequence[str], words: Sequence[str], verb: int) -> int | None:
    """The head noun of ``NOUN prep [det] [adjectives/numbers] nouns`` ending just before
    ``verb``, or None."""
    j = verb - 1
    if j < 0 or tags[j] not in ("NN", "NNS"):
        return None
    while j >= 0 and tags[j] in ("NN", "NNS"):
        j -= 1
    while j >= 0 and tags[j] in ("JJ", "JJR", "JJS", "CD"):
        j -= 1
    if j >= 0 and tags[j] in ("DT", "PRP$"):
        j -= 1
    if j < 1 or tags[j] != "IN" or words[j] not in PREPOSITIONS:
        return None
    return j - 1 if tags[j - 1] in ("NN", "NNS") else None


# --------------------------------------------------------------------------------------------
# The tagger and its training text


def tagged_corpus(data_dir=None) -> list[list[tuple[str, str]]]:
    """conll2000's POS-tagged sentences (train.txt, then test.txt) as NLTK reads them, looked for
    in ``nltk_data/`` under lmladder's data folders, then where NLTK looks; downloaded into the
    cache when none has them; else :class:`~lmladder.data.DataNotFoundError` says what to put
    where."""
    from nltk.corpus.reader import ConllChunkCorpusReader
    from nltk.corpus.util import LazyCorpusLoader

    from lmladder.tasks.labelled import _nltk_search

    roots = [str(r / "nltk_data") for r in data_roots(data_dir)]
    with _nltk_search(roots) as nltk:
        corpus = LazyCorpusLoader(TAGGED_CORPUS, ConllChunkCorpusReader,
                                  ["train.txt", "test.txt"], ("NP", "VP", "PP"), tagset="wsj",
                                  encoding="ascii")
        try:
            corpus.ensure_loaded()
        except LookupError:
            fetched = nltk.download(TAGGED_CORPUS, download_dir=roots[-1], quiet=True)
            if not fetched:
                raise DataNotFoundError(
                    f"the minimal-pairs task trains its POS tagger on NLTK's {TAGGED_CORPUS!r} "
                    f"corpus (CoNLL-2000, POS-tagged WSJ text), which is not on this machine and "
                    f"could not be downloaded. Put {TAGGED_CORPUS}.zip (from the NLTK data "
                    f"index, or `python -m nltk.downloader -d DIR {TAGGED_CORPUS}` on a machine "
                    f"online) into corpora/ under one of: " + ", ".join([*roots, *nltk.data.path])
                ) from None
            corpus.ensure_loaded()
        return [list(s) for s in corpus.tagged_sents()]


class Tagger:
    """NLTK's averaged perceptron trained on normalised tagged sentences (deterministic)."""

    def __init__(self, sentences: Tagged, passes: int | None = None):
        from nltk.tag.perceptron import PerceptronTagger

        self.tagger = PerceptronTagger(load=False)
        saved = random.getstate()  # nltk shuffles with the global generator
        random.seed(TAGGER_SEED)
        try:
            self.tagger.train([list(s) for s in sentences if s], nr_iter=passes or TAGGER_PASSES)
        finally:
            random.setstate(saved)

    def tags(self, words: Sequence[str]) -> list[str]:
        return [t for _, t in self.tagger.tag(list(words))] if words else []


@dataclass(frozen=True)
class TaggedTest:
    """A dataset's test lines (words, no boundary), their tags, the verb lexicon and the number
    of tokens the tagger was trained on."""

    lines: tuple[tuple[str, ...], ...]
    tags: tuple[tuple[str, ...], ...]
    lexicon: Lexicon
    tagged_tokens: int


_MEMORY: dict[str, TaggedTest] = {}  # per process, by cache key


def _sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, separators=(",", ":")).encode()).hexdigest()


def split_lines(data: Dataset) -> tuple[tuple[str, ...], ...]:
    """``data``'s test split as lines of words (each line's boundary dropped)."""
    vocab, ids = data.vocab, data.test.ids
    cut = np.flatnonzero(ids == vocab.boundary_id)
    return tuple(tuple(vocab.decode(chunk[:-1])) for chunk in np.split(ids, cut + 1)[: len(cut)])


def tag_test_split(data: Dataset, sentences: Tagged) -> TaggedTest:
    """``data``'s test lines with the tags of a tagger trained on ``sentences`` normalised for
    ``data``.  Kept in memory for the process and, as JSON (about 4 bytes per test word), under
    ``<cache>/lmladder/minimal-pairs/`` -- training the tagger takes tens of seconds."""
    import nltk

    lines = split_lines(data)
    key = _sha([CACHE_VERSION, TAGGER_SEED, TAGGER_PASSES, nltk.__version__,
                data.vocab.sha256, hashlib.sha256(data.test.ids.tobytes()).hexdigest(),
                _sha(sentences)])
    if key in _MEMORY:
        return _MEMORY[key]
    path = data_roots()[-1].parent / "minimal-pairs" / f"{key}.json"
    result = _read_cached(path, lines)
    if result is None:
        training = [s for s in map(Normaliser.for_vocab(data.vocab), sentences) if s]
        _check_coverage(sentences, training, data)
        tagger = Tagger(training)
        result = TaggedTest(lines, tuple(tuple(tagger.tags(line)) for line in lines),
                            Lexicon.from_tagged(training, data.vocab), sum(map(len, training)))
        try:
            atomic_write(path, json.dumps({
                "version": CACHE_VERSION, "tagged_tokens": result.tagged_tokens,
                "lexicon": sorted([s, *v] for s, v in result.lexicon.singular.items()),
                "tags": [" ".join(t) for t in result.tags]}))
        except OSError as err:  # a read-only cache costs time, not the result
            log.warning("minimal-pairs: could not cache the tagged test split: %s", err)
    if len(_MEMORY) >= 4:
        _MEMORY.pop(next(iter(_MEMORY)))
    _MEMORY[key] = result
    return result


def _check_coverage(sentences: Tagged, training: Tagged, data: Dataset) -> None:
    """A ValueError unless ``data``'s vocabulary holds :data:`MIN_COVERAGE` of the tagged
    words: the rules are English rules, and a tagger that sees only ``<unk>`` tags nothing."""
    words = sum(t not in PUNCTUATION and t != "-NONE-" for s in sentences for _, t in s)
    known = sum(w != data.vocab.unk and t not in PUNCTUATION for s in training for w, t in s)
    if known < MIN_COVERAGE * words:
        raise ValueError(
            f"minimal-pairs needs English text: only {known / max(words, 1):.1%} of the tagged "
            f"corpus's words are in {data.name}'s vocabulary (it needs {MIN_COVERAGE:.0%})")


def _read_cached(path: Path, lines: tuple[tuple[str, ...], ...]) -> TaggedTest | None:
    """The cached tagging of ``lines`` at ``path``, or None when absent or unusable."""
    try:
        blob = json.loads(path.read_text())
        tags = tuple(tuple(t.split()) for t in blob["tags"])
        pairs = [tuple(p) for p in blob["lexicon"]]
        if len(tags) != len(lines) or any(len(p) != 4 for p in pairs) \
                or any(len(t) != len(w) for t, w in zip(tags, lines, strict=True)):
            return None
        lexicon = Lexicon({s: (p, ts, tp) for s, p, ts, tp in pairs},
                          {p: (s, ts, tp) for s, p, ts, tp in pairs})
        return TaggedTest(lines, tags, lexicon, int(blob["tagged_tokens"]))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


# --------------------------------------------------------------------------------------------
# The task


class MinimalPairs(Task):
    """BLiMP-style grammaticality pairs generated from the test split; chance (and a unigram
    model) 50%."""

    name = "minimal-pairs"
    description = ("prefer the grammatical sentence of a minimal pair (agreement, word order) "
                   "made from the test split")
    metrics = (MetricSpec("accuracy", higher_is_better=True, chance=0.5),)

    def __init__(self, *, items: int = 1000, phenomena: Sequence[str] = PHENOMENA,
                 examples: int = 2):
        if isinstance(items, bool) or not isinstance(items, int) or items < 2:
            raise ValueError(f"minimal-pairs: items (per phenomenon) must be an integer >= 2, "
                             f"got {items!r}")
        if isinstance(phenomena, str):
            phenomena = (phenomena,)
        unknown = [p for p in phenomena if p not in PHENOMENA]
        if unknown or not phenomena:
            raise ValueError(f"minimal-pairs: unknown phenomena {unknown or list(phenomena)}; "
                             f"choose among {list(PHENOMENA)}")
        if isinstance(examples, bool) or not isinstance(examples, int) or examples < 0:
            raise ValueError(f"minimal-pairs: examples must be an integer >= 0, got {examples!r}")
        self.n_items = items
        self.phenomena = tuple(p for p in PHENOMENA if p in phenomena)
        self.n_examples = examples

    def build_items(self, data: Dataset, seed: int = 0, *, data_dir=None,
                    tagged: Tagged | None = None) -> list[MinimalPair]:
        """The pairs for ``data`` and ``seed`` (deterministic), phenomenon by phenomenon in
        :data:`PHENOMENA` order.  ``tagged``: the tagger's training sentences (default:
        :func:`tagged_corpus`, found from ``data_dir``)."""
        return self._build(data, seed, data_dir=data_dir, tagged=tagged)[0]

    def _build(self, data: Dataset, seed: int, *, data_dir=None, tagged: Tagged | None = None
               ) -> tuple[list[MinimalPair], dict[str, int], TaggedTest]:
        if data.level != "word":
            raise ValueError(f"minimal-pairs needs a word-level dataset; {data.name} is "
                             f"{data.level}-level")
        text = tag_test_split(data, tagged_corpus(data_dir) if tagged is None else tagged)
        # one generator per phenomenon, so that the rules or the choice of one phenomenon
        # never change the items of another
        rngs = {p: np.random.default_rng([seed, PHENOMENA.index(p)]) for p in self.phenomena}
        found: dict[str, list[MinimalPair]] = {p: [] for p in self.phenomena}
        for index, (words, tags) in enumerate(zip(text.lines, text.tags, strict=True)):
            per_line: dict[str, list[MinimalPair]] = defaultdict(list)
            for pair in candidates(words, tags, index, text.lexicon, data.vocab.unk):
                per_line[pair.phenomenon].append(pair)
            for phenomenon, pool in found.items():  # at most one item per line and phenomenon
                if per_line[phenomenon]:
                    choice = rngs[phenomenon].integers(len(per_line[phenomenon]))
                    pool.append(per_line[phenomenon][int(choice)])
        items = []
        for phenomenon, pool in found.items():
            rng = rngs[phenomenon]
            if phenomenon in AGREEMENT:
                items += self._balanced(pool, rng)
            else:
                items += [pool[i] for i in rng.permutation(len(pool))[: self.n_items]]
        return items, {p: len(v) for p, v in found.items()}, text

    def _balanced(self, pool: list[MinimalPair], rng: np.random.Generator) -> list[MinimalPair]:
        """As many items with the singular as with the plural form as the grammatical one,
        per lexical pair: couples (singular, plural) drawn at random, ``items // 2`` of them."""
        by_key: dict[str, tuple[list, list]] = defaultdict(lambda: ([], []))
        for pair in pool:
            by_key[pair.key][pair.plural].append(pair)
        couples = []
        for key in sorted(by_key):
            singular, plural = by_key[key]
            k = min(len(singular), len(plural))
            pick_s, pick_p = rng.permutation(len(singular))[:k], rng.permutation(len(plural))[:k]
            couples += [(singular[a], plural[b]) for a, b in zip(pick_s, pick_p, strict=True)]
        order = rng.permutation(len(couples))[: self.n_items // 2]
        return [item for i in order for item in couples[i]]

    def evaluate(self, subject: Subject, *, seed: int = 0) -> dict[str, Any]:
        model, data = subject.model, subject.data
        items, found, text = self._build(data, seed, data_dir=subject.data_dir)
        if not items:
            raise ValueError(f"minimal-pairs: no minimal pairs found in {data.name}'s test split")
        encode = data.vocab.encode
        scores = sentence_logprobs(
            model, [encode(s) for it in items for s in (it.good, it.bad)],
            data.vocab.boundary_id).reshape(len(items), 2)
        credit = credits(scores[:, 0], scores[:, 1])
        by_phenomenon = []
        for phenomenon in self.phenomena:
            mask = np.array([it.phenomenon == phenomenon for it in items], dtype=bool)
            n, hits = int(mask.sum()), float(credit[mask].sum())
            by_phenomenon.append({
                "phenomenon": phenomenon, "items": n, "candidates": found[phenomenon],
                "accuracy": hits / n if n else None,
                "accuracy_ci95": wilson_interval(hits, n) if n else None})
        shown = []  # the first items of each phenomenon, as text
        for phenomenon in self.phenomena:
            some = [it for it in items if it.phenomenon == phenomenon][: self.n_examples]
            shown += [{"phenomenon": phenomenon, "good": " ".join(it.good),
                       "bad": " ".join(it.bad)} for it in some]
        hits = float(credit.sum())
        return {
            "accuracy": hits / len(items), "accuracy_ci95": wilson_interval(hits, len(items)),
            "items": len(items), "seed": seed, "by_phenomenon": by_phenomenon,
            "examples": shown,
            "generator": {"tagger": f"nltk averaged perceptron, {TAGGER_PASSES} passes, seed "
                                    f"{TAGGER_SEED}",
                          "tagged_corpus": TAGGED_CORPUS, "tagged_tokens": text.tagged_tokens,
                          "verb_pairs": len(text.lexicon), "items_per_phenomenon": self.n_items,
                          "tie_nats": TIE_NATS},
            "paired": paired_block(items_fingerprint([it.identity() for it in items]),
                                   accuracy=paired_entry("mean", credit)),
        }


def credits(good: np.ndarray, bad: np.ndarray) -> np.ndarray:
    """Per-item credit: 1 where ln p(good) > ln p(bad), 1/2 on a tie (within
    :data:`TIE_NATS`), else 0."""
    good, bad = np.asarray(good, dtype=np.float64), np.asarray(bad, dtype=np.float64)
    return np.where(np.abs(good - bad) <= TIE_NATS, 0.5, (good > bad).astype(np.float64))

