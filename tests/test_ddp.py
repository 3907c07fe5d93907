"""Data-parallel training with torchrun (neural/ddp.py): 2 gloo processes on the CPU.

The reference is the single-process training loop: two replicas that each train on half of every
batch must end with the weights of one process that trains on the whole batch (no dropout, so
the only difference is float rounding in the gradient average).  The launcher is the real
``python -m torch.distributed.run``; each launch costs a few seconds of process start-up, so the
tests launch it three times in all.
"""

import os

import numpy as np
import pytest
import torch

import lmladder
from lmladder.api import Budget, ConfigError
from lmladder.neural.ddp import backend_for
from lmladder.neural.rnn import RNNLM
from lmladder.neural.train import StopTraining
from lmladder.results import load_records
from lmladder.run import MatrixError, load_matrix
from tests.helpers import write_matrix

# SGD and no dropout: the update of a batch is a deterministic function of it
TINY = dict(cell="lstm", hidden=16, layers=1, bptt=8, batch_size=8, dropout=0.0,
            optimizer="sgd", lr=1.0, log_every=2)


class HalfBatchLSTM(RNNLM):
    """An LSTM that fails unless each replica trains on its share of every batch (the workers
    import it from this module; torchrun sets ``WORLD_SIZE``)."""

    def _training_loss(self, net, x, y, carry):
        share = self.cfg.batch_size // int(os.environ.get("WORLD_SIZE", "1"))
        if len(x) != share:
            raise AssertionError(f"a replica trained on {len(x)} rows, not {share}")
        return super()._training_loss(net, x, y, carry)


class FailsOnRank1(RNNLM):
    """An LSTM whose replica of rank 1 cannot build its network."""

    def build_module(self, vocab_size):
        if os.environ.get("RANK") == "1":
            raise ValueError("rank 1 refuses to build its network")
        return super().build_module(vocab_size)


@pytest.mark.slow  # each of the four tests that start replicas takes 5-12 s
def test_two_replicas_with_half_batches_train_like_one_process_with_whole_batches(data,
                                                                                    tmp_path):
    budget = Budget(steps=6)
    one = HalfBatchLSTM(**TINY)
    solo = one.fit(data.train.ids, data.vocab, budget=budget)
    events = []
    two = HalfBatchLSTM(**TINY, processes=2)
    report = two.fit(data.train.ids, data.vocab, budget=budget, valid=data.valid.ids[:300],
                     callback=events.append)

    for name, want in one.module_.state_dict().items():
        got = two.module_.state_dict()[name]
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=0, atol=1e-5, err_msg=name)
    assert (report.steps, report.train_tokens) == (solo.steps, solo.train_tokens) == (6, 384)
    # the logged loss is the mean over both replicas, i.e. over the whole batch
    np.testing.assert_allclose([p["loss"] for p in report.history],
                               [p["loss"] for p in solo.history], rtol=1e-5)
    assert report.notes["processes"] == 2 and report.notes["backend"] == "gloo"
    assert solo.notes["processes"] == 1 and solo.notes["backend"] is None
    assert report.history[-1]["valid_nll"] == report.notes["best_valid_nll"]  # rank 0 evaluated
    assert report.seconds > report.history[-1]["seconds"] > 0  # the launch counts in the fit
    # rank 0's progress events reached this process's callback
    assert [(e.done, e.total, e.unit) for e in events] == [(2, 6, "steps"), (4, 6, "steps"),
                                                          (6, 6, "steps")]
    assert events[-1].metrics["valid_nll"] == report.notes["best_valid_nll"]

    two.save(tmp_path / "two")
    loaded = HalfBatchLSTM.load(tmp_path / "two")
    assert loaded.cfg.processes == 2
    ids = data.test.ids[:200]
    np.testing.assert_array_equal(loaded.token_logprobs(ids), two.token_logprobs(ids))


@pytest.mark.slow
def test_a_failing_worker_is_one_line_naming_its_rank_and_error(data):
    model = FailsOnRank1(**TINY, processes=2)
    with pytest.raises(RuntimeError) as err:
        model.fit(data.train.ids, data.vocab, budget=Budget(steps=2))
    message = str(err.value)
    assert "\n" not in message
    assert "failed: rank 1: ValueError: rank 1 refuses to build its network" in message
    assert model.vocab_ is None  # nothing was loaded


