"""One budgeted training loop for every torch language model in lmladder.

Extension interface
-------------------
A torch language model is a subclass of :class:`TorchLM`.  The subclass provides only the network
and how it consumes token batches; the loop, budget, optimizer, schedule, evaluation, best-weight
keeping, resumable checkpoints, the state API, batched scoring and save/load live here.

A subclass provides

``Config``
    A frozen dataclass that *inherits* :class:`TrainConfig` (the loop's hyperparameters, all with
    defaults) and adds the architecture's fields.
``batching`` (class attribute)
    ``"stream"``: truncated back-propagation through time -- the training stream is cut into
    ``batch_size`` contiguous rows and read ``seq_len`` tokens at a time, the ``carry`` returned
    by one batch is detached and passed to the next (reset to ``None`` at every epoch start).
    ``"windows"``: independent windows of ``seq_len`` tokens (``carry`` is always ``None``), drawn
    at random positions (``cfg.sampling == "random"``) or read in order (``"sequential"``).
``seq_len`` (property)
    Tokens per training row (the BPTT length or the Transformer's context).
``build_module(vocab_size) -> torch.nn.Module``
    Called once per fresh ``fit`` (after ``torch.manual_seed(cfg.seed)``) and by ``load``.  The
    module's ``forward(x, carry)`` takes ``x``: int64 ``(B, T)`` and ``carry`` (``None`` at the
    start of a stream, else what the previous call returned: a tensor, a tuple of tensors, or
    ``None``) and returns ``(logits, carry)`` with ``logits``: float ``(B, T, V)``, the scores of
    the token *after* each position.
``forward_flops_per_token() -> float``
    Estimated forward-pass FLOPs per token (a multiply-add counts 2); training is taken as 3x.

Optional overrides

``init_state(batch)`` / ``_step_logits(state, x)``
    The state API.  Default: the state is the module's carry (``None`` initially) and one step is
    ``module(x[:, None], state)`` -- right for recurrent models.  ``_step_logits`` gets ``x``:
    int64 tensor ``(B,)`` on ``self.device`` and returns ``(logits (B, V), new_state)``; it must
    not modify ``state`` in place.  The base ``step`` turns logits into float64 ln-probs.
``_score_logits(inputs, context) -> Iterator[Tensor]``
    The fast scoring path for one segment of inputs (int64 ``(n,)``, first one a boundary):
    yields the logits ``(m_i, V)`` of consecutive positions, ``sum(m_i) == n``.  Default: batch 1,
    chunks of ``cfg.score_chunk`` tokens with the carry passed along -- exactly the history the
    step-by-step reference sees.  Window models override it (see ``neural/transformer.py``).
``num_parameters()``
    Default: the module's parameter count.
``_training_loss(net, x, y, carry) -> (loss, carry)``
    Default: next-token cross-entropy.  ``hf-bert`` (``neural/bert.py``) trains a masked LM by
    overriding only this.
``max_positions`` (property)
    The longest input the network accepts (default ``None``: unbounded); fine-tuning cuts texts
    to it.

Fine-tuning (the optional :class:`~lmladder.api.FineTunable` capability)
-----------------------------------------------------------------------
``fine_tune_classifier`` works for every subclass whose module also offers
``features(x, mask) -> (B, T, H)`` (its top hidden states; ``mask`` marks real positions of a
right-padded batch) and an int ``feature_size`` = H: the loop copies the fitted module (or builds
a fresh one for an unfitted model given a vocabulary), puts a linear head over pooled features
and fine-tunes everything; see :meth:`TorchLM.fine_tune_classifier` and :class:`FineTuneConfig`.

Resuming
--------
``fit(..., resume=True)`` continues the training that the model holds -- from an earlier ``fit``
in this process that was stopped (a ``callback`` raising :class:`StopTraining`), or from a
checkpoint written by ``save(dir, training_state=True)`` and read by ``lmladder.load_model``.  Pass
the same data and budget: counters (tokens, steps, seconds), optimizer moments, schedule, data
position, carried hidden state, RNG states and the best weights so far are restored, so a stopped
and continued run ends with the same weights as an uninterrupted one (on CPU; budgets in seconds
are inherently not reproducible).

Compression
-----------
``sparsity`` (global magnitude pruning) and ``quantize="int8"`` (torch's dynamic quantization)
compress the network when a ``fit`` ends (not when a callback stopped it); see
:mod:`lmladder.neural.compress`.  The fit notes and ``inspect`` say what was done, ``save`` writes
int8 weights as int8, and ``num_parameters`` keeps the count before compression.  A quantized
network runs on the CPU only, scores one token per call (dynamic quantization scales each call's
inputs by their range, so a batched call would let a token's score depend on the tokens after
it), cannot be fine-tuned, and, like every compressed network, cannot ``resume`` training.

Schedule
--------
``lr(step) = cfg.lr * warm-up(step) * decay(fraction of the budget used)``; warm-up is linear over
``warmup_steps`` optimizer steps; decay is ``cosine`` or ``linear`` down to ``min_lr_ratio``,
``constant``, or ``plateau`` (divide by ``plateau_factor`` whenever an evaluation on valid does not
improve on the best, as in the PyTorch word-language-model example).  Weight decay applies only to
matrices and embeddings (tensors with >= 2 dimensions), not to biases and norms.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch._dynamo  # noqa: F401 -- torch imports it (~2 s) when the first optimizer is built;
import torch.nn.functional as F  # importing it here keeps that out of the first fit's budget

from lmladder.api import (
    Budget,
    ContextPolicy,
    FitReport,
    LanguageModel,
    NotApplicable,
    NotFittedError,
    Progress,
    ProgressCallback,
    Stopwatch,
    ValidationTimer,
    Vocab,
    check_token_ids,
    require,
)
from lmladder.devices import resolve_device
from lmladder.neural import compress
from lmladder.neural.ddp import World, fit_distributed

log = logging.getLogger(__name__)


class StopTraining(Exception):  # noqa: N818 -- a control-flow signal, not an error
    """Raised by a ``fit`` callback to stop training cleanly after the current step.

    The model keeps its training state, so ``fit(..., resume=True)`` continues the run.
    """


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of the training loop, shared by every :class:`TorchLM`.

    Units: ``lr`` per optimizer step; ``warmup_steps``, ``eval_every``, ``log_every`` in optimizer
    steps; ``eval_tokens`` in tokens of the valid stream; ``max_epochs`` in passes over train.

    ``processes = N > 1`` trains data-parallel: ``fit`` runs N replicas with torchrun (gloo on
    the CPU, NCCL on N CUDA devices), each on ``batch_size / N`` rows of every batch of
    ``batch_size`` rows, which makes the update of one process with the whole batch (so
    ``batch_size`` must be a multiple of N); see :mod:`lmladder.neural.ddp`.
    """

    seed: int = 0
    batch_size: int = 20
    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = 1e-3
    momentum: float = 0.0  # SGD only
    betas: tuple[float, float] = (0.9, 0.99)  # AdamW only
    weight_decay: float = 0.0
    schedule: Literal["cosine", "linear", "constant", "plateau", "step"] = "cosine"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.1
    plateau_factor: float = 4.0
    # schedule "step" (Zaremba et al. 2014, section 4): the first ``step_after_epochs`` epochs at
    # ``lr``, then the rate multiplied by ``step_decay`` as each further epoch starts
    step_decay: float = 0.5
    step_after_epochs: int = 4
    grad_clip: float | None = 1.0  # max global L2 norm of the gradient, None = no clipping
    eval_every: int = 0  # 0: evaluate on valid only at the end
    eval_tokens: int | None = None  # evaluations use the first N valid tokens (None: all)
    keep_best: bool = True  # end with the weights of the best evaluation on valid
    max_epochs: float | None = None  # an extra token limit: max_epochs * len(train)
    amp: Literal["none", "bf16", "fp16"] = "bf16"  # autocast dtype on CUDA (CPU: always fp32)
    compile: bool = False  # torch.compile the training forward pass
    log_every: int = 10
    score_chunk: int = 256  # tokens per forward call when scoring streams
    processes: int = 1  # data-parallel replicas (torchrun) that share every batch
    # Post-training compression (neural/compress.py), applied when a fit ends: global magnitude
    # pruning of this share of the weight matrices, then int8 dynamic quantization (CPU only).
    sparsity: float = 0.0
    quantize: Literal["none", "int8"] = "none"

    def __post_init__(self) -> None:
        """Every range the loop admits; subclasses call this first, then check their own."""
        require(self, "seed", self.seed >= 0, ">= 0")
        require(self, "batch_size", self.batch_size >= 1, ">= 1")
        require(self, "lr", self.lr > 0, "> 0")
        require(self, "momentum", 0 <= self.momentum < 1, "in [0, 1)")
        require(self, "betas", all(0 <= b < 1 for b in self.betas), "two values in [0, 1)")
        require(self, "weight_decay", self.weight_decay >= 0, ">= 0")
        require(self, "warmup_steps", self.warmup_steps >= 0, ">= 0")
        require(self, "min_lr_ratio", 0 <= self.min_lr_ratio <= 1, "in [0, 1]")
        require(self, "plateau_factor", self.plateau_factor >= 1, ">= 1")
        require(self, "step_decay", 0 < self.step_decay <= 1, "in (0, 1]")
        require(self, "step_after_epochs", self.step_after_epochs >= 0, ">= 0")
        require(self, "grad_clip", self.grad_clip is None or self.grad_clip > 0, "> 0 or None")
        require(self, "eval_every", self.eval_every >= 0, ">= 0 (0: only at the end)")
        require(self, "eval_tokens", self.eval_tokens is None or self.eval_tokens >= 1,
                ">= 1 or None (all)")
        require(self, "max_epochs", self.max_epochs is None or self.max_epochs > 0,
                "> 0 or None")
        require(self, "log_every", self.log_every >= 0, ">= 0 (0: no loss log)")
        require(self, "score_chunk", self.score_chunk >= 1, ">= 1")
        require(self, "processes", self.processes >= 1, ">= 1 (1: this process alone)")
        require(self, "batch_size", self.batch_size % self.processes == 0,
                f"a multiple of processes ({self.processes}): each replica takes an equal share")
        require(self, "sparsity", 0 <= self.sparsity < 1, "in [0, 1) (0: no pruning)")


