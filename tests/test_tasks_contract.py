"""Every registered model can run every task, through the contract only; fine-tuning tasks are
"not applicable" exactly for models without the capability, never an error.

One registry entry per model class (the entries of a class differ only in their configs), with its
smoke configuration and a two-step budget; each task on a few items.  movie-reviews shares
rt-polarity's code (and its fine-tuning twin rt-polarity-finetune's) on a collection ten times
longer, so it is left to tests/test_tasks.py.
"""

from __future__ import annotations

import math

import pytest

from lmladder import registry
from lmladder.api import Budget, supports_fine_tuning
from lmladder.data import load_dataset
from lmladder.tasks import NotApplicable, Subject, task_class, tasks

SMALL = {"cloze": {"items": 20}, "continuation": {"prompts": 5}, "translation": {"sentences": 5}}
# movie-reviews: 2,000 long documents; minimal-pairs: made from English text only (it refuses the
# synthetic corpus's made-up words), run for every family by tests/test_minimal_pairs.py
SKIPPED = {"movie-reviews", "movie-reviews-finetune", "minimal-pairs"}
# 4-12 s each on 2 cores (the developer run, pytest -m "not slow", keeps the n-gram, HMM and toys)
SLOW = {"hf-gpt2", "hf-bert", "transformer", "rnn-tanh", "hmm-hmmlearn"}


def _one_entry_per_class() -> list[str]:
    seen = {}
    for name, entry in registry.models().items():
        if not name.endswith(":"):  # hf:<id> needs weights; tests/test_hf.py builds its own
            seen.setdefault(entry.target, name)
    return [pytest.param(name, marks=pytest.mark.slow) if name in SLOW else name
            for name in sorted(seen.values())]


@pytest.mark.parametrize("name", _one_entry_per_class())
def test_every_model_runs_every_task(name, data_dir):
    data = load_dataset("synthetic")
    model = registry.build(name, smoke=True)
    model.fit(data.train.ids, data.vocab, budget=Budget(steps=2))
    subject = Subject(model, data, Budget(steps=2), str(data_dir),
                      fresh=lambda: registry.build(name, smoke=True))
    for task in sorted(set(tasks()) - SKIPPED):
        klass = task_class(task)
        try:
            result = klass(**SMALL.get(task, {})).evaluate(subject, seed=0)
        except NotApplicable as why:
            assert task.endswith("-finetune") and not supports_fine_tuning(model), (task, why)
            continue
        assert not (task.endswith("-finetune") and not supports_fine_tuning(model))
        for spec in klass.metrics:
            value = result[spec.name]
            assert math.isfinite(value), (task, spec.name, value)
            if spec.name in ("accuracy", "macro_f1", "scratch_accuracy"):
                assert 0 <= value <= 1, (task, spec.name, value)
