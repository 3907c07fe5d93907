"""The budgeted training loop that every :class:`~lmladder.neural.torchlm.TorchLM` trains with.

:func:`fit_loop` is the body of ``TorchLM.fit`` in one process (or in one replica of a
data-parallel fit, :mod:`lmladder.neural.ddp`): it draws batches, takes optimizer steps at the
scheduled learning rate, evaluates on valid when :class:`_EvalPlan` says so, keeps the best
weights, and stops before the budget (tokens, steps or seconds, :class:`~lmladder.api.Budget`)
would be overrun.  Everything a resumed fit needs lives in a :class:`_Trainer` (the counters of
:class:`_Run`, the optimizer, the data position, the carried hidden state) and becomes plain
arrays for a checkpoint with :func:`trainer_arrays` / :func:`restore_trainer`.  The ``model``
these functions take is a ``TorchLM``, typed as the contract's ``LanguageModel`` because
:mod:`lmladder.neural.torchlm` imports this module and not the other way round.

The batches are cut as :mod:`lmladder.neural.batches` pictures: a stream in ``batch_size``
rows read ``seq_len`` tokens at a time with the hidden state carried along (truncated BPTT), or
independent windows.

Schedule
--------
``lr(step) = cfg.lr * warm-up(step) * decay(fraction of the budget used)``; warm-up is linear over
``warmup_steps`` optimizer steps; decay is ``cosine`` or ``linear`` down to ``min_lr_ratio``,
``constant``, ``plateau`` (divide by ``plateau_factor`` whenever an evaluation on valid does not
improve on the best, as in the PyTorch word-language-model example), or ``step`` (by epochs, see
:class:`TrainConfig`).  Weight decay applies only to matrices and embeddings (tensors with >= 2
dimensions), not to biases and norms.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import torch._dynamo  # noqa: F401 -- else the first optimizer imports it (~2 s) inside a budget

from lmladder.api import (
    Budget,
    FitReport,
    LanguageModel,
    Progress,
    ProgressCallback,
    Stopwatch,
    ValidationTimer,
    Vocab,
    require,
)
from lmladder.neural.batches import Batches
from lmladder.neural.ddp import World

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
    batches: Batches
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

    def __init__(self, model: LanguageModel, run: _Run, valid: np.ndarray | None, budget: Budget):
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
        out = {"valid_nll": self._score(self.ids[:n_ok], judge=n_ok == n)}
        if n_ok < n:
            out["valid_tokens"] = float(n_ok)
        self.run.valid_seconds = self.timer.seconds
        return out

    def _score(self, ids: np.ndarray, *, judge: bool) -> float:
        """Mean ln-loss (nats/token) of ``ids`` (a prefix of valid); with ``judge``, tracks the
        best weights and the plateau schedule (a cut final evaluation is not comparable with
        the full ones, so it does not judge)."""
        model, run = self.model, self.run
        nll = float(-self.timer.score(model._validation_logprobs,
                                      np.asarray(ids, dtype=np.int64)).mean())
        run.evals += 1
        if not judge:
            return nll
        if nll < run.best_nll:
            run.best_nll, run.best_step = nll, run.step
            if model.cfg.keep_best:
                run.best_weights = {k: t.detach().clone()
                                    for k, t in model.module_.state_dict().items()}
        elif model.cfg.schedule == "plateau":
            run.plateau_scale /= model.cfg.plateau_factor
        return nll

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
# The loop


def fit_loop(model: LanguageModel, train: np.ndarray, vocab: Vocab, *, budget: Budget,
             valid: np.ndarray | None, callback: ProgressCallback | None, resume: bool,
             world: World) -> FitReport:
    """Train ``model`` on ``train`` (int64 ids) within ``budget`` (already bounded, see
    :func:`bounded_budget`) in this process, one of ``world``'s replicas; ``resume`` continues
    the training state the model holds.  The body of ``TorchLM.fit``; see the module docs."""
    clock = Stopwatch()  # the budget covers the whole fit: setup, training and validation
    cfg = model.cfg
    tr, data = _trainer_for(model, train, vocab, resume)
    module = model.module_
    run, opt = tr.run, tr.optimizer
    net = world.wrap(module)
    net = torch.compile(net) if cfg.compile else net
    seconds0 = run.seconds + world.seconds_before
    evals = _EvalPlan(model, run, valid, budget)

    def used() -> dict[str, float]:
        return {"tokens": run.tokens, "steps": run.step, "seconds": seconds0 + clock()}

    interrupted = stopped = False
    module.train()
    loss_sum = torch.zeros((), device=model.device)
    loss_n = 0
    step_seconds = 0.0  # the last optimizer step's wall time: predicts the next one
    while True:
        # every replica takes the step, at the learning rate, that the leader decides on
        go, lr = world.agree(not stopped and not evals.training_done(used(), step_seconds),
                             model._lr(run, budget.fraction(**used()) or 0.0,
                                       run.tokens / len(data)))
        if not go:
            break
        for group in opt.param_groups:
            group["lr"] = lr
        step_start = clock()
        loss = _optimizer_step(model, tr, net, world)
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
                    callback(_progress(budget, used(), point))
                except StopTraining:
                    interrupted, stopped = not done, True
    interrupted = interrupted or world.interrupted
    run.seconds = seconds0 + clock()
    return _finish(model, run, evals, world, n_train=len(train), interrupted=interrupted)


def _trainer_for(model: LanguageModel, train: np.ndarray, vocab: Vocab,
                 resume: bool) -> tuple[_Trainer, torch.Tensor]:
    """The trainer a fit continues (``resume``) or a fresh one over a freshly built network
    (seeded with ``cfg.seed``), and ``train`` as a tensor on the model's device."""
    cfg = model.cfg
    if resume:
        if model.vocab_ != vocab:
            raise ValueError("resume=True needs the vocabulary the run started with")
        if model.compression_ is not None:
            raise ValueError("resume=True, but this model's training ended in compression "
                             f"({model.compression_.note}); fit it again from the start")
        if model._trainer is None and model._pending_train is None:
            raise ValueError("resume=True, but this model holds no training state; "
                             "save(dir, training_state=True) keeps it in a checkpoint")
    else:
        model.vocab_ = vocab
        torch.manual_seed(cfg.seed)
        model.module_ = model.build_module(len(vocab)).to(model.device)
        model._trainer = None
        model._pending_train = None
        model.compression_ = None
    data = torch.as_tensor(np.asarray(train, dtype=np.int64)).to(model.device)
    if model._trainer is None:
        model._trainer = _new_trainer(model, data)
        if model._pending_train is not None:
            restore_trainer(model._trainer, model._pending_train, model.device)
            model._pending_train = None
    else:
        model._trainer.batches = _rebatch(model, model._trainer.batches, data)
    return model._trainer, data


