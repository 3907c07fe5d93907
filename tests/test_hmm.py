"""HMM family: known answers, agreement with hmmlearn, and the synthetic source's oracle.

Seeds are fixed in each test (numpy ``default_rng``); the contract checks run from
``tests/test_contract.py`` through the registry entries ``hmm`` and ``hmm-hmmlearn``.
"""

import math
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from hmmlearn.hmm import CategoricalHMM

import lmladder.baselines.hmm
from lmladder.api import Budget, ContextPolicy, LanguageModel, Vocab
from lmladder.baselines.hmm import HMM, split_states
from lmladder.baselines.hmm_core import initial_parameters, pack_stream, sentence_bounds, unigram
from lmladder.baselines.hmm_em import make_chunks
from lmladder.baselines.hmm_hmmlearn import HmmlearnHMM
from lmladder.baselines.hmm_kernel import Counts, expected_counts
from lmladder.baselines.hmm_torch import TorchArrays, chunk_loglik
from lmladder.synthetic import SyntheticSource, synthetic_dataset
from tests.contract import tiny_dataset

# The ice-cream HMM of Jurafsky & Martin (Speech and Language Processing, 3rd ed., appendix A):
# states HOT, COLD; observations "1", "2", "3" ice creams.  "<eos>" is never emitted.
ICE_VOCAB = Vocab(["<eos>", "1", "2", "3"], boundary="<eos>")
ICE_PI = [0.8, 0.2]
ICE_A = [[0.6, 0.4], [0.5, 0.5]]
ICE_B = [[0.0, 0.2, 0.4, 0.4], [0.0, 0.5, 0.4, 0.1]]



@pytest.fixture(scope="module")
def tiny():
    return tiny_dataset()


def random_model(cls, data, states=7, seed=0):
    rng = np.random.default_rng(seed)
    params = initial_parameters(states, unigram(data.train.ids, len(data.vocab)), rng, 1.0)
    return cls(states=states).set_parameters(data.vocab, *params), params


def reference_hmm(params, vocab_size, **kw):
    """An hmmlearn CategoricalHMM holding ``params`` and doing no initialisation of its own."""
    hmm = CategoricalHMM(
        n_components=len(params[0]), n_features=vocab_size, init_params="", params="ste", **kw
    )
    hmm.startprob_, hmm.transmat_, hmm.emissionprob_ = (p.copy() for p in params)
    return hmm


# -- known answers ---------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [HMM, HmmlearnHMM])
def test_textbook_forward_probabilities(cls):
    """Observations 3 1 3, forward trellis by hand:
    alpha1 = (.8*.4, .2*.1) = (.32, .02)                         p(3)       = .34
    alpha2 = ((.32*.6 + .02*.5)*.2, (.32*.4 + .02*.5)*.5)
           = (.0404, .069)                                       p(3 1)     = .1094
    alpha3 = ((.0404*.6 + .069*.5)*.4, (.0404*.4 + .069*.5)*.1)
           = (.023496, .005066)                                  p(3 1 3)   = .028562
    """
    model = cls(states=2).set_parameters(ICE_VOCAB, ICE_PI, ICE_A, ICE_B)
    ids = ICE_VOCAB.encode(["3", "1", "3"])
    expected = np.log([0.34, 0.1094 / 0.34, 0.028562 / 0.1094])
    np.testing.assert_allclose(model.token_logprobs(ids), expected, rtol=1e-12)
    np.testing.assert_allclose(
        LanguageModel.token_logprobs(model, ids), expected, rtol=1e-12
    )
    # Viterbi: delta3(HOT) = max(.0384*.6, .064*.5)*.4 = .0128 via COLD at t=2.
    path, logp = model.viterbi(ids)
    assert path.tolist() == [0, 1, 0]
    assert logp == pytest.approx(math.log(0.0128), rel=1e-12)


def test_boundary_resets_to_startprob():
    """After a boundary the next token is predicted from pi, whatever came before."""
    model = HMM(states=2).set_parameters(ICE_VOCAB, ICE_PI, ICE_A, ICE_B)
    first, _ = model.step(model.init_state(1), np.array([0]))
    state = model.init_state(2)
    for tok in ([1, 3], [3, 3], [0, 2]):
        _, state = model.step(state, np.array(tok))
    again, _ = model.step(state, np.array([0, 0]))
    np.testing.assert_allclose(again, np.vstack([first, first]))


