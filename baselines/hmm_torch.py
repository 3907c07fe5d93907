"""The torch half of the ``hmm`` model: arrays on a torch device for
:mod:`~lmladder.baselines.hmm_em`'s EM (used on CUDA), the differentiable forward pass and the Adam
trainer (any device).

:mod:`lmladder.baselines.hmm` imports this module only for a CUDA device or ``trainer="adam"``:
on the CPU, EM and scoring run on numpy, and the HMM family imports and runs without torch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import numpy as np
import torch

from lmladder.baselines import hmm_kernel
from lmladder.baselines.hmm_em import Chunk


class TorchArrays:
    """Where :mod:`~lmladder.baselines.hmm_em` keeps its arrays: torch tensors on ``device``
    (the counterpart of :class:`~lmladder.baselines.hmm_em.NumpyArrays`)."""

    def __init__(self, device) -> None:
        self.device = device

    def asarray(self, x, dtype: str | None = None) -> torch.Tensor:
        return torch.as_tensor(x, dtype=None if dtype is None else getattr(torch, dtype),
                               device=self.device)

    def contiguous(self, x, dtype: str) -> torch.Tensor:
        """A new contiguous copy of ``x`` (a numpy array or a tensor, any layout), copied once."""
        return torch.as_tensor(x).to(device=self.device, dtype=getattr(torch, dtype), copy=True,
                                     memory_format=torch.contiguous_format)

    def empty(self, shape: tuple[int, ...], dtype: str) -> torch.Tensor:
        return torch.empty(shape, dtype=getattr(torch, dtype), device=self.device)

    def zeros(self, shape: tuple[int, ...], dtype: str) -> torch.Tensor:
        return torch.zeros(shape, dtype=getattr(torch, dtype), device=self.device)

    def transposed(self, b: np.ndarray, dtype: str) -> torch.Tensor:
        """``b`` (K, V) as a contiguous (V, K) tensor of dtype ``dtype``, without a second
        full-size temporary."""
        return self.empty(b.shape[::-1], dtype).copy_(torch.from_numpy(np.asarray(b)).T)

    @staticmethod
    @contextlib.contextmanager
    def threads(n: int | None) -> Iterator[None]:
        """torch's intra-op threads set to ``n`` inside the block (``None``: as they are)."""
        before = torch.get_num_threads()
        if n is not None:
            torch.set_num_threads(n)
        try:
            yield
        finally:
            torch.set_num_threads(before)


def chunk_loglik(
    chunk: Chunk, pi: torch.Tensor, a: torch.Tensor, b: torch.Tensor
) -> torch.Tensor:
    """ln p(chunk) by the scaled forward recursion, differentiable (a 0-d tensor); ``b`` (K, V)."""
    steps = hmm_kernel.forward(pi, a, b.T, chunk.words, chunk.batch_sizes)
    return sum(s.scale.log().sum() for s in steps)


class Adam:
    """Adam on row-softmax log-parameters, one chunk per step, chunks in a seeded random order."""

    monotone = False

    def __init__(self, cfg, chunks, params, dtype, arrays: TorchArrays, rng) -> None:
        self.cfg, self.chunks, self.rng = cfg, chunks, rng
        self.logits = [torch.log(arrays.asarray(p, dtype)).requires_grad_() for p in params]
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
        """:meth:`parameters` in the form of :meth:`~lmladder.baselines.hmm_em.EM.release`."""
        pi, a, b = self.parameters()
        return pi, a, lambda: b

    def parameters(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        with torch.no_grad():
            out = []
            for x in self.logits:
                p = torch.softmax(x.double(), dim=-1).cpu().numpy()
                out.append(p / p.sum(axis=-1, keepdims=True))
            return tuple(out)
