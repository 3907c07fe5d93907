"""The HMM forward-backward kernel: the one recursion over hidden states that every HMM path runs.

Scoring (numpy in :class:`~lmladder.baselines.hmm_core.HMMBase`, torch on the model's device),
next-token ranks, the EM E-step and the differentiable log-likelihood of Adam training all call
:func:`forward`; the E-step adds :func:`expected_counts`' backward pass.  Three recursions stay
outside on purpose: ``HMMBase.step`` (the one-step state API that the contract tests check these
fast paths against, so it must not share their code), ``HMMBase.viterbi`` (max-product in log
space with back-pointers: as a semiring argument here it would cost the sum-product path its
matrix products, the whole of its speed) and the synthetic source's oracle
(``lmladder.synthetic.forward_logprobs``: the harness core imports no model family).

Layout
------
Sentences are packed time-major, longest first (:class:`~lmladder.baselines.hmm_core.Packed`):
``words`` holds the tokens in packed order and ``batch_sizes[t]`` is the number of sentences
still running at time ``t``, which are the first rows of those running at ``t - 1``.  Every
sentence starts from pi.  Parameters: ``pi`` (K,), ``a`` (K, K), ``bt`` = B transposed (V, K),
so the emission probabilities of a token are one contiguous row.

Blocked emissions (Chiu & Rush 2020, "Scaling Hidden Markov Language Models")
--------------------------------------------------------------------------------
With ``groups`` (int64 (V,): each word's cluster), the K states form M groups of S = K / M and a
state emits only the words of its group's cluster, so a token's filtered distribution lives on
its group's S states and each step costs S^2, not K^2.  Then ``pi`` is (M, S), ``a`` the
(M, M, S, S) block view of A (:func:`transition_blocks`), ``bt`` (V, S) holds each word's
emission probabilities from its own group's states, and the step vectors are (n, S).  The result
is exactly that of the dense HMM whose B is zero outside the blocks.

Scaling (Rabiner 1989, section V.A)
-----------------------------------
alpha_t = p(z_t | w_<=t) is renormalized at every step; the normalizer c_t = p(w_t | w_<t) is
the token's likelihood, so ln p(sentence) = sum_t ln c_t and nothing underflows.  beta is scaled
by the same c_t, which makes alpha_t * beta_t the state posterior directly.

Arrays
------
:func:`forward` uses only operations numpy arrays and torch tensors share (``@``, ``*``, ``/``,
slicing, ``sum``), so it runs on either -- numpy keeps the hmmlearn-backed model usable without
torch -- and under autograd.  :func:`expected_counts` is torch only (CPU or CUDA) and keeps one
chunk's alpha lattice alive, nothing else of size tokens x K.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np

Array = Any  # a numpy array or a torch tensor; one call uses one kind throughout


class Step(NamedTuple):
    """One time step of :func:`forward` for the ``n`` sentences still running."""

    rows: slice  # their packed positions
    prior: Array  # (n, K) p(z_t | w_<t); (n, S) with blocks, on the token's group
    scale: Array  # (n,) c_t = p(w_t | w_<t)
    post: Array  # (n, K) alpha_t = p(z_t | w_<=t); a zero row where c_t = 0


def transition_blocks(a: Array, m: int) -> Array:
    """The (M, M, S, S) view of A (K, K): ``[g, h]`` is the block from group g to group h.
    :func:`forward` takes any layout of it; a contiguous copy makes its gathers fastest."""
    s = a.shape[0] // m
    return a.reshape(m, s, m, s).swapaxes(1, 2)


def forward(pi: Array, a: Array, bt: Array, words: Array, batch_sizes: Sequence[int],
            groups: Array | None = None) -> Iterator[Step]:
    """Scaled forward filtering of packed sentences, one :class:`Step` per time step.

    ``words``: int64 (N,) in packed order (a numpy array or a tensor on the parameters' device);
    ``groups``: see "Blocked emissions" above (``None``: a dense HMM).
    """
    lo, post, before = 0, None, None
    for n in batch_sizes:
        n = int(n)
        now = words[lo : lo + n]
        if groups is None:
            prior = _rows(pi, n) if post is None else post[:n] @ a
        else:  # each row moves from the block of its last token's group to its token's
            group = groups[now]
            prior = pi[group] if post is None else (post[:n, None] @ a[before[:n], group])[:, 0]
            before = group
        joint = prior * bt[now]
        scale = joint.sum(1)
        # An impossible token (c_t = 0) leaves a zero row instead of 0 / 0 = NaN.
        post = joint / (scale + (scale == 0))[:, None]
        yield Step(slice(lo, lo + n), prior, scale, post)
        lo += n


def _rows(pi: Array, n: int) -> Array:
    """``pi`` as ``n`` identical rows, without copying."""
    if isinstance(pi, np.ndarray):
        return np.broadcast_to(pi, (n, len(pi)))
    return pi.expand(n, -1)


class Counts(NamedTuple):
    """Expected counts of an E-step, summed over chunks (torch tensors on one device), in the
    layouts of the parameters."""

    start: Array  # (K,); (M, S) with blocks
    trans: Array  # (K, K); its (M, M, S, S) block view with blocks
    emit: Array  # (V, K), the layout of ``bt``; (V, S) with blocks


def expected_counts(pi: Array, a: Array, bt: Array, words: Array, batch_sizes: Sequence[int],
                    counts: Counts, lattice: Array | None = None, groups: Array | None = None
                    ) -> float:
    """Forward-backward over one chunk of packed sentences (torch tensors): adds the chunk's
    expected start, transition and emission counts to ``counts`` and returns ln p(chunk) (nats).

    The forward pass fills the lattice with alpha (tokens x K, the training dtype); the backward
    pass walks the steps in reverse with only the current beta alive, turns alpha into the
    posteriors gamma_t = alpha_t * beta_t in place, and sums the transition pairs
    alpha_{t-1}^T (beta_t * b(w_t) / c_t), which times A (elementwise) are the transition counts.
    ``lattice``, a (>= N, K) buffer of ``bt``'s dtype, is used for alpha; passing the same one for
    every chunk spares the allocator a large block per chunk (and the fragmented heap that would
    leave behind).  ``groups``: blocked emissions, as in :func:`forward`.
    """
    n_tokens = len(words)
    alpha = bt.new_empty((n_tokens, bt.shape[1])) if lattice is None else lattice[:n_tokens]
    scales = bt.new_empty(n_tokens)
    rows = []
    for step in forward(pi, a, bt, words, batch_sizes, groups):
        alpha[step.rows], scales[step.rows] = step.post, step.scale
        rows.append(step.rows)
    group = None if groups is None else groups[words]
    pairs = a.new_zeros(a.shape)  # sum_t alpha_{t-1}^T r_t, in the training dtype, contiguous
    beta = None  # beta is 1 at a sentence's last token: all of them at the last step
    for t in range(len(rows) - 1, 0, -1):
        n = rows[t].stop - rows[t].start
        r = bt[words[rows[t]]].div_(scales[rows[t], None])  # r_t = beta_t * b(w_t) / c_t
        if beta is not None:
            alpha[rows[t]].mul_(beta)  # now gamma_t
            r.mul_(beta)
        previous = alpha[rows[t - 1]]
        beta = previous.new_ones(previous.shape)
        if group is None:
            pairs.addmm_(previous[:n].T, r)
            beta[:n] = r @ a.T
        else:
            edges = (group[rows[t - 1]][:n], group[rows[t]])  # (from, to) block of each row
            m, s = a.shape[0], a.shape[2]
            outer = (previous[:n, :, None] * r[:, None, :]).view(n, s * s)
            pairs.view(m * m, s * s).index_add_(0, edges[0] * m + edges[1], outer)
            beta[:n] = (r[:, None] @ a[edges].transpose(1, 2))[:, 0]
    if beta is not None:
        alpha[rows[0]].mul_(beta)
    if group is None:
        counts.start.add_(alpha[rows[0]].sum(0))
    else:
        counts.start.index_add_(0, group[rows[0]], alpha[rows[0]].to(counts.start.dtype))
    counts.trans.add_(pairs.mul_(a))
    counts.emit.index_add_(0, words, alpha.to(counts.emit.dtype))
    return float(scales.log().double().sum())
