"""``hf-bert``: a small ``transformers`` BERT pre-trained from scratch as a masked language model.

The network is the library's ``BertForMaskedLM`` built from a ``BertConfig`` in code (nothing is
downloaded): the dataset vocabulary plus two ids of its own, ``[MASK]`` = V and ``[PAD]`` = V + 1,
learned absolute positions up to ``context``, post-LayerNorm blocks, GELU MLP of width
4 x ``n_embd``, the output layer tied to the word embeddings.  The output distribution is always
taken over the V dataset ids only (``[MASK]`` and ``[PAD]`` are never predicted), so every number
below is a proper distribution over the dataset vocabulary.

Pre-training (Devlin et al. 2019, masked LM only, no next-sentence task) runs in the shared loop
of :mod:`lmladder.neural.loop` on windows of ``context`` tokens: each token is chosen with
probability ``mask_prob`` (15%); a chosen token is replaced by ``[MASK]`` 80% of the time, by a
random dataset token 10%, kept 10%; the loss is the cross-entropy of the chosen tokens.  The mask
draws come from torch's seeded generator, so a fit is reproducible and resumable like any other.
Validation inside a fit (``valid_nll``, best-weight keeping) uses the pseudo-log-likelihood
scores below, the measure a masked LM is trained for.

Causal scores: how a masked LM answers the ladder's question
------------------------------------------------------------
The contract asks for ln p(w_i | w_<i).  ``hf-bert`` answers it by feeding the *left* context
followed by one ``[MASK]`` and reading the distribution at the mask: token i is scored from the
input ``w_{i-C+1} .. w_{i-1} [MASK]`` (``C`` = ``context`` or ``ContextPolicy.window``; fewer at
the start of a stream, where the boundary token is the first history), with nothing to the right
of the mask.  No future token is seen, the numbers sum to one over the vocabulary, and ``step``
gives the same numbers one token at a time.  Worked example (window 4): in ``| a b c d`` the
token ``d`` is scored from ``a b c [MASK]`` and ``a`` from ``| [MASK]``.  ``ContextPolicy.stride``
does not apply: every token gets its own pass with the full window of history.

This is *not* what the model was trained for -- in pre-training a mask almost always had text on
both sides and was never the last position -- so its causal perplexity is poor by design and says
little about the model.  Its own measure is the pseudo-perplexity of :meth:`pseudo_logprobs`
(Salazar et al. 2020), reported separately by :func:`lmladder.scoring.pseudo_perplexity` and never
comparable with a causal perplexity.

Pseudo-log-likelihood scores (worked example)
---------------------------------------------
``pseudo_logprobs(tokens)`` gives, for every token, ln p(w_i | all other tokens of its window), the
token itself replaced by ``[MASK]``.  The stream is read as ``boundary, tokens`` (the boundary is
context only, never scored); token i's window is the ``C`` positions centred on it, shifted to
stay inside the stream (or the line, with ``reset_at_boundary``).  With window 4 and ``| a b c d``:
``a`` is scored from ``| [MASK] b c``, ``b`` from ``| a [MASK] c``, ``c`` from ``a b [MASK] d``,
``d`` from ``a b c [MASK]``.  One forward pass per token (as in the paper).

Parameter count (``d`` = n_embd, ``L`` layers, ``V`` vocabulary, ``C`` context)::

    (V + 2)*d + C*d + d + 2*d  +  L*(12*d*d + 13*d)  +  d*d + 3*d + (V + 2)

(word, position and one token-type embedding, the embedding LayerNorm, the blocks, the MLM head's
transform and LayerNorm, and the output bias; the output weights are the tied word embeddings).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lmladder.api import ConfigError, ContextPolicy, require
from lmladder.neural.torchlm import TorchLM
from lmladder.neural.transformer import WindowTrainConfig


@dataclass(frozen=True)
class HFBertConfig(WindowTrainConfig):
    """A ``transformers.BertConfig`` (``n_layer``, ``n_head``, ``n_embd``, ``context`` =
    ``max_position_embeddings``, ``dropout`` = hidden and attention dropout) plus masked-LM
    pre-training (``mask_prob``) and the loop's fields (:class:`WindowTrainConfig`).
    ``score_batch`` is how many masked windows one scoring forward pass holds."""

    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    mask_prob: float = 0.15
    score_batch: int = 64

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("n_layer", "n_head", "n_embd", "score_batch"):
            require(self, key, getattr(self, key) >= 1, ">= 1")
        require(self, "context", self.context >= 2, ">= 2 (history and the mask)")
        require(self, "mask_prob", 0 < self.mask_prob < 1, "in (0, 1)")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd {self.n_embd} is not a multiple of n_head {self.n_head}")


class BertNet(nn.Module):
    """``transformers.BertForMaskedLM`` over the dataset vocabulary plus ``[MASK]`` and ``[PAD]``.

    ``forward(x (B, T) int64, carry=None, mask=None, select=None)`` -> ``(logits, None)``: the
    masked-LM scores over the V dataset ids at every position, ``(B, T, V)``, or only at the
    positions where the bool ``select`` (B, T) is set, ``(n_selected, V)``.  ``mask`` (B, T) bool
    marks real (not padding) positions.  ``features(x, mask)`` are the last layer's states.
    """

    def __init__(self, vocab_size: int, cfg: HFBertConfig):
        super().__init__()
        from transformers import BertConfig, BertForMaskedLM

        self.vocab_size = vocab_size
        self.mask_id, self.pad_id = vocab_size, vocab_size + 1
        config = BertConfig(
            vocab_size=vocab_size + 2, hidden_size=cfg.n_embd, num_hidden_layers=cfg.n_layer,
            num_attention_heads=cfg.n_head, intermediate_size=4 * cfg.n_embd,
            max_position_embeddings=cfg.context, type_vocab_size=1,
            hidden_dropout_prob=cfg.dropout, attention_probs_dropout_prob=cfg.dropout,
            pad_token_id=self.pad_id, tie_word_embeddings=True,
        )
        self.bert = BertForMaskedLM(config)
        self.feature_size = cfg.n_embd

    def features(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The last layer's states ``(B, T, n_embd)``; positions where ``mask`` is False are
        hidden from attention (bidirectional: padding must be masked)."""
        attention = None if mask is None else mask.long()
        return self.bert.bert(input_ids=x, attention_mask=attention).last_hidden_state

    def scores(self, h: torch.Tensor) -> torch.Tensor:
        """The MLM head on states ``(..., n_embd)`` -> scores over the dataset ids ``(..., V)``."""
        return self.bert.cls(h)[..., : self.vocab_size]

    def forward(self, x: torch.Tensor, carry: Any = None, mask: torch.Tensor | None = None,
                select: torch.Tensor | None = None) -> tuple[torch.Tensor, None]:
        h = self.features(x, mask)
        return self.scores(h if select is None else h[select]), None


