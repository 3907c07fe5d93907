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
Both functions use only what numpy arrays and torch tensors share (``@``, ``*=``, ``/=``,
slicing, ``sum``) plus the few helpers at the end of this module that spell the rest for each
kind, so they run on either: numpy on the CPU (the ``hmm`` model's scoring and EM there, and the
hmmlearn-backed model, without torch), torch on CUDA, and :func:`forward` under autograd.
:func:`expected_counts` keeps one chunk's alpha lattice alive, nothing else of size tokens x K.
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
    """Expected counts of an E-step, summed over chunks (arrays of the parameters' kind), in the
    layouts of the parameters."""

    start: Array  # (K,); (M, S) with blocks
    trans: Array  # (K, K); its (M, M, S, S) block view with blocks
    emit: Array  # (V, K), the layout of ``bt``; (V, S) with blocks


def expected_counts(pi: Array, a: Array, bt: Array, words: Array, batch_sizes: Sequence[int],
                    counts: Counts, lattice: Array | None = None, groups: Array | None = None,
                    word_rows: RowGroups | None = None) -> float:
    """Forward-backward over one chunk of packed sentences: adds the chunk's expected start,
    transition and emission counts to ``counts`` and returns ln p(chunk) (nats).

    The forward pass fills the lattice with alpha (tokens x K, the training dtype); the backward
    pass walks the steps in reverse with only the current beta alive, turns alpha into the
    posteriors gamma_t = alpha_t * beta_t in place, and sums the transition pairs
    alpha_{t-1}^T (beta_t * b(w_t) / c_t), which times A (elementwise) are the transition counts.
    ``lattice``, a (>= N, K) buffer of ``bt``'s dtype, is used for alpha; passing the same one for
    every chunk spares the allocator a large block per chunk (and the fragmented heap that would
    leave behind).  ``groups``: blocked emissions, as in :func:`forward`.  ``word_rows``: on
    numpy, ``RowGroups.of(words, bt.dtype)`` kept from an earlier call (it spares a sort).
    """
    n_tokens = len(words)
    alpha = new(bt, (n_tokens, bt.shape[1])) if lattice is None else lattice[:n_tokens]
    scales = new(bt, (n_tokens,))
    rows = []
    for step in forward(pi, a, bt, words, batch_sizes, groups):
        alpha[step.rows], scales[step.rows] = step.post, step.scale
        rows.append(step.rows)
    group = None if groups is None else groups[words]
    pairs = new(a, a.shape, 0.0)  # sum_t alpha_{t-1}^T r_t, in the training dtype, contiguous
    beta = None  # beta is 1 at a sentence's last token: all of them at the last step
    for t in range(len(rows) - 1, 0, -1):
        n = rows[t].stop - rows[t].start
        r = bt[words[rows[t]]]  # a copy: r_t = beta_t * b(w_t) / c_t
        r /= scales[rows[t], None]
        if beta is not None:
            gamma = alpha[rows[t]]  # a view: alpha_t becomes gamma_t in the lattice
            gamma *= beta
            r *= beta
        previous = alpha[rows[t - 1]]
        beta = new(previous, previous.shape, 1.0)
        if group is None:
            _addmm(pairs, previous[:n].T, r)
            beta[:n] = r @ a.T
        else:
            edges = (group[rows[t - 1]][:n], group[rows[t]])  # (from, to) block of each row
            m, s = a.shape[0], a.shape[2]
            outer = (previous[:n, :, None] * r[:, None, :]).reshape(n, s * s)
            index_add(pairs.reshape(m * m, s * s), edges[0] * m + edges[1], outer)
            beta[:n] = (r[:, None] @ a[edges].swapaxes(1, 2))[:, 0]
    first = alpha[rows[0]]
    if beta is not None:
        first *= beta
    start, trans = counts.start, counts.trans  # views of the caller's arrays: added in place
    if group is None:
        start += sum64(first, 0)
    else:
        index_add(start, group[rows[0]], cast(first, start))
    pairs *= a
    trans += pairs
    index_add(counts.emit, words if word_rows is None else word_rows, cast(alpha, counts.emit))
    return log_sum(scales)


