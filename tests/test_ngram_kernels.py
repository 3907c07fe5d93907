"""The compiled stream walk (baselines/ngram_kernels.py) against the vectorized numpy query.

:func:`vectorized_score` is the query as lmladder answered it before the kernel: one
``searchsorted`` per order over all positions, contexts looked up on their own.  The kernel must
give the same float64 bits on every smoothing (flat add-k and chain backoff), order, boundary
rule and history pattern, including histories cut at random places.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from lmladder.api import ContextPolicy
from lmladder.baselines.ngram import NGramLM
from lmladder.baselines.ngram_backoff import BackoffTables, lookup
from lmladder.baselines.ngram_counts import history_lengths
from tests.test_ngram import SMOOTHINGS, make_vocab, markov_stream

SEED = 20261127


def vectorized_score(tables: BackoffTables, seq: np.ndarray, hist: np.ndarray) -> np.ndarray:
    """ln p(seq[t] | history), t = 1..N, answered order by order for all positions at once."""
    n, v = tables.order, tables.vocab_size
    t = np.arange(1, len(seq), dtype=np.int64)
    grams = np.full((len(t), n), -1, dtype=np.int64)  # row of seq[t-j+1..t] at column j - 1
    ctx = np.full((len(t), max(n - 1, 1)), -1, dtype=np.int64)  # row of seq[t-l..t-1], col l - 1
    grams[:, 0] = seq[t]
    if n > 1:
        ctx[:, 0] = np.where(hist >= 1, seq[t - 1], -1)
    for j in range(2, n + 1):
        alive = np.nonzero((hist >= j - 1) & (grams[:, j - 2] >= 0))[0]
        grams[alive, j - 1] = lookup(tables.keys[j - 1],
                                     grams[alive, j - 2] * v + seq[t[alive] - j + 1])
        if j <= n - 1:
            alive = np.nonzero((hist >= j) & (ctx[:, j - 2] >= 0))[0]
            ctx[alive, j - 1] = lookup(tables.keys[j - 1],
                                       ctx[alive, j - 2] * v + seq[t[alive] - j])
    rows = np.arange(len(hist))
    if tables.flat:
        top = grams[rows, hist]
        c = np.where(hist >= 1, ctx[rows, np.maximum(hist - 1, 0)], -1)
        out = np.full(len(hist), -math.log(v))
        for j in range(1, n + 1):
            sel = (hist == j - 1) & (top >= 0)
            out[sel] = tables.logp[j - 1][top[sel]]
            if j >= 2:
                sel = (hist == j - 1) & (top < 0) & (c >= 0)
                out[sel] = tables.bow[j - 2][c[sel]] - math.log(v)
        return out
    out = tables.logp[0][grams[:, 0]]
    longest = np.ones(len(hist), dtype=np.int64)
    for j in range(2, n + 1):
        sel = np.nonzero(grams[:, j - 1] >= 0)[0]
        out[sel] = tables.logp[j - 1][grams[sel, j - 1]]
        longest[sel] = j
    for lvl in range(1, n):  # backoff weights shortest context first, as distributions() adds them
        sel = np.nonzero((ctx[:, lvl - 1] >= 0) & (longest <= lvl))[0]
        out[sel] += tables.bow[lvl - 1][ctx[sel, lvl - 1]]
    return out


def random_histories(size: int, cap: int, rng: np.random.Generator) -> np.ndarray:
    """History lengths that grow by one per position up to ``cap`` and are cut to a random
    shorter length at random places (every pattern a boundary rule or window can produce)."""
    hist = np.empty(size, dtype=np.int64)
    h = 1  # the initial boundary
    for t in range(size):
        h = min(h, cap)
        if rng.random() < 0.2:  # cut
            h = int(rng.integers(0, h + 1))
        hist[t] = h
        h += 1
    return hist


@pytest.fixture(scope="module")
def corpus():
    vocab = make_vocab(8)
    train = vocab.encode(markov_stream(3000, 8, SEED))
    test = vocab.encode(markov_stream(2000, 8, SEED + 1))
    return vocab, train, test


@pytest.mark.parametrize("smoothing", SMOOTHINGS)
@pytest.mark.parametrize("cross", [False, True])
def test_compiled_walk_equals_vectorized_query_bit_for_bit(corpus, smoothing, cross):
    vocab, train, test = corpus
    rng = np.random.default_rng(SEED)
    for order in (1, 2, 3, 5):
        model = NGramLM(order=order, smoothing=smoothing, cross_boundary=cross)
        model.fit(train, vocab)
        tables = model.tables_
        assert tables.flat == (smoothing == "add-k")
        seq = np.concatenate([[vocab.boundary_id], test])
        kept = history_lengths(seq, vocab.boundary_id, truncate=not cross).clip(max=order - 1)
        for hist in (kept, random_histories(len(test), order - 1, rng)):
            np.testing.assert_array_equal(tables.score(seq, hist),
                                          vectorized_score(tables, seq, hist))
        for window in (1, 2):  # the model's own history rule, capped below the order
            policy = ContextPolicy(window=window)
            seq, hist = model._history(test, policy)
            np.testing.assert_array_equal(model.token_logprobs(test, context=policy),
                                          vectorized_score(tables, seq, hist))


def test_walk_finds_the_longest_ngram_on_a_hand_made_table():
    """Three words, bigrams "a b" and "b b", trigram "a b b": each query's chain by hand."""
    v = 4  # <eos>=0, a=1, b=2, c=3
    keys = [np.arange(v), np.array([2 * v + 1, 2 * v + 2]), np.array([1 * v + 1])]
    # trigram "a b b": suffix "b b" is bigram row 1, first token a=1 -> key 1 * V + 1
    logp = [np.log(np.full(v, 0.25)), np.array([-1.0, -2.0]), np.array([-3.0])]
    bow = [np.array([0.0, -0.1, -0.2, 0.0]), np.array([-0.5, -0.7]), np.zeros(1)]
    tables = BackoffTables(v, keys, logp, bow)
    seq = np.array([0, 1, 2, 2, 3, 1])  # <s> a b b c a
    hist = np.array([1, 2, 2, 2, 2])
    u = math.log(0.25)
    expected = [u + 0.0,            # a | <s>: unigram, <s> backs off with weight 0
                -1.0,               # b | <s> a: bigram "a b" (no trigram "<s> a b")
                -3.0,               # b | a b: trigram "a b b"
                u - 0.2 - 0.7,      # c | b b: unigram, backs off from "b" then "b b"
                u + 0.0]            # a | b c: unigram, "c" has weight 0 and "b c" is not listed
    np.testing.assert_allclose(tables.score(seq, hist), expected, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(tables.score(seq, hist), vectorized_score(tables, seq, hist))


def test_tables_too_large_for_4_byte_keys_walk_the_same():
    """A vocabulary of 70,000: V * V passes 2**32, so order 2 keeps 8-byte keys and order 3 too
    (the narrow tables of small models are every other test's)."""
    from lmladder.api import Vocab
    from lmladder.baselines import ngram_image
    from lmladder.baselines.ngram_kernels import key_bytes

    v = 70_000
    vocab = Vocab(["<eos>", *(f"w{i}" for i in range(1, v))], boundary="<eos>")
    rng = np.random.default_rng(SEED)
    train = np.minimum(rng.zipf(1.2, 300_000), v - 1).astype(np.int64)
    train[rng.random(len(train)) < 0.1] = 0
    model = NGramLM(order=3, smoothing="kneser-ney")
    model.fit(train, vocab)
    image = ngram_image.build(model.tables_, vocab)
    assert key_bytes(v, v) == 8 and key_bytes(image.slots[0], v) == 8
    assert key_bytes(1000, 1000) == 4
    test = np.minimum(rng.zipf(1.2, 20_000), v - 1).astype(np.int64)
    seq, hist = model._history(test, ContextPolicy())
    np.testing.assert_array_equal(model.token_logprobs(test),
                                  vectorized_score(model.tables_, seq, hist))