def _detach(carry: Any) -> Any:
    if carry is None:
        return None
    if isinstance(carry, torch.Tensor):
        return carry.detach()
    return tuple(_detach(c) for c in carry)


class _CrossEntropy(torch.autograd.Function):
    """``F.cross_entropy`` (mean over rows) whose backward reuses the saved log-probabilities.

    ``F.cross_entropy`` saves the ``(N, V)`` log-probabilities and allocates two more ``(N, V)``
    buffers in backward (the NLL gradient, then the log-softmax gradient).  For a word-level
    model these are the step's largest buffers (PTB: N = 700, V = 10,000, 28 MB each), so here
    backward turns the saved log-probabilities into the gradient in place:
    ``(softmax - onehot) * grad / N``.  Backward can therefore run once (no double backward, no
    ``retain_graph`` reuse).
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logp = torch.log_softmax(logits, dim=-1)
        ctx.save_for_backward(logp, targets)
        return -logp.gather(1, targets[:, None]).mean()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        logp, targets = ctx.saved_tensors
        scale = grad / len(targets)
        out = logp.exp_().mul_(scale)
        out[torch.arange(len(targets), device=out.device), targets] -= scale
        return out, None


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy in nats of ``logits`` (N, V) float at ``targets`` (N,) int64; equal to
    ``F.cross_entropy`` to rounding, with less memory traffic (see :class:`_CrossEntropy`)."""
    return _CrossEntropy.apply(logits, targets)