def _optimizer_step(model: LanguageModel, tr: _Trainer, net: torch.nn.Module,
                    world: World) -> torch.Tensor:
    """One optimizer step on the next batch (this replica's share of it); its loss."""
    cfg, run, opt, scaler = model.cfg, tr.run, tr.optimizer, tr.scaler
    x, y, fresh = tr.batches.next()
    if fresh:
        run.carry = None
    loss, carry = model._training_loss(net, *world.shard(x, y), run.carry)
    run.carry = _detach(carry)
    opt.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
    else:
        loss.backward()
    if cfg.grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(model.module_.parameters(), cfg.grad_clip)
    if scaler is not None:
        scaler.step(opt)
        scaler.update()
    else:
        opt.step()
    run.step += 1
    run.tokens += x.numel()  # the whole batch: all replicas together
    return loss


def _finish(model: LanguageModel, run: _Run, evals: _EvalPlan, world: World, *, n_train: int,
            interrupted: bool) -> FitReport:
    """End a fit: the best weights back (unless interrupted), compression as the config asks,
    and the report."""
    cfg, module = model.cfg, model.module_
    module.eval()
    if not interrupted and cfg.keep_best and run.best_weights is not None:
        if run.best_step != run.step:
            module.load_state_dict(run.best_weights)
    notes = {
        "interrupted": interrupted,
        "device": model.device,
        "amp": cfg.amp if model.device.startswith("cuda") else "none",
        "epochs": run.tokens / max(1, n_train),
        "best_valid_nll": None if math.isinf(run.best_nll) else run.best_nll,
        "best_step": run.best_step,
        "train_flops_per_token": 3.0 * model.forward_flops_per_token(),
        "processes": world.size,
        "backend": world.backend,
    }
    notes.update(evals.notes())
    if not interrupted and (cfg.sparsity > 0 or cfg.quantize != "none"):
        notes["compression"] = model._compress()
    return FitReport(
        train_tokens=run.tokens,
        steps=run.step,
        seconds=run.seconds,
        history=list(run.history),
        notes=notes,
        valid_seconds=run.valid_seconds,
    )


