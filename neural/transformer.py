"""A decoder-only Transformer language model (GPT-style), trained by :mod:`lmladder.neural.loop`.

Architecture: token embedding (+ learned position embedding, or rotary position encoding of queries
and keys, Su et al. 2021) -> ``layers`` pre-LayerNorm blocks ``x + Attn(LN(x))``, ``x + MLP(LN(x))``
with a GELU MLP of width ``mlp_ratio * width`` -> final LayerNorm -> output layer tied to the
embedding (``tied=True``).  Causal self-attention goes through
``torch.nn.functional.scaled_dot_product_attention`` (flash/memory-efficient kernels on GPU).
Weights start normal(0, 0.02), residual output projections normal(0, 0.02 / sqrt(2 * layers)), as
in GPT-2.  Training reads independent windows of ``context`` tokens (random positions by default).

Parameter count, with ``d`` = width, ``r`` = mlp_ratio, ``L`` layers, ``V`` vocabulary, ``C``
context, ``b`` = 1 with biases else 0::

    V*d  +  C*d*(learned positions)  +  L*((4 + 2r)*d*d + (2 + 2b)*d + b*(5 + r)*d)
         +  (1 + b)*d  +  V*d*(not tied)

e.g. the nanoGPT CPU size (L=4, 4 heads, d=128, C=64, no biases, tied) on Tiny Shakespeare
(V=65): 8,320 + 8,192 + 4 * 196,864 + 128 = 804,096.

Scoring long streams: sliding windows
-------------------------------------
The model sees at most ``window`` input tokens (``ContextPolicy.window``, default ``context``; it
may not exceed ``context``).  The inputs of a stream are the boundary token followed by the tokens
themselves; the prediction at position ``p`` is the distribution of token ``p`` given inputs up to
``p``.  The first window holds inputs ``0 .. window-1`` and scores those ``window`` positions;
window ``k >= 1`` holds inputs ``k*stride .. k*stride + window - 1`` and scores only its last
``stride`` positions (``ContextPolicy.stride``, default ``window // 2``).  Every token is scored
exactly once, with between ``window - stride + 1`` and ``window`` tokens of history once the stream
is long enough.

Worked example (window 4, stride 2; inputs ``| a b c d e`` predicting ``a b c d e f``): window 0
``| a b c`` scores ``a b c d``; window 1 ``b c d e`` scores ``e f`` (histories ``b c d`` and
``b c d e``: 3 and 4 tokens).

The state API reproduces this exactly for the default policy (window = context, stride = context //
2): the state keeps the token history and the KV cache; when the history is full (``context``
tokens) and another token arrives, the oldest ``stride`` tokens are dropped and the cache is
recomputed from the ``context - stride`` that remain (their positions restart at 0, as in a fresh
window).  So ``step`` and ``token_logprobs`` see the same histories token for token; scoring with a
non-default window or stride has no step-by-step counterpart.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from lmladder.api import ConfigError, ContextPolicy, require
from lmladder.neural.loop import TrainConfig
from lmladder.neural.torchlm import TorchLM


@dataclass(frozen=True)
class WindowTrainConfig(TrainConfig):
    """The loop's fields for models trained on windows of ``context`` tokens, with nanoGPT's
    Shakespeare-char recipe as defaults (AdamW lr 1e-3, beta2 0.99, weight decay 0.1, batch 12,
    100 warm-up steps).  Our Transformer and ``hf-gpt2`` both inherit it, so they train alike."""

    context: int = 64
    dropout: float = 0.0
    sampling: Literal["random", "sequential"] = "random"
    batch_size: int = 12
    weight_decay: float = 0.1
    warmup_steps: int = 100

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self, "context", self.context >= 1, ">= 1")
        require(self, "dropout", 0.0 <= self.dropout < 1.0, "in [0, 1)")


@dataclass(frozen=True)
class TransformerConfig(WindowTrainConfig):
    """Architecture of :class:`TransformerLM` plus the loop's fields (WindowTrainConfig)."""

    layers: int = 4
    heads: int = 4
    width: int = 128
    mlp_ratio: int = 4
    positions: Literal["learned", "rotary"] = "learned"
    rope_base: float = 10000.0
    bias: bool = False
    tied: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("layers", "heads", "width", "mlp_ratio"):
            require(self, key, getattr(self, key) >= 1, ">= 1")
        require(self, "rope_base", self.rope_base > 0, "> 0")
        if self.width % self.heads:
            raise ValueError(f"width {self.width} is not a multiple of heads {self.heads}")
        if self.positions == "rotary" and (self.width // self.heads) % 2:
            raise ValueError("rotary positions need an even head size")


KV = tuple[torch.Tensor, torch.Tensor]  # keys, values: (B, heads, t, head_size)


class Block(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        d = cfg.width
        self.heads, self.dropout = cfg.heads, cfg.dropout
        self.ln1 = nn.LayerNorm(d, bias=cfg.bias)
        self.qkv = nn.Linear(d, 3 * d, bias=cfg.bias)
        self.proj = nn.Linear(d, d, bias=cfg.bias)
        self.ln2 = nn.LayerNorm(d, bias=cfg.bias)
        self.fc = nn.Linear(d, cfg.mlp_ratio * d, bias=cfg.bias)
        self.out = nn.Linear(cfg.mlp_ratio * d, d, bias=cfg.bias)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None,
                past: KV | None) -> tuple[torch.Tensor, KV]:
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        if rope is not None:
            q, k = _rotate(q, *rope), _rotate(k, *rope)
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        # Without a cache the queries and keys are the same positions: causal mask.  With one,
        # the new queries come after every cached key (step feeds one token at a time).
        y = F.scaled_dot_product_attention(
            q, k, v, is_causal=past is None, dropout_p=self.dropout if self.training else 0.0
        )
        x = x + self.drop(self.proj(y.transpose(1, 2).reshape(b, t, d)))
        x = x + self.drop(self.out(F.gelu(self.fc(self.ln2(x)))))
        return x, (k, v)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary encoding of ``x`` (B, h, T, hs) with ``cos``/``sin`` (T, hs/2) ("rotate half")."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).type_as(x)


class GPT(nn.Module):
    """``forward(x (B, T) int64, carry)`` -> ``(logits (B, T, V) float32, None)``; ``run`` also
    takes and returns the per-layer KV cache."""

    def __init__(self, vocab_size: int, cfg: TransformerConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.width
        self.wte = nn.Embedding(vocab_size, d)
        self.wpe = nn.Embedding(cfg.context, d) if cfg.positions == "learned" else None
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.ln_f = nn.LayerNorm(d, bias=cfg.bias)
        self.head = nn.Linear(d, vocab_size, bias=False)
        if cfg.positions == "rotary":
            hs = d // cfg.heads
            inv = cfg.rope_base ** (-torch.arange(0, hs, 2, dtype=torch.float64) / hs)
            ang = torch.arange(cfg.context, dtype=torch.float64)[:, None] * inv[None, :]
            self.register_buffer("cos", ang.cos().float(), persistent=False)
            self.register_buffer("sin", ang.sin().float(), persistent=False)
        for name, p in self.named_parameters():
            if p.dim() >= 2:
                std = 0.02 / math.sqrt(2 * cfg.layers) if name.endswith(("proj.weight",
                                                                          "out.weight")) else 0.02
                nn.init.normal_(p, 0.0, std)
            elif name.endswith("bias"):
                nn.init.zeros_(p)
        if cfg.tied:
            self.head.weight = self.wte.weight
        self.feature_size = d

    def run(self, x: torch.Tensor, past: list[KV] | None = None
            ) -> tuple[torch.Tensor, list[KV]]:
        h, cache = self.hidden(x, past)
        return self.head(h), cache

    def features(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The final LayerNorm's output ``(B, T, d)`` for ``x`` (B, T) (what the head reads).
        Attention is causal, so right-padding (``mask`` False) cannot change the states of the
        positions before it; ``mask`` is accepted and not needed."""
        return self.hidden(x)[0]

    def hidden(self, x: torch.Tensor, past: list[KV] | None = None
               ) -> tuple[torch.Tensor, list[KV]]:
        t0 = 0 if past is None else past[0][0].shape[2]
        t = x.shape[1]
        if t0 + t > self.cfg.context:
            raise ValueError(f"{t0 + t} positions exceed the context of {self.cfg.context}")
        h = self.wte(x)  # (B, T, d)
        rope = None
        if self.wpe is not None:
            h = h + self.wpe(torch.arange(t0, t0 + t, device=x.device))
        else:
            rope = (self.cos[t0 : t0 + t], self.sin[t0 : t0 + t])
        h = self.drop(h)
        cache = []
        for i, block in enumerate(self.blocks):
            h, kv = block(h, rope, None if past is None else past[i])
            cache.append(kv)
        return self.ln_f(h), cache

    def forward(self, x: torch.Tensor, carry: Any = None) -> tuple[torch.Tensor, None]:
        return self.run(x)[0], None


class TransformerLM(TorchLM):
    """Decoder-only Transformer LM with KV-cache stepping and sliding-window scoring.

    Subclasses may swap the network (``neural/hf.py`` does): ``build_module`` must return a
    module with :class:`GPT`'s interface -- ``forward(x, carry)``, ``run(x, past)`` returning
    ``(logits, per-layer KV cache)``, and ``head`` (the output layer, whose ``out_features`` sizes
    scoring batches) -- and the config needs ``context``.
    """
    family = "Transformer"

    Config = TransformerConfig
    batching = "windows"

    @property
    def seq_len(self) -> int:
        return self.cfg.context

    @property
    def max_positions(self) -> int:
        return self.cfg.context

    def build_module(self, vocab_size: int) -> nn.Module:
        return GPT(vocab_size, self.cfg)

    def forward_flops_per_token(self) -> float:
        return transformer_forward_flops(self.cfg, len(self._require_fitted()))

    # -- state API: history + KV cache, sliding like the default scoring windows ---------------

    def init_state(self, batch: int) -> Any:
        """``None``; later states are ``(history (B, t) int64, per-layer KV cache)``."""
        self._require_module()
        return None

    def _step_logits(self, state: Any, x: torch.Tensor) -> tuple[torch.Tensor, Any]:
        window = self.cfg.context
        stride = max(1, window // 2)
        if state is None:
            hist, past = x[:, None], None
        else:
            hist, past = state
            if hist.shape[1] >= window:  # full: slide by `stride`, recompute the cache
                hist = hist[:, stride:]
                past = self.module_.run(hist)[1] if hist.shape[1] else None
            hist = torch.cat([hist, x[:, None]], dim=1)
        logits, cache = self.module_.run(x[:, None], past)
        return logits[:, -1], (hist, cache)

    # -- batched scoring ---------------------------------------------------------------------

    def _score_logits(self, inputs: torch.Tensor, context: ContextPolicy) -> Iterator[torch.Tensor]:
        window = context.window or self.cfg.context
        if window > self.cfg.context:
            raise ConfigError(f"context window {window} exceeds the model's context "
                              f"{self.cfg.context}")
        stride = context.stride or max(1, window // 2)
        stride = min(stride, window)
        n = len(inputs)
        run = self.module_.run
        yield run(inputs[None, :window])[0][0]
        if n <= window:
            return
        keep = window - stride  # scored positions start here inside windows k >= 1
        starts = list(range(stride, n - keep, stride))  # window k starts at k * stride
        full = [s for s in starts if s + window <= n]
        per_batch = max(1, (1 << 23) // (window * max(1, self.module_.head.out_features)))
        for i in range(0, len(full), per_batch):
            group = full[i : i + per_batch]
            x = torch.stack([inputs[s : s + window] for s in group])
            logits = run(x)[0]  # (b, window, V)
            for row in logits:
                yield row[keep:]
        for s in starts[len(full):]:  # the last, shorter window
            yield run(inputs[None, s:])[0][0, keep:]


def transformer_parameter_count(cfg: TransformerConfig, vocab_size: int) -> int:
    """The closed-form parameter count of :class:`GPT` (see the module docs)."""
    d, r, b = cfg.width, cfg.mlp_ratio, int(cfg.bias)
    per_layer = (4 + 2 * r) * d * d + (2 + 2 * b) * d + b * (5 + r) * d
    return (vocab_size * d + (cfg.context * d if cfg.positions == "learned" else 0)
            + cfg.layers * per_layer + (1 + b) * d + (0 if cfg.tied else vocab_size * d))


def transformer_forward_flops(cfg: TransformerConfig, vocab_size: int) -> float:
    """Forward FLOPs per token of :class:`GPT`: 2 per matrix weight (blocks and output layer;
    embeddings are look-ups) plus attention scores and mixing over an average of ``context / 2``
    keys (2 matmuls x 2 FLOPs x width per key per layer).  A pure function of the shapes, so
    benchmarks can count a peer's identical model (nanoGPT's)."""
    d = cfg.width
    matmul = cfg.layers * (4 + 2 * cfg.mlp_ratio) * d * d + vocab_size * d
    return 2.0 * matmul + 2.0 * cfg.layers * cfg.context * d
