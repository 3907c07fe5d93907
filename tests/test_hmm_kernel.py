"""The HMM kernel against brute force: every state path of tiny HMMs enumerated, on numpy arrays
and on torch tensors.

Seeds are fixed per test (numpy ``default_rng``).  The kernel's callers are checked against
hmmlearn and the step-by-step reference in ``tests/test_hmm.py`` and ``tests/test_contract.py``.
"""

import itertools

import numpy as np
import pytest
import torch

from lmladder.baselines import hmm_kernel
from lmladder.baselines.hmm import HMMConfig
from lmladder.baselines.hmm_core import pack
from lmladder.baselines.hmm_em import EM

K, V = 3, 4


def random_hmm(seed: int, states: int = K, vocab: int = V):
    rng = np.random.default_rng(seed)
    pi = rng.dirichlet(np.ones(states))
    a = rng.dirichlet(np.ones(states), size=states)
    b = rng.dirichlet(np.ones(vocab), size=states)
    return pi, a, b


def sentences(seed: int, count: int = 5) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, V, size=rng.integers(1, 5)) for _ in range(count)]


def brute_force(pi, a, b, sentence):
    """p(sentence), and the expected start, transition and emission counts given it, by summing
    over all K^T state paths."""
    total, start = 0.0, np.zeros(len(pi))
    trans, emit = np.zeros_like(a), np.zeros_like(b)
    for path in itertools.product(range(len(pi)), repeat=len(sentence)):
        p = pi[path[0]] * b[path[0], sentence[0]]
        for t in range(1, len(sentence)):
            p *= a[path[t - 1], path[t]] * b[path[t], sentence[t]]
        total += p
        start[path[0]] += p
        for t, (z, w) in enumerate(zip(path, sentence, strict=True)):
            emit[z, w] += p
            if t:
                trans[path[t - 1], z] += p
    return total, start / total, trans / total, emit / total


def packed_words(batch: list[np.ndarray]):
    stream = np.concatenate(batch)
    lengths = np.array([len(s) for s in batch])
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    p = pack(starts, lengths)
    return stream[p.source], p.batch_sizes.tolist()


def zero_counts(states: int, vocab: int, kind=torch) -> hmm_kernel.Counts:
    """Zero float64 counts of ``kind`` (the torch or the numpy module)."""
    return hmm_kernel.Counts(*(kind.zeros(shape, dtype=kind.float64)
                               for shape in ((states,), (states, states), (vocab, states))))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_forward_log_likelihood_equals_enumeration(seed):
    pi, a, b = random_hmm(seed)
    batch = sentences(seed + 10)
    words, batch_sizes = packed_words(batch)
    expected = sum(np.log(brute_force(pi, a, b, s)[0]) for s in batch)
    ours = np.log(np.concatenate(
        [s.scale for s in hmm_kernel.forward(pi, a, b.T, words, batch_sizes)])).sum()
    assert ours == pytest.approx(expected, rel=1e-12)
    tensors = [torch.as_tensor(x) for x in (pi, a, b.T.copy(), words)]
    on_torch = torch.cat([s.scale for s in hmm_kernel.forward(*tensors, batch_sizes)]).log().sum()
    assert float(on_torch) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("kind", [np, torch], ids=["numpy", "torch"])
@pytest.mark.parametrize("seed", [0, 1])
def test_expected_counts_equal_enumeration(seed, kind):
    pi, a, b = random_hmm(seed)
    batch = sentences(seed + 20)
    expected = [brute_force(pi, a, b, s) for s in batch]
    words, batch_sizes = packed_words(batch)
    counts = zero_counts(K, V, kind)
    ll = hmm_kernel.expected_counts(
        *(kind.asarray(x) for x in (pi, a, b.T.copy(), words)), batch_sizes, counts
    )
    assert ll == pytest.approx(sum(np.log(e[0]) for e in expected), rel=1e-12)
    for ours, i in ((counts.start, 1), (counts.trans, 2), (counts.emit.T, 3)):
        np.testing.assert_allclose(np.asarray(ours), sum(e[i] for e in expected), rtol=1e-10)


def test_numpy_index_add_sums_repeated_rows_like_torch():
    """numpy's index_add (a sparse product, see RowGroups) against torch's ``index_add_``, and
    the grouping kept for later calls against a fresh one."""
    rng = np.random.default_rng(9)
    index = rng.integers(0, 5, size=40)  # every value repeated, one (5 or more) likely missing
    src = rng.random((40, 3))
    out = np.ones((6, 3))
    hmm_kernel.index_add(out, index, src)
    expected = torch.ones(6, 3, dtype=torch.float64).index_add_(
        0, torch.as_tensor(index), torch.as_tensor(src))
    np.testing.assert_allclose(out, expected.numpy(), rtol=1e-15)
    again = np.ones((6, 3))
    hmm_kernel.index_add(again, hmm_kernel.RowGroups.of(index, np.float64), src)
    np.testing.assert_array_equal(again, out)


def test_an_impossible_token_scores_zero_without_nans():
    pi, a, b = random_hmm(3)
    b[:, 2] = 0.0
    b /= b.sum(axis=1, keepdims=True)
    scales = [s.scale for s in hmm_kernel.forward(pi, a, b.T, np.array([1, 2, 1]), [1, 1, 1])]
    assert scales[1][0] == 0.0 and scales[2][0] == 0.0  # the rest of the sentence is impossible
    assert not np.isnan(np.concatenate(scales)).any()


def test_chunked_em_equals_one_chunk():
    """Chunking is bookkeeping: any chunk size gives the same EM step (float64)."""
    rng = np.random.default_rng(5)
    states, vocab = 4, 6
    train = rng.integers(1, vocab, size=400)
    train[rng.random(400) < 0.15] = 0  # boundaries: sentences of assorted lengths
    params = random_hmm(5, states, vocab)
    results = []
    for batch_tokens in (10**9, 37):
        cfg = HMMConfig(states=states, batch_tokens=batch_tokens, start_prior=0.1,
                        transition_prior=0.1, emission_prior=0.1)
        em = EM(cfg, train, 0, params, "float64")
        ll, objective, *_ = em.one_pass(None, None, 0, 0)
        results.append((len(em.chunks), ll, objective, *em.parameters()))
    assert results[0][0] == 1 and results[1][0] > 5
    for one, many in zip(results[0][1:], results[1][1:], strict=True):
        np.testing.assert_allclose(many, one, rtol=1e-12)