def test_packing_layout():
    # stream: a b | c | d e f |  (| is the boundary, id 0) -> sentences of 3, 2, 4 tokens
    ids = np.array([1, 2, 0, 3, 0, 4, 5, 6, 0])
    starts, lengths = sentence_bounds(ids, 0)
    assert starts.tolist() == [0, 3, 5] and lengths.tolist() == [3, 2, 4]
    p = pack_stream(ids, 0)
    assert p.batch_sizes.tolist() == [3, 3, 2, 1]  # longest first: d e f |, a b |, c |
    assert ids[p.source].tolist() == [4, 1, 3, 5, 2, 0, 6, 0, 0]
    assert sorted(p.source.tolist()) == list(range(9))


# -- agreement with hmmlearn --------------------------------------------------------------------


@pytest.mark.parametrize("cls", [HMM, HmmlearnHMM])
@pytest.mark.parametrize("implementation", ["log", "scaling"])
def test_loglikelihood_equals_hmmlearn_score(tiny, cls, implementation):
    model, params = random_model(cls, tiny)
    ids = tiny.test.ids
    _, lengths = sentence_bounds(ids, tiny.vocab.boundary_id)
    theirs = reference_hmm(params, len(tiny.vocab), implementation=implementation).score(
        ids[:, None], lengths
    )
    for policy in (ContextPolicy(), ContextPolicy(reset_at_boundary=True)):
        ours = model.token_logprobs(ids, context=policy).sum()
        assert ours == pytest.approx(theirs, rel=1e-6)


def test_viterbi_equals_hmmlearn_decode(tiny):
    model, params = random_model(HMM, tiny)
    starts, lengths = sentence_bounds(tiny.test.ids, tiny.vocab.boundary_id)
    hmm = reference_hmm(params, len(tiny.vocab))
    for s, n in zip(starts[:5], lengths[:5], strict=True):
        sentence = tiny.test.ids[s : s + n]
        theirs_logp, theirs = hmm.decode(sentence[:, None], algorithm="viterbi")
        path, logp = model.viterbi(sentence)
        assert path.tolist() == theirs.tolist()
        assert logp == pytest.approx(theirs_logp, rel=1e-9)


@pytest.mark.parametrize("prior", [0.0, 0.5])
def test_one_em_iteration_equals_hmmlearn(tiny, prior):
    train, v = tiny.train.ids, len(tiny.vocab)
    _, lengths = sentence_bounds(train, tiny.vocab.boundary_id)
    cfg = dict(states=7, seed=3, emission_prior=prior, transition_prior=prior, start_prior=prior)
    ours = HMM(**cfg, dtype="float64", batch_tokens=700)  # several chunks
    ours.fit(train, tiny.vocab, budget=Budget(steps=1))
    params = initial_parameters(7, unigram(train, v), np.random.default_rng(3), 1.0)
    hmm = reference_hmm(
        params, v, n_iter=1, tol=0.0, startprob_prior=1 + prior, transmat_prior=1 + prior,
        emissionprob_prior=1 + prior,
    ).fit(train[:, None], lengths)
    for mine, theirs in (
        (ours.startprob_, hmm.startprob_),
        (ours.transmat_, hmm.transmat_),
        (ours.emissionprob_, hmm.emissionprob_),
    ):
        np.testing.assert_allclose(mine, theirs, rtol=1e-6, atol=1e-12)


