"""``saved:<folder>``: a model saved by one run, scored by another matrix.

A folder written by ``LanguageModel.save`` (``lmladder run --save-models`` keeps one per cell,
``<record>.model/``) is a model of its own: :class:`SavedLM` loads it with
:func:`lmladder.load_model` in ``fit``, trains nothing, and passes every call of the contract to
the loaded model.  The dataset's vocabulary must be the one the model was saved with (same
vocabulary hash): ids of another vocabulary would name other words, so another is refused.

The instance takes the saved model's ``family``, ``devices`` and ``closed_vocabulary`` when it is
built, from the class ``model.json`` names (imported only if the registry knows it, as
:func:`lmladder.load_model` does), so records and reports group it with its own family.

Saving a ``SavedLM`` writes no copy of the weights but a fingerprint of the folder (SHA-256 of its
files): loading it reloads the folder and refuses one that changed since, as ``hf:`` does.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lmladder import registry
from lmladder.api import (
    Budget,
    ContextPolicy,
    FitReport,
    LanguageModel,
    ProgressCallback,
    Stopwatch,
    Vocab,
    check_state_array,
    read_checkpoint,
)


@dataclass(frozen=True)
class SavedConfig:
    """source: a folder written by ``LanguageModel.save`` (checked to hold a ``model.json``)."""

    source: str

    def __post_init__(self) -> None:
        read_checkpoint(Path(self.source).expanduser())


def fingerprint(folder: Path) -> bytes:
    """SHA-256 over the names and contents of the folder's files (sorted), 32 bytes."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.digest()


class SavedLM(LanguageModel):
    """A saved model folder scored as it is: ``saved:<folder>`` (see the module docstring)."""

    Config = SavedConfig
    devices = ("cpu", "cuda", "mps")  # the instance narrows them to the saved model's

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        self.folder = Path(self.cfg.source).expanduser()
        saved = registry.checkpoint_class(self.folder)
        self.family = saved.family
        self.devices = self.devices_for(self.config())
        self.closed_vocabulary = saved.closed_vocabulary
        self.model_: LanguageModel | None = None

    @classmethod
    def devices_for(cls, config: Mapping[str, Any]) -> tuple[str, ...]:
        """Where the saved model runs (the devices of the class its ``model.json`` names)."""
        return registry.checkpoint_class(Path(config["source"]).expanduser()).devices

    def fit(
        self,
        train: np.ndarray,
        vocab: Vocab,
        *,
        budget: Budget = Budget(),
        valid: np.ndarray | None = None,
        callback: ProgressCallback | None = None,
    ) -> FitReport:
        """Load the folder onto ``vocab``, which must be the saved one; nothing is trained."""
        clock = Stopwatch()
        self._attach(vocab)
        notes = {"saved": str(self.folder), "class": registry.class_path(type(self.model_))}
        return FitReport(train_tokens=0, steps=0, seconds=clock(), notes=notes)

    def _attach(self, vocab: Vocab) -> None:
        model = registry.load_model(self.folder)
        if model.vocab_ != vocab:
            raise ValueError(
                f"{self.folder}: the model was saved with vocabulary sha256 "
                f"{model.vocab_.sha256[:12]} ({len(model.vocab_)} tokens), the dataset's is "
                f"{vocab.sha256[:12]} ({len(vocab)} tokens); score it on the dataset it was "
                "trained on")
        self.model_, self.vocab_ = model.to(self.device), vocab

    def _inner(self) -> LanguageModel:
        self._require_fitted()
        assert self.model_ is not None
        return self.model_

    # -- everything else is the saved model's -----------------------------------------------

    def to(self, device: str) -> SavedLM:
        super().to(device)
        if self.model_ is not None:
            self.model_.to(device)
        return self

    def init_state(self, batch: int) -> Any:
        return self._inner().init_state(batch)

    def step(self, state: Any, tokens: np.ndarray) -> tuple[np.ndarray, Any]:
        return self._inner().step(state, tokens)

    def token_logprobs(
        self, tokens: np.ndarray, *, context: ContextPolicy = ContextPolicy()
    ) -> np.ndarray:
        return self._inner().token_logprobs(tokens, context=context)

    def next_token_ranks(
        self, tokens: np.ndarray, *, context: ContextPolicy = ContextPolicy()
    ) -> np.ndarray:
        return self._inner().next_token_ranks(tokens, context=context)

    def generate(self, prompt, max_new_tokens: int, *, temperature: float = 1.0,
                 top_k: int | None = None, seed: int = 0) -> np.ndarray:
        return self._inner().generate(prompt, max_new_tokens, temperature=temperature,
                                      top_k=top_k, seed=seed)

    def num_parameters(self) -> int:
        return self._inner().num_parameters()

    def inspect(self) -> list[dict]:
        return self._inner().inspect()

    def _state_arrays(self) -> dict[str, np.ndarray]:
        self._inner()
        return {"fingerprint_sha256": np.frombuffer(fingerprint(self.folder), dtype=np.uint8)}

    def _load_state_arrays(self, arrays: Mapping[str, np.ndarray]) -> None:
        saved = check_state_array(arrays, "fingerprint_sha256", (32,), "u").tobytes()
        if fingerprint(self.folder) != saved:
            raise ValueError(f"{self.folder}: the folder changed since this model was saved "
                             "(SHA-256 fingerprint differs)")
        self._attach(self._require_fitted())
