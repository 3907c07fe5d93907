"""Fine-tuning a torch language model's network with a classification head.

The optional :class:`~lmladder.api.FineTunable` capability of every
:class:`~lmladder.neural.torchlm.TorchLM` whose module offers ``features(x, mask) -> (B, T, H)``
(its top hidden states; ``mask`` marks the real positions of a right-padded batch) and an int
``feature_size`` = H.  ``TorchLM.fine_tune_classifier`` picks the network (a copy of the fitted
one, or a fresh one for an unfitted model given a vocabulary) and :func:`fine_tune` trains it
with a linear head (:class:`ClassifierNet`) over pooled features; the texts are batched by
:class:`_TextBatcher` as ``boundary, text``, right-padded::

    texts        [5 9 2]  [7 3]  [4 8 6 1]              ids, cut to max_len - 1
    x  (B, T)    b 5 9 2 b        mask  1 1 1 1 0       b: the boundary id, also the padding
                 b 7 3 b b              1 1 1 0 0
                 b 4 8 6 1              1 1 1 1 1
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from lmladder.api import (
    Budget,
    FitReport,
    LanguageModel,
    Stopwatch,
    Vocab,
    check_token_ids,
    require,
)


@dataclass(frozen=True)
class FineTuneConfig:
    """Hyperparameters of :meth:`TorchLM.fine_tune_classifier`.

    ``lr`` is the peak AdamW learning rate (reached after ``warmup``, a fraction of the budget,
    then decayed linearly to 0); ``batch_size`` texts per step; ``max_len`` input tokens per text
    (the boundary included; also capped by the network's ``max_positions``); ``max_epochs`` an
    extra limit in passes over the texts, so an unbounded budget still ends.
    """

    lr: float = 2e-3
    batch_size: int = 16
    weight_decay: float = 0.01
    warmup: float = 0.1
    max_len: int = 256
    max_epochs: float = 10.0
    grad_clip: float | None = 1.0

    def __post_init__(self) -> None:
        require(self, "lr", self.lr > 0, "> 0")
        require(self, "batch_size", self.batch_size >= 1, ">= 1")
        require(self, "weight_decay", self.weight_decay >= 0, ">= 0")
        require(self, "warmup", 0 <= self.warmup < 1, "in [0, 1)")
        require(self, "max_len", self.max_len >= 2, ">= 2")
        require(self, "max_epochs", self.max_epochs > 0, "> 0")
        require(self, "grad_clip", self.grad_clip is None or self.grad_clip > 0, "> 0 or None")


class ClassifierNet(torch.nn.Module):
    """``body`` (a language model's network with ``features(x, mask)`` and ``feature_size``) and
    a linear head over [mean of the text's states, last text state]: ``forward(x (B, T) int64,
    mask (B, T) bool) -> (B, num_classes)`` float logits."""

    def __init__(self, body: torch.nn.Module, num_classes: int):
        super().__init__()
        self.body = body
        self.head = torch.nn.Linear(2 * body.feature_size, num_classes)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.body.features(x, mask).float()  # (B, T, H)
        m = mask[..., None].to(h.dtype)
        mean = (h * m).sum(1) / m.sum(1)  # (B, H)
        last = h[torch.arange(len(x), device=x.device), mask.sum(1) - 1]  # (B, H)
        return self.head(torch.cat([mean, last], dim=-1))


class FineTunedClassifier:
    """A fine-tuned :class:`ClassifierNet` (:class:`~lmladder.api.Classifier`); ``report`` says
    what the fine-tuning did (``notes``: pre-trained or not, epochs, valid accuracy)."""

    def __init__(self, net: ClassifierNet, batcher: _TextBatcher, autocast, report: FitReport):
        self.net, self.batcher, self.autocast, self.report = net, batcher, autocast, report

    @torch.no_grad()
    def predict_logits(self, texts: Sequence[np.ndarray]) -> np.ndarray:
        """float64 ``(len(texts), num_classes)`` class scores of ``texts`` (as in training)."""
        self.net.eval()
        texts = self.batcher.check(texts)
        out = np.empty((len(texts), self.net.head.out_features), dtype=np.float64)
        order = np.argsort([len(t) for t in texts], kind="stable")  # similar lengths batched
        size = 4 * self.batcher.batch_size
        for i in range(0, len(order), size):
            idx = order[i : i + size]
            x, mask = self.batcher.batch(texts, idx)
            with self.autocast():
                out[idx] = self.net(x, mask).double().cpu().numpy()
        return out


class _TextBatcher:
    """Texts (id arrays) -> right-padded ``(x, mask)`` batches: ``boundary, text[:max_len-1]``."""

    def __init__(self, vocab: Vocab, max_len: int, batch_size: int, device: str):
        self.vocab, self.max_len, self.batch_size, self.device = vocab, max_len, batch_size, device

    def check(self, texts: Sequence[np.ndarray]) -> list[np.ndarray]:
        return [check_token_ids(t, len(self.vocab))[: self.max_len - 1] for t in texts]

    def batch(self, texts: list[np.ndarray], idx) -> tuple[torch.Tensor, torch.Tensor]:
        rows = [texts[i] for i in idx]
        width = 1 + max(len(r) for r in rows)
        x = np.full((len(rows), width), self.vocab.boundary_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=bool)
        for r, ids in enumerate(rows):
            x[r, 1 : 1 + len(ids)] = ids
            mask[r, : 1 + len(ids)] = True
        return (torch.from_numpy(x).to(self.device), torch.from_numpy(mask).to(self.device))


def fine_tune(model: LanguageModel, body: torch.nn.Module, vocab: Vocab, texts, labels,
               num_classes: int, *, budget: Budget, valid, seed: int,
               cfg: FineTuneConfig) -> FineTunedClassifier:
    """The fine-tuning loop of ``TorchLM.fine_tune_classifier`` (see there): ``body``, the
    network to fine-tune, reads ids of ``vocab``; the returned classifier holds it.  ``model`` is
    the ``TorchLM`` asking (typed as the contract's class: :mod:`lmladder.neural.torchlm`
    imports this module)."""
    clock = Stopwatch()
    pretrained = model.vocab_ is not None
    limit = min(cfg.max_len, model.max_positions or cfg.max_len)
    batcher = _TextBatcher(vocab, limit, cfg.batch_size, model.device)
    texts = batcher.check(texts)
    labels = np.asarray(labels, dtype=np.int64)
    if len(texts) != len(labels) or not len(texts):
        raise ValueError(f"fine_tune_classifier: {len(texts)} texts, {len(labels)} labels")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"labels must be in [0, {num_classes})")
    if valid is not None:
        valid = (batcher.check(valid[0]), np.asarray(valid[1], dtype=np.int64))
    torch.manual_seed(seed)
    net = ClassifierNet(body, num_classes).to(model.device)
    decay = [p for p in net.parameters() if p.dim() >= 2]
    no_decay = [p for p in net.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    text_tokens = sum(len(t) for t in texts)
    cap = int(cfg.max_epochs * text_tokens)
    budget = Budget(tokens=cap if budget.tokens is None else min(cap, budget.tokens),
                    steps=budget.steps, seconds=budget.seconds)
    rng = np.random.default_rng(seed)
    y_all = torch.from_numpy(labels).to(model.device)
    tokens = steps = 0
    order: list[int] = []
    history: list[dict[str, float]] = []
    best: tuple[float, dict[str, torch.Tensor]] | None = None
    valid_seconds = 0.0
    classifier = FineTunedClassifier(net, batcher, model._autocast, FitReport(0, 0, 0.0))

    def evaluate() -> None:
        nonlocal best, valid_seconds
        start = clock()
        acc = float(np.mean(classifier.predict_logits(valid[0]).argmax(1) == valid[1]))
        valid_seconds += clock() - start
        history.append({"step": steps, "tokens": tokens, "valid_accuracy": acc})
        if best is None or acc > best[0]:
            best = (acc, {k: t.detach().clone() for k, t in net.state_dict().items()})
        net.train()

    net.train()
    while not budget.exhausted(tokens=tokens, steps=steps, seconds=clock()):
        if not order:
            if steps and valid is not None:
                evaluate()
            order = rng.permutation(len(texts)).tolist()
        idx, order = order[: cfg.batch_size], order[cfg.batch_size :]
        frac = budget.fraction(tokens=tokens, steps=steps, seconds=clock()) or 0.0
        warm = min(1.0, (frac + 1e-12) / cfg.warmup) if cfg.warmup else 1.0
        for group in opt.param_groups:
            group["lr"] = cfg.lr * warm * max(0.0, 1.0 - frac)
        x, mask = batcher.batch(texts, idx)
        with model._autocast():
            logits = net(x, mask)
        loss = F.cross_entropy(logits.float(), y_all[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
        opt.step()
        steps += 1
        tokens += int(mask.sum()) - len(idx)  # text tokens, the boundary not counted
    if valid is not None and steps:
        evaluate()
        if best is not None and best[0] > history[-1]["valid_accuracy"]:
            net.load_state_dict(best[1])
    net.eval()
    notes = {"pretrained": pretrained, "epochs": tokens / max(1, text_tokens),
             "max_len": limit, "settings": dataclasses.asdict(cfg)}
    if best is not None:
        notes["best_valid_accuracy"] = best[0]
    classifier.report = FitReport(train_tokens=tokens, steps=steps, seconds=clock(),
                                  history=history, notes=notes, valid_seconds=valid_seconds)
    return classifier

