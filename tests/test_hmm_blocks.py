"""Blocked emissions (Chiu & Rush 2020): exactly the dense HMM whose B is zero outside the blocks.

Seeds are fixed per test (numpy ``default_rng``).
"""

import numpy as np
import pytest
import torch

from lmladder.api import Budget, LanguageModel
from lmladder.baselines import hmm_kernel
from lmladder.baselines.hmm import HMM, HMMConfig, block_emissions, groups_of, word_groups
from lmladder.baselines.hmm_em import EM
from tests.contract import tiny_dataset
from tests.test_hmm_kernel import packed_words, random_hmm, zero_counts

K, M, V = 6, 3, 8
S = K // M


@pytest.fixture(scope="module")
def tiny():
    return tiny_dataset()


def blocked_hmm(seed: int):
    """A random dense HMM with B zero outside the blocks, and its word clusters."""
    pi, a, b = random_hmm(seed, K, V)
    groups = np.arange(V) % M
    return pi, a, block_emissions(b, groups), groups


def compact(b, groups):
    """B's nonzero entries: (V, S), word w's probabilities from its group's S states."""
    return b.reshape(M, S, V)[groups, :, np.arange(V)]


def test_word_groups_deal_frequent_words_round_robin():
    train = np.array([3] * 5 + [1] * 4 + [4] * 3 + [0] * 2 + [2])  # frequency order 3 1 4 0 2
    groups = word_groups(train, 6, 2)
    assert groups.tolist() == [1, 1, 0, 0, 0, 1]  # 3->0, 1->1, 4->0, 0->1, 2->0, 5 (unseen)->1
    assert sorted(np.bincount(groups).tolist()) == [3, 3]


@pytest.mark.parametrize("seed", [0, 1])
def test_blocked_forward_equals_the_dense_hmm(seed):
    pi, a, b, groups = blocked_hmm(seed)
    words, batch_sizes = packed_words([np.random.default_rng(seed).integers(0, V, n)
                                       for n in (5, 3, 4, 1)])
    dense = np.concatenate([s.scale for s in hmm_kernel.forward(pi, a, b.T, words, batch_sizes)])
    blocked = hmm_kernel.forward(pi.reshape(M, S), hmm_kernel.transition_blocks(a, M),
                                 compact(b, groups), words, batch_sizes, groups)
    np.testing.assert_allclose(np.concatenate([s.scale for s in blocked]), dense, rtol=1e-12)
    as_tensors = [torch.as_tensor(x) for x in (pi.reshape(M, S), a, compact(b, groups), words,
                                                groups)]
    on_torch = hmm_kernel.forward(as_tensors[0], hmm_kernel.transition_blocks(as_tensors[1], M),
                                  *as_tensors[2:4], batch_sizes, as_tensors[4])
    np.testing.assert_allclose(torch.cat([s.scale for s in on_torch]).numpy(), dense, rtol=1e-12)


def test_blocked_expected_counts_equal_the_dense_ones():
    pi, a, b, groups = blocked_hmm(2)
    words, batch_sizes = packed_words([np.random.default_rng(2).integers(0, V, n)
                                       for n in (4, 4, 2, 3)])
    pi_t, a_t, b_t, words_t, groups_t = (torch.as_tensor(x) for x in (pi, a, b, words, groups))
    dense = zero_counts(K, V)
    ll = hmm_kernel.expected_counts(pi_t, a_t, b_t.T.contiguous(), words_t, batch_sizes, dense)
    blocked = hmm_kernel.Counts(torch.zeros(M, S, dtype=torch.float64),
                                torch.zeros(M, M, S, S, dtype=torch.float64),
                                torch.zeros(V, S, dtype=torch.float64))
    blocked_ll = hmm_kernel.expected_counts(
        pi_t.view(M, S), hmm_kernel.transition_blocks(a_t, M),
        torch.as_tensor(compact(b, groups)), words_t, batch_sizes, blocked, groups=groups_t)
    assert blocked_ll == pytest.approx(ll, rel=1e-12)
    np.testing.assert_allclose(blocked.start.reshape(K), dense.start, rtol=1e-10)
    np.testing.assert_allclose(blocked.trans.swapaxes(1, 2).reshape(K, K), dense.trans,
                               rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(blocked.emit.numpy(), compact(dense.emit.T.numpy(), groups),
                               rtol=1e-10)


def test_blocked_em_equals_dense_em_without_priors():
    """Without pseudo-counts dense EM keeps B's zeros, so it trains the blocked model too."""
    rng = np.random.default_rng(4)
    train = rng.integers(1, V, size=300)
    train[rng.random(300) < 0.2] = 0
    pi, a, b, groups = blocked_hmm(4)
    cfg = HMMConfig(states=K, emission_prior=0.0, batch_tokens=50)
    runs = [EM(cfg, train, 0, (pi, a, b), "float64", groups=g) for g in (None, groups)]
    for run in runs:
        run.one_pass(None, None, 0, 0)
    for dense, blocked in zip(*(run.parameters() for run in runs), strict=True):
        np.testing.assert_allclose(blocked, dense, rtol=1e-10, atol=1e-15)


def test_blocked_model_scores_sum_to_one_and_survive_save_and_load(tiny, tmp_path):
    model = HMM(states=8, emission_blocks=4, seed=0, max_iterations=3, threads=1)
    model.fit(tiny.train.ids, tiny.vocab, budget=Budget(steps=3))
    groups = word_groups(tiny.train.ids, len(tiny.vocab), 4)
    assert (groups_of(model.emissionprob_, 4) == groups).all()
    outside = model.emissionprob_.reshape(4, 2, -1) * (groups != np.arange(4)[:, None])[:, None]
    assert not outside.any()  # every state emits only its cluster's words
    ids = tiny.test.ids
    fast = model.token_logprobs(ids)  # the blocked kernel on the device
    np.testing.assert_allclose(fast, LanguageModel.token_logprobs(model, ids), rtol=1e-10)
    logp, _ = model.step(model.init_state(3), ids[:3])
    np.testing.assert_allclose(np.exp(logp).sum(axis=1), 1.0, rtol=1e-12)
    v = len(tiny.vocab)
    assert model.num_parameters() == 7 + 8 * 7 + 2 * (v - 4)  # each state: its cluster's words
    model.save(tmp_path / "ckpt")
    np.testing.assert_array_equal(HMM.load(tmp_path / "ckpt").token_logprobs(ids), fast)


@pytest.mark.parametrize("config, match", [
    ({"states": 8, "emission_blocks": 3}, "emission_blocks"),
    ({"states": 8, "emission_blocks": 2, "trainer": "adam"}, "trainer='em'"),
    ({"states": 8, "emission_blocks": 2, "grow_from": 2}, "grow_from"),
])
def test_blocked_configs_that_cannot_work_are_refused(config, match):
    with pytest.raises(ValueError, match=match):
        HMM(**config)
