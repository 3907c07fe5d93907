"""Generation tasks' baselines and statistics: the copy baseline, ``<unk>`` as one token, the
per-sentence statistics a paired test reads, and Multi30k's three test sets."""

from __future__ import annotations

import numpy as np
import pytest
import sacrebleu

from lmladder import registry
from lmladder.significance import item_statistics, paired_p_value, scores_of
from lmladder.synthetic import SyntheticSource, synthetic_dataset
from lmladder.tasks import Subject
from lmladder.tasks.continuation import UNK_MARK, Continuation, scorable, text_scores
from lmladder.tasks.translation import TEST_SETS, Parallel, Translation, translate_and_score
from tests.test_tasks import PAIRS, EchoLM
from tests.toy_models import UniformLM


@pytest.fixture(scope="module")
def words():
    return synthetic_dataset(SyntheticSource(tokens=(20_000, 2_000, 4_000)))


def test_unk_is_one_token_that_matches_only_unk():
    assert scorable(["a <unk> b"]) == [f"a {UNK_MARK} b"]
    # three tokens "< unk >" would match the reference's "<" and ">" of another <unk>; one does not
    hyp, ref = ["the <unk> of the"], ["the house of <unk>"]
    mine = text_scores(hyp, ref)["bleu"]
    by_hand = sacrebleu.metrics.BLEU(force=True).corpus_score(
        [f"the {UNK_MARK} of the"], [[f"the house of {UNK_MARK}"]]).score
    assert mine == pytest.approx(by_hand)
    naive = sacrebleu.metrics.BLEU(force=True).corpus_score(hyp, [ref]).score
    assert naive > mine  # the old scoring rewarded an <unk> for the brackets of another one
    assert text_scores(["<unk>"], ["<unk>"])["bleu"] == text_scores(["x"], ["x"])["bleu"]


def test_statistics_give_the_corpus_score_and_the_paired_entries():
    hyps = ["a dog runs fast", "two men sit on a bench", "the girl reads"]
    refs = ["a dog runs", "two men sit on the bench", "a girl reads a book"]
    scores = text_scores(hyps, refs, counts=np.ones((5, 3), dtype=int))
    for kind in ("bleu", "chrf"):
        stats = item_statistics(kind, hyps, refs)
        assert scores_of(kind, stats.sum(0), 3)[0] == pytest.approx(scores[kind])
        assert scores["paired"][kind]["values"] == stats.tolist()
        assert scores[f"{kind}_ci95"] == pytest.approx((scores[kind], scores[kind]))


def test_continuation_copy_baseline_and_paired_block(words):
    kn = registry.build("kn3")
    kn.fit(words.train.ids, words.vocab)
    result = Continuation(prompts=20, prompt_tokens=10, new_tokens=5).evaluate(
        Subject(kn, words), seed=1)
    assert result["copy_output"] == "the prompt's last 5 tokens"
    for name in ("copy_bleu", "copy_chrf", "constant_bleu", "constant_chrf"):
        low, high = result[f"{name}_ci95"]
        assert low <= result[name] <= high
    paired = result["paired"]
    assert set(paired["metrics"]) == {f"{k}_{m}" for k in ("greedy", "sampled", "constant", "copy")
                                      for m in ("bleu", "chrf")}
    for name, entry in paired["metrics"].items():
        assert len(entry["values"]) == 20
        assert scores_of(entry["kind"], np.asarray(entry["values"]).sum(0),
                         20)[0] == pytest.approx(result[name])
    # a model is identical to itself (p = 1); the paired block names the same prompts on a rerun
    greedy = paired["metrics"]["greedy_chrf"]
    assert paired_p_value(greedy, greedy) == 1.0
    again = Continuation(prompts=20, prompt_tokens=10, new_tokens=5).evaluate(
        Subject(kn, words), seed=1)
    assert again["paired"]["items"] == paired["items"]
    other = Continuation(prompts=20, prompt_tokens=10, new_tokens=5).evaluate(
        Subject(kn, words), seed=2)
    assert other["paired"]["items"] != paired["items"]


def test_copying_the_source_scores_what_the_sources_share_with_the_references(words):
    shared = [("Peter runs in New York City .", "Peter rennt in New York City ."),
              ("A dog .", "Ein Hund .")]
    more = {"test_2017_flickr": shared[:1]}
    parallel = Parallel(train=PAIRS * 2, valid=PAIRS, test=shared, more_tests=more)
    uniform = UniformLM()
    uniform.fit(words.train.ids, words.vocab)
    result = translate_and_score(Subject(uniform, words), parallel, seed=0)
    direct = sacrebleu.metrics.BLEU(force=True).corpus_score(
        [s for s, _ in shared], [[t for _, t in shared]]).score
    assert result["copy_bleu"] == pytest.approx(direct) and result["copy_bleu"] > 0
    assert result["copy_output"] == "the source sentence itself"
    assert result["bleu_test_2017_flickr"] == result["test_sets"]["test_2017_flickr"]["bleu"]
    assert result["test_sets"]["test_2017_flickr"]["sentences"] == 1
    assert set(result["paired"]["metrics"]) == {f"{p}{m}" for p in ("", "constant_", "copy_")
                                                for m in ("bleu", "chrf")}


def test_translation_scores_every_test_set_with_an_oracle_at_100(words):
    more = {name: PAIRS[::-1] for name in TEST_SETS[1:]}
    parallel = Parallel(train=PAIRS * 2, valid=PAIRS, test=PAIRS, more_tests=more)
    echo = EchoLM()
    echo.fit(words.train.ids, words.vocab)
    result = translate_and_score(Subject(echo, words), parallel, seed=0)
    for name in TEST_SETS[1:]:
        assert result[f"bleu_{name}"] == pytest.approx(100.0)
        assert result[f"bleu_lc_{name}"] == pytest.approx(100.0)
    assert {s.name for s in Translation.metrics} >= {f"bleu_{n}" for n in TEST_SETS[1:]}


def test_multi30k_loads_the_three_test_sets(data_dir):
    from lmladder.tasks.translation import load_multi30k

    data = load_multi30k(data_dir)
    assert {k: len(v) for k, v in data.more_tests.items()} == {
        "test_2017_flickr": 1000, "test_2017_mscoco": 461}


@pytest.mark.parametrize("bad", [0, -3, 2.5, "10"])
def test_translation_refuses_a_bad_sentence_count(bad):
    with pytest.raises(ValueError, match="sentences must be a positive integer"):
        Translation(sentences=bad)
