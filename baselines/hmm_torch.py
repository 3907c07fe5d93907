"""The torch half of the ``hmm`` backend: packed-sentence chunks, the scaled forward-backward
E-step, the differentiable forward pass, the EM and Adam trainers and batched filtering.

:mod:`lmladder.baselines.hmm` imports this module when an HMM is built, so the HMM family (and
``lmladder.baselines`` as a whole) imports without torch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from lmladder.baselines import hmm_kernel
from lmladder.baselines.hmm_core import Packed, pack, sentence_bounds

# One E-step chunk's alpha lattice (tokens x K) may take this much, or the size of A if that is
# larger: small enough that streaming keeps EM's memory near the parameters' own, large enough
# that each time step's matrix product spans many sentences.  Measured on a quiet 2-core machine,
# K = 256, 100k PTB tokens, 2 threads, one EM iteration (python -m lmladder.perf.hmm --only
# speed): 2 MiB 0.69 s and 303 MiB peak, 8 MiB 0.46 s and 314 MiB, 32 MiB 0.42 s and 343 MiB
# (hmmlearn: 27-30 s, 302 MiB; of our peak, importing torch alone is ~35 MiB above hmmlearn's
# imports).  8 MiB buys most of the speed for 11 MiB.
LATTICE_BYTES = 8 * 2**20


@dataclass(frozen=True)
class Chunk:
    """One chunk of packed training sentences on the training device."""

    words: torch.Tensor  # int64 (N,), packed order
    batch_sizes: list[int]

    @property
    def num_tokens(self) -> int:
        return len(self.words)


def make_chunks(train: np.ndarray, boundary_id: int, batch_tokens: int, device) -> list[Chunk]:
    """The sentences of ``train`` in chunks of about ``batch_tokens`` tokens, each packed."""
    starts, lengths = sentence_bounds(train, boundary_id)
    order = np.argsort(-lengths, kind="stable")  # similar lengths share a chunk: few idle steps
    starts, lengths = starts[order], lengths[order]
    chunk_of = np.cumsum(lengths) // max(batch_tokens, 1)
    out = []
    for c in np.unique(chunk_of):
        sel = chunk_of == c
        p: Packed = pack(starts[sel], lengths[sel])
        out.append(Chunk(torch.as_tensor(train[p.source], device=device), p.batch_sizes.tolist()))
    return out


def em_chunk_tokens(batch_tokens: int, states: int, dtype: str) -> int:
    """Tokens per E-step chunk: ``batch_tokens`` at most, and few enough that the chunk's alpha
    lattice (tokens x ``states``, the states a token's distribution lives on) fits
    :data:`LATTICE_BYTES` or the size of a (``states``, ``states``) block of A."""
    itemsize = getattr(torch, dtype).itemsize
    return min(batch_tokens, max(LATTICE_BYTES // (states * itemsize), states))


def chunk_loglik(
    chunk: Chunk, pi: torch.Tensor, a: torch.Tensor, b: torch.Tensor
) -> torch.Tensor:
    """ln p(chunk) by the scaled forward recursion, differentiable (a 0-d tensor); ``b`` (K, V)."""
    steps = hmm_kernel.forward(pi, a, b.T, chunk.words, chunk.batch_sizes)
    return sum(s.scale.log().sum() for s in steps)


def tensors(arrays, dtype: str, device: str) -> tuple[torch.Tensor, ...]:
    """numpy arrays as torch tensors of dtype ``dtype`` (a name: "float32", "float64") on
    ``device``."""
    return tuple(torch.as_tensor(x, dtype=getattr(torch, dtype), device=device) for x in arrays)


@contextlib.contextmanager
def threads(n: int | None):
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def transposed(b: np.ndarray, dtype: str, device: str) -> torch.Tensor:
    """``b`` (K, V) as a contiguous (V, K) tensor of dtype ``dtype`` on ``device``, without a
    second full-size temporary."""
    out = torch.empty(b.shape[::-1], dtype=getattr(torch, dtype), device=device)
    return out.copy_(torch.from_numpy(np.asarray(b)).T)


def filter_logprobs(pi: torch.Tensor, a: torch.Tensor, bt: torch.Tensor,
                    groups: torch.Tensor | None, tokens: np.ndarray, packed: Packed) -> np.ndarray:
    """ln p(w_i | w_<i) (float64 ``(N,)``) of the packed sentences of ``tokens``, all filtered at
    once: parameters float64 on one device, in the layout of
    :func:`~lmladder.baselines.hmm_kernel.forward` (dense, or blocked with ``groups``)."""
    words = torch.as_tensor(tokens[packed.source], device=bt.device)
    steps = hmm_kernel.forward(pi, a, bt, words, packed.batch_sizes.tolist(), groups)
    scales = torch.cat([s.scale for s in steps])
    result = np.empty(packed.num_tokens)
    result[packed.source] = scales.log().cpu().numpy()
    return result


def _normalize_(counts: torch.Tensor, pseudo: float, dim: int) -> torch.Tensor:
    """The EM M-step in place: ``counts + pseudo`` normalized along ``dim`` (a Dirichlet prior of
    concentration ``1 + pseudo``); a slice with no mass at all becomes uniform."""
    total = counts.add_(pseudo).sum(dim, keepdim=True)
    counts.div_(torch.where(total > 0, total, 1.0))
    return counts.masked_fill_(total == 0, 1.0 / counts.shape[dim])


def _log_prior(pi: torch.Tensor, a: torch.Tensor, bt: torch.Tensor, pseudo) -> float:
    """:func:`~lmladder.baselines.hmm_core.log_prior` of (pi, A, B = ``bt``.T) in float64 sums,
    taking logarithms a block of ~64k entries at a time so no large temporary is needed."""
    total = 0.0
    for p, w in zip((pi, a, bt), pseudo, strict=True):
        if w:
            rows = max(1, 2**16 // p[0].numel())
            total += w * sum(float(x.log().sum(dtype=torch.float64)) for x in p.split(rows))
    return total


class Emissions:
    """How the E-step holds B: dense, as B.T (V, K); or, with blocked emissions (``groups``, the
    cluster of each word; see :mod:`~lmladder.baselines.hmm_kernel`), compact (V, S): each word's
    probabilities from the S states of its own group, the only ones that can emit it."""

    def __init__(self, groups: np.ndarray | None, states: int, device) -> None:
        self.blocks = 1 if groups is None else int(groups.max()) + 1
        self.size = states // self.blocks  # S: the states a token's distribution lives on
        self.groups = None if groups is None else torch.as_tensor(groups, device=device)

    def views(self, pi: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """pi and A (or their counts) as views in the layout of
        :func:`~lmladder.baselines.hmm_kernel.forward`: writing to them writes to the originals."""
        if self.groups is None:
            return pi, a
        return pi.view(self.blocks, self.size), hmm_kernel.transition_blocks(a, self.blocks)

    def chain(self, pi, a, dtype: str, device) -> tuple[torch.Tensor, torch.Tensor]:
        """pi and A (numpy arrays or tensors) as new contiguous tensors of dtype ``dtype`` on
        ``device`` in that layout (with blocks, each (S, S) block of A one contiguous piece, which
        the kernel's gathers need to be fast), copied once."""
        pi, a = self.views(torch.as_tensor(pi), torch.as_tensor(a))
        return tuple(x.to(device=device, dtype=getattr(torch, dtype), copy=True,
                          memory_format=torch.contiguous_format) for x in (pi, a))

    def compact(self, b: np.ndarray, dtype: str, device) -> torch.Tensor:
        """B (K, V) float64 in this layout, dtype ``dtype``."""
        if self.groups is None:
            return transposed(b, dtype, device)
        words = np.arange(b.shape[1])
        own = b.reshape(self.blocks, self.size, -1)[self.groups.cpu().numpy(), :, words]
        return torch.as_tensor(own, dtype=getattr(torch, dtype), device=device)

    def normalize_(self, counts: torch.Tensor, pseudo: float) -> torch.Tensor:
        """The emission M-step in place on ``counts`` (this layout); every state's words get
        ``pseudo`` (blocked: only its cluster's words, the rest stay impossible)."""
        if self.groups is None:
            return _normalize_(counts, pseudo, 0)
        counts.add_(pseudo)
        sums = counts.new_zeros(self.blocks, self.size).index_add_(0, self.groups, counts)
        total = sums[self.groups]  # (V, S): each state's total over its cluster's words
        counts.div_(torch.where(total > 0, total, 1.0))
        # A state that saw nothing (possible only without a prior) is uniform over its cluster.
        uniform = 1.0 / torch.bincount(self.groups, minlength=self.blocks)[self.groups, None]
        return torch.where(total > 0, counts, uniform.to(counts.dtype))

    def dense(self, bt: torch.Tensor) -> torch.Tensor:
        """B (K, V) in float64 from this layout, rows renormalized in float64 (in float32 they sum
        to one only to ~1e-7)."""
        k, v = self.blocks * self.size, bt.shape[0]
        b = torch.zeros(k, v, dtype=torch.float64, device=bt.device)
        if self.groups is None:
            b.copy_(bt.T)
        else:
            words = torch.arange(v, device=bt.device)
            b.view(self.blocks, self.size, v)[self.groups, :, words] = bt.double()
        return b.div_(b.sum(1, keepdim=True))


class EM:
    """Baum-Welch passes over packed chunks, with parameters on the device in the training dtype.

    Memory beyond the chunks: the emission matrix twice, (V, K) or with blocks (V, S) (the
    parameters the E-step reads and the counts it writes, which the M-step normalizes in place
    into the next parameters), one chunk's alpha lattice (see :func:`em_chunk_tokens`) and
    O(K^2).  Start and transition counts are summed in float64; emission counts in the training
    dtype.  ``groups``: the word clusters of blocked emissions (``None``: dense).
    """

    monotone = True  # MAP-EM never lowers ln p(train) + ln prior: a small gain is convergence

    def __init__(self, cfg, train, boundary_id, params, dtype, dev, groups=None) -> None:
        self.cfg = cfg
        pi, a, b = params
        self.emissions = Emissions(groups, len(pi), dev)
        self.chunks = make_chunks(
            train, boundary_id, em_chunk_tokens(cfg.batch_tokens, self.emissions.size, dtype), dev
        )
        self._dtype = dtype
        self._pi64, self._a64 = tensors((pi, a), "float64", dev)
        self.pi, self.a = self.emissions.chain(pi, a, dtype, dev)
        self.bt = self.emissions.compact(b, dtype, dev)
        self._spare: torch.Tensor | None = None  # the buffer of the next pass's emission counts
        self._lattice: torch.Tensor | None = None  # alpha of the chunk in hand
        # Made now, while the caller still holds the numpy start: glibc raises its mmap threshold
        # when a large block is freed, and buffers allocated after that land in the heap, which
        # never shrinks -- then freeing them for parameters() would not lower the process's RSS.
        self._workspace()
        self._priors = (cfg.start_prior, cfg.transition_prior, cfg.emission_prior)
        self._prior = _log_prior(self._pi64, self._a64, self.bt, self._priors)

    def one_pass(self, budget, clock, steps, tokens) -> tuple[float, float, int, int, bool]:
        """One E-step over all chunks and the M-step; returns (ln p(train), ln p(train) +
        ln prior of the parameters the E-step used, steps, tokens, complete)."""
        k, dev, emissions = len(self._pi64), self.bt.device, self.emissions
        spare, lattice = self._workspace()
        start = torch.zeros(k, dtype=torch.float64, device=dev)
        trans = torch.zeros(k, k, dtype=torch.float64, device=dev)
        counts = hmm_kernel.Counts(*emissions.views(start, trans), spare.zero_())
        ll = sum(
            hmm_kernel.expected_counts(
                self.pi, self.a, self.bt, c.words, c.batch_sizes, counts, lattice, emissions.groups
            )
            for c in self.chunks
        )
        objective = ll + self._prior
        start_prior, transition_prior, emission_prior = self._priors
        self._pi64 = _normalize_(start, start_prior, 0)
        self._a64 = _normalize_(trans, transition_prior, 1)
        self._spare, self.bt = self.bt, emissions.normalize_(counts.emit, emission_prior)
        self.a = None  # let the old A go before the new one is made: it can be GiBs
        self.pi, self.a = emissions.chain(self._pi64, self._a64, self._dtype, dev)
        self._prior = _log_prior(self._pi64, self._a64, self.bt, self._priors)
        return ll, objective, 1, sum(c.num_tokens for c in self.chunks), True

    def _workspace(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The emission-count buffer and the alpha lattice (sized for the largest chunk)."""
        if self._spare is None or self._lattice is None:
            self._spare = torch.empty_like(self.bt)
            tokens = max(c.num_tokens for c in self.chunks)
            self._lattice = self.bt.new_empty((tokens, self.bt.shape[1]))
        return self._spare, self._lattice

    def parameters(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The current parameters as float64 numpy arrays (K,), (K, K), (K, V), which later
        passes leave alone (the M-step makes new tensors; it never writes into these)."""
        pi, a, widen = self.release()
        return pi, a, widen()

    def release(self) -> tuple[np.ndarray, np.ndarray, Callable[[], np.ndarray]]:
        """Like :meth:`parameters`, for the end of training (a later pass would overwrite this
        B): B comes as a function that widens it to float64 when called, so a caller that drops
        this trainer first never holds B in the training dtype and in float64 at once (at
        K = 256, V = 10k that pair is 29 MiB, once the peak of a whole fit)."""
        self._spare = self._lattice = None  # B in float64 takes their place (a pass remakes them)
        emissions, bt = self.emissions, self.bt
        pi, a = (x.cpu().numpy() for x in (self._pi64, self._a64))
        return pi, a, lambda: emissions.dense(bt).cpu().numpy()


class Adam:
    """Adam on row-softmax log-parameters, one chunk per step, chunks in a seeded random order."""

    monotone = False

    def __init__(self, cfg, chunks, params, dtype, dev, rng) -> None:
        self.cfg, self.chunks, self.rng = cfg, chunks, rng
        self.logits = [
            torch.log(p).requires_grad_() for p in tensors(params, dtype, dev)
        ]
        self.opt = torch.optim.Adam(self.logits, lr=self.cfg.lr)
        self.total = sum(c.num_tokens for c in chunks)

    def one_pass(self, budget, clock, steps, tokens) -> tuple[float, float, int, int, bool]:
        """Adam steps over the chunks in random order until the pass or the budget ends; returns
        (sum of the chunks' ln p at their step, the same, steps, tokens, complete)."""
        cfg = self.cfg
        priors = (cfg.start_prior, cfg.transition_prior, cfg.emission_prior)
        ll, n_steps, n_tok = 0.0, 0, 0
        for i in self.rng.permutation(len(self.chunks)):
            if budget.exhausted(tokens=tokens + n_tok, steps=steps + n_steps, seconds=clock()):
                return ll, ll, n_steps, n_tok, False
            chunk = self.chunks[i]
            logs = [torch.log_softmax(x, dim=-1) for x in self.logits]
            c_ll = chunk_loglik(chunk, *(x.exp() for x in logs))
            # The Dirichlet priors belong to the whole corpus: each chunk carries its share.
            share = chunk.num_tokens / self.total
            log_prior = sum(w * x.sum() for w, x in zip(priors, logs, strict=True) if w)
            loss = -(c_ll + share * log_prior) / chunk.num_tokens
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            ll += float(c_ll.detach())
            n_steps += 1
            n_tok += chunk.num_tokens
        return ll, ll, n_steps, n_tok, True

    def release(self) -> tuple[np.ndarray, np.ndarray, Callable[[], np.ndarray]]:
        """:meth:`parameters` in the form of :meth:`EM.release`."""
        pi, a, b = self.parameters()
        return pi, a, lambda: b

    def parameters(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        with torch.no_grad():
            out = []
            for x in self.logits:
                p = torch.softmax(x.double(), dim=-1).cpu().numpy()
                out.append(p / p.sum(axis=-1, keepdims=True))
            return tuple(out)
