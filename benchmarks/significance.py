"""Intervals and paired significance of task scores, computed from per-item statistics.

A task result keeps, beside its scores, what a paired test between two rows needs (``paired``):
a fingerprint of its items and, per metric, one row of statistics per item whose column sums give
the corpus score --

* ``"mean"``: one value per item (1 or 0 for a right or wrong answer, 1/e for an answer tied with
  e-1 others); the score is their mean (accuracy).
* ``"bleu"`` / ``"chrf"``: sacrebleu's per-segment sufficient statistics (``BLEU()`` and
  ``CHRF()`` with their defaults, as :func:`lmladder.tasks.continuation.text_scores` uses them);
  the score is sacrebleu's corpus score of their sums.

Two rows scored on the same items (equal fingerprints) are compared with the paired bootstrap
(Koehn 2004): the items are resampled :data:`RESAMPLES` times, the same draws for both rows, and
the p-value is the share of resampled differences, centred on their mean, at least as far from
zero as the observed difference (Riezler & Maxwell 2005; sacrebleu's ``paired_bs`` uses the same
rule).  A report ranks two rows apart only where ``p < ALPHA``; others are shown as ties.

Only numpy (and sacrebleu for BLEU/chrF) is imported: reports use this module.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np

RESAMPLES = 1000  # bootstrap resamples of intervals and paired tests
ALPHA = 0.05  # two rows whose paired test gives p >= ALPHA are shown as tied
KINDS = ("mean", "bleu", "chrf")


@functools.lru_cache(maxsize=8)
def bootstrap_counts(n: int, seed: int, resamples: int = RESAMPLES) -> np.ndarray:
    """How often each of ``n`` items is drawn in each bootstrap resample (``n`` draws with
    replacement, seeded): int64 of shape ``(resamples, n)``.

    A score that is a function of sums over items (corpus BLEU's n-gram counts, chrF's, F1's
    true and false positives, an accuracy) is recomputed on resample ``b`` from
    ``counts[b] @ per_item``; scoring several systems with the same counts resamples the same
    items for each (a paired bootstrap).  The same ``n`` and ``seed`` give the same counts on
    every machine; the last few are cached (read-only), as a report tests many pairs of rows on
    the same items."""
    if n < 1:
        raise ValueError("a bootstrap needs at least one item")
    drawn = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    offsets = n * np.arange(resamples)[:, None]
    counts = np.bincount((drawn + offsets).ravel(), minlength=resamples * n)
    counts.flags.writeable = False  # cached: every caller shares it
    return counts.reshape(resamples, n)


def percentile_interval(values) -> tuple[float, float]:
    """The 95% percentile interval of bootstrap ``values``: their 2.5th and 97.5th
    percentiles (linear interpolation)."""
    low, high = np.percentile(np.asarray(values, dtype=np.float64), [2.5, 97.5])
    return (float(low), float(high))


@functools.cache
def _sacrebleu_metric(kind: str):
    import sacrebleu

    return sacrebleu.metrics.BLEU(force=True) if kind == "bleu" else sacrebleu.metrics.CHRF()


def item_statistics(kind: str, hypotheses: Sequence[str], references: Sequence[str]
                    ) -> np.ndarray:
    """Per-segment sufficient statistics of sacrebleu metric ``kind`` ("bleu" or "chrf"):
    int64 of shape ``(segments, statistics)``."""
    metric = _sacrebleu_metric(kind)
    return np.asarray(metric._extract_corpus_statistics(list(hypotheses), [list(references)]),
                      dtype=np.int64).reshape(len(hypotheses), -1)


def scores_of(kind: str, totals: np.ndarray, n: np.ndarray | int) -> np.ndarray:
    """The score of each row of ``totals`` (summed per-item statistics; ``n`` items summed in
    each): a mean, or sacrebleu's corpus score of the sums."""
    totals = np.atleast_2d(totals)
    if kind == "mean":
        return totals[:, 0] / np.asarray(n, dtype=np.float64)
    metric = _sacrebleu_metric(kind)
    return np.array([metric._compute_score_from_stats(t.tolist()).score for t in totals])


def paired_entry(kind: str, statistics) -> dict[str, Any]:
    """One metric's entry of a result's ``paired`` block: ``kind`` and its per-item rows."""
    if kind not in KINDS:
        raise ValueError(f"unknown statistic kind {kind!r}; one of {KINDS}")
    rows = np.asarray(statistics)
    values = rows.tolist() if kind != "mean" else [round(float(v), 6) for v in rows]
    return {"kind": kind, "values": values}


def paired_block(items: str, **metrics: dict[str, Any]) -> dict[str, Any]:
    """A result's ``paired`` block: the items' fingerprint and one :func:`paired_entry` per
    metric name."""
    return {"items": items, "metrics": metrics}


def _matrix(entry: dict[str, Any]) -> np.ndarray:
    values = np.asarray(entry["values"], dtype=np.float64)
    return values[:, None] if values.ndim == 1 else values


def paired_p_value(a: dict[str, Any], b: dict[str, Any], *, seed: int = 0,
                   resamples: int = RESAMPLES) -> float:
    """The paired-bootstrap p-value of the difference between two rows' scores on one metric,
    given the metric's entries of their ``paired`` blocks (same kind, same number of items).

    Raises ValueError when they cannot be paired."""
    if a["kind"] != b["kind"]:
        raise ValueError(f"cannot pair a {a['kind']} statistic with a {b['kind']} one")
    xa, xb = _matrix(a), _matrix(b)
    if xa.shape != xb.shape or len(xa) == 0:
        raise ValueError(f"cannot pair {len(xa)} items with {len(xb)}")
    n = len(xa)
    observed = (scores_of(a["kind"], xa.sum(0), n) - scores_of(a["kind"], xb.sum(0), n))[0]
    counts = bootstrap_counts(n, seed, resamples)
    deltas = scores_of(a["kind"], counts @ xa, n) - scores_of(a["kind"], counts @ xb, n)
    far = np.abs(deltas - deltas.mean()) >= abs(observed) - 1e-12
    return float((far.sum() + 1) / (resamples + 1))


def tie_tests(rows: Sequence[tuple[float, dict[str, Any] | None, str | None]], *,
              higher_is_better: bool, seed: int = 0) -> list[tuple[int, float | None]]:
    """Significance ranks of rows given as ``(score, paired entry or None, items fingerprint)``,
    with the p-values tested: each row's ``(rank, p)``, in the order given (rank 1 = best).

    The rows are taken best first; each starts a new rank unless a paired test against the
    first row of the current rank gives ``p >= ALPHA`` (then it shares that rank: a tie).  A row
    without per-item statistics, or scored on other items, cannot be tested and gets a rank of
    its own.  ``p`` is None where no test ran: the first row, or a row that cannot be paired
    with the first of the current rank."""
    order = sorted(range(len(rows)), key=lambda i: rows[i][0], reverse=higher_is_better)
    out: list[tuple[int, float | None]] = [(0, None)] * len(rows)
    leader, rank = None, 0
    for position, i in enumerate(order):
        score, entry, items = rows[i]
        p = None
        if leader is not None and entry is not None and items is not None:
            _, lead_entry, lead_items = rows[leader]
            if lead_entry is not None and lead_items == items:
                try:
                    p = paired_p_value(lead_entry, entry, seed=seed)
                except ValueError:
                    p = None
        if p is None or p < ALPHA:
            leader, rank = i, position + 1
        out[i] = (rank, p)
    return out
