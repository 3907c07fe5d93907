"""The shared training loop (neural/train.py): budgets, schedule, determinism, resume, best weights.

Seeds are fixed in every config (``seed=0`` unless a test compares seeds).
"""

import math
import time

import numpy as np
import pytest
import torch

from lmladder.api import Budget, ConfigError, Progress
from lmladder.devices import resolve_device
from lmladder.neural.rnn import RNNLM
from lmladder.neural.train import StopTraining, cross_entropy
from lmladder.neural.transformer import TransformerLM
from lmladder.registry import load_model

TINY_RNN = dict(hidden=16, layers=2, bptt=8, batch_size=4, dropout=0.3, optimizer="adamw",
                lr=1e-2, log_every=5)
TINY_TF = dict(layers=1, heads=2, width=16, context=8, batch_size=4, dropout=0.1, warmup_steps=3,
               lr=1e-2, log_every=5)




def weights(model) -> dict[str, np.ndarray]:
    return {k: t.detach().numpy().copy() for k, t in model.module_.state_dict().items()}


def assert_same_weights(a, b) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        np.testing.assert_array_equal(wa[k], wb[k], err_msg=k)


@pytest.mark.parametrize("klass,cfg", [(RNNLM, TINY_RNN), (TransformerLM, TINY_TF)],
                         ids=["rnn-stream", "transformer-windows"])
def test_stop_and_resume_equals_uninterrupted(klass, cfg, data, tmp_path):
    budget = Budget(steps=30)
    kw = dict(budget=budget, valid=data.valid.ids[:200])
    cfg = dict(cfg, eval_every=10)
    whole = klass(**cfg)
    whole.fit(data.train.ids, data.vocab, **kw)

    def stop_at_15(p: Progress) -> None:
        if p.done >= 15:
            raise StopTraining

    part = klass(**cfg)
    report = part.fit(data.train.ids, data.vocab, callback=stop_at_15, **kw)
    assert report.steps == 15 and report.notes["interrupted"]
    part.save(tmp_path / "ckpt", training_state=True)
    resumed = load_model(tmp_path / "ckpt")
    report = resumed.fit(data.train.ids, data.vocab, resume=True, **kw)
    assert report.steps == 30 and not report.notes["interrupted"]
    assert_same_weights(whole, resumed)
    # Resuming in the same process (no checkpoint) gives the same weights too.
    again = klass(**cfg)
    again.fit(data.train.ids, data.vocab, callback=stop_at_15, **kw)
    again.fit(data.train.ids, data.vocab, resume=True, **kw)
    assert_same_weights(whole, again)


def test_seeded_and_deterministic(data):
    runs = [RNNLM(**TINY_RNN, seed=s) for s in (0, 0, 1)]
    for m in runs:
        m.fit(data.train.ids, data.vocab, budget=Budget(steps=8))
    assert_same_weights(runs[0], runs[1])
    assert not np.array_equal(weights(runs[0])["decoder.weight"],
                              weights(runs[2])["decoder.weight"])


def test_budgets(data):
    m = RNNLM(**TINY_RNN)
    r = m.fit(data.train.ids, data.vocab, budget=Budget(steps=7))
    assert r.steps == 7 and r.train_tokens == 7 * 4 * 8
    r = m.fit(data.train.ids, data.vocab, budget=Budget(tokens=100))
    assert r.train_tokens == 4 * 32  # stops after the step that reaches 100 tokens
    epoch_capped = RNNLM(**dict(TINY_RNN, max_epochs=0.05))
    r = epoch_capped.fit(data.train.ids, data.vocab, budget=Budget(steps=10_000))
    assert 0.05 <= r.notes["epochs"] < 0.05 + 32 / len(data.train.ids)
    with pytest.raises(ValueError, match="bounded budget"):
        RNNLM(**TINY_RNN).fit(data.train.ids, data.vocab, budget=Budget())


def test_schedule_known_values():
    m = RNNLM(**dict(TINY_RNN, lr=0.1, warmup_steps=4, schedule="cosine", min_lr_ratio=0.1))
    from lmladder.neural.train import _Run

    assert m._lr(_Run(step=0), 0.0, 0.0) == pytest.approx(0.025)  # 1/4 of the way up
    assert m._lr(_Run(step=10), 0.0, 0.0) == pytest.approx(0.1)
    assert m._lr(_Run(step=10), 0.5, 0.0) == pytest.approx(0.1 * (0.1 + 0.9 * 0.5))
    assert m._lr(_Run(step=10), 1.0, 0.0) == pytest.approx(0.01)
    lin = RNNLM(**dict(TINY_RNN, lr=0.1, schedule="linear", min_lr_ratio=0.0))
    assert lin._lr(_Run(step=3), 0.25, 0.0) == pytest.approx(0.075)
    plateau = RNNLM(**dict(TINY_RNN, lr=0.1, schedule="plateau"))
    assert plateau._lr(_Run(step=3, plateau_scale=0.25), 0.9, 0.0) == pytest.approx(0.025)


def test_step_schedule_is_zarembas():
    """Zaremba et al. (2014), medium LSTM: lr 1 for 6 epochs, then divided by 1.2 as each further
    epoch starts; the small one halves it after 4 epochs."""
    from lmladder.neural.train import _Run

    medium = RNNLM(**dict(TINY_RNN, lr=1.0, schedule="step", step_decay=1 / 1.2,
                          step_after_epochs=6))
    expected = {0.0: 1.0, 5.99: 1.0, 6.0: 1 / 1.2, 6.5: 1 / 1.2, 8.2: 1.2 ** -3, 38.9: 1.2 ** -33}
    for epochs, lr in expected.items():
        assert medium._lr(_Run(step=100), 0.5, epochs) == pytest.approx(lr)
    small = RNNLM(**dict(TINY_RNN, lr=1.0, schedule="step"))  # defaults: x0.5 after 4 epochs
    assert [small._lr(_Run(step=9), 0.0, e) for e in (3.5, 4.0, 5.0)] == [1.0, 0.5, 0.25]
    with pytest.raises(ConfigError, match="step_decay"):
        RNNLM(**dict(TINY_RNN, schedule="step", step_decay=1.5))


