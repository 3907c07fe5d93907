"""Result records as older lmladders wrote them, for the tests of reading and migrating records.

:func:`v3_record` is a complete record of schema version 3 (a KN3 cell on the synthetic corpus
with a cloze task, before records carried ``model.family`` and task metric specs);
:func:`v2_record` and :func:`v1_record` take away what versions 3 and 2 added.
"""

from __future__ import annotations

import copy
from typing import Any

_V3: dict[str, Any] = {
    "api_version": 3,
    "key": "0123456789abcdef",
    "status": "ok",
    "error": None,
    "cell": {
        "matrix": "old", "model": "kn3", "label": "KN3",
        "config": {"order": 3, "smoothing": "modified-kneser-ney"},
        "dataset": "synthetic", "seed": 0, "device": "cpu", "budget": {"tokens": 5000},
        "scoring": {"reset_at_boundary": False, "window": None, "stride": None,
                    "accuracy_tokens": 300},
        "threads": 1, "fraction": 1.0, "tasks": ["cloze"],
    },
    "provenance": {"git_commit": "a77eeff57a41d1f39ff9c92c9f07dbd3129fe892", "git_dirty": False,
                   "date": "2026-11-27T12:05:48+00:00", "python": "3.11.7",
                   "versions": {"lmladder": "0.2.0", "numpy": "2.4.6"}},
    "limits": {"time_limit_s": 1800.0, "memory_limit_mib": None, "isolated": True},
    "dataset": {"name": "synthetic", "level": "word", "vocab_size": 400, "boundary": "<eos>",
                "unk": None, "splits": {"test": {"tokens": 2000, "lines": 100}}},
    "budget_used": {"tokens": 5000, "steps": None, "seconds": None},
    "protocol": {"reset_at_boundary": False, "window": None, "stride": None,
                 "accuracy_tokens": 300, "first_context": "one boundary token '<eos>'",
                 "token": "word + one <eos> per line", "unk": None},
    "model": {"class": "lmladder.baselines.ngram:NGramLM", "revision": 1, "parameters": 11018},
    "metrics": {
        "valid": {"tokens": 1900, "nats": 9500.0, "nll": 5.0, "ppl": 148.4131591025766,
                  "bits_per_token": 7.213475204444817, "bpc": 1.5, "word_ppl": 148.4},
        "test": {"tokens": 2000, "nats": 9800.0, "nll": 4.9, "ppl": 134.28977968493552,
                 "bits_per_token": 7.069205700356, "bpc": 1.4, "word_ppl": 134.3},
        "test_accuracy": {"accuracy_tokens": 300, "top1": 0.25, "top5": 0.5},
        "test_pseudo": None,
    },
    "oracle": {"valid": {"ppl": 90.5}, "test": {"ppl": 88.25}},
    "throughput": {"train_tokens_per_s": 250000.0, "score_tokens_per_s": 1.5e6,
                   "generate_tokens_per_s": 2400.0},
    "timing": {"fit_s": 0.02, "valid_in_fit_s": 0.0, "score_valid_s": 0.001,
               "score_test_s": 0.0013, "generate_s": 0.04},
    "memory": {"rss_start_mib": 305.875, "rss_peak_mib": 444.7, "device_peak_mib": None},
    "fit": {"train_tokens": 5000, "steps": 1, "seconds": 0.02, "history": [],
            "notes": {"ngrams_per_order": [400, 2650, 4100]}, "valid_seconds": 0.0},
    "inspect": [{"title": "3-gram", "columns": ["order", "n-grams"], "rows": [[1, 400]]}],
    "sample": "w12 w7 w300 <eos>",
    "tasks": {"cloze": {"status": "ok", "accuracy": 0.71, "accuracy_ci95": [0.69, 0.74],
                        "items": 1000, "choices": 5, "seed": 0, "seconds": 0.146}},
}


def v3_record(**changes: Any) -> dict[str, Any]:
    """A fresh copy of the version 3 record, with top-level ``changes``."""
    return {**copy.deepcopy(_V3), **changes}


def v2_record(**changes: Any) -> dict[str, Any]:
    """The record as version 2 wrote it: no tasks, no ``cell.tasks``, no ``cell.fraction``."""
    record = v3_record(api_version=2)
    del record["tasks"], record["cell"]["tasks"], record["cell"]["fraction"]
    return {**record, **changes}


def v1_record(**changes: Any) -> dict[str, Any]:
    """The record as version 1 wrote it: no ``cell.threads`` either."""
    record = v2_record(api_version=1)
    del record["cell"]["threads"]
    return {**record, **changes}
