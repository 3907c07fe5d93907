"""Toy models for harness tests: a known-answer uniform model and one that fails on purpose."""

from __future__ import annotations

import ctypes
import faulthandler
import os
import signal
import time
from dataclasses import dataclass

import numpy as np

from lmladder.api import Budget, FitReport, LanguageModel, Stopwatch, Vocab
from lmladder.tasks import MetricSpec, NotApplicable, Task


class UniformLM(LanguageModel):
    """p(w | history) = 1 / |V| for every token; no learned parameters beyond the vocabulary."""

    @dataclass(frozen=True)
    class Config:
        pass

    def fit(self, train, vocab: Vocab, *, budget=Budget(), valid=None, callback=None) -> FitReport:
        clock = Stopwatch()
        self.vocab_ = vocab
        return FitReport(train_tokens=len(train), steps=0, seconds=clock())

    def init_state(self, batch: int) -> int:
        return batch

    def step(self, state: int, tokens: np.ndarray) -> tuple[np.ndarray, int]:
        v = len(self._require_fitted())
        return np.full((len(tokens), v), -np.log(v)), state

    def token_logprobs(self, tokens, *, context=None) -> np.ndarray:
        tokens = self._checked_ids(tokens)
        return np.full(len(tokens), -np.log(len(self._require_fitted())))

    def next_token_ranks(self, tokens, *, context=None) -> np.ndarray:
        """Every token ties with the whole vocabulary: (g, e) = (0, V)."""
        tokens = self._checked_ids(tokens)
        out = np.zeros((len(tokens), 2), dtype=np.int64)
        out[:, 1] = len(self._require_fitted())
        return out

    def num_parameters(self) -> int:
        return 1

    def _state_arrays(self) -> dict[str, np.ndarray]:
        return {}

    def _load_state_arrays(self, arrays) -> None:
        pass


class BrokenLM(UniformLM):
    """Fails the way real models do, chosen by ``mode``: an exception in fit, a NaN score, a
    KeyboardInterrupt (the user pressing Ctrl-C), the kernel's OOM killer (``kill``: SIGKILL to
    itself), a segfault in native code (``segv``), a fit that never ends (``hang``) or one that
    allocates without bound (``hog``)."""

    @dataclass(frozen=True)
    class Config:
        mode: str = "raise"

    def fit(self, train, vocab, *, budget=Budget(), valid=None, callback=None) -> FitReport:
        if self.cfg.mode == "raise":
            raise RuntimeError("boom: out of memory while fitting")
        if self.cfg.mode == "interrupt":
            raise KeyboardInterrupt
        if self.cfg.mode == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if self.cfg.mode == "segv":
            faulthandler.disable()  # pytest's handler would print every module to the log
            ctypes.string_at(0)
        if self.cfg.mode == "hang":
            while True:
                time.sleep(0.05)
        if self.cfg.mode == "hog":
            blocks = []
            while True:
                blocks.append(np.ones(2**24))  # 128 MiB a step, touched
        return super().fit(train, vocab, budget=budget)

    def token_logprobs(self, tokens, *, context=None) -> np.ndarray:
        out = super().token_logprobs(tokens)
        out[3] = np.nan
        return out


class BrokenTask(Task):
    """A task that fails, for checking that a broken task does not lose its cell."""

    name = "toy-broken-task"
    description = "fails on purpose"
    metrics = (MetricSpec("score", higher_is_better=True),)

    def evaluate(self, subject, *, seed=0):
        raise RuntimeError("the task broke")


class PickyTask(Task):
    """A task that only n-gram models can run: the others are "not applicable"."""

    name = "toy-picky-task"
    description = "applicable to some models only"
    metrics = (MetricSpec("score", higher_is_better=True, chance=0.5),)

    def evaluate(self, subject, *, seed=0):
        if not hasattr(subject.model, "tables_"):
            raise NotApplicable(f"{type(subject.model).__name__} has no n-gram tables")
        return {"score": 1.0, "seed": seed}


class SeededLM(UniformLM):
    """The uniform model with a ``seed`` in its config, which ``fit`` reports in its notes: the
    cell's seed must reach the model's config."""

    @dataclass(frozen=True)
    class Config:
        seed: int = 12345

    def fit(self, train, vocab, *, budget=Budget(), valid=None, callback=None) -> FitReport:
        report = super().fit(train, vocab, budget=budget)
        report.notes["seed"] = self.cfg.seed
        return report


class BadNumbersLM(UniformLM):
    """Scores like the uniform model but reports a number no record may hold: a negative
    (``mode = "negative"``) or NaN (``"nan"``) count of training tokens, which becomes the
    record's training throughput."""

    @dataclass(frozen=True)
    class Config:
        mode: str = "negative"

    def fit(self, train, vocab, *, budget=Budget(), valid=None, callback=None) -> FitReport:
        report = super().fit(train, vocab, budget=budget)
        report.train_tokens = -len(train) if self.cfg.mode == "negative" else float("nan")
        time.sleep(0.01)  # a fit time > 0, so the throughput is computed
        return report
