"""Recurrent language models: Elman RNN (tanh or ReLU), GRU and LSTM.

Architecture (Zaremba et al. 2014, "Recurrent Neural Network Regularization"): token embedding ->
dropout -> ``layers`` stacked recurrent layers (dropout between them) -> dropout -> linear decoder
to the vocabulary.  Dropout is applied only to non-recurrent connections.  With ``tied=True`` the
decoder reuses the embedding matrix (Press & Wolf 2017; Inan et al. 2017), which needs
``emb_size == hidden``.  All weights start uniform in ``[-init_range, init_range]``.

Training is truncated back-propagation through time over a batchified stream (pictured in
:mod:`lmladder.neural.batches`): ``batch_size`` contiguous rows, ``bptt`` tokens per step, the
hidden state carried across batches.  Scoring is stateful: the whole stream is read in order with
the hidden state carried, so every token is conditioned on everything before it
(``ContextPolicy.window`` is not used: an RNN's history is unbounded).

Parameter count (PyTorch keeps two bias vectors per gate), with ``g`` = 1 (RNN), 3 (GRU), 4 (LSTM),
``E`` embedding size, ``H`` hidden size, ``V`` vocabulary, ``L`` layers::

    V*E  +  sum_l g*H*(I_l + H + 2)  +  H*V*(not tied)  +  V,      I_0 = E, I_l = H (l > 0)

e.g. Zaremba's small 2x200 LSTM on PTB (V = 10,000): 2,000,000 + 2 * 321,600 + 2,000,000 + 10,000
= 4,653,200.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from lmladder.api import require
from lmladder.neural.loop import TrainConfig
from lmladder.neural.torchlm import TorchLM

GATES = {"rnn-tanh": 1, "rnn-relu": 1, "gru": 3, "lstm": 4}


@dataclass(frozen=True)
class RNNConfig(TrainConfig):
    """Architecture of :class:`RNNLM` plus the training loop's fields (:class:`TrainConfig`)."""

    cell: Literal["lstm", "gru", "rnn-tanh", "rnn-relu"] = "lstm"
    hidden: int = 200
    layers: int = 2
    emb_size: int | None = None  # None: same as hidden
    dropout: float = 0.0
    tied: bool = False
    bptt: int = 35
    init_range: float = 0.1
    # Training defaults: plain SGD as in Zaremba et al. and the PyTorch word-language-model
    # example (lr 20 and clipping 0.25 on the per-token mean loss = Zaremba's lr 1 and clipping 5
    # on a loss summed over 20 time steps).
    optimizer: Literal["adamw", "sgd"] = "sgd"
    lr: float = 20.0
    grad_clip: float | None = 0.25

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("hidden", "layers", "bptt"):
            require(self, key, getattr(self, key) >= 1, ">= 1")
        require(self, "emb_size", self.emb_size is None or self.emb_size >= 1, ">= 1 or None")
        require(self, "dropout", 0.0 <= self.dropout < 1.0, "in [0, 1)")
        require(self, "init_range", self.init_range > 0, "> 0")
        if self.tied and self.emb_size not in (None, self.hidden):
            raise ValueError(f"tied=True needs emb_size == hidden ({self.emb_size} != "
                             f"{self.hidden})")


class RNNNet(nn.Module):
    """Embedding -> stacked RNN -> decoder.  ``forward(x (B, T) int64, carry)`` ->
    ``(logits (B, T, V) float32, carry)``; carry is ``h`` or ``(h, c)``, each ``(L, B, H)``."""

    def __init__(self, vocab_size: int, cfg: RNNConfig):
        super().__init__()
        emb = cfg.emb_size or cfg.hidden
        self.embed = nn.Embedding(vocab_size, emb)
        self.drop = nn.Dropout(cfg.dropout)
        between = cfg.dropout if cfg.layers > 1 else 0.0
        if cfg.cell == "lstm":
            self.rnn = nn.LSTM(emb, cfg.hidden, cfg.layers, dropout=between)
        elif cfg.cell == "gru":
            self.rnn = nn.GRU(emb, cfg.hidden, cfg.layers, dropout=between)
        else:
            self.rnn = nn.RNN(emb, cfg.hidden, cfg.layers, nonlinearity=cfg.cell[4:],
                              dropout=between)
        self.decoder = nn.Linear(cfg.hidden, vocab_size)
        self.feature_size = cfg.hidden
        for p in self.parameters():
            nn.init.uniform_(p, -cfg.init_range, cfg.init_range)
        if cfg.tied:
            self.decoder.weight = self.embed.weight

    def forward(self, x: torch.Tensor, carry=None):
        h, carry = self._hidden(x, carry)
        return self.decoder(h), carry  # (B, T, V)

    def features(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The top layer's states ``(B, T, H)`` for ``x`` (B, T) from the zero state (what the
        decoder reads).  The network is causal, so right-padding (``mask`` False) cannot change
        the states of the positions before it; ``mask`` is accepted and not needed."""
        return self._hidden(x, None)[0]

    def _hidden(self, x: torch.Tensor, carry):
        # The recurrence runs time-major, its native layout (batch_first costs two transposes
        # per step on CPU); only the small (T, B, H) output is turned back to batch-major.
        h, carry = self.rnn(self.drop(self.embed(x.t())), carry)  # (T, B, H)
        return self.drop(h.transpose(0, 1)), carry  # (B, T, H)


class RNNLM(TorchLM):
    """An RNN/GRU/LSTM language model trained by truncated BPTT (see the module docs)."""
    family = "RNN"

    Config = RNNConfig
    batching = "stream"

    @property
    def seq_len(self) -> int:
        return self.cfg.bptt

    def build_module(self, vocab_size: int) -> nn.Module:
        return RNNNet(vocab_size, self.cfg)

    def forward_flops_per_token(self) -> float:
        return rnn_forward_flops(self.cfg, len(self._require_fitted()))


def rnn_parameter_count(cfg: RNNConfig, vocab_size: int) -> int:
    """The closed-form parameter count of :class:`RNNNet` (see the module docs)."""
    emb = cfg.emb_size or cfg.hidden
    g, h, v = GATES[cfg.cell], cfg.hidden, vocab_size
    layers = sum(g * h * ((emb if i == 0 else h) + h + 2) for i in range(cfg.layers))
    return v * emb + layers + (0 if cfg.tied else h * v) + v


def rnn_forward_flops(cfg: RNNConfig, vocab_size: int) -> float:
    """Forward FLOPs per token of :class:`RNNNet`: 2 per multiply-add of the recurrent layers'
    weight matrices and of the decoder (embedding look-ups, biases and gates' pointwise work not
    counted).  A pure function of the shapes, so benchmarks can count a peer's identical model."""
    emb = cfg.emb_size or cfg.hidden
    macs = sum(GATES[cfg.cell] * cfg.hidden * ((emb if i == 0 else cfg.hidden) + cfg.hidden)
               for i in range(cfg.layers))
    return 2.0 * (macs + cfg.hidden * vocab_size)