def bounded_budget(budget: Budget, n_train: int, cfg: TrainConfig, owner: str) -> Budget:
    """``budget`` with ``cfg.max_epochs`` passes over ``n_train`` tokens as an extra token limit;
    ValueError naming ``owner`` if it is still unbounded."""
    if cfg.max_epochs is not None:
        cap = int(cfg.max_epochs * n_train)
        tokens = cap if budget.tokens is None else min(cap, budget.tokens)
        budget = Budget(tokens=tokens, steps=budget.steps, seconds=budget.seconds)
    if budget.tokens is None and budget.steps is None and budget.seconds is None:
        raise ValueError(f"{owner}.fit needs a bounded budget (tokens, steps "
                         "or seconds) or config max_epochs")
    return budget


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


# --------------------------------------------------------------------------------------------
# Optimizer and schedule


def _new_trainer(model: LanguageModel, data: torch.Tensor) -> _Trainer:
    cfg = model.cfg
    decay, no_decay = [], []
    for p in model.module_.parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    # One fused kernel per tensor instead of torch's default (several ops per tensor on CPU,
    # foreach on CUDA): the CPU AdamW step of the nanoGPT-size Transformer takes 1.1 ms, not
    # 3.8; the SGD step of the 2x200 PTB LSTM 3.4 ms, not 5.7.
    fused = model.device.split(":")[0] in ("cpu", "cuda")
    if cfg.optimizer == "adamw":
        opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, fused=fused)
    else:
        opt = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, fused=fused)
    scaler = None
    if model.device.startswith("cuda") and cfg.amp == "fp16":
        scaler = torch.amp.GradScaler("cuda")
    batches = _rebatch(model, None, data)
    return _Trainer(_Run(), opt, batches, scaler)


def _rebatch(model: LanguageModel, old: Batches | None, data: torch.Tensor) -> Batches:
    sampling = getattr(model.cfg, "sampling", "sequential")
    new = Batches(model.batching, data, model.cfg.batch_size, model.seq_len, sampling,
                   model.cfg.seed + 1)
    if old is not None:
        new.set_state(old.state())
    return new


def learning_rate(cfg: TrainConfig, run: _Run, frac: float, epochs: float) -> float:
    """The learning rate of the next step, ``frac`` of the budget and ``epochs`` passes over
    train into ``run`` (see Schedule in the module docs)."""
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


# --------------------------------------------------------------------------------------------
# The training state as arrays (resume)


def trainer_arrays(tr: _Trainer, device: str) -> dict[str, np.ndarray]:
    """Everything ``fit(resume=True)`` needs of ``tr``, as named arrays for a checkpoint."""
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
    if device.startswith("cuda"):
        out["rng/cuda"] = torch.cuda.get_rng_state().numpy()
    if tr.scaler is not None:
        out["scaler/scale"] = np.array(tr.scaler.get_scale())
    if run.best_weights is not None:
        for k, t in run.best_weights.items():
            out[f"best/{k}"] = t.cpu().numpy()
    return out


def restore_trainer(tr: _Trainer, arrays: Mapping[str, np.ndarray], device: str) -> None:
    """Put the state of :func:`trainer_arrays` into a fresh ``tr`` (the RNG states included)."""
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
    run.carry = _carry_from(arrays, device)
    torch.set_rng_state(torch.from_numpy(np.array(arrays["rng/cpu"])))
    if "rng/cuda" in arrays and device.startswith("cuda"):
        torch.cuda.set_rng_state(torch.from_numpy(np.array(arrays["rng/cuda"])))
    if tr.scaler is not None and "scaler/scale" in arrays:
        tr.scaler.update(float(arrays["scaler/scale"]))
    best = {k[5:]: torch.from_numpy(np.array(a)).to(device)
            for k, a in arrays.items() if k.startswith("best/")}
    run.best_weights = best or None