# --------------------------------------------------------------------------------------------
# Batches


class _Batches:
    """Training batches ``(x, y, fresh)``: int64 ``(B, T)`` inputs and targets; ``fresh`` means the
    carry must be reset (a new epoch of a stream, or independent windows)."""

    def __init__(self, mode: str, data: torch.Tensor, batch: int, seq_len: int, sampling: str,
                 seed: int):
        self.mode, self.seq_len, self.sampling = mode, seq_len, sampling
        self.pos, self.epoch = 0, 0
        self.gen = torch.Generator().manual_seed(seed)
        if mode == "stream":
            cols = len(data) // batch
            if cols < 2:
                raise ValueError(f"training stream of {len(data)} tokens is too short for "
                                 f"batch_size {batch}")
            # Row b holds tokens [b*cols, (b+1)*cols): each row is a contiguous piece of text.
            self.data = data[: cols * batch].view(batch, cols)
        else:
            if len(data) < 2:
                raise ValueError("training stream needs at least 2 tokens")
            self.seq_len = min(seq_len, len(data) - 1)
            self.data = data
            self.batch = batch

    def next(self) -> tuple[torch.Tensor, torch.Tensor, bool]:
        if self.mode == "stream":
            fresh = self.pos == 0
            t = min(self.seq_len, self.data.shape[1] - 1 - self.pos)
            x = self.data[:, self.pos : self.pos + t]
            y = self.data[:, self.pos + 1 : self.pos + 1 + t]
            self.pos += t
            if self.pos >= self.data.shape[1] - 1:
                self.pos, self.epoch = 0, self.epoch + 1
            return x, y, fresh
        n, t = len(self.data), self.seq_len
        if self.sampling == "random":
            starts = torch.randint(0, n - t, (self.batch,), generator=self.gen)
        else:
            span = n - t  # windows start at pos, pos + t, ... wrapping around the stream
            starts = (self.pos + torch.arange(self.batch) * t) % span
            self.pos = (self.pos + self.batch * t) % span
        idx = starts[:, None] + torch.arange(t + 1)[None, :]
        win = self.data[idx.to(self.data.device)]
        return win[:, :-1], win[:, 1:], True

    def state(self) -> dict[str, np.ndarray]:
        return {"pos": np.array(self.pos), "epoch": np.array(self.epoch),
                "gen": self.gen.get_state().numpy()}

    def set_state(self, arrays: Mapping[str, np.ndarray]) -> None:
        self.pos, self.epoch = int(arrays["pos"]), int(arrays["epoch"])
        self.gen.set_state(torch.from_numpy(np.array(arrays["gen"], dtype=np.uint8)))


# --------------------------------------------------------------------------------------------
# The run: everything a resumed fit needs


@dataclass
class _Run:
    step: int = 0
    tokens: int = 0
    seconds: float = 0.0
    plateau_scale: float = 1.0
    best_nll: float = math.inf
    best_step: int = -1
    evals: int = 0
    valid_seconds: float = 0.0  # of ``seconds``, spent evaluating on valid
    history: list[dict[str, float]] = field(default_factory=list)
    carry: Any = None
    best_weights: dict[str, torch.Tensor] | None = None

    def scalars(self) -> dict[str, Any]:
        return {"step": self.step, "tokens": self.tokens, "seconds": self.seconds,
                "plateau_scale": self.plateau_scale, "best_nll": self.best_nll,
                "best_step": self.best_step, "evals": self.evals,
                "valid_seconds": self.valid_seconds, "history": self.history}


@dataclass
class _Trainer:
    """Live training objects kept on the model between ``fit`` calls (for ``resume``)."""

    run: _Run
    optimizer: torch.optim.Optimizer
    batches: _Batches
    scaler: torch.amp.GradScaler | None


def _carry_arrays(carry: Any) -> dict[str, np.ndarray]:
    if carry is None:
        return {"carry_kind": np.array("none")}
    if isinstance(carry, torch.Tensor):
        return {"carry_kind": np.array("tensor"), "carry/0": carry.float().cpu().numpy()}
    out = {"carry_kind": np.array("tuple")}
    for i, c in enumerate(carry):
        out[f"carry/{i}"] = c.float().cpu().numpy()
    return out


def _carry_from(arrays: Mapping[str, np.ndarray], device: str) -> Any:
    kind = str(arrays["carry_kind"])
    if kind == "none":
        return None
    parts = sorted((k for k in arrays if k.startswith("carry/")), key=lambda k: int(k[6:]))
    tensors = [torch.from_numpy(np.array(arrays[k])).to(device) for k in parts]
    return tensors[0] if kind == "tensor" else tuple(tensors)