@pytest.mark.slow
def test_stop_training_from_the_callback_stops_every_replica(data):
    def stop(progress):
        raise StopTraining

    model = RNNLM(**dict(TINY, log_every=1), processes=2)
    # the seconds are a safety net: the stop request must end the run long before
    report = model.fit(data.train.ids, data.vocab, budget=Budget(steps=100_000, seconds=60),
                       callback=stop)
    assert report.notes["interrupted"] and 1 <= report.steps < 100_000
    assert report.seconds < 60
    assert np.isfinite(model.token_logprobs(data.test.ids[:50])).all()  # the weights so far


TINY_LSTM = {"hidden": 16, "layers": 1, "bptt": 8, "batch_size": 8, "dropout": 0.0}


def _matrix(path, processes):
    """One LSTM in one process ("one") and in ``processes`` replicas ("two")."""
    return write_matrix(path, [
        {"name": "lstm", "label": "one", "budget": {"steps": 8},
         "config": {**TINY_LSTM, "processes": 1}},
        {"name": "lstm", "label": "two", "budget": {"steps": 8},
         "config": {**TINY_LSTM, "processes": processes}},
    ], scoring={"accuracy_tokens": 300},
        description="one LSTM in one process and as two replicas", datasets=["synthetic"],
        seeds=[0], devices=["cpu"], threads=1)


def schema(value):
    """The keys of a record, recursively (lists element by element); values are left out."""
    if isinstance(value, dict):
        return {k: schema(v) for k, v in value.items()}
    if isinstance(value, list):
        return [schema(v) for v in value]
    return None


@pytest.mark.slow
def test_a_matrix_cell_with_two_processes_has_the_record_of_a_single_process_cell(tmp_path):
    path = _matrix(tmp_path / "ddp.toml", 2)
    lmladder.run_matrix(load_matrix(str(path)), tmp_path / "results")
    records = {r.cell.label: r for r in load_records(tmp_path / "results")}
    one, two = records["one"], records["two"]
    assert one.status == two.status == "ok", (one.error, two.error)
    assert schema(two.to_json()) == schema(one.to_json())
    assert two.cell.config["processes"] == 2 and two.key != one.key
    assert two.fit["notes"]["processes"] == 2 and two.fit["notes"]["backend"] == "gloo"
    assert two.fit["steps"] == one.fit["steps"] == 8
    # the same training, up to float rounding in the gradient average
    assert two.metric("test", "ppl") == pytest.approx(one.metric("test", "ppl"), rel=1e-4)


@pytest.mark.parametrize("config,needle", [
    ({"processes": 0}, "processes must be >= 1"),
    ({"processes": 1.5}, "'processes' must be int"),
    ({"processes": True}, "'processes' must be int"),
    ({"processes": 3, "batch_size": 8}, "batch_size must be a multiple of processes (3)"),
])
def test_bad_processes_are_one_line_config_errors(config, needle):
    with pytest.raises(ConfigError) as err:
        lmladder.build("lstm", config)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_bad_processes_in_a_matrix_name_the_file(tmp_path):
    path = _matrix(tmp_path / "bad.toml", 0)
    with pytest.raises(MatrixError) as err:
        load_matrix(str(path))
    assert "bad.toml" in str(err.value) and "processes must be >= 1" in str(err.value)


def test_what_two_processes_cannot_do_is_refused_before_launching(data):
    model = RNNLM(**TINY, processes=2)
    with pytest.raises(ValueError, match="resume=True is not available with processes = 2"):
        model.fit(data.train.ids, data.vocab, budget=Budget(steps=1), resume=True)
    with pytest.raises(ValueError, match=r"cpu \(gloo\) or cuda \(NCCL\), not 'mps'"):
        backend_for("mps", 2)
    assert backend_for("cpu", 2) == "gloo"
    too_many = torch.cuda.device_count() + 1
    with pytest.raises(ValueError, match=f"needs {too_many} CUDA devices"):
        backend_for("cuda", too_many)

    class Local(RNNLM):
        pass

    with pytest.raises(ValueError, match="worker processes must import .*Local"):
        Local(**TINY, processes=2).fit(data.train.ids, data.vocab, budget=Budget(steps=1))
