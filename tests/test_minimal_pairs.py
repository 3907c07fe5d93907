"""The minimal-pairs task: pairs differ minimally, are balanced so that a unigram model scores
exactly chance, a model that knows the grammatical sentences scores well above it, items are
deterministic, and missing data or a character-level dataset give clear errors.

Most tests run on a tiny synthetic tagged grammar (the tagger trains on it in well under a
second); the PTB tests run when the real corpora are present (tests/conftest.py) and train the
tagger for one pass over conll2000 instead of the task's default."""

from __future__ import annotations

import random

import numpy as np
import pytest

from lmladder import registry, tasks
from lmladder.api import Budget
from lmladder.data import DataNotFoundError, chars_dataset, load_dataset, words_dataset
from lmladder.tasks import Subject
from lmladder.tasks import minimal_pairs as mp
from lmladder.tasks.minimal_pairs import PHENOMENA, MinimalPairs
from tests.toy_models import UniformLM

AGREEMENT, ORDER = PHENOMENA[:3], PHENOMENA[3:]

NOUNS = [("company", "companies"), ("price", "prices"), ("bank", "banks"),
         ("market", "markets"), ("share", "shares"), ("analyst", "analysts")]
VERBS = [("is", "are", "VBZ", "VBP"), ("was", "were", "VBD", "VBD"),
         ("seems", "seem", "VBZ", "VBP")]
ADJECTIVES = ["big", "strong", "weak", "new", "small", "cheap"]


def _sentence(rng: random.Random) -> list[tuple[str, str]]:
    """One tagged sentence of a tiny English-like grammar that holds every phenomenon."""
    def noun_phrase(plural: bool) -> list[tuple[str, str]]:
        noun = rng.choice(NOUNS)[plural]
        det = rng.choice(["the", "these", "those"] if plural else ["the", "a", "this", "that"])
        adjective = [(rng.choice(ADJECTIVES), "JJ")] if rng.random() < 0.5 else []
        return [(det, "DT"), *adjective, (noun, "NNS" if plural else "NN")]

    def verb(plural: bool) -> list[tuple[str, str]]:
        singular_form, plural_form, tag_s, tag_p = rng.choice(VERBS)
        return [(plural_form, tag_p) if plural else (singular_form, tag_s),
                (rng.choice(ADJECTIVES), "JJ")]

    kind, plural = rng.randrange(3), rng.random() < 0.5
    if kind == 0:  # the big company is strong
        return noun_phrase(plural) + verb(plural)
    if kind == 1:  # the price of the shares is cheap (an attractor of either number)
        return (noun_phrase(plural) + [(rng.choice(["of", "in", "for"]), "IN")]
                + noun_phrase(rng.random() < 0.5) + verb(plural))
    return [("we", "PRP"), ("looked", "VBD"), ("at", "IN"), *noun_phrase(plural), ("today", "RB")]


def _sentences(n: int, seed: int) -> list[list[tuple[str, str]]]:
    rng = random.Random(seed)
    return [_sentence(rng) for _ in range(n)]


@pytest.fixture(scope="module")
def tagged():
    return _sentences(300, seed=1)


@pytest.fixture(scope="module")
def toy(tagged):
    """A word-level dataset of the same grammar, drawn with other seeds than ``tagged``."""
    lines = {split: [" ".join(w for w, _ in s) for s in _sentences(n, seed)]
             for split, n, seed in (("train", 600, 2), ("valid", 50, 3), ("test", 400, 4))}
    return words_dataset("toy", "synthetic minimal-pairs grammar", lines)


@pytest.fixture
def toy_corpus(tagged, monkeypatch):
    """The task's tagger trains on the synthetic tagged sentences instead of conll2000."""
    monkeypatch.setattr(mp, "tagged_corpus", lambda data_dir=None: tagged)
    return tagged


def fitted(name: str, ids: np.ndarray, data):
    model = UniformLM() if name == "uniform" else registry.build(name)
    model.fit(ids, data.vocab)
    return model


