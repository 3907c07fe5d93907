"""Baum-Welch for the ``hmm`` model on numpy (CPU) or torch (CUDA): packed-sentence chunks, the
E-step of :func:`~lmladder.baselines.hmm_kernel.expected_counts`, the exact M-step.

Every array lives where an *arrays* object puts it: :data:`NUMPY` here, or
:class:`~lmladder.baselines.hmm_torch.TorchArrays` for a torch device.  That object only makes
arrays (from numpy, empty, zeros, contiguous copies) and scopes threads; the arithmetic is the
same code for both, so EM on numpy is EM on torch up to the order of floating-point sums.  This
module imports without torch; on the CPU the ``hmm`` model trains and scores without it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from lmladder.baselines import hmm_kernel
from lmladder.baselines.hmm_core import Packed, pack, sentence_bounds
from lmladder.process import blas_threads

# One E-step chunk's alpha lattice (tokens x K) may take this much, or the size of A if that is
# larger: small enough that streaming keeps EM's memory near the parameters' own, large enough
# that each time step's matrix product spans many sentences.  Measured on a 2-core machine (load
# ~1.3 from other work), K = 256, 100k PTB tokens, 2 BLAS threads, one EM iteration on numpy
# (a child of python -m lmladder.perf.hmm --only speed; best of 3, peak RSS of the process):
# 2 MiB 0.28 s and 156 MiB, 8 MiB 0.25 s and 167 MiB, 32 MiB 0.24 s and 201 MiB (hmmlearn:
# ~19 s, 302 MiB).  8 MiB buys most of the speed for 11 MiB.
LATTICE_BYTES = 8 * 2**20

Array = Any  # a numpy array or a torch tensor, as hmm_kernel.Array


class NumpyArrays:
    """Where EM's arrays live: numpy, on the CPU (see the module docstring)."""

    @staticmethod
    def asarray(x, dtype: str | None = None) -> np.ndarray:
        """``x`` (numpy) as an array here, of dtype ``dtype`` ("float32", "float64"; ``None``:
        its own), shared with ``x`` where no conversion is needed."""
        return np.asarray(x, dtype=dtype)

    @staticmethod
    def contiguous(x, dtype: str) -> np.ndarray:
        """A new C-contiguous copy of ``x`` of dtype ``dtype``."""
        return np.array(x, dtype=dtype, order="C")

    @staticmethod
    def empty(shape: tuple[int, ...], dtype: str) -> np.ndarray:
        return np.empty(shape, dtype)

    @staticmethod
    def zeros(shape: tuple[int, ...], dtype: str) -> np.ndarray:
        return np.zeros(shape, dtype)

    @staticmethod
    def transposed(b: np.ndarray, dtype: str) -> np.ndarray:
        """``b`` (K, V) as a contiguous (V, K) array of dtype ``dtype``, without a second
        full-size temporary."""
        out = np.empty(b.shape[::-1], dtype)
        np.copyto(out, b.T)
        return out

    threads = staticmethod(blas_threads)  # numpy's BLAS on ``n`` threads inside the block


NUMPY = NumpyArrays()


@dataclass(frozen=True)
class Chunk:
    """One chunk of packed training sentences, its words where the training arrays live."""

    words: Array  # int64 (N,), packed order
    batch_sizes: list[int]

    @property
    def num_tokens(self) -> int:
        return len(self.words)


def make_chunks(train: np.ndarray, boundary_id: int, batch_tokens: int, arrays) -> list[Chunk]:
    """The sentences of ``train`` in chunks of about ``batch_tokens`` tokens, each packed."""
    starts, lengths = sentence_bounds(train, boundary_id)
    order = np.argsort(-lengths, kind="stable")  # similar lengths share a chunk: few idle steps
    starts, lengths = starts[order], lengths[order]
    chunk_of = np.cumsum(lengths) // max(batch_tokens, 1)
    out = []
    for c in np.unique(chunk_of):
        sel = chunk_of == c
        p: Packed = pack(starts[sel], lengths[sel])
        out.append(Chunk(arrays.asarray(train[p.source]), p.batch_sizes.tolist()))
    return out


