"""Post-training compression of the torch families (neural/compress.py): int8 dynamic quantization
and global magnitude pruning, set by the ``quantize`` and ``sparsity`` config keys.

The reference for each compressed model is the fp32 model trained with the same seed and budget
(compression happens after training, so both end training with the same weights): quantized
weights must be that model's weights rounded to their per-row grid, pruning must zero exactly
its smallest weights, and the scores must stay close to its scores.  A quantized model keeps the
whole contract (tests/contract.py): scoring goes one token per call, so no score depends on the
tokens after it.  The networks are dominated by LSTM or Linear weights (a 40-word vocabulary),
so an int8 checkpoint should be close to 4x smaller.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lmladder import registry
from lmladder.api import Budget, CheckpointError, ConfigError
from lmladder.neural.rnn import RNNLM
from lmladder.neural.transformer import TransformerLM
from lmladder.tasks import NotApplicable
from tests import contract

TINY = {
    "lstm": (RNNLM, dict(hidden=64, layers=2, bptt=8, batch_size=4, optimizer="adamw", lr=1e-2)),
    "transformer": (TransformerLM, dict(layers=2, heads=2, width=64, context=16, batch_size=4,
                                        warmup_steps=0)),
}
BUDGET = Budget(steps=60)


def trained(name: str, data, **compression):
    cls, config = TINY[name]
    model = cls(**config, **compression)
    report = model.fit(data.train.ids, data.vocab, budget=BUDGET)
    return model, report


@pytest.fixture(scope="module", params=sorted(TINY))
def pair(request, data):
    """``(fp32 model, the same model with quantize="int8", its FitReport)``."""
    fp32, _ = trained(request.param, data)
    int8, report = trained(request.param, data, quantize="int8")
    return fp32, int8, report


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.iterdir())


def test_int8_keeps_the_contract(pair, data, tmp_path):
    _, int8, _ = pair
    contract.check_sums_to_one(int8, data)
    contract.check_fast_equals_reference(int8, data)
    contract.check_no_peeking(int8, data)  # a batched dynamic-quantized call would fail this
    contract.check_generation(int8, data)
    contract.check_save_load(int8, data, tmp_path)


def test_int8_scores_are_close_to_fp32(pair, data):
    fp32, int8, _ = pair
    ids = data.valid.ids
    a, b = fp32.token_logprobs(ids), int8.token_logprobs(ids)
    assert not np.array_equal(a, b)  # the quantized network is really used
    assert np.mean(np.abs(a - b)) < 0.02
    assert abs(np.mean(b) - np.mean(a)) < 0.01  # perplexity within 1%
    assert int8.num_parameters() == fp32.num_parameters()


def test_int8_weights_are_the_fp32_weights_on_a_per_row_grid(pair, tmp_path):
    fp32, int8, _ = pair
    int8.save(tmp_path / "int8")
    with np.load(tmp_path / "int8" / "state.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    weights = dict(fp32.module_.named_parameters(remove_duplicate=False))
    quantized = [k.removeprefix("qweight/") for k in arrays if k.startswith("qweight/")]
    assert len(quantized) >= 4
    for name in quantized:
        ints, scale = arrays[f"qweight/{name}"], arrays[f"qscale/{name}"]
        assert ints.dtype in (np.int8, np.uint8) and f"param/{name}" not in arrays
        w = weights[name].detach().numpy()
        zero = arrays[f"qzero/{name}"]
        if ints.dtype == np.int8:  # Linear/LSTM: symmetric, zero point 0
            assert not zero.any()
        restored = (ints.astype(np.float64) - zero[:, None]) * scale[:, None]
        assert (np.abs(restored - w) <= 0.5 * scale[:, None] + 1e-7).all(), name


def test_int8_checkpoint_is_much_smaller(pair, tmp_path):
    fp32, int8, _ = pair
    fp32.save(tmp_path / "fp32")
    int8.save(tmp_path / "int8")
    ratio = folder_bytes(tmp_path / "fp32") / folder_bytes(tmp_path / "int8")
    assert ratio >= 2.5, ratio


def test_int8_report_and_card_say_what_was_done(pair):
    _, int8, report = pair
    assert "int8 dynamic quantization" in report.notes["compression"]
    (table,) = int8.inspect()
    assert table["columns"][0] == "layer" and len(table["rows"]) >= 4
    assert {row[1] for row in table["rows"]} >= {"Linear", "Embedding"}


def test_a_damaged_int8_checkpoint_names_the_array(pair, tmp_path):
    _, int8, _ = pair
    folder = int8.save(tmp_path / "ckpt")
    with np.load(folder / "state.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    name = next(k for k in arrays if k.startswith("qweight/"))
    arrays[name] = arrays[name][:-1]
    np.savez(folder / "state.npz", **arrays)
    with pytest.raises(CheckpointError, match=f"array '{name}' has shape"):
        registry.load_model(folder)


def test_int8_runs_on_the_cpu_only(pair):
    _, int8, _ = pair
    with pytest.raises(ValueError, match="runs on the CPU only .* use device 'cpu'") as err:
        int8.to("cuda")
    assert "\n" not in str(err.value) and int8.device == "cpu"
    assert int8.to("auto").device == "cpu"


def test_int8_is_not_fine_tunable_nor_resumable(pair, data):
    _, int8, _ = pair
    texts, labels = [data.train.ids[:10], data.train.ids[10:20]], np.array([0, 1])
    with pytest.raises(NotApplicable, match="quantize='int8' cannot be fine-tuned"):
        int8.fine_tune_classifier(texts, labels, 2, budget=Budget(steps=1))
    with pytest.raises(ValueError, match="training ended in compression .* from the start"):
        int8.fit(data.train.ids, data.vocab, budget=Budget(steps=70), resume=True)


@pytest.mark.parametrize("name", sorted(TINY))
def test_sparsity_zeroes_exactly_the_smallest_weights(name, data):
    fp32, _ = trained(name, data)
    pruned, report = trained(name, data, sparsity=0.5)
    # Independent reference: rank the fp32 model's weight matrices by magnitude with numpy.
    names = [n for n, p in fp32.module_.named_parameters()
             if p.dim() == 2]  # Linear, Embedding and recurrent matrices, a tied one once
    before = np.concatenate([fp32.module_.get_parameter(n).detach().numpy().ravel()
                             for n in names])
    after = np.concatenate([pruned.module_.get_parameter(n).detach().numpy().ravel()
                            for n in names])
    k = round(0.5 * len(before))
    assert np.count_nonzero(after == 0) == k
    expected_zero = np.zeros(len(before), dtype=bool)
    expected_zero[np.argsort(np.abs(before), kind="stable")[:k]] = True
    np.testing.assert_array_equal(after == 0, expected_zero)
    np.testing.assert_array_equal(after[~expected_zero], before[~expected_zero])
    assert f"{k:,} of {len(before):,} weights (50.0%) pruned" in report.notes["compression"]


def test_sparsity_keeps_tied_weights_tied_and_scores_close(data, tmp_path):
    fp32, _ = trained("transformer", data)
    pruned, _ = trained("transformer", data, sparsity=0.1)
    net = pruned.module_
    assert net.head.weight is net.wte.weight and (net.wte.weight == 0).any()
    a, b = fp32.token_logprobs(data.valid.ids), pruned.token_logprobs(data.valid.ids)
    assert 0 < abs(np.mean(b) - np.mean(a)) < 0.01  # perplexity within 1%
    contract.check_fast_equals_reference(pruned, data)  # pruned networks stay batched
    contract.check_save_load(pruned, data, tmp_path)


@pytest.mark.parametrize(("key", "value", "need"), [
    ("quantize", "int4", "'int8'"),
    ("sparsity", 1.0, r"in \[0, 1\)"),
    ("sparsity", -0.1, r"in \[0, 1\)"),
])
def test_config_errors_are_one_line(key, value, need):
    for name in ("lstm", "transformer"):
        with pytest.raises(ConfigError, match=f"{key}'? must be .*{need}.*got {value!r}") as err:
            registry.build(name, {key: value})
        assert "\n" not in str(err.value)


def test_pruning_an_rnn_keeps_its_flat_weights():
    torch.manual_seed(0)
    from lmladder.neural.compress import prune_magnitude

    lstm = torch.nn.LSTM(8, 8, 2)
    x = torch.randn(5, 1, 8)
    zeros, total = prune_magnitude(lstm, 0.25)
    assert (zeros, total) == (round(0.25 * total), 4 * 8 * 16 * 2)
    manual = torch.nn.LSTM(8, 8, 2)
    manual.load_state_dict(lstm.state_dict())  # the module's own weights after pruning
    torch.testing.assert_close(lstm(x)[0], manual(x)[0], rtol=0, atol=0)