def check_minimal(items, lexicon_pairs: set[tuple[str, str]] | None = None) -> None:
    """Every pair has equal lengths and differs by one substituted word of a lexical pair
    (agreement) or by one swap of two adjacent words (order)."""
    for item in items:
        good, bad = item.good, item.bad
        assert len(good) == len(bad) and good != bad
        differ = [i for i, (a, b) in enumerate(zip(good, bad, strict=True)) if a != b]
        if item.phenomenon in AGREEMENT:
            (i,) = differ
            assert i == item.position
            singular, plural = item.key.split("/")
            assert {good[i], bad[i]} == {singular, plural}
            assert good[i] == (plural if item.plural else singular)
            if lexicon_pairs is not None and item.phenomenon != PHENOMENA[2]:
                assert (singular, plural) in lexicon_pairs
        else:
            i = item.position
            assert differ == [i, i + 1] and (bad[i], bad[i + 1]) == (good[i + 1], good[i])


def check_balanced(items) -> None:
    """Within each phenomenon and lexical pair, as many grammatical singulars as plurals."""
    for phenomenon in AGREEMENT:
        keys = {it.key for it in items if it.phenomenon == phenomenon}
        for key in keys:
            same = [it.plural for it in items if it.phenomenon == phenomenon and it.key == key]
            assert sum(same) * 2 == len(same), (phenomenon, key)


def by_phenomenon(result) -> dict[str, float]:
    return {row["phenomenon"]: row["accuracy"] for row in result["by_phenomenon"]}


# --------------------------------------------------------------------------------------------
# Synthetic grammar: always runs


def test_registry_lists_the_task_with_chance_one_half():
    klass = tasks.task_class("minimal-pairs")
    assert klass is MinimalPairs and klass.description
    (metric,) = klass.metrics
    assert metric.name == "accuracy" and metric.higher_is_better and metric.chance == 0.5


def test_pairs_differ_minimally_and_are_balanced(toy, toy_corpus):
    items = MinimalPairs(items=200).build_items(toy, seed=0)
    found = {it.phenomenon for it in items}
    assert found == set(PHENOMENA)  # the grammar holds every phenomenon
    lexicon = mp.tag_test_split(toy, toy_corpus).lexicon
    pairs = {(s, p) for s, (p, _, _) in lexicon.singular.items()}
    assert pairs == {(s, p) for s, p, _, _ in VERBS}
    check_minimal(items, pairs)
    check_balanced(items)
    test_lines = {" ".join(line) for line in mp.split_lines(toy)}
    assert all(" ".join(it.good) in test_lines for it in items)  # the good one is real text
    for it in items:
        if it.phenomenon == PHENOMENA[1]:  # the nearer noun has the other number
            assert it.good[it.position - 1] in {n[not it.plural] for n in NOUNS}
        if it.phenomenon == PHENOMENA[2] and it.key == "that/those":  # never sentence-first
            assert it.good[it.position - 1] in {"at", "of", "in", "for"}
    counts = {p: sum(it.phenomenon == p for it in items) for p in PHENOMENA}
    assert all(counts[p] % 2 == 0 for p in AGREEMENT) and max(counts.values()) <= 200


@pytest.mark.parametrize(("tagged_line", "expected"), [
    ("the/DT big/JJ company/NN is/VBZ strong/JJ",
     {(PHENOMENA[0], 3, "the big company are strong"),
      (PHENOMENA[4], 1, "the company big is strong")}),
    ("the/DT price/NN of/IN the/DT shares/NNS is/VBZ high/JJ",  # no local agreement here
     {(PHENOMENA[1], 5, "the price of the shares are high"),
      (PHENOMENA[3], 0, "price the of the shares is high"),
      (PHENOMENA[3], 3, "the price of shares the is high")}),
    ("office/NN space/NN and/CC housing/NN is/VBZ tight/JJ", set()),  # "... are" is fine
    ("analysts/NNS say/VBP those/DT firms/NNS rose/VBD", set()),  # "say that firms rose"
    ("we/PRP looked/VBD at/IN those/DT firms/NNS today/RB",
     {(PHENOMENA[2], 3, "we looked at that firms today")}),
    ("some/DT <unk>/NNS are/VBP big/JJ", set()),  # "some crime is big"
    ("the/DT available/JJ funds/NNS rose/VBD", set()),  # "the funds available rose"
    ("the/DT investors/NNS shares/NNS rose/VBD", set()),  # "investors the shares" (gave ...)
])
def test_the_rules_on_hand_tagged_lines(tagged_line, expected):
    words, tags = zip(*(token.rsplit("/", 1) for token in tagged_line.split()), strict=True)
    lexicon = mp.Lexicon({"is": ("are", "VBZ", "VBP")}, {"are": ("is", "VBZ", "VBP")})
    found = {(c.phenomenon, c.position, " ".join(c.bad))
             for c in mp.candidates(words, tags, 0, lexicon)}
    assert found == expected


