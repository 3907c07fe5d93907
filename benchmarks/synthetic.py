"""The built-in ``synthetic`` dataset: text from a known hidden Markov model.

Because the source is known, the exact probability of every test token under it,
ln p(w_i | w_<i), is computed by the forward algorithm and reported beside the models: no model
can beat the source's perplexity on average, so it is the floor of the ladder.

The source (all drawn from ``numpy.random.default_rng(seed)``; deterministic across machines):

* state 0 is the sentence end: it always emits ``<eos>``;
* ``states`` other states each emit from ``words_per_state`` words (Dirichlet(0.3) weights),
  chosen at random from ``vocab - 1`` pseudo-words, so a word is shared by several states;
* every state moves to ``successors`` random states (Dirichlet(1) weights), and each non-final
  state also ends the sentence (moves to state 0) with probability ``1 / mean_length``.

Each split is sampled separately, starting as if state 0 had just emitted ``<eos>``; since only
state 0 emits ``<eos>``, that is exactly what a model sees at the start of a stream too.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from lmladder.api import Vocab
from lmladder.corpus import EOS, Dataset, Split

_ONSETS = "b d f g k l m n p r s t v z".split()
_VOWELS = "a e i o u".split()


@dataclass(frozen=True)
class SyntheticSource:
    seed: int = 0
    states: int = 16
    vocab: int = 400
    words_per_state: int = 40
    successors: int = 3
    mean_length: float = 12.0
    tokens: tuple[int, int, int] = (200_000, 20_000, 20_000)


def pseudo_word(i: int) -> str:
    """A pronounceable, unique name for word ``i`` (``ba``, ``be`` ... ``zuba`` ...)."""
    syllables = [f"{o}{v}" for o in _ONSETS for v in _VOWELS]
    out = []
    i += 1
    while i:
        i, r = divmod(i - 1, len(syllables))
        out.append(syllables[r])
    return "".join(reversed(out))


def make_hmm(src: SyntheticSource) -> tuple[np.ndarray, np.ndarray]:
    """Transition ``(K+1, K+1)`` and emission ``(K+1, V)`` matrices; state 0 and word 0 are the
    sentence end."""
    rng = np.random.default_rng(src.seed)
    k, v = src.states + 1, src.vocab
    trans = np.zeros((k, k))
    for s in range(k):
        nxt = rng.choice(np.arange(1, k), size=src.successors, replace=False)
        trans[s, nxt] = rng.dirichlet(np.ones(src.successors))
    trans[1:] *= 1 - 1 / src.mean_length
    trans[1:, 0] = 1 / src.mean_length
    emit = np.zeros((k, v))
    emit[0, 0] = 1.0
    for s in range(1, k):
        words = rng.choice(np.arange(1, v), size=src.words_per_state, replace=False)
        emit[s, words] = rng.dirichlet(np.full(src.words_per_state, 0.3))
    return trans, emit


def sample(trans: np.ndarray, emit: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` tokens from the HMM, starting after state 0."""
    k, v = emit.shape
    ctrans, cemit = np.cumsum(trans, axis=1), np.cumsum(emit, axis=1)
    u = rng.random((n, 2))
    out = np.empty(n, dtype=np.int64)
    s = 0
    for i in range(n):
        s = min(int(np.searchsorted(ctrans[s], u[i, 0], side="right")), k - 1)
        out[i] = min(int(np.searchsorted(cemit[s], u[i, 1], side="right")), v - 1)
    return out


def forward_logprobs(trans: np.ndarray, emit: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Exact ln p(w_i | w_<i) under the HMM, starting after state 0 (float64 ``(N,)``).

    Deliberately not the HMM family's kernel (``lmladder.baselines.hmm_kernel``): the harness
    core imports no model family, and the oracle that the HMMs are measured against is worth
    more as an independent few lines (themselves checked by enumeration in ``tests/test_data``).
    """
    alpha = np.zeros(trans.shape[0])
    alpha[0] = 1.0
    out = np.empty(len(ids))
    emit_t = emit.T.copy()
    for i, w in enumerate(ids):
        pred = alpha @ trans
        joint = pred * emit_t[w]
        z = joint.sum()
        out[i] = np.log(z)
        alpha = joint / z
    return out


def synthetic_dataset(src: SyntheticSource = SyntheticSource()) -> Dataset:
    trans, emit = make_hmm(src)
    words = [EOS] + [pseudo_word(i) for i in range(1, src.vocab)]
    vocab = Vocab(words, boundary=EOS, unk=None, separator=" ")
    rng = np.random.default_rng(src.seed + 1)
    splits = {}
    for name, n in zip(("train", "valid", "test"), src.tokens, strict=True):
        ids = sample(trans, emit, n, rng)
        lines = int(np.count_nonzero(ids == 0))
        text_len = len(vocab.detokenize(ids))
        splits[name] = Split(
            name,
            ids,
            num_chars=text_len,
            num_words=n,
            num_lines=lines,
            oracle_logprobs=forward_logprobs(trans, emit, ids),
        )
    return Dataset(
        "synthetic",
        "word",
        vocab,
        splits,
        f"text sampled from a random {src.states}-state HMM over {src.vocab} words",
        {"generator": "lmladder.synthetic", **asdict(src)},
    )