def test_step_schedule_lowers_the_rate_at_epoch_boundaries(data):
    m = RNNLM(**dict(TINY_RNN, lr=0.01, schedule="step", step_decay=0.5, step_after_epochs=1,
                     log_every=1))
    tokens = 2 * len(data.train.ids)
    report = m.fit(data.train.ids[: len(data.train.ids)], data.vocab, budget=Budget(tokens=tokens))
    rates = sorted({round(h["lr"], 8) for h in report.history if "lr" in h}, reverse=True)
    assert rates[:2] == [0.01, 0.005]


def test_keeps_best_weights_and_reports_progress(data):
    events: list[Progress] = []
    # A learning rate this high makes later evaluations worse than earlier ones.
    m = RNNLM(**dict(TINY_RNN, lr=0.3, eval_every=5, schedule="constant", grad_clip=None))
    r = m.fit(data.train.ids, data.vocab, budget=Budget(steps=40), valid=data.valid.ids,
              callback=events.append)
    evals = [h["valid_nll"] for h in r.history if "valid_nll" in h]
    assert len(evals) == 8
    best = min(evals)
    assert r.notes["best_valid_nll"] == pytest.approx(best)
    final = -m.token_logprobs(data.valid.ids).mean()
    assert final == pytest.approx(best, abs=1e-9)
    assert events and all(e.unit == "steps" and e.total == 40 for e in events)
    assert events[-1].done == 40 and "loss" in events[-1].metrics


def test_training_learns(data):
    m = TransformerLM(**dict(TINY_TF, dropout=0.0))
    m.fit(data.train.ids, data.vocab, budget=Budget(steps=60))
    nll = -m.token_logprobs(data.valid.ids).mean()
    assert nll < 0.7 * math.log(len(data.vocab))


def test_checkpoint_without_training_state(data, tmp_path):
    m = RNNLM(**TINY_RNN)
    m.fit(data.train.ids, data.vocab, budget=Budget(steps=2))
    m.save(tmp_path / "plain")
    with np.load(tmp_path / "plain" / "state.npz") as npz:
        assert not any(k.startswith("train/") for k in npz.files)
    loaded = load_model(tmp_path / "plain")
    with pytest.raises(ValueError, match="no training state"):
        loaded.fit(data.train.ids, data.vocab, budget=Budget(steps=4), resume=True)


def test_devices():
    assert resolve_device("cpu") == "cpu"
    mps = torch.backends.mps.is_available()
    expected = "cuda" if torch.cuda.is_available() else "mps" if mps else "cpu"
    assert resolve_device("auto") == expected
    m = RNNLM(**TINY_RNN).to("auto")
    assert m.device in ("cpu", "cuda", "mps")


def test_time_budget_covers_the_final_validation(data):
    """A 2 s budget with a validation pass that costs a sizeable share of it: the whole fit, the
    final evaluation included, ends within the budget (before, it ran budget + evaluation)."""
    valid = np.tile(data.valid.ids, 200)  # scoring it takes a sizeable part of the budget
    RNNLM(**TINY_RNN).fit(data.train.ids, data.vocab, budget=Budget(steps=1))  # warm-up
    model = RNNLM(hidden=32, layers=1, bptt=20, batch_size=8, score_chunk=64)
    seconds = 2.0
    start = time.perf_counter()
    report = model.fit(data.train.ids, data.vocab, budget=Budget(seconds=seconds), valid=valid)
    wall = time.perf_counter() - start
    assert wall <= seconds + 0.4, (wall, report.valid_seconds, report.notes)
    assert report.seconds <= wall
    final = report.history[-1]
    assert "valid_nll" in final and final["step"] == report.steps
    # valid_seconds: the sample that sized the reserve plus the final evaluation
    assert 0.1 < report.valid_seconds < report.seconds
    assert report.steps > 10  # the reserve did not eat the whole budget


def test_valid_seconds_is_reported_without_a_time_budget(data):
    model = RNNLM(**dict(TINY_RNN, eval_every=5))
    report = model.fit(data.train.ids, data.vocab, budget=Budget(steps=10), valid=data.valid.ids)
    assert 0 < report.valid_seconds < report.seconds
    assert sum("valid_nll" in h for h in report.history) == 2
    no_valid = RNNLM(**TINY_RNN).fit(data.train.ids, data.vocab, budget=Budget(steps=3))
    assert no_valid.valid_seconds == 0.0



@pytest.mark.parametrize("upstream", [1.0, -2.5])
def test_cross_entropy_equals_torchs(upstream):
    torch.manual_seed(0)
    logits = (3 * torch.randn(50, 40)).requires_grad_()
    targets = torch.randint(0, 40, (50,))
    ours = cross_entropy(logits, targets)
    (upstream * ours).backward()
    got = logits.grad.clone()
    logits.grad = None
    ref = torch.nn.functional.cross_entropy(logits, targets)
    (upstream * ref).backward()
    assert ours.item() == pytest.approx(ref.item(), rel=1e-6)
    torch.testing.assert_close(got, logits.grad, rtol=1e-5, atol=1e-7)