def filter_logprobs(pi: Array, a: Array, bt: Array, words: Array, packed,
                    groups: Array | None = None) -> np.ndarray:
    """ln p(w_i | w_<i) (float64 ``(N,)``, stream order) of sentences packed as ``packed`` (a
    :class:`~lmladder.baselines.hmm_core.Packed`; ``words``: the tokens in its packed order on
    the parameters' device): all filtered at once by :func:`forward`."""
    steps = forward(pi, a, bt, words, packed.batch_sizes, groups)
    scales = to_numpy(_concat([s.scale for s in steps]))
    result = np.empty(packed.num_tokens)
    with np.errstate(divide="ignore"):  # an impossible token: ln 0 = -inf, an honest score
        result[packed.source] = np.log(scales)
    return result


# --------------------------------------------------------------------------------------------
# What numpy and torch spell differently.  torch is imported only where a tensor already is.


def new(like: Array, shape: tuple[int, ...], fill: float | None = None) -> Array:
    """A new array of ``like``'s kind, dtype and device: uninitialized, or filled with ``fill``."""
    if _numpy_kind(like):
        return np.empty(shape, like.dtype) if fill is None else np.full(shape, fill, like.dtype)
    return like.new_empty(shape) if fill is None else like.new_full(shape, fill)


def cast(x: Array, like: Array) -> Array:
    """``x`` in ``like``'s dtype (``x`` itself if it has it)."""
    return np.asarray(x, like.dtype) if _numpy_kind(x) else x.to(like.dtype)


def _addmm(out: Array, x: Array, y: Array) -> None:
    """``out += x @ y`` in place."""
    if _numpy_kind(out):
        out += x @ y
    else:
        out.addmm_(x, y)


def index_add(out: Array, index: Array | RowGroups, src: Array) -> None:
    """``out[index[i]] += src[i]`` for every row i of the 2-D ``src``, repeated indices summed,
    in place (``out``: 2-D); on numpy ``index`` may come grouped already (:class:`RowGroups`)."""
    if not _numpy_kind(out):
        out.index_add_(0, index, src)
        return
    groups = index if isinstance(index, RowGroups) else RowGroups.of(index, src.dtype)
    out[groups.targets] += groups.matrix @ src


class RowGroups(NamedTuple):
    """The rows of an index grouped by value, for :func:`index_add` on numpy.

    numpy's ``np.add.at`` is slow (~2 us a row at K = 256, more than the E-step's matrix
    products); instead the rows are summed by one product with a sparse 0/1 (values x rows)
    matrix, each value's rows in their order, as torch's ``index_add_`` adds them.  Grouping
    sorts the index: a caller that adds by the same index again (EM, every pass) keeps this."""

    targets: np.ndarray  # int64 (U,): the distinct values, ascending
    matrix: Any  # scipy.sparse.csr_matrix (U, N) of ``dtype``

    @classmethod
    def of(cls, index: np.ndarray, dtype) -> RowGroups:
        from scipy.sparse import csr_matrix

        order = np.argsort(index, kind="stable")
        ordered = index[order]
        first = np.flatnonzero(np.concatenate([[True], ordered[1:] != ordered[:-1]]))
        matrix = csr_matrix((np.ones(len(order), dtype), order, np.append(first, len(order))),
                            shape=(len(first), len(order)))
        return cls(ordered[first], matrix)


def sum64(x: Array, dim: int) -> Array:
    """``x`` summed along ``dim`` in float64.  In float32, numpy sums an outer axis one row after
    another and loses digits over thousands of rows (torch sums in cascades); the E-step's
    column sums must not depend on which library runs it."""
    if _numpy_kind(x):
        return x.sum(dim, dtype=np.float64)
    import torch

    return x.sum(dim, dtype=torch.float64)


def log_sum(x: Array) -> float:
    """sum(ln x) as a Python float, the logarithms in ``x``'s dtype summed in float64."""
    if _numpy_kind(x):
        return float(np.log(x).sum(dtype=np.float64))
    return float(x.log().double().sum())


def _concat(xs: list[Array]) -> Array:
    if _numpy_kind(xs[0]):
        return np.concatenate(xs)
    import torch

    return torch.cat(xs)


def to_numpy(x: Array) -> np.ndarray:
    """``x`` as a numpy array (a tensor copied to the host)."""
    return np.asarray(x) if _numpy_kind(x) else x.detach().cpu().numpy()


def _numpy_kind(x: Array) -> bool:
    """Whether ``x`` is numpy's (an array, or the scalar a full reduction gives)."""
    return isinstance(x, np.ndarray | np.generic)
