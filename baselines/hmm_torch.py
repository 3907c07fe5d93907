"""The torch half of the ``hmm`` backend: packed-sentence chunks, the scaled forward-backward
E-step, the differentiable forward pass, the EM and Adam trainers and batched filtering.

:mod:`lmladder.baselines.hmm` imports this module when an HMM is built, so the HMM family (and
``lmladder.baselines`` as a whole) imports without torch.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch

from lmladder.baselines.hmm_core import Packed, log_prior, normalize_counts, pack, sentence_bounds


@dataclass(frozen=True)
class Chunk:
    """One chunk of packed training sentences on the training device."""

    words: torch.Tensor  # int64 (N,), packed order
    batch_sizes: list[int]
    offsets: list[int]
    has_next: torch.Tensor  # int64: packed positions whose sentence continues at t + 1

    @property
    def num_tokens(self) -> int:
        return self.offsets[-1]


def make_chunks(train: np.ndarray, boundary_id: int, batch_tokens: int, device) -> list[Chunk]:
    starts, lengths = sentence_bounds(train, boundary_id)
    order = np.argsort(-lengths, kind="stable")  # similar lengths share a chunk: few idle steps
    starts, lengths = starts[order], lengths[order]
    chunk_of = np.cumsum(lengths) // max(batch_tokens, 1)
    out = []
    for c in np.unique(chunk_of):
        sel = chunk_of == c
        p: Packed = pack(starts[sel], lengths[sel])
        off, bs = p.offsets, p.batch_sizes
        has_next = np.concatenate(
            [np.arange(off[t], off[t] + bs[t + 1]) for t in range(p.num_steps - 1)]
            or [np.zeros(0, dtype=np.int64)]
        )
        out.append(
            Chunk(
                torch.as_tensor(train[p.source], device=device),
                bs.tolist(),
                off.tolist(),
                torch.as_tensor(has_next, dtype=torch.int64, device=device),
            )
        )
    return out


def estep(
    chunk: Chunk, pi: torch.Tensor, a: torch.Tensor, b: torch.Tensor
) -> tuple[float, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Scaled forward-backward over one chunk.

    ``pi`` (K,), ``a`` (K, K), ``b`` (K, V): probabilities in the training dtype.  Returns
    (ln p(chunk) in nats, expected start counts (K,), transition counts (K, K),
    emission counts (K, V)), counts in the input dtype.
    """
    bs, off, n_tok = chunk.batch_sizes, chunk.offsets, chunk.num_tokens
    obs = b.T.contiguous()[chunk.words]  # (N, K): b_k(w) at every packed position
    alpha = torch.empty_like(obs)
    scale = torch.empty(n_tok, dtype=obs.dtype, device=obs.device)
    for t in range(len(bs)):
        lo, n = off[t], bs[t]
        prior = pi if t == 0 else alpha[off[t - 1] : off[t - 1] + n] @ a
        joint = prior * obs[lo : lo + n]
        scale[lo : lo + n] = joint.sum(dim=1)
        alpha[lo : lo + n] = joint / scale[lo : lo + n, None]
    beta = torch.ones_like(obs)  # beta at a sentence's last token is 1
    nxt = torch.empty(n_tok - bs[0], obs.shape[1], dtype=obs.dtype, device=obs.device)
    for t in range(len(bs) - 2, -1, -1):
        lo, n = off[t + 1], bs[t + 1]
        r = beta[lo : lo + n] * obs[lo : lo + n] / scale[lo : lo + n, None]
        nxt[lo - bs[0] : lo - bs[0] + n] = r
        beta[off[t] : off[t] + n] = r @ a.T
    gamma = beta.mul_(alpha)  # state posteriors (N, K); scaling makes rows sum to one
    trans = a * (alpha[chunk.has_next].T @ nxt)
    emit = torch.zeros(b.shape[1], b.shape[0], dtype=obs.dtype, device=obs.device)
    emit.index_add_(0, chunk.words, gamma)
    return float(scale.log().double().sum()), gamma[: bs[0]].sum(dim=0), trans, emit.T