def test_unigram_and_uniform_score_exactly_chance(toy, toy_corpus):
    task = MinimalPairs(items=200)
    for name in ("uniform", "unigram"):
        result = task.evaluate(Subject(fitted(name, toy.train.ids, toy), toy), seed=0)
        assert by_phenomenon(result) == {p: 0.5 for p in PHENOMENA}, name
        assert result["accuracy"] == 0.5
        low, high = result["accuracy_ci95"]
        assert low < 0.5 < high


def test_a_model_that_knows_the_good_sentences_scores_well_above_chance(toy, toy_corpus):
    task = MinimalPairs(items=200)
    bigram = fitted("laplace2", toy.test.ids, toy)  # fitted on the grammatical sentences
    result = task.evaluate(Subject(bigram, toy), seed=0)
    scores = by_phenomenon(result)
    assert result["accuracy"] > 0.8
    for phenomenon in (PHENOMENA[0], PHENOMENA[2], *ORDER):  # local: a bigram sees them
        assert scores[phenomenon] > 0.9, (phenomenon, scores)
    rows = {row["phenomenon"]: row for row in result["by_phenomenon"]}
    assert sum(row["items"] for row in rows.values()) == result["items"]
    paired = result["paired"]["metrics"]["accuracy"]
    assert paired["kind"] == "mean" and len(paired["values"]) == result["items"]
    assert np.mean(paired["values"]) == pytest.approx(result["accuracy"])
    assert {e["phenomenon"] for e in result["examples"]} == set(PHENOMENA)
    uniform = task.evaluate(Subject(fitted("uniform", toy.train.ids, toy), toy), seed=0)
    assert uniform["paired"]["items"] == result["paired"]["items"]  # same items, pairable


@pytest.mark.parametrize("name", ["ngram", "hmm", "rnn-tanh", "transformer"])
def test_every_family_runs_the_task_through_the_contract(name, toy, toy_corpus):
    """The task is left out of tests/test_tasks_contract.py, whose syllable corpus is not
    English; every model family runs it here, on the toy grammar."""
    model = registry.build(name, smoke=True)
    model.fit(toy.train.ids, toy.vocab, budget=Budget(steps=2))
    result = MinimalPairs(items=20).evaluate(Subject(model, toy), seed=0)
    assert result["items"] > 0 and 0 <= result["accuracy"] <= 1
    assert all(0 <= row["accuracy"] <= 1 for row in result["by_phenomenon"])


def test_items_are_deterministic_for_a_seed_and_cached_on_disk(toy, toy_corpus, monkeypatch):
    mp._MEMORY.clear()  # tag in this test, so that its (temporary) disk cache is written
    task = MinimalPairs(items=40)
    a, b = task.build_items(toy, seed=5), task.build_items(toy, seed=5)
    assert a == b
    assert task.build_items(toy, seed=6) != a
    mp._MEMORY.clear()  # a new process: the tagged test split comes from the disk cache

    def no_training(*args, **kwargs):
        raise AssertionError("the tagger was trained again")

    monkeypatch.setattr(mp, "Tagger", no_training)
    assert task.build_items(toy, seed=5) == a


def test_one_phenomenon_alone_gets_the_same_items(toy, toy_corpus):
    everything = MinimalPairs(items=30).build_items(toy, seed=2)
    for phenomenon in PHENOMENA:
        alone = MinimalPairs(items=30, phenomena=[phenomenon]).build_items(toy, seed=2)
        assert alone == [it for it in everything if it.phenomenon == phenomenon]


def test_a_broken_cache_file_is_rebuilt(toy, toy_corpus):
    mp._MEMORY.clear()
    first = MinimalPairs(items=40).build_items(toy, seed=0)
    mp._MEMORY.clear()
    (cached,) = list((mp.data_roots()[-1].parent / "minimal-pairs").glob("*.json"))
    cached.write_text('{"tags": ["DT"]}')
    assert MinimalPairs(items=40).build_items(toy, seed=0) == first


def test_ties_count_one_half():
    credit = mp.credits(np.array([-10.0, -10.0, -12.0, -7.0]),
                        np.array([-11.0, -10.0 + 1e-12, -11.0, -7.0]))
    assert credit.tolist() == [1.0, 0.5, 0.0, 0.5]


