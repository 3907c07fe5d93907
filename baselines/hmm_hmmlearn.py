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

from lmladder.api import (
    Budget,
    FitReport,
    Progress,
    ProgressCallback,
    Stopwatch,
    ValidationTimer,
    Vocab,
)
from lmladder.baselines.hmm_core import (
    ConvergenceMonitor,
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
    revision = 2  # 2: no hidden 20-iteration cap; validation inside the time budget

    def __init__(self, **config) -> None:
        super().__init__(**config)
        import hmmlearn.hmm  # noqa: F401 -- fail at build time if missing; keep the import's
        # seconds out of the first fit's time budget

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

        EM runs until convergence (``tol``), the explicit ``max_iterations`` if one is set, or
        the budget.  ``budget.steps`` counts EM iterations, ``budget.tokens`` training tokens
        processed (one pass per iteration); a ``seconds`` budget covers the whole fit, the final
        validation included: it stops before an iteration that, judged by the previous one and
        the validation's measured cost, would not fit (at least one iteration always runs).  A
        final validation that would still overrun is cut to the prefix of ``valid`` that fits
        (``notes["valid_tokens"]``) or skipped.
        """
        clock = Stopwatch()  # the budget covers the whole fit, validation included
        from hmmlearn.hmm import CategoricalHMM

        cfg = self.cfg
        if cfg.unbounded(budget):
            raise ValueError("tol=0 with max_iterations=None and no budget would never stop; "
                             "set tol > 0, max_iterations, or a budget")
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
        self.vocab_ = vocab
        timer = ValidationTimer()
        if valid is not None:
            valid = self._checked_ids(valid)
            if budget.seconds is not None:  # measure what the final validation will cost
                self.set_parameters(vocab, pi, a, b)
                timer.calibrate(self.token_logprobs, valid)
        reserve = 0.0 if valid is None else timer.estimate(len(valid)) or 0.0
        x = train[:, None]
        # hmmlearn warns on every call that K (V - 1) parameters exceed the token count, which
        # is the usual case for a language model; keep its log quiet while we drive it.
        hmm_log = logging.getLogger("hmmlearn.base")
        level = hmm_log.level
        hmm_log.setLevel(logging.ERROR)
        try:
            history, steps, tokens, stopped_by = self._iterate(
                hmm, x, lengths, budget, clock, callback, reserve
            )
        finally:
            hmm_log.setLevel(level)
        self.example_ = pick_example(train, vocab.boundary_id)
        self.set_parameters(vocab, hmm.startprob_, hmm.transmat_, hmm.emissionprob_)
        notes = {"implementation": cfg.implementation, "stopped_by": stopped_by}
        if valid is not None:
            left = None if budget.seconds is None else budget.seconds - clock()
            n = timer.affordable(len(valid), left)
            notes["valid_tokens"] = n
            if n:
                lp = timer.score(self.token_logprobs, valid[:n])
                notes["valid_nll"] = -float(np.mean(lp))
            else:
                notes["valid_nll"] = None
            if n < len(valid):
                notes["valid_cut"] = (f"validation cut to {n} of {len(valid)} tokens to stay "
                                      "within the time budget")
        return FitReport(tokens, steps, clock(), history, notes, valid_seconds=timer.seconds)

    def _iterate(self, hmm, x, lengths, budget, clock, callback, reserve: float):
        """EM iterations; returns (history, steps, tokens, what stopped them).  ``reserve``
        seconds of a time budget are held back for the validation after the last one."""
        cfg, n = self.cfg, len(x)
        history: list[dict[str, float]] = []
        steps, tokens, last = 0, 0, 0.0
        monitor = ConvergenceMonitor(cfg.tol, n)
        while cfg.max_iterations is None or steps < cfg.max_iterations:
            seconds = clock()
            if steps and (
                budget.exhausted(tokens=tokens, steps=steps, seconds=seconds + reserve)
                or (budget.seconds is not None and seconds + last + reserve > budget.seconds)
            ):
                return history, steps, tokens, "budget"
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
            if monitor.report(ll + prior):  # MAP-EM: monotone in ln p(train) + ln prior
                return history, steps, tokens, "converged"
        return history, steps, tokens, "max_iterations"
