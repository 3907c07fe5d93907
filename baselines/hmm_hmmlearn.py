"""``hmm-hmmlearn``: the classic reference, Baum-Welch EM by ``hmmlearn.hmm.CategoricalHMM``.

hmmlearn fits sentences given as ``lengths`` -- the same model as :mod:`lmladder.baselines.hmm_core`
describes -- and this wrapper only drives it: it starts from the same random parameters as the
torch backend (:func:`~lmladder.baselines.hmm_core.initial_parameters`, same seed), runs one EM
iteration per ``fit`` call so the budget is checked between iterations, and maps our
pseudo-counts onto hmmlearn's Dirichlet priors (prior = 1 + pseudo-count).  Scoring, generation
and inspection are the shared numpy code.  Importable without torch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np

from lmladder.api import Budget, FitReport, Progress, ProgressCallback, Stopwatch, Vocab
from lmladder.baselines.hmm_core import (
    EMConfig,
    HMMBase,
    initial_parameters,
    log_prior,
    pick_example,
    sentence_bounds,
    unigram,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HmmlearnConfig(EMConfig):
    """Hyperparameters of the hmmlearn-backed HMM: those of :class:`EMConfig` plus

    implementation: hmmlearn's forward-backward, ``"scaling"`` (faster) or ``"log"``.
    """

    implementation: Literal["scaling", "log"] = "scaling"


class HmmlearnHMM(HMMBase):
    """HMM language model trained by ``hmmlearn.hmm.CategoricalHMM`` (CPU only)."""

    Config = HmmlearnConfig
    devices = ("cpu",)
    revision = 1

    def fit(
        self,
        train: np.ndarray,
        vocab: Vocab,
        *,
        budget: Budget = Budget(),
        valid: np.ndarray | None = None,
        callback: ProgressCallback | None = None,
    ) -> FitReport:
        """Baum-Welch on the sentences of ``train``; one iteration per ``CategoricalHMM.fit``.

        ``budget.steps`` counts EM iterations, ``budget.tokens`` training tokens processed (one
        pass per iteration); a ``seconds`` budget stops before an iteration that would not fit,
        judged by the previous one (at least one iteration always runs).
        """
        from hmmlearn.hmm import CategoricalHMM

        cfg = self.cfg
        clock = Stopwatch()
        train = np.asarray(train, dtype=np.int64)
        _, lengths = sentence_bounds(train, vocab.boundary_id)
        rng = np.random.default_rng(cfg.seed)
        pi, a, b = initial_parameters(cfg.states, unigram(train, len(vocab)), rng, cfg.init_noise)
        hmm = CategoricalHMM(
            n_components=cfg.states,
            n_features=len(vocab),
            startprob_prior=1.0 + cfg.start_prior,
            transmat_prior=1.0 + cfg.transition_prior,
            emissionprob_prior=1.0 + cfg.emission_prior,
            n_iter=1,
            tol=0.0,
            params="ste",
            init_params="",
            implementation=cfg.implementation,
        )
        hmm.startprob_, hmm.transmat_, hmm.emissionprob_ = pi, a, b
        x = train[:, None]
        # hmmlearn warns on every call that K (V - 1) parameters exceed the token count, which
        # is the usual case for a language model; keep its log quiet while we drive it.
        hmm_log = logging.getLogger("hmmlearn.base")
        level = hmm_log.level
        hmm_log.setLevel(logging.ERROR)
        try:
            history, steps, tokens = self._iterate(hmm, x, lengths, budget, clock, callback)
        finally:
            hmm_log.setLevel(level)
        self.example_ = pick_example(train, vocab.boundary_id)
        self.set_parameters(vocab, hmm.startprob_, hmm.transmat_, hmm.emissionprob_)
        notes = {"implementation": cfg.implementation}
        if valid is not None:
            notes["valid_nll"] = -float(np.mean(self.token_logprobs(valid)))
        return FitReport(tokens, steps, clock(), history, notes)

    def _iterate(self, hmm, x, lengths, budget, clock, callback):
        cfg, n = self.cfg, len(x)
        history: list[dict[str, float]] = []
        steps, tokens, last, prev = 0, 0, 0.0, None
        while steps < cfg.max_iterations:
            seconds = clock()
            if steps and (
                budget.exhausted(tokens=tokens, steps=steps, seconds=seconds)
                or (budget.seconds is not None and seconds + last > budget.seconds)
            ):
                break
            prior = log_prior(
                (hmm.startprob_, hmm.transmat_, hmm.emissionprob_),
                (cfg.start_prior, cfg.transition_prior, cfg.emission_prior),
            )
            hmm.fit(x, lengths)
            ll = float(hmm.monitor_.history[-1])  # log-likelihood before this M-step
            steps += 1
            tokens += n
            last = clock() - seconds
            record = {"iteration": steps, "train_nll": -ll / n, "seconds": clock()}
            history.append(record)
            log.debug("hmmlearn EM iteration %d: %s", steps, record)
            if callback is not None:
                total = budget.steps or cfg.max_iterations
                callback(Progress(steps, total, "iterations", {"train_nll": record["train_nll"]}))
            # MAP-EM never lowers ln p(train) + ln prior: a small gain means convergence.
            if prev is not None and (ll + prior - prev) / n < cfg.tol:
                break
            prev = ll + prior
        return history, steps, tokens