def chunk_loglik(
    chunk: Chunk, pi: torch.Tensor, a: torch.Tensor, b: torch.Tensor
) -> torch.Tensor:
    """ln p(chunk) by the scaled forward recursion, differentiable (a 0-d tensor)."""
    bs, off = chunk.batch_sizes, chunk.offsets
    obs = b.T[chunk.words]
    total = obs.new_zeros(())
    alpha = pi[None, :]
    for t in range(len(bs)):
        lo, n = off[t], bs[t]
        joint = (alpha[:n] if t == 0 else alpha[:n] @ a) * obs[lo : lo + n]
        scale = joint.sum(dim=1)
        total = total + scale.log().sum()
        alpha = joint / scale[:, None]
    return total


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


def filter_logprobs(
    pi: torch.Tensor, a: torch.Tensor, bt: torch.Tensor, tokens: np.ndarray, packed: Packed
) -> np.ndarray:
    """ln p(w_i | w_<i) (float64 ``(N,)``) of the packed sentences of ``tokens``, all filtered at
    once: ``pi`` (K,), ``a`` (K, K), ``bt`` (V, K) float64 on one device."""
    device = bt.device
    words = torch.as_tensor(tokens[packed.source], device=device)
    out = torch.empty(packed.num_tokens, dtype=torch.float64, device=device)
    off, bs = packed.offsets.tolist(), packed.batch_sizes.tolist()
    post = pi[None, :]
    for t in range(len(bs)):
        lo, n = off[t], bs[t]
        joint = (post[:n] if t == 0 else post[:n] @ a) * bt[words[lo : lo + n]]
        z = joint.sum(dim=1)
        out[lo : lo + n] = z.log()
        post = joint / torch.where(z > 0, z, 1.0)[:, None]
    result = np.empty(packed.num_tokens)
    result[packed.source] = out.cpu().numpy()
    return result


class EM:
    """Baum-Welch passes over the chunks; parameters live on the device in the training dtype."""

    monotone = True  # MAP-EM never lowers ln p(train) + ln prior: a small gain is convergence

    def __init__(self, cfg, chunks, params, dtype, dev) -> None:
        self.cfg, self.chunks = cfg, chunks
        self._params = params
        self.pi, self.a, self.b = tensors(params, dtype, dev)

    def one_pass(self, budget, clock, steps, tokens) -> tuple[float, float, int, int, bool]:
        """One E-step over all chunks and the M-step; returns (ln p(train), ln p(train) +
        ln prior of the parameters the E-step used, steps, tokens, complete)."""
        k, v = self.b.shape
        start = np.zeros(k)
        trans = np.zeros((k, k))
        emit = np.zeros((k, v))
        ll, n_tok = 0.0, 0
        for chunk in self.chunks:
            c_ll, c_start, c_trans, c_emit = estep(chunk, self.pi, self.a, self.b)
            ll += c_ll
            n_tok += chunk.num_tokens
            # Summing the chunks' counts in float64 keeps float32 training exact enough.
            start += c_start.double().cpu().numpy()
            trans += c_trans.double().cpu().numpy()
            emit += c_emit.double().cpu().numpy()
        cfg = self.cfg
        priors = (cfg.start_prior, cfg.transition_prior, cfg.emission_prior)
        objective = ll + log_prior(self._params, priors)  # of the parameters this E-step used
        new = (
            normalize_counts(start, cfg.start_prior),
            normalize_counts(trans, cfg.transition_prior),
            normalize_counts(emit, cfg.emission_prior),
        )
        self.pi, self.a, self.b = (
            torch.as_tensor(p, dtype=self.b.dtype, device=self.b.device) for p in new
        )
        self._params = new
        return ll, objective, 1, n_tok, True

    def parameters(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self._params


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

    def parameters(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        with torch.no_grad():
            out = []
            for x in self.logits:
                p = torch.softmax(x.double(), dim=-1).cpu().numpy()
                out.append(p / p.sum(axis=-1, keepdims=True))
            return tuple(out)
