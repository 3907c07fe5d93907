"""The base class of every torch language model in lmladder: :class:`TorchLM`.

Extension interface
-------------------
A torch language model is a subclass of :class:`TorchLM`.  The subclass provides only the network
and how it consumes token batches; the state API, batched scoring, save/load and resumable
checkpoints live here, and ``fit`` runs the one budgeted training loop of
:mod:`lmladder.neural.loop` (budget, optimizer, schedule, evaluation, best-weight keeping), which
cuts the training stream into batches as :mod:`lmladder.neural.batches` pictures.

A subclass provides

``Config``
    A frozen dataclass that *inherits* :class:`~lmladder.neural.loop.TrainConfig` (the loop's
    hyperparameters, all with defaults) and adds the architecture's fields.
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
and fine-tunes everything; see :meth:`TorchLM.fine_tune_classifier` and
:mod:`lmladder.neural.finetune`.

Resuming
--------
``fit(..., resume=True)`` continues the training that the model holds -- from an earlier ``fit``
in this process that was stopped (a ``callback`` raising
:class:`~lmladder.neural.loop.StopTraining`), or from a checkpoint written by
``save(dir, training_state=True)`` and read by ``lmladder.load_model``.  Pass the same data and
budget: counters (tokens, steps, seconds), optimizer moments, schedule, data
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
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from lmladder.api import (
    Budget,
    ContextPolicy,
    FitReport,
    LanguageModel,
    NotApplicable,
    NotFittedError,
    ProgressCallback,
    Vocab,
)
from lmladder.checkpoint import config_mismatch
from lmladder.devices import resolve_device
from lmladder.neural import compress
from lmladder.neural.ddp import World, fit_distributed
from lmladder.neural.finetune import FineTuneConfig, FineTunedClassifier, fine_tune
from lmladder.neural.loop import (
    StopTraining,
    TrainConfig,
    _Run,
    _Trainer,
    bounded_budget,
    cross_entropy,
    fit_loop,
    learning_rate,
    trainer_arrays,
)


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
        budget = bounded_budget(budget, len(train), self.cfg, type(self).__name__)
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
        return fit_loop(self, train, vocab, budget=budget, valid=valid, callback=callback,
                        resume=resume, world=world)

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

    def _lr(self, run: _Run, frac: float, epochs: float) -> float:
        """The learning rate of the next step, ``frac`` of the budget and ``epochs`` passes over
        train into the run (:func:`~lmladder.neural.loop.learning_rate` of this config)."""
        return learning_rate(self.cfg, run, frac, epochs)

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
        return fine_tune(self, body, vocab, texts, labels, num_classes, budget=budget,
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
                train = trainer_arrays(self._trainer, self.device)
            elif self._pending_train is not None:
                train = dict(self._pending_train)
            else:
                raise ValueError("save(training_state=True): the model holds no training state")
            out.update({f"train/{k}": a for k, a in train.items()})
        return out

    def _load_state_arrays(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Load the weights into a freshly built module (quantized first if the checkpoint is
        of a quantized network), refusing any weight array that is missing, unexpected, or of
        another shape or dtype kind than the module's (the first mismatch is named).  The
        config's sizes are checked against the arrays first, on a module built on the ``meta``
        device (shapes, no memory): an edited ``hidden=20000`` is refused before anything of
        that size is allocated."""
        self._check_sizes(arrays)
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

    def _check_sizes(self, arrays: Mapping[str, np.ndarray]) -> None:
        """ValueError naming the config key when the module this config builds does not have
        the saved arrays' shapes (a weight missing, another shape), or when its buffers that no
        saved array bounds (RoPE tables of ``context`` rows) outgrow the saved weights."""
        v = len(self.vocab_)
        with torch.device("meta"):
            probe = self.build_module(v)
        names = {k.split("/", 1)[1]: k for k in arrays if k.startswith(("param/", "qweight/"))}
        saved = {key: np.shape(arrays[name]) for key, name in names.items()}
        config = self.config()
        wanted = probe.state_dict()
        for key, t in wanted.items():
            if key not in saved and len(wanted) != len(saved):
                raise ValueError(f"missing array 'param/{key}': this config (model.json) builds "
                                 f"{len(wanted)} weight arrays, the file holds {len(saved)}; "
                                 "model.json does not describe this state")
            if key not in saved:
                raise KeyError(f"param/{key}")
            if tuple(t.shape) != saved[key]:
                raise ValueError(config_mismatch(names[key], saved[key], tuple(t.shape),
                                                 config, v))
        kept = set(probe.state_dict())
        tables = [b for n, b in probe.named_buffers() if n not in kept]
        extra = sum(b.numel() * b.element_size() for b in tables)
        weights = sum(np.asarray(a).nbytes for a in arrays.values())
        if extra > max(64 << 20, 4 * weights):
            dims = {d for b in tables for d in b.shape}
            keys = ", ".join(f"{k}={x}" for k, x in config.items()
                             if isinstance(x, int) and not isinstance(x, bool) and x in dims)
            raise ValueError(f"the config's {keys or 'sizes'} (model.json) need {extra >> 20} MiB "
                             f"of tables that no saved array bounds, for {weights >> 20} MiB of "
                             "saved weights; model.json does not describe this state")

    def _require_module(self) -> torch.nn.Module:
        self._require_fitted()
        if self.module_ is None:
            raise RuntimeError(f"{type(self).__name__} has a vocabulary but no module")
        return self.module_