def em_chunk_tokens(batch_tokens: int, states: int, dtype: str) -> int:
    """Tokens per E-step chunk: ``batch_tokens`` at most, and few enough that the chunk's alpha
    lattice (tokens x ``states``, the states a token's distribution lives on) fits
    :data:`LATTICE_BYTES` or the size of a (``states``, ``states``) block of A."""
    itemsize = np.dtype(dtype).itemsize
    return min(batch_tokens, max(LATTICE_BYTES // (states * itemsize), states))


def normalize_(counts: Array, pseudo: float, dim: int) -> Array:
    """The EM M-step in place on a 1-D or 2-D ``counts``: ``counts + pseudo`` normalized along
    ``dim`` (a Dirichlet prior of concentration ``1 + pseudo``); a slice with no mass at all
    becomes uniform."""
    counts += pseudo
    total = hmm_kernel.sum64(counts, dim)
    divisor = hmm_kernel.cast(total + (total == 0), counts)  # the sum rounded to counts' dtype
    counts /= divisor[None] if dim == 0 else divisor[:, None]
    for i in np.flatnonzero(hmm_kernel.to_numpy(total).reshape(-1) == 0):
        index = [slice(None)] * counts.ndim  # 1-D: all of it; 2-D: the slice along dim
        if counts.ndim == 2:
            index[1 - dim] = int(i)
        counts[tuple(index)] = 1.0 / counts.shape[dim]
    return counts


def log_prior(pi: Array, a: Array, bt: Array, pseudo) -> float:
    """:func:`~lmladder.baselines.hmm_core.log_prior` of (pi, A, B = ``bt``.T) in float64 sums,
    taking logarithms a block of ~64k entries at a time so no large temporary is needed."""
    total = 0.0
    for p, w in zip((pi, a, bt), pseudo, strict=True):
        if w:
            rows = max(1, 2**16 // math.prod(p.shape[1:]))
            total += w * sum(hmm_kernel.log_sum(p[i : i + rows]) for i in range(0, len(p), rows))
    return total


class Emissions:
    """How the E-step holds B: dense, as B.T (V, K); or, with blocked emissions (``groups``, the
    cluster of each word; see :mod:`~lmladder.baselines.hmm_kernel`), compact (V, S): each word's
    probabilities from the S states of its own group, the only ones that can emit it."""

    def __init__(self, groups: np.ndarray | None, states: int, arrays) -> None:
        self.arrays = arrays
        self.blocks = 1 if groups is None else int(groups.max()) + 1
        self.size = states // self.blocks  # S: the states a token's distribution lives on
        self._groups = groups
        self.groups = None if groups is None else arrays.asarray(groups)

    def views(self, pi: Array, a: Array) -> tuple[Array, Array]:
        """pi and A (or their counts) as views in the layout of
        :func:`~lmladder.baselines.hmm_kernel.forward`: writing to them writes to the originals."""
        if self.groups is None:
            return pi, a
        return pi.reshape(self.blocks, self.size), hmm_kernel.transition_blocks(a, self.blocks)

    def chain(self, pi: Array, a: Array, dtype: str) -> tuple[Array, Array]:
        """pi and A (numpy arrays, or arrays of this kind) as new contiguous arrays of dtype
        ``dtype`` in that layout (with blocks, each (S, S) block of A one contiguous piece, which
        the kernel's gathers need to be fast), copied once."""
        pi, a = self.views(pi, a)
        return self.arrays.contiguous(pi, dtype), self.arrays.contiguous(a, dtype)

    def compact(self, b: np.ndarray, dtype: str) -> Array:
        """B (K, V) float64 in this layout, dtype ``dtype``."""
        if self.groups is None:
            return self.arrays.transposed(b, dtype)
        words = np.arange(b.shape[1])
        own = b.reshape(self.blocks, self.size, -1)[self._groups, :, words]
        return self.arrays.asarray(own, dtype)

    def normalize_(self, counts: Array, pseudo: float) -> Array:
        """The emission M-step in place on ``counts`` (this layout); every state's words get
        ``pseudo`` (blocked: only its cluster's words, the rest stay impossible)."""
        if self.groups is None:
            return normalize_(counts, pseudo, 0)
        counts += pseudo
        sums = hmm_kernel.new(counts, (self.blocks, self.size), 0.0)
        hmm_kernel.index_add(sums, self.groups, counts)
        total = sums[self.groups]  # (V, S): each state's total over its cluster's words
        counts /= total + (total == 0)
        # A state that saw nothing (possible only without a prior) is uniform over its cluster.
        for g, s in zip(*np.nonzero(hmm_kernel.to_numpy(sums) == 0), strict=True):
            cluster = self._groups == g
            counts[self.arrays.asarray(cluster), int(s)] = 1.0 / cluster.sum()
        return counts

    def dense(self, bt: Array) -> Array:
        """B (K, V) in float64 from this layout, rows renormalized in float64 (in float32 they sum
        to one only to ~1e-7)."""
        k, v = self.blocks * self.size, bt.shape[0]
        b = self.arrays.zeros((k, v), "float64")
        if self.groups is None:
            b[...] = bt.T
        else:
            words = self.arrays.asarray(np.arange(v))
            b.reshape(self.blocks, self.size, v)[self.groups, :, words] = hmm_kernel.cast(bt, b)
        b /= b.sum(1)[:, None]
        return b


class EM:
    """Baum-Welch passes over packed chunks, with parameters where ``arrays`` puts them
    (:data:`NUMPY`, or a torch device) in the training dtype.

    Memory beyond the chunks: the emission matrix twice, (V, K) or with blocks (V, S) (the
    parameters the E-step reads and the counts it writes, which the M-step normalizes in place
    into the next parameters), one chunk's alpha lattice (see :func:`em_chunk_tokens`) and
    O(K^2).  Start and transition counts are summed in float64; emission counts in the training
    dtype.  ``groups``: the word clusters of blocked emissions (``None``: dense).
    """

    monotone = True  # MAP-EM never lowers ln p(train) + ln prior: a small gain is convergence

    def __init__(self, cfg, train, boundary_id, params, dtype: str, arrays=NUMPY,
                 groups=None) -> None:
        self.cfg, self.arrays = cfg, arrays
        pi, a, b = params
        self.emissions = Emissions(groups, len(pi), arrays)
        self.chunks = make_chunks(
            train, boundary_id, em_chunk_tokens(cfg.batch_tokens, self.emissions.size, dtype),
            arrays,
        )
        self._dtype = dtype
        # numpy sums emission counts by a sparse product: each chunk's rows grouped once
        self._word_rows = [hmm_kernel.RowGroups.of(c.words, dtype) if arrays is NUMPY else None
                           for c in self.chunks]
        self._pi64, self._a64 = (arrays.asarray(x, "float64") for x in (pi, a))
        self.pi, self.a = self.emissions.chain(pi, a, dtype)
        self.bt = self.emissions.compact(b, dtype)
        self._spare: Array | None = None  # the buffer of the next pass's emission counts
        self._lattice: Array | None = None  # alpha of the chunk in hand
        # Made now, while the caller still holds the numpy start: glibc raises its mmap threshold
        # when a large block is freed, and buffers allocated after that land in the heap, which
        # never shrinks -- then freeing them for parameters() would not lower the process's RSS.
        self._workspace()
        self._priors = (cfg.start_prior, cfg.transition_prior, cfg.emission_prior)
        self._prior = log_prior(self._pi64, self._a64, self.bt, self._priors)

    def one_pass(self, budget, clock, steps, tokens) -> tuple[float, float, int, int, bool]:
        """One E-step over all chunks and the M-step; returns (ln p(train), ln p(train) +
        ln prior of the parameters the E-step used, steps, tokens, complete)."""
        k, arrays, emissions = len(self._pi64), self.arrays, self.emissions
        spare, lattice = self._workspace()
        start, trans = arrays.zeros((k,), "float64"), arrays.zeros((k, k), "float64")
        spare[...] = 0
        counts = hmm_kernel.Counts(*emissions.views(start, trans), spare)
        ll = sum(
            hmm_kernel.expected_counts(self.pi, self.a, self.bt, c.words, c.batch_sizes, counts,
                                       lattice, emissions.groups, word_rows)
            for c, word_rows in zip(self.chunks, self._word_rows, strict=True)
        )
        objective = ll + self._prior
        start_prior, transition_prior, emission_prior = self._priors
        self._pi64 = normalize_(start, start_prior, 0)
        self._a64 = normalize_(trans, transition_prior, 1)
        self._spare, self.bt = self.bt, emissions.normalize_(counts.emit, emission_prior)
        self.a = None  # let the old A go before the new one is made: it can be GiBs
        self.pi, self.a = emissions.chain(self._pi64, self._a64, self._dtype)
        self._prior = log_prior(self._pi64, self._a64, self.bt, self._priors)
        return ll, objective, 1, sum(c.num_tokens for c in self.chunks), True

    def _workspace(self) -> tuple[Array, Array]:
        """The emission-count buffer and the alpha lattice (sized for the largest chunk)."""
        if self._spare is None or self._lattice is None:
            self._spare = self.arrays.empty(tuple(self.bt.shape), self._dtype)
            tokens = max(c.num_tokens for c in self.chunks)
            self._lattice = self.arrays.empty((tokens, self.bt.shape[1]), self._dtype)
        return self._spare, self._lattice

    def parameters(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The current parameters as float64 numpy arrays (K,), (K, K), (K, V), which later
        passes leave alone (the M-step makes new arrays; it never writes into these)."""
        pi, a, widen = self.release()
        return pi, a, widen()

    def release(self) -> tuple[np.ndarray, np.ndarray, Callable[[], np.ndarray]]:
        """Like :meth:`parameters`, for the end of training (a later pass would overwrite this
        B): B comes as a function that widens it to float64 when called, so a caller that drops
        this trainer first never holds B in the training dtype and in float64 at once (at
        K = 256, V = 10k that pair is 29 MiB, once the peak of a whole fit)."""
        self._spare = self._lattice = None  # B in float64 takes their place (a pass remakes them)
        emissions, bt = self.emissions, self.bt
        pi, a = (hmm_kernel.to_numpy(x) for x in (self._pi64, self._a64))
        return pi, a, lambda: hmm_kernel.to_numpy(emissions.dense(bt))