class _EvalPlan:
    """When a ``fit`` evaluates on valid, and how a time budget makes room for it.

    A time budget covers the whole ``fit``.  After the first optimizer step the cost of an
    evaluation is measured (on a sample of valid) and training stops while the next step *and*
    the final evaluation still fit.  A periodic evaluation runs only if the final one would still
    fit after it; a final evaluation that would overrun anyway (the estimate was low) is cut to
    the prefix of valid that fits, or skipped -- both noted in the report.
    """

    def __init__(self, model: TorchLM, run: _Run, valid: np.ndarray | None, budget: Budget):
        self.model, self.run, self.budget = model, run, budget
        self.ids = None
        if valid is not None:
            limit = model.cfg.eval_tokens
            self.ids = model._checked_ids(valid if limit is None else valid[:limit])
        self.timer = ValidationTimer()
        self.timer.seconds = run.valid_seconds
        self.skipped = 0
        self.final_tokens: int | None = None

    def calibrate(self) -> None:
        """Measure the evaluation cost once (a no-op afterwards)."""
        if self.ids is None or self.budget.seconds is None or self.timer.per_token is not None:
            return
        self.timer.calibrate(self.model._validation_logprobs, self.ids,
                             self.model.cfg.score_chunk)
        self.run.valid_seconds = self.timer.seconds
        self.model.module_.train()  # scoring left the module in eval mode

    def reserve(self) -> float:
        """Seconds to hold back for the final evaluation."""
        if self.ids is None or self.budget.seconds is None:
            return 0.0
        return self.timer.estimate(len(self.ids)) or 0.0

    def training_done(self, used: dict[str, float], step_seconds: float) -> bool:
        ahead = used["seconds"] + self.reserve()
        if self.budget.seconds is not None and used["steps"]:
            ahead += step_seconds  # stop before a step that would eat the reserve
        return self.budget.exhausted(tokens=used["tokens"], steps=used["steps"], seconds=ahead)

    def evaluate(self, seconds: float, *, final: bool) -> dict[str, float]:
        """The history entries of an evaluation now (none if there is no valid data or no room)."""
        if self.ids is None:
            return {}
        n, limit = len(self.ids), self.budget.seconds
        left = None if limit is None else limit - seconds
        if not final:
            if left is not None and 2 * self.reserve() > left:
                self.skipped += 1  # the final evaluation would no longer fit
                return {}
            n_ok = n
        else:
            n_ok = self.timer.affordable(n, left)
            self.final_tokens = n_ok
            if n_ok == 0:
                return {}
        out = {"valid_nll": self.model._evaluate(self.run, self.ids[:n_ok], self.timer,
                                                 judge=n_ok == n)}
        if n_ok < n:
            out["valid_tokens"] = float(n_ok)
        self.run.valid_seconds = self.timer.seconds
        return out

    def notes(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.ids is None:
            return out
        if self.skipped:
            out["evals_skipped"] = self.skipped
        if self.final_tokens is not None and self.final_tokens < len(self.ids):
            out["final_eval"] = (
                f"cut to {self.final_tokens} of {len(self.ids)} valid tokens to stay within the "
                "time budget" if self.final_tokens else
                "skipped: no time left in the budget"
            )
        return out


# --------------------------------------------------------------------------------------------
# The base class


class TorchLM(LanguageModel):
    """A :class:`~lmladder.api.LanguageModel` backed by a torch module; see the module docs."""

    Config: ClassVar[type] = TrainConfig
    devices: ClassVar[tuple[str, ...]] = ("cpu", "cuda", "mps")
    batching: ClassVar[Literal["stream", "windows"]] = "stream"

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        self.module_: torch.nn.Module | None = None
        self._trainer: _Trainer | None = None
        self._pending_train: dict[str, np.ndarray] | None = None
        self._save_training_state = False
        self.compression_: compress.Compression | None = None  # set when a fit ends compressed

    # -- what subclasses provide ------------------------------------------------------------

    @property
    def seq_len(self) -> int:
        raise NotImplementedError

    def build_module(self, vocab_size: int) -> torch.nn.Module:
        raise NotImplementedError

    def forward_flops_per_token(self) -> float:
        """Forward FLOPs per token; default 2 x parameters (a multiply-add per weight)."""
        return 2.0 * self.num_parameters()

    # -- device ---------------------------------------------------------------------------------

    def to(self, device: str) -> TorchLM:
        """Move to ``device`` (``cpu``, ``cuda[:i]``, ``mps`` or ``auto``)."""
        device = "cpu" if self.cfg.quantize != "none" and device == "auto" else device
        device = resolve_device(device)
        if self.cfg.quantize != "none" and device != "cpu":
            raise ValueError(f"{type(self).__name__} with quantize={self.cfg.quantize!r} runs on "
                             f"the CPU only (torch's dynamic quantization has no {device} "
                             "kernels): use device 'cpu'")
        super().to(device)
        if self.module_ is not None:
            self.module_.to(device)
        return self

    def _autocast(self):
        kind = self.device.split(":")[0]
        if kind == "cuda" and self.cfg.amp != "none":
            dtype = torch.bfloat16 if self.cfg.amp == "bf16" else torch.float16
            return torch.autocast("cuda", dtype=dtype)
        return torch.autocast("cpu", enabled=False)

    # -- training -------------------------------------------------------------------------------

    def fit(
        self,
        train: np.ndarray,
        vocab: Vocab,
        *,
        budget: Budget = Budget(),
        valid: np.ndarray | None = None,
        callback: ProgressCallback | None = None,
        resume: bool = False,
    ) -> FitReport:
        """Train on ``train`` (int64 ids) within ``budget``; see the module docs for ``resume``.

        ``budget`` needs a bound (tokens, steps or seconds) unless ``cfg.max_epochs`` is set.
        Returns a FitReport whose counters include earlier parts of a resumed run; ``history``
        holds one entry per log/evaluation point (``loss``, ``valid_nll`` in nats per token).
        With ``cfg.processes > 1`` the replicas train in torchrun's worker processes
        (:mod:`lmladder.neural.ddp`), and such a fit cannot be resumed.
        """
        budget = self._bounded(budget, len(train))
        if self.cfg.processes > 1:
            if resume:
                raise ValueError(f"resume=True is not available with processes = "
                                 f"{self.cfg.processes}: the training state stayed in the workers")
            return fit_distributed(self, train, vocab, budget=budget, valid=valid,
                                   callback=callback, stop=StopTraining)
        return self._fit(train, vocab, budget=budget, valid=valid, callback=callback,
                         resume=resume, world=World())

    def _fit(self, train: np.ndarray, vocab: Vocab, *, budget: Budget, valid: np.ndarray | None,
             callback: ProgressCallback | None, resume: bool, world: World) -> FitReport:
        """The training loop of ``fit`` (``budget`` bounded) in this process, one of ``world``'s
        replicas: :mod:`lmladder.neural.ddp` calls it in each torchrun worker."""
        clock = Stopwatch()  # the budget covers the whole fit: setup, training and validation
        cfg = self.cfg
        if resume:
            if self.vocab_ != vocab:
                raise ValueError("resume=True needs the vocabulary the run started with")
            if self.compression_ is not None:
                raise ValueError("resume=True, but this model's training ended in compression "
                                 f"({self.compression_.note}); fit it again from the start")
            if self._trainer is None and self._pending_train is None:
                raise ValueError("resume=True, but this model holds no training state; "
                                 "save(dir, training_state=True) keeps it in a checkpoint")
        else:
            self.vocab_ = vocab
            torch.manual_seed(cfg.seed)
            self.module_ = self.build_module(len(vocab)).to(self.device)
            self._trainer = None
            self._pending_train = None
            self.compression_ = None
        module = self.module_
        data = torch.as_tensor(np.asarray(train, dtype=np.int64)).to(self.device)
        if self._trainer is None:
            self._trainer = self._new_trainer(data)
            if self._pending_train is not None:
                self._restore(self._trainer, self._pending_train)
                self._pending_train = None
        else:
            self._trainer.batches = self._rebatch(self._trainer.batches, data)
        tr = self._trainer
        run, opt, batches, scaler = tr.run, tr.optimizer, tr.batches, tr.scaler
        net = world.wrap(module)
        net = torch.compile(net) if cfg.compile else net
        seconds0 = run.seconds + world.seconds_before
        evals = _EvalPlan(self, run, valid, budget)

        def used() -> dict[str, float]:
            return {"tokens": run.tokens, "steps": run.step, "seconds": seconds0 + clock()}

        interrupted = stopped = False
        module.train()
        loss_sum = torch.zeros((), device=self.device)
        loss_n = 0
        step_seconds = 0.0  # the last optimizer step's wall time: predicts the next one
        while True:
            # every replica takes the step, at the learning rate, that the leader decides on
            go, lr = world.agree(not stopped and not evals.training_done(used(), step_seconds),
                                 self._lr(run, budget.fraction(**used()) or 0.0,
                                          run.tokens / len(data)))
            if not go:
                break
            for group in opt.param_groups:
                group["lr"] = lr
            step_start = clock()
            x, y, fresh = batches.next()
            if fresh:
                run.carry = None
            loss, carry = self._training_loss(net, *world.shard(x, y), run.carry)
            run.carry = _detach(carry)
            opt.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(opt)
            else:
                loss.backward()
            if cfg.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(module.parameters(), cfg.grad_clip)
            if scaler is not None:
                scaler.step(opt)
                scaler.update()
            else:
                opt.step()
            run.step += 1
            run.tokens += x.numel()  # the whole batch: all replicas together
            loss_sum += world.mean(loss.detach())
            loss_n += 1
            step_seconds = clock() - step_start
            evals.calibrate()  # once per fit: the evaluation's cost, so the budget reserves it
            done = evals.training_done(used(), step_seconds)
            point: dict[str, float] = {}
            if cfg.log_every and (run.step % cfg.log_every == 0 or done) and loss_n:
                point["loss"] = float(loss_sum) / loss_n
                loss_sum.zero_()
                loss_n = 0
            periodic = bool(cfg.eval_every) and run.step % cfg.eval_every == 0
            if done or periodic:
                point.update(evals.evaluate(used()["seconds"], final=done))
                module.train()
            if point:
                point.update(step=run.step, tokens=run.tokens, seconds=seconds0 + clock(), lr=lr)
                run.history.append(point)
                log.debug("step %d: %s", run.step, point)
                if callback is not None:
                    try:
                        callback(self._progress(budget, used(), point))
                    except StopTraining:
                        interrupted, stopped = not done, True
        interrupted = interrupted or world.interrupted
        run.seconds = seconds0 + clock()
        module.eval()
        if not interrupted and cfg.keep_best and run.best_weights is not None:
            if run.best_step != run.step:
                module.load_state_dict(run.best_weights)
        notes = {
            "interrupted": interrupted,
            "device": self.device,
            "amp": cfg.amp if self.device.startswith("cuda") else "none",
            "epochs": run.tokens / max(1, len(train)),
            "best_valid_nll": None if math.isinf(run.best_nll) else run.best_nll,
            "best_step": run.best_step,
            "train_flops_per_token": 3.0 * self.forward_flops_per_token(),
            "processes": world.size,
            "backend": world.backend,
        }
        notes.update(evals.notes())
        if not interrupted and (cfg.sparsity > 0 or cfg.quantize != "none"):
            notes["compression"] = self._compress()
        return FitReport(
            train_tokens=run.tokens,
            steps=run.step,
            seconds=run.seconds,
            history=list(run.history),
            notes=notes,
            valid_seconds=run.valid_seconds,
        )

    def _compress(self) -> str:
        """Compress the trained network as the config asks (``sparsity``, then ``quantize``; see
        :mod:`lmladder.neural.compress`) and return the note saying what was done.  The training
        state goes: a compressed network does not train on (``resume`` refuses it)."""
        self.module_, self.compression_ = compress.compress(
            self.module_, sparsity=self.cfg.sparsity, quantize=self.cfg.quantize)
        self._trainer = None
        return self.compression_.note

    def _training_loss(self, net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                       carry: Any) -> tuple[torch.Tensor, Any]:
        """The loss of one batch (``x``, ``y``: int64 ``(B, T)`` inputs and next tokens) and the
        carry for the next batch.  Default: mean next-token cross-entropy in nats.  A family
        trained on another objective (``hf-bert``'s masked LM) overrides only this."""
        with self._autocast():
            logits, carry = net(x, carry)
        v = logits.shape[-1]
        return cross_entropy(logits.float().reshape(-1, v), y.reshape(-1)), carry

    def _validation_logprobs(self, ids: np.ndarray) -> np.ndarray:
        """The per-token ln-probabilities whose mean a ``fit`` reports as ``valid_nll`` and
        keeps the best weights by: ``token_logprobs``; ``hf-bert`` uses its pseudo scores."""
        return self.token_logprobs(ids)

    def _bounded(self, budget: Budget, n_train: int) -> Budget:
        if self.cfg.max_epochs is not None:
            cap = int(self.cfg.max_epochs * n_train)
            tokens = cap if budget.tokens is None else min(cap, budget.tokens)
            budget = Budget(tokens=tokens, steps=budget.steps, seconds=budget.seconds)
        if budget.tokens is None and budget.steps is None and budget.seconds is None:
            raise ValueError(f"{type(self).__name__}.fit needs a bounded budget (tokens, steps "
                             "or seconds) or config max_epochs")
        return budget

    def _new_trainer(self, data: torch.Tensor) -> _Trainer:
        cfg = self.cfg
        decay, no_decay = [], []
        for p in self.module_.parameters():
            if p.requires_grad:
                (decay if p.dim() >= 2 else no_decay).append(p)
        groups = [{"params": decay, "weight_decay": cfg.weight_decay},
                  {"params": no_decay, "weight_decay": 0.0}]
        # One fused kernel per tensor instead of torch's default (several ops per tensor on CPU,
        # foreach on CUDA): the CPU AdamW step of the nanoGPT-size Transformer takes 1.1 ms, not
        # 3.8; the SGD step of the 2x200 PTB LSTM 3.4 ms, not 5.7.
        fused = self.device.split(":")[0] in ("cpu", "cuda")
        if cfg.optimizer == "adamw":
            opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, fused=fused)
        else:
            opt = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, fused=fused)
        scaler = None
        if self.device.startswith("cuda") and cfg.amp == "fp16":
            scaler = torch.amp.GradScaler("cuda")
        batches = self._rebatch(None, data)
        return _Trainer(_Run(), opt, batches, scaler)

    def _rebatch(self, old: _Batches | None, data: torch.Tensor) -> _Batches:
        sampling = getattr(self.cfg, "sampling", "sequential")
        new = _Batches(self.batching, data, self.cfg.batch_size, self.seq_len, sampling,
                       self.cfg.seed + 1)
        if old is not None:
            new.set_state(old.state())
        return new

    def _lr(self, run: _Run, frac: float, epochs: float) -> float:
        """The learning rate of the next step, ``frac`` of the budget and ``epochs`` passes over
        train into the run."""
        cfg = self.cfg
        warm = min(1.0, (run.step + 1) / cfg.warmup_steps) if cfg.warmup_steps else 1.0
        if cfg.schedule == "cosine":
            decay = cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * frac))
        elif cfg.schedule == "linear":
            decay = 1.0 - (1.0 - cfg.min_lr_ratio) * frac
        elif cfg.schedule == "plateau":
            decay = run.plateau_scale
        elif cfg.schedule == "step":
            decay = cfg.step_decay ** max(0, math.floor(epochs) - cfg.step_after_epochs + 1)
        else:
            decay = 1.0
        return cfg.lr * warm * decay

    def _evaluate(self, run: _Run, ids: np.ndarray, timer: ValidationTimer, *,
                  judge: bool = True) -> float:
        """Mean ln-loss (nats/token) of ``ids`` (a prefix of valid); with ``judge``, tracks the
        best weights and the plateau schedule (a cut final evaluation is not comparable with
        the full ones, so it does not judge)."""
        nll = float(-timer.score(self._validation_logprobs,
                                 np.asarray(ids, dtype=np.int64)).mean())
        run.evals += 1
        if not judge:
            return nll
        if nll < run.best_nll:
            run.best_nll, run.best_step = nll, run.step
            if self.cfg.keep_best:
                run.best_weights = {k: t.detach().clone()
                                    for k, t in self.module_.state_dict().items()}
        elif self.cfg.schedule == "plateau":
            run.plateau_scale /= self.cfg.plateau_factor
        return nll

    @staticmethod
    def _progress(budget: Budget, used: dict[str, float], point: dict[str, float]) -> Progress:
        metrics = {k: point[k] for k in ("loss", "valid_nll", "lr") if k in point}
        if used["seconds"] > 0:
            metrics["tokens_per_s"] = used["tokens"] / used["seconds"]
        for unit, limit in (("tokens", budget.tokens), ("steps", budget.steps),
                            ("seconds", budget.seconds)):
            if limit is not None:
                return Progress(done=min(used[unit], limit), total=limit, unit=unit,
                                metrics=metrics)
        raise AssertionError("unbounded budget")

    # -- training state as arrays (resume) -------------------------------------------------------

    def _trainer_arrays(self, tr: _Trainer) -> dict[str, np.ndarray]:
        run = tr.run
        out: dict[str, np.ndarray] = {"scalars": np.array(json.dumps(run.scalars()))}
        for i, st in tr.optimizer.state_dict()["state"].items():
            for k, t in st.items():
                if isinstance(t, torch.Tensor):
                    out[f"opt/{i}/{k}"] = t.cpu().numpy()
        for k, a in tr.batches.state().items():
            out[f"data/{k}"] = a
        out.update(_carry_arrays(run.carry))
        out["rng/cpu"] = torch.get_rng_state().numpy()
        if self.device.startswith("cuda"):
            out["rng/cuda"] = torch.cuda.get_rng_state().numpy()
        if tr.scaler is not None:
            out["scaler/scale"] = np.array(tr.scaler.get_scale())
        if run.best_weights is not None:
            for k, t in run.best_weights.items():
                out[f"best/{k}"] = t.cpu().numpy()
        return out

    def _restore(self, tr: _Trainer, arrays: Mapping[str, np.ndarray]) -> None:
        run = tr.run
        for k, value in json.loads(str(arrays["scalars"])).items():
            setattr(run, k, value)
        sd = tr.optimizer.state_dict()
        state: dict[int, dict[str, torch.Tensor]] = {}
        for key, a in arrays.items():
            if key.startswith("opt/"):
                _, i, name = key.split("/", 2)
                state.setdefault(int(i), {})[name] = torch.from_numpy(np.array(a))
        sd["state"] = state
        tr.optimizer.load_state_dict(sd)
        tr.batches.set_state({k[5:]: a for k, a in arrays.items() if k.startswith("data/")})
        run.carry = _carry_from(arrays, self.device)
        torch.set_rng_state(torch.from_numpy(np.array(arrays["rng/cpu"])))
        if "rng/cuda" in arrays and self.device.startswith("cuda"):
            torch.cuda.set_rng_state(torch.from_numpy(np.array(arrays["rng/cuda"])))
        if tr.scaler is not None and "scaler/scale" in arrays:
            tr.scaler.update(float(arrays["scaler/scale"]))
        best = {k[5:]: torch.from_numpy(np.array(a)).to(self.device)
                for k, a in arrays.items() if k.startswith("best/")}
        run.best_weights = best or None

    # -- optional capability: fine-tuning with a classification head --------------------------

    @property
    def max_positions(self) -> int | None:
        """The longest input the network takes (``None``: unbounded, as an RNN's)."""
        return None

    def fine_tune_classifier(
        self,
        texts: Sequence[np.ndarray],
        labels: np.ndarray,
        num_classes: int,
        *,
        budget: Budget,
        vocab: Vocab | None = None,
        valid: tuple[Sequence[np.ndarray], np.ndarray] | None = None,
        seed: int = 0,
        settings: FineTuneConfig | None = None,
    ) -> FineTunedClassifier:
        """:class:`~lmladder.api.FineTunable`: fine-tune a copy of the network (or, unfitted
        and given ``vocab``, a fresh one) with a linear head over its pooled features.

        Every text is read as ``boundary, text`` (cut to ``settings.max_len`` tokens and the
        network's ``max_positions``, the *first* tokens kept), right-padded within a batch.  The
        network's ``features(x, mask)`` gives its top states ``(B, T, H)``; the head reads the
        mean over the text's positions concatenated with the last position's state (ULMFiT's
        concat pooling, Howard & Ruder 2018, without the max).  All weights train with AdamW,
        linear warm-up over the first ``settings.warmup`` of the budget, then linear decay to 0
        (the BERT recipe); see :class:`FineTuneConfig`.  With ``valid``, the accuracy on it is
        measured after every pass over the texts and at the end, and the best weights are kept
        (these evaluations count in a time budget; the final one may overrun it by its own
        duration, reported as ``valid_seconds``).  The model itself is never modified.
        """
        if self.cfg.quantize != "none":
            raise NotApplicable(f"{type(self).__name__} with quantize={self.cfg.quantize!r} "
                                "cannot be fine-tuned: quantized layers have no gradients")
        cfg = settings or FineTuneConfig()
        body, vocab = self._classifier_body(vocab)
        return _fine_tune(self, body, vocab, texts, labels, num_classes, budget=budget,
                          valid=valid, seed=seed, cfg=cfg)

    def _classifier_body(self, vocab: Vocab | None) -> tuple[torch.nn.Module, Vocab]:
        if self.vocab_ is not None:
            if vocab is not None and vocab != self.vocab_:
                raise ValueError("fine_tune_classifier: vocab differs from the one the model was "
                                 "fitted on; encode the texts with model.vocab_")
            return copy.deepcopy(self._require_module()), self.vocab_
        if vocab is None:
            raise NotFittedError(f"{type(self).__name__} is not fitted: pass vocab= to "
                                 "fine-tune a freshly initialised network (no pre-training)")
        torch.manual_seed(self.cfg.seed)  # the network fit() would start from
        return self.build_module(len(vocab)).to(self.device), vocab

    # -- state API ---------------------------------------------------------------------------

    def init_state(self, batch: int) -> Any:
        """The empty history: ``None`` (the module starts from its zero carry)."""
        self._require_module()
        return None

    def _step_logits(self, state: Any, x: torch.Tensor) -> tuple[torch.Tensor, Any]:
        logits, carry = self.module_(x[:, None], state)
        return logits[:, 0], carry

    @torch.no_grad()
    def step(self, state: Any, tokens: np.ndarray) -> tuple[np.ndarray, Any]:
        """ln p(next | history, tokens): float64 ``(B, V)``; the state is left unmodified."""
        module = self._require_module()
        module.eval()
        x = torch.as_tensor(np.asarray(tokens, dtype=np.int64)).to(self.device)
        logits, new = self._step_logits(state, x)
        return torch.log_softmax(logits.double(), dim=-1).cpu().numpy(), new

    # -- batched scoring ---------------------------------------------------------------------

    def _score_logits(self, inputs: torch.Tensor, context: ContextPolicy) -> Iterator[torch.Tensor]:
        carry = None
        for i in range(0, len(inputs), self.cfg.score_chunk):
            logits, carry = self.module_(inputs[None, i : i + self.cfg.score_chunk], carry)
            yield logits[0]

    @torch.no_grad()
    def _scan(self, tokens: np.ndarray, context: ContextPolicy, ranks: bool) -> np.ndarray:
        if self.compression_ is not None and self.cfg.quantize != "none":
            # Dynamic quantization scales a layer's input by its range over the whole call, so
            # in a batched call a token's score would depend on the tokens batched with it,
            # later ones included.  One token per call (the state API) keeps each score its own.
            reference = LanguageModel.next_token_ranks if ranks else LanguageModel.token_logprobs
            return reference(self, tokens, context=context)
        vocab = self._require_fitted()
        module = self._require_module()
        module.eval()
        tokens = self._checked_ids(tokens)
        n = len(tokens)
        out = np.empty((n, 2), dtype=np.int64) if ranks else np.empty(n, dtype=np.float64)
        if n == 0:
            return out
        inputs = np.concatenate([[vocab.boundary_id], tokens[:-1]]).astype(np.int64)
        if context.reset_at_boundary:
            starts = np.flatnonzero(inputs == vocab.boundary_id).tolist()
        else:
            starts = [0]
        x_all = torch.from_numpy(inputs).to(self.device)
        y_all = torch.from_numpy(tokens).to(self.device)
        for a, b in zip(starts, [*starts[1:], n], strict=True):
            pos = a
            for logits in self._score_logits(x_all[a:b], context):
                m = logits.shape[0]
                lp = torch.log_softmax(logits.double(), dim=-1)
                chosen = lp.gather(1, y_all[pos : pos + m, None])
                if ranks:  # (g, e), as api.rank_counts
                    res = torch.stack([(lp > chosen).sum(dim=1), (lp == chosen).sum(dim=1)], 1)
                else:
                    res = chosen[:, 0]
                out[pos : pos + m] = res.cpu().numpy()
                pos += m
            if pos != b:
                raise AssertionError(f"_score_logits covered {pos - a} of {b - a} positions")
        return out

    def token_logprobs(self, tokens: np.ndarray, *,
                       context: ContextPolicy = ContextPolicy()) -> np.ndarray:
        """ln p(w_i | history), float64 ``(N,)``, batched (equal to the ``step`` loop)."""
        return self._scan(tokens, context, ranks=False)

    def next_token_ranks(self, tokens: np.ndarray, *,
                         context: ContextPolicy = ContextPolicy()) -> np.ndarray:
        """``(g, e)`` of each token, int64 ``(N, 2)`` (see ``LanguageModel.next_token_ranks``),
        batched."""
        return self._scan(tokens, context, ranks=True)

    # -- parameters, save/load -----------------------------------------------------------------

    def inspect(self) -> list[dict]:
        """A compressed model's table of its pruned or quantized weight matrices."""
        if self.compression_ is None:
            return []
        return [compress.layer_table(self._require_module())]

    def num_parameters(self) -> int:
        """The network's parameters (a compressed network: as many as before compression)."""
        module = self._require_module()
        if self.compression_ is not None:
            return self.compression_.parameters
        return sum(p.numel() for p in module.parameters())

    def save(self, directory: str | Path, *, training_state: bool = False) -> Path:
        """Write the checkpoint; ``training_state=True`` adds what ``fit(resume=True)`` needs."""
        self._save_training_state = training_state
        try:
            return super().save(directory)
        finally:
            self._save_training_state = False

    def _state_arrays(self) -> dict[str, np.ndarray]:
        module = self._require_module()  # the raw module: no torch.compile prefixes
        out = compress.module_arrays(module)  # quantized layers as int8 values and scales
        if self.compression_ is not None:
            out.update(self.compression_.arrays())
        if self._save_training_state:
            if self._trainer is not None:
                train = self._trainer_arrays(self._trainer)
            elif self._pending_train is not None:
                train = dict(self._pending_train)
            else:
                raise ValueError("save(training_state=True): the model holds no training state")
            out.update({f"train/{k}": a for k, a in train.items()})
        return out

    def _load_state_arrays(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Load the weights into a freshly built module (quantized first if the checkpoint is
        of a quantized network), refusing any weight array that is missing, unexpected, or of
        another shape or dtype kind than the module's (the first mismatch is named)."""
        module = self.build_module(len(self.vocab_))
        self.compression_ = compress.Compression.from_arrays(arrays)
        if self.compression_ is not None and self.cfg.quantize != "none":
            module = compress.quantize_int8(module)
        expected = compress.module_arrays(module)
        weights = {k: a for k, a in arrays.items() if k.startswith(compress.WEIGHT_PREFIXES)}
        for name, e in expected.items():
            if name not in weights:
                raise KeyError(name)
            a = np.asarray(weights[name])
            if a.shape != e.shape:
                raise ValueError(
                    f"array {name!r} has shape {a.shape}, but this config and a "
                    f"vocabulary of {len(self.vocab_)} need {e.shape}"
                )
            if a.dtype.kind != e.dtype.kind:
                raise ValueError(f"array {name!r} has dtype {a.dtype}, expected {e.dtype}")
        extra = sorted(set(weights) - set(expected))
        if extra:
            raise ValueError(f"array {extra[0]!r} is not a weight of this model "
                             f"({len(extra)} unexpected in all)")
        compress.load_module_arrays(module, weights)
        self.module_ = module.to(self.device).eval()
        train = {k[6:]: a for k, a in arrays.items() if k.startswith("train/")}
        self._pending_train = train or None
        self._trainer = None

    def _require_module(self) -> torch.nn.Module:
        self._require_fitted()
        if self.module_ is None:
            raise RuntimeError(f"{type(self).__name__} has a vocabulary but no module")
        return self.module_


# --------------------------------------------------------------------------------------------
# Fine-tuning with a classification head (the optional FineTunable capability)


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


def _fine_tune(model: TorchLM, body: torch.nn.Module, vocab: Vocab, texts, labels,
               num_classes: int, *, budget: Budget, valid, seed: int,
               cfg: FineTuneConfig) -> FineTunedClassifier:
    """The fine-tuning loop of :meth:`TorchLM.fine_tune_classifier`."""
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
