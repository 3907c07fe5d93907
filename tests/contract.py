"""The contract every registered model must keep, as reusable checks.

``tests/test_contract.py`` runs them over the whole registry; families whose entries need a
setup (e.g. a model folder on disk) call them from their own tests.
"""

from __future__ import annotations

import numpy as np
import pytest

from lmladder.api import Budget, ContextPolicy, FitReport, LanguageModel
from lmladder.baselines.uniform import UniformLM
from lmladder.corpus import Dataset
from lmladder.registry import load_model
from lmladder.scoring import check_logprobs, metrics_from_logprobs
from lmladder.synthetic import SyntheticSource, synthetic_dataset

TINY = SyntheticSource(
    seed=7,
    states=5,
    vocab=40,
    words_per_state=10,
    successors=2,
    mean_length=6.0,
    tokens=(4000, 400, 400),
)
SMOKE_BUDGET = Budget(steps=40, seconds=30)
N_SCORE = 150  # tokens compared between fast and reference paths


def tiny_dataset() -> Dataset:
    return synthetic_dataset(TINY)


def fitted(model: LanguageModel, data: Dataset) -> LanguageModel:
    report = model.fit(data.train.ids, data.vocab, budget=SMOKE_BUDGET, valid=data.valid.ids)
    assert isinstance(report, FitReport)
    assert report.seconds >= 0
    if isinstance(model, UniformLM):  # the floor learns nothing from the stream, by definition
        assert report.train_tokens == 0 and model.num_parameters() == 0
    else:
        assert report.train_tokens > 0 and model.num_parameters() > 0
    return model


def check_sums_to_one(model: LanguageModel, data: Dataset, atol: float = 1e-5) -> None:
    """Next-token distributions after seen and random (unseen) histories sum to one."""
    rng = np.random.default_rng(0)
    v = len(data.vocab)
    seen = data.test.ids[:12]
    unseen = rng.integers(0, v, size=12)
    for history in (seen, unseen):
        state = model.init_state(2)
        logp, state = model.step(state, np.full(2, data.vocab.boundary_id, dtype=np.int64))
        for a, b in zip(history, history[::-1], strict=True):
            assert logp.shape == (2, v) and logp.dtype == np.float64
            np.testing.assert_allclose(np.logaddexp.reduce(logp, axis=1), 0.0, atol=atol)
            logp, state = model.step(state, np.array([a, b], dtype=np.int64))


def check_fast_equals_reference(model: LanguageModel, data: Dataset, atol: float = 1e-5) -> None:
    ids = data.test.ids[:N_SCORE]
    for policy in (ContextPolicy(), ContextPolicy(reset_at_boundary=True)):
        fast = model.token_logprobs(ids, context=policy)
        ref = LanguageModel.token_logprobs(model, ids, context=policy)
        assert fast.shape == ids.shape and fast.dtype == np.float64
        np.testing.assert_allclose(fast, ref, atol=atol, rtol=0)
        check_logprobs(fast, ids, data.vocab, model=type(model).__name__, split="test")
        if model.closed_vocabulary:
            fr = model.next_token_ranks(ids, context=policy)
            rr = LanguageModel.next_token_ranks(model, ids, context=policy)
            assert fr.shape == rr.shape == (len(ids), 2) and fr.dtype == np.int64
            assert (rr[:, 0] >= 0).all() and (rr[:, 1] >= 1).all()
            # (g, e) rows equal; float noise between batched and stepwise arithmetic may move
            # a near-tie in a few rows of the neural families.
            assert np.mean((fr == rr).all(axis=1)) >= 0.98


def check_rejects_foreign_ids(model: LanguageModel, data: Dataset) -> None:
    """Ids outside the vocabulary are a ValueError naming the vocabulary size, not an
    IndexError (or a silent score), in the fast and the reference paths."""
    v = len(data.vocab)
    for bad in (v, v + 3, -1):
        ids = data.test.ids[:10].copy()
        ids[4] = bad
        paths = [model.token_logprobs, lambda t: LanguageModel.token_logprobs(model, t)]
        if model.closed_vocabulary:
            paths += [model.next_token_ranks,
                      lambda t: LanguageModel.next_token_ranks(model, t)]
        for path in paths:
            with pytest.raises(ValueError, match=f"token id {bad} is outside .* vocabulary of {v}"):
                path(ids)


def check_no_peeking(model: LanguageModel, data: Dataset) -> None:
    """Changing tokens after position t leaves the scores of tokens 0..t unchanged."""
    ids = data.test.ids[:N_SCORE].copy()
    t = N_SCORE // 2
    changed = ids.copy()
    changed[t + 1 :] = np.random.default_rng(1).integers(0, len(data.vocab), N_SCORE - t - 1)
    a = model.token_logprobs(ids)
    b = model.token_logprobs(changed)
    np.testing.assert_allclose(a[: t + 1], b[: t + 1], atol=1e-6, rtol=0)
    if not isinstance(model, UniformLM):  # the same score for every token, whatever changed
        assert not np.allclose(a[t + 1 :], b[t + 1 :])


def check_save_load(model: LanguageModel, data: Dataset, tmp_path) -> None:
    ids = data.test.ids[:N_SCORE]
    before = model.token_logprobs(ids)
    model.save(tmp_path / "ckpt")
    loaded = load_model(tmp_path / "ckpt")
    assert type(loaded) is type(model)
    assert loaded.config() == model.config()
    assert loaded.vocab_ == model.vocab_
    np.testing.assert_array_equal(loaded.token_logprobs(ids), before)
    assert loaded.num_parameters() == model.num_parameters()


def check_generation(model: LanguageModel, data: Dataset) -> None:
    prompt = data.test.ids[:5]
    a = model.generate(prompt, 30, seed=3)
    b = model.generate(prompt, 30, seed=3)
    c = model.generate(prompt, 30, seed=4)
    assert a.dtype == np.int64 and a.shape == (30,)
    assert ((a >= 0) & (a < len(data.vocab))).all()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    if isinstance(model, UniformLM):  # no single most likely token: greedy is a draw too
        return
    greedy = model.generate(prompt, 5, top_k=1, seed=0)
    np.testing.assert_array_equal(greedy, model.generate(prompt, 5, top_k=1, seed=99))


def check_scores_finite(model: LanguageModel, data: Dataset) -> None:
    ids = data.valid.ids
    lp = check_logprobs(model.token_logprobs(ids), ids, data.vocab, model="m", split="valid")
    m = metrics_from_logprobs(lp, data.valid)
    assert 1.0 < m.ppl < 10 * len(data.vocab)


ALL_CHECKS = (
    check_sums_to_one,
    check_fast_equals_reference,
    check_rejects_foreign_ids,
    check_no_peeking,
    check_generation,
    check_scores_finite,
)