class HFBertLM(TorchLM):
    """A small BERT pre-trained with masked LM, answering the causal contract with a trailing
    ``[MASK]`` and offering pseudo-log-likelihood scores (see the module docs)."""
    family = "Transformer"

    Config = HFBertConfig
    batching = "windows"

    @property
    def seq_len(self) -> int:
        return self.cfg.context

    @property
    def max_positions(self) -> int:
        return self.cfg.context

    def build_module(self, vocab_size: int) -> nn.Module:
        return BertNet(vocab_size, self.cfg)

    def forward_flops_per_token(self) -> float:
        """2 FLOPs per matrix weight plus attention over all ``context`` keys (bidirectional)."""
        cfg = self.cfg
        d, v = cfg.n_embd, len(self._require_fitted())
        matmul = cfg.n_layer * 12 * d * d + d * d + v * d
        return 2.0 * matmul + 4.0 * cfg.n_layer * cfg.context * d

    # -- pre-training: masked LM ---------------------------------------------------------------

    def _training_loss(self, net: nn.Module, x: torch.Tensor, y: torch.Tensor,
                       carry: Any) -> tuple[torch.Tensor, Any]:
        """Masked-LM loss on the window ``x`` (``y``, the next tokens, is not needed): 15% of the
        positions chosen, 80/10/10 ``[MASK]``/random/kept, cross-entropy of the chosen ones."""
        module = self.module_
        chosen = torch.rand(x.shape, device=x.device) < self.cfg.mask_prob
        if not chosen.any():
            chosen[0, 0] = True
        how = torch.rand(x.shape, device=x.device)
        inputs = x.clone()
        inputs[chosen & (how < 0.8)] = module.mask_id
        swap = chosen & (how >= 0.8) & (how < 0.9)
        inputs[swap] = torch.randint(0, module.vocab_size, (int(swap.sum()),), device=x.device)
        with self._autocast():
            logits, _ = net(inputs, None, None, chosen)
        return F.cross_entropy(logits.float(), x[chosen]), None

    def _validation_logprobs(self, ids: np.ndarray) -> np.ndarray:
        """Validation judges the masked LM by what it is trained for: ``valid_nll`` in a fit's
        history is the pseudo-NLL (:meth:`pseudo_logprobs`), not the causal one."""
        return self.pseudo_logprobs(ids)

    # -- causal scores: left context + [MASK] ----------------------------------------------------

    def init_state(self, batch: int) -> Any:
        """``None``; later states are the history, int64 ``(B, t)``, at most ``context - 1``."""
        self._require_module()
        return None

    def _step_logits(self, state: Any, x: torch.Tensor) -> tuple[torch.Tensor, Any]:
        hist = x[:, None] if state is None else torch.cat([state, x[:, None]], dim=1)
        hist = hist[:, -(self.cfg.context - 1):]
        masked = torch.full_like(x[:, None], self.module_.mask_id)
        h = self.module_.features(torch.cat([hist, masked], dim=1))
        return self.module_.scores(h[:, -1]), hist

    def _window(self, context: ContextPolicy) -> int:
        window = context.window or self.cfg.context
        if window > self.cfg.context:
            raise ConfigError(f"context window {window} exceeds the model's context "
                              f"{self.cfg.context}")
        if window < 2:
            raise ConfigError("hf-bert needs a window of at least 2 (history and the mask)")
        return window

    def _score_logits(self, inputs: torch.Tensor, context: ContextPolicy
                      ) -> Iterator[torch.Tensor]:
        """Position p is scored from ``inputs[p-C+2 : p+1] + [MASK]`` (C = the window), rows
        right-padded with ``[PAD]`` (masked from attention) to the batch's longest."""
        keep = self._window(context) - 1  # history tokens before the mask
        n = len(inputs)
        module = self.module_
        for a in range(0, n, self.cfg.score_batch):
            positions = range(a, min(n, a + self.cfg.score_batch))
            lengths = [min(p + 1, keep) for p in positions]
            width = max(lengths) + 1
            x = torch.full((len(lengths), width), module.pad_id, dtype=torch.long,
                           device=inputs.device)
            for r, (p, k) in enumerate(zip(positions, lengths, strict=True)):
                x[r, :k] = inputs[p + 1 - k : p + 1]
                x[r, k] = module.mask_id
            length = torch.tensor(lengths, device=inputs.device)
            real = torch.arange(width, device=inputs.device)[None, :] <= length[:, None]
            h = module.features(x, None if bool(real.all()) else real)
            yield module.scores(h[torch.arange(len(lengths), device=inputs.device), length])

    # -- pseudo-log-likelihood (optional capability, lmladder.api.PseudoScorer) ----------------

    @torch.no_grad()
    def pseudo_logprobs(self, tokens: np.ndarray, *,
                        context: ContextPolicy = ContextPolicy()) -> np.ndarray:
        """ln p(w_i | the other tokens of its window), w_i masked, for every token: float64
        ``(N,)`` (Salazar et al. 2020; see the module docs for the windows).  Not a likelihood:
        these see the future and do not sum to a stream's ln-probability."""
        vocab = self._require_fitted()
        module = self._require_module()
        module.eval()
        tokens = self._checked_ids(tokens)
        window = self._window(context)
        n = len(tokens)
        out = np.empty(n, dtype=np.float64)
        if n == 0:
            return out
        seq = torch.from_numpy(np.concatenate([[vocab.boundary_id], tokens])).to(self.device)
        inputs = seq[:-1]
        starts = [0]
        if context.reset_at_boundary:
            starts = torch.nonzero(inputs == vocab.boundary_id).flatten().tolist()
        for a, b in zip(starts, [*starts[1:], n], strict=True):
            # the segment is seq[a : b + 1]: a boundary, then targets a .. b-1
            w = min(window, b + 1 - a)
            for c in range(a, b, self.cfg.score_batch):
                q = torch.arange(c, min(b, c + self.cfg.score_batch), device=self.device) + 1
                first = torch.clamp(q - w // 2, a, b + 1 - w)  # window start in seq
                x = seq[first[:, None] + torch.arange(w, device=self.device)[None, :]]
                at = q - first
                rows = torch.arange(len(q), device=self.device)
                x[rows, at] = module.mask_id
                h = module.features(x)
                lp = torch.log_softmax(module.scores(h[rows, at]).double(), dim=-1)
                out[c : c + len(q)] = lp[rows, seq[q]].cpu().numpy()
        return out


def bert_parameter_count(cfg: HFBertConfig, vocab_size: int) -> int:
    """BERT's closed-form parameter count (see the module docs)."""
    d, v = cfg.n_embd, vocab_size + 2
    return (v * d + cfg.context * d + d + 2 * d + cfg.n_layer * (12 * d * d + 13 * d)
            + d * d + 3 * d + v)