def test_options_are_checked():
    for bad in ({"items": 1}, {"items": "100"}, {"items": True}, {"phenomena": ["agreement"]},
                {"phenomena": []}, {"examples": -1}):
        with pytest.raises(ValueError, match="minimal-pairs"):
            MinimalPairs(**bad)
    assert MinimalPairs(phenomena=PHENOMENA[3]).phenomena == (PHENOMENA[3],)


def test_a_character_level_dataset_is_refused(toy_corpus):
    chars = chars_dataset("chars", "tiny", {"train": "the cat sat\n" * 20,
                                            "valid": "the cat\n", "test": "a cat sat\n"})
    with pytest.raises(ValueError, match="word-level"):
        MinimalPairs().evaluate(Subject(UniformLM(), chars))


def test_a_dataset_that_is_not_english_is_refused_before_tagging(toy_corpus, monkeypatch):
    from lmladder.synthetic import SyntheticSource, synthetic_dataset

    def no_training(*args, **kwargs):
        raise AssertionError("the tagger was trained")

    monkeypatch.setattr(mp, "Tagger", no_training)
    syllables = synthetic_dataset(SyntheticSource(tokens=(2_000, 200, 500)))
    with pytest.raises(ValueError, match="needs English text"):
        MinimalPairs().build_items(syllables)


def test_missing_conll2000_says_what_to_put_where(toy, tmp_path, monkeypatch):
    import nltk

    monkeypatch.setattr(nltk.data, "path", [str(tmp_path / "nowhere")])
    monkeypatch.setattr(nltk, "download", lambda *a, **k: False)  # as offline
    with pytest.raises(DataNotFoundError) as err:
        MinimalPairs().build_items(toy, data_dir=tmp_path)
    message = str(err.value)
    assert "conll2000.zip" in message and "corpora/" in message
    assert str(tmp_path / "nltk_data") in message and "minimal-pairs" in message


# --------------------------------------------------------------------------------------------
# PTB: the real corpus, when present


@pytest.fixture(scope="module")
def ptb(data_dir, tmp_path_factory):
    """PTB and its items, from a tagger trained for one pass over conll2000 (the task's default
    is more): fast, and the invariants tested are the same."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(mp, "TAGGER_PASSES", 1)
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
        patch.delenv("LMLADDER_DATA", raising=False)
        data = load_dataset("ptb", data_dir)
        try:
            items = MinimalPairs().build_items(data, seed=0, data_dir=data_dir)
        except DataNotFoundError as err:
            pytest.skip(f"conll2000 not found: {err}")
        yield data, items


def test_ptb_pairs_are_minimal_balanced_and_plentiful(ptb):
    data, items = ptb
    check_minimal(items)
    check_balanced(items)
    counts = {p: sum(it.phenomenon == p for it in items) for p in PHENOMENA}
    assert counts[PHENOMENA[0]] > 600 and counts[PHENOMENA[3]] == 1000, counts
    assert counts[PHENOMENA[4]] > 500 and counts[PHENOMENA[2]] > 40 and counts[PHENOMENA[1]] > 20
    assert all(w in data.vocab.index for it in items for w in it.bad)
    unk = data.vocab.unk  # no item hinges on a word whose number or class is unknown
    for it in items:
        if it.phenomenon == PHENOMENA[0]:
            assert it.good[it.position - 1] != unk
        elif it.phenomenon == PHENOMENA[2]:
            assert it.good[it.position + 1] != unk
        elif it.phenomenon in ORDER:
            assert unk not in it.good[it.position: it.position + 2]


def test_ptb_unigram_scores_chance_and_a_model_of_the_good_sentences_does_not(ptb, data_dir):
    data, items = ptb
    task = MinimalPairs()

    def scores(name, ids):
        result = task.evaluate(Subject(fitted(name, ids, data), data, data_dir=str(data_dir)))
        assert result["items"] == len(items)  # the fixture's items (the tagging is cached)
        return by_phenomenon(result)

    assert scores("unigram", data.train.ids) == {p: 0.5 for p in PHENOMENA}
    assert scores("uniform", data.train.ids) == {p: 0.5 for p in PHENOMENA}
    knows = scores("laplace2", data.test.ids)  # fitted on the grammatical sentences
    assert all(knows[p] > 0.8 for p in (PHENOMENA[0], PHENOMENA[2], *ORDER)), knows