def test_wrapper_and_our_em_train_the_same_model(tiny):
    cfg = dict(states=6, seed=1, max_iterations=4, tol=0.0)
    ours = HMM(**cfg, dtype="float64")
    ours.fit(tiny.train.ids, tiny.vocab)
    theirs = HmmlearnHMM(**cfg)
    report = theirs.fit(tiny.train.ids, tiny.vocab)
    assert report.steps == 4
    np.testing.assert_allclose(ours.emissionprob_, theirs.emissionprob_, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(ours.transmat_, theirs.transmat_, rtol=1e-6, atol=1e-12)


# -- the torch training paths ----------------------------------------------------------------


@pytest.mark.parametrize("states, vocab_size", [(7, 5), (33, 70_000)])  # 1 and 7 blocks of rows
def test_initial_emissions_in_blocks_equal_one_draw(states, vocab_size):
    uni = np.random.default_rng(0).random(vocab_size)
    uni /= uni.sum()
    pi, a, b = initial_parameters(states, uni, np.random.default_rng(5), 1.0)
    rng = np.random.default_rng(5)  # the whole start from one draw per array, as a reference
    draws = [np.exp(rng.standard_normal(n)) for n in (states, states * states)]
    emit = np.exp(rng.standard_normal((states, vocab_size))) * uni
    np.testing.assert_array_equal(pi, draws[0] / draws[0].sum())
    np.testing.assert_array_equal(b, emit / emit.sum(axis=1, keepdims=True))
    _, _, b32 = initial_parameters(states, uni, np.random.default_rng(5), 1.0, np.float32)
    assert b32.dtype == np.float32
    np.testing.assert_array_equal(b32, b.astype(np.float32))


def test_trained_emissions_are_widened_on_first_use(tiny):
    model = HMM(states=6, seed=1, max_iterations=2, tol=0.0, threads=1)
    model.fit(tiny.train.ids, tiny.vocab)
    assert model._widen is not None  # the fit ends holding B only in float32
    b = model.emissionprob_
    assert model._widen is None and b.dtype == np.float64
    np.testing.assert_allclose(b.sum(axis=1), 1.0, rtol=0, atol=1e-14)
    again = HMM(states=6).set_parameters(tiny.vocab, model.startprob_, model.transmat_, b)
    np.testing.assert_array_equal(model.token_logprobs(tiny.test.ids),
                                  again.token_logprobs(tiny.test.ids))



def test_forward_of_estep_and_autograd_path_agree(tiny):
    model, params = random_model(HMM, tiny)
    chunks = make_chunks(tiny.valid.ids, tiny.vocab.boundary_id, 10**9, TorchArrays("cpu"))
    pi, a, b = (torch.as_tensor(p) for p in params)
    counts = Counts(torch.zeros(7, dtype=torch.float64), torch.zeros(7, 7, dtype=torch.float64),
                    torch.zeros(b.shape[::-1], dtype=torch.float64))
    ll = expected_counts(pi, a, b.T.contiguous(), chunks[0].words, chunks[0].batch_sizes, counts)
    assert ll == pytest.approx(model.token_logprobs(tiny.valid.ids).sum(), rel=1e-12)
    assert float(chunk_loglik(chunks[0], pi, a, b)) == pytest.approx(ll, rel=1e-12)
    # Expected counts: one start per sentence, one emission per token, one transition per pair.
    sentences = len(sentence_bounds(tiny.valid.ids, tiny.vocab.boundary_id)[0])
    assert float(counts.start.sum()) == pytest.approx(sentences)
    assert float(counts.emit.sum()) == pytest.approx(len(tiny.valid.ids))
    assert float(counts.trans.sum()) == pytest.approx(len(tiny.valid.ids) - sentences)


@pytest.mark.parametrize("trainer", ["em", "adam"])
def test_training_improves_validation(tiny, trainer):
    model = HMM(states=8, trainer=trainer, seed=0, lr=0.1, batch_tokens=200)
    report = model.fit(tiny.train.ids, tiny.vocab, budget=Budget(steps=40),
                       valid=tiny.valid.ids)
    assert report.steps <= 40 and report.train_tokens > 0
    nll = [h["valid_nll"] for h in report.history]
    start, _ = random_model(HMM, tiny, states=8, seed=0)  # fit's starting point (same seed)
    assert min(nll) < -np.mean(start.token_logprobs(tiny.valid.ids)) - 0.1
    kept = -np.mean(model.token_logprobs(tiny.valid.ids))
    assert kept == pytest.approx(min(nll), abs=1e-9)  # the best-validation parameters are kept


def test_split_states_keeps_the_likelihood(tiny, monkeypatch):
    model, params = random_model(HMM, tiny, states=5)
    monkeypatch.setattr(lmladder.baselines.hmm, "SPLIT_NOISE", 0.0)
    split = split_states(params, np.random.default_rng(0))
    assert split[1].shape == (10, 10) and split[2].shape == (10, len(tiny.vocab))
    bigger = HMM(states=10).set_parameters(tiny.vocab, *split)
    np.testing.assert_allclose(
        bigger.token_logprobs(tiny.test.ids), model.token_logprobs(tiny.test.ids), rtol=1e-12
    )


def test_growing_by_splits(tiny):
    model = HMM(states=8, grow_from=2, stage_iterations=3, tol=0.0)
    report = model.fit(tiny.train.ids, tiny.vocab, budget=Budget(steps=12))
    assert report.notes["stages"] == [2, 4, 8]
    assert [h["states"] for h in report.history] == [2] * 3 + [4] * 3 + [8] * 6
    assert model.transmat_.shape == (8, 8)
    with pytest.raises(ValueError, match="grow_from"):
        HMM(states=12, grow_from=5)


def test_budget_counts_em_iterations(tiny):
    report = HMM(states=4, tol=0.0).fit(tiny.train.ids, tiny.vocab, budget=Budget(steps=3))
    assert report.steps == 3 and report.train_tokens == 3 * len(tiny.train.ids)


# -- quality: the synthetic source's oracle -------------------------------------------------------


def test_synthetic_oracle_gap():
    """A 12-state HMM trained on 40k tokens of an 8-state source (+ its end state) gets within 5%
    of the source's test perplexity, and not below it by more than 3 standard errors."""
    src = SyntheticSource(seed=3, states=8, vocab=120, words_per_state=15, successors=2,
                          mean_length=8.0, tokens=(40_000, 4_000, 20_000))
    data = synthetic_dataset(src)
    model = HMM(states=12, seed=0, max_iterations=200, tol=1e-5)
    model.fit(data.train.ids, data.vocab, valid=data.valid.ids)
    diff = model.token_logprobs(data.test.ids) - data.test.oracle_logprobs
    log_ratio = -diff.mean()  # ln(model ppl / oracle ppl)
    assert log_ratio < math.log(1.05)
    assert log_ratio > -3 * diff.std() / math.sqrt(len(diff))


# -- inspection and packaging ------------------------------------------------------------------


def test_inspect_tables(tiny):
    model = HMM(states=8, seed=0)
    model.fit(tiny.train.ids, tiny.vocab, budget=Budget(steps=20))
    top, path = model.inspect(states=5, words=3)
    assert top["columns"][0] == "state" and len(top["rows"]) == 5
    shares = [row[1] for row in top["rows"]]
    assert shares == sorted(shares, reverse=True) and 0 < sum(shares) <= 1
    assert all(len(row[2].split(" (")) == 4 for row in top["rows"])  # 3 words with probabilities
    assert model.state_occupancy().sum() == pytest.approx(1.0)
    assert [row[1] for row in path["rows"]] == model.vocab_.decode(model.example_)
    states, _ = model.viterbi(model.example_)
    assert [row[2] for row in path["rows"]] == states.tolist()


def test_hmmlearn_backend_imports_without_torch():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import lmladder.baselines.hmm_hmmlearn\n"
        "from lmladder import registry; registry.model_class('hmm-hmmlearn')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# -- stopping: convergence, not a hidden cap; the time budget covers validation -------------------


@pytest.mark.parametrize("cls", [HMM, HmmlearnHMM])
def test_default_config_runs_to_convergence_past_50_iterations(cls, tiny):
    """No budget, no max_iterations: EM runs until the tolerance says it converged (79
    iterations here), not until a hidden cap of 50 (torch) or 20 (hmmlearn)."""
    assert cls.Config().max_iterations is None
    model = cls(states=3, tol=2e-5, **({"threads": 1} if cls is HMM else {}))
    report = model.fit(tiny.train.ids[:2000], tiny.vocab)
    assert report.steps > 50 and report.notes["stopped_by"] == "converged"
    assert len(report.history) == report.steps
    capped = cls(states=3, tol=2e-5, max_iterations=7).fit(tiny.train.ids[:2000], tiny.vocab)
    assert capped.steps == 7 and capped.notes["stopped_by"] == "max_iterations"


@pytest.mark.parametrize("cls", [HMM, HmmlearnHMM])
def test_zero_tolerance_without_a_bound_is_refused(cls, tiny):
    with pytest.raises(ValueError, match="never stop"):
        cls(states=2, tol=0.0).fit(tiny.train.ids, tiny.vocab)


@pytest.mark.parametrize("cls", [HMM, HmmlearnHMM])
def test_time_budget_covers_validation(cls, tiny):
    valid = np.tile(tiny.valid.ids, 60)
    seconds = 1.5
    model = cls(states=8, tol=0.0, **({"threads": 1, "patience": 10**6} if cls is HMM else {}))
    start = time.perf_counter()
    report = model.fit(tiny.train.ids, tiny.vocab, budget=Budget(seconds=seconds), valid=valid)
    wall = time.perf_counter() - start
    assert wall <= seconds + 0.35, (wall, report.valid_seconds, report.notes)
    assert 0 < report.valid_seconds < report.seconds <= wall
    assert report.notes["stopped_by"] == "budget" and report.notes["valid_nll"] is not None


def test_one_convergence_monitor_rules_both_backends():
    """EM stops on a small gain per token; Adam after ``patience`` passes without beating its
    best by ``tol`` per token; both backends use this one monitor."""
    from lmladder.baselines import hmm, hmm_core, hmm_hmmlearn

    em = hmm_core.ConvergenceMonitor(tol=0.01, tokens=100)
    assert not em.report(-500.0)  # one pass: nothing to compare
    assert not em.report(-400.0)  # +1 nat per token
    assert em.report(-399.5)  # +0.005 per token < 0.01
    assert em.history == [-500.0, -400.0, -399.5]
    adam = hmm_core.ConvergenceMonitor(tol=0.01, tokens=100, monotone=False, patience=2)
    assert [adam.report(x) for x in (-500.0, -400.0, -399.5, -450.0)] == [
        False, False, False, True]
    for module in (hmm, hmm_hmmlearn):
        assert module.ConvergenceMonitor is hmm_core.ConvergenceMonitor
