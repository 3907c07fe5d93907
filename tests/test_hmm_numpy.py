"""The ``hmm`` model on numpy: its EM is the torch EM, and on the CPU it never imports torch.

Seeds are fixed per test (numpy ``default_rng``).  Scoring against hmmlearn and the step-by-step
reference is checked in ``tests/test_hmm.py``, ``tests/test_hmm_blocks.py`` and the contract.
"""

import subprocess
import sys

import numpy as np
import pytest

from lmladder.api import Budget
from lmladder.baselines import hmm_kernel
from lmladder.baselines.hmm import HMM, HMMConfig, block_emissions, word_groups
from lmladder.baselines.hmm_core import initial_parameters, unigram
from lmladder.baselines.hmm_em import EM, NUMPY
from tests.contract import tiny_dataset
from tests.test_packaging import BLOCK_TORCH


@pytest.fixture(scope="module")
def tiny():
    return tiny_dataset()


# float64: the two differ only in the order of sums; float32: also in their BLAS's rounding.
@pytest.mark.parametrize("dtype, rtol, atol", [("float64", 1e-12, 1e-15),
                                               ("float32", 2e-5, 1e-6)])
@pytest.mark.parametrize("blocks", [1, 3])
def test_numpy_em_equals_torch_em(tiny, dtype, rtol, atol, blocks):
    hmm_torch = pytest.importorskip("lmladder.baselines.hmm_torch")
    train, v, states = tiny.train.ids, len(tiny.vocab), 6
    pi, a, b = initial_parameters(states, unigram(train, v), np.random.default_rng(7), 1.0,
                                  emission_dtype=dtype)
    groups = word_groups(train, v, blocks) if blocks > 1 else None
    if groups is not None:
        b = block_emissions(b, groups)
    cfg = HMMConfig(states=states, batch_tokens=300, start_prior=0.1, transition_prior=0.1)
    runs = [EM(cfg, train, tiny.vocab.boundary_id, (pi, a, b), dtype, arrays, groups)
            for arrays in (NUMPY, hmm_torch.TorchArrays("cpu"))]
    assert len(runs[0].chunks) > 5  # several chunks: counts are summed across them
    for _ in range(3):
        ours, theirs = (run.one_pass(None, None, 0, 0) for run in runs)
        assert ours[:2] == pytest.approx(theirs[:2], rel=1e-12 if dtype == "float64" else 1e-6)
    for ours, theirs in zip(*(run.parameters() for run in runs), strict=True):
        assert ours.dtype == theirs.dtype == np.float64
        np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=atol)


@pytest.mark.parametrize("blocks", [1, 2])
def test_a_cuda_models_torch_path_equals_numpy(tiny, monkeypatch, blocks):
    """What the model runs on a CUDA device (EM, validation and scoring on torch tensors), here
    on the CPU's torch, trains and scores as numpy does (float64: to the order of sums)."""
    torch = pytest.importorskip("torch")
    runs = {}
    for numpy in (True, False):
        monkeypatch.setattr(HMM, "_on_cpu", lambda self, numpy=numpy: numpy)
        model = HMM(states=6, seed=2, dtype="float64", emission_blocks=blocks, tol=0.0)
        report = model.fit(tiny.train.ids, tiny.vocab, budget=Budget(steps=3),
                           valid=tiny.valid.ids)
        runs[numpy] = ([h["valid_nll"] for h in report.history],
                       model.token_logprobs(tiny.test.ids), model.emissionprob_)
    assert isinstance(model._device_params()[0], torch.Tensor)
    for ours, theirs in zip(runs[True], runs[False], strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-11, atol=1e-15)


def test_threads_scope_numpys_blas_during_fit_and_scoring(tiny, monkeypatch):
    threadpoolctl = pytest.importorskip("threadpoolctl")

    def blas_threads() -> set[int]:
        return {i["num_threads"] for i in threadpoolctl.threadpool_info()
                if i["user_api"] == "blas"}

    seen = []
    filter_logprobs = hmm_kernel.filter_logprobs

    def scoring(*args, **kwargs):
        seen.append(("scoring", blas_threads()))
        return filter_logprobs(*args, **kwargs)

    monkeypatch.setattr(hmm_kernel, "filter_logprobs", scoring)
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        model = HMM(states=4, threads=1, tol=0.0)
        model.fit(tiny.train.ids, tiny.vocab, budget=Budget(steps=2),
                  callback=lambda progress: seen.append(("fit", blas_threads())))
        assert blas_threads() == {2}  # restored after the fit
        model.token_logprobs(tiny.test.ids)
        assert blas_threads() == {2}
    assert seen == [("fit", {1}), ("fit", {1}), ("scoring", {1})]


NO_TORCH_FIT = BLOCK_TORCH + """
import numpy as np
from lmladder import load_dataset
from lmladder.api import Budget, LanguageModel
from lmladder.baselines.hmm import HMM

data = load_dataset("synthetic")
train, valid, test = data.train.ids[:6000], data.valid.ids[:1500], data.test.ids[:400]
progress = []
for config in (dict(threads=1, patience=1), dict(grow_from=2, stage_iterations=2),
               dict(emission_blocks=4)):
    model = HMM(states=8, seed=0, tol=0.0, **config)
    report = model.fit(train, data.vocab, budget=Budget(steps=6), valid=valid,
                       callback=progress.append)
    fast = model.token_logprobs(test)
    np.testing.assert_allclose(fast, LanguageModel.token_logprobs(model, test), rtol=1e-10)
    ranks = model.next_token_ranks(test)
    np.testing.assert_array_equal(ranks, LanguageModel.next_token_ranks(model, test))
    model.save(f"{sys.argv[1]}/{len(progress)}")
    again = HMM.load(f"{sys.argv[1]}/{len(progress)}")
    np.testing.assert_array_equal(again.token_logprobs(test), fast)
    print(report.notes["stages"], report.notes["stopped_by"], len(report.history))
assert len(progress) == 18
for build in (lambda: HMM(trainer="adam"), lambda: HMM().to("cuda")):
    try:
        build()
    except ImportError as err:
        print("refused:", err)
assert "torch" not in sys.modules or sys.modules["torch"] is None
"""


def test_fit_and_scoring_on_the_cpu_import_no_torch(tmp_path):
    """EM (dense with validation and patience, grown by splits, blocked), scoring, ranks and
    save/load all run with torch unimportable; only what needs torch says so, in one line."""
    done = subprocess.run([sys.executable, "-c", NO_TORCH_FIT, str(tmp_path)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:3] == ["[8] budget 6", "[2, 4, 8] budget 6", "[8] budget 6"]
    assert lines[3:] == [
        "refused: hmm: trainer='adam' needs torch, which cannot be imported: torch is not "
        "installed (blocked by the test)",
        "refused: hmm: device 'cuda' needs torch, which cannot be imported: torch is not "
        "installed (blocked by the test)",
    ]


def test_a_cells_threads_bound_numpys_blas_as_its_record_states(tmp_path, monkeypatch):
    """A matrix cell on N threads runs the numpy HMM's products on N BLAS threads, whatever the
    process had, and gives the process its own limit back afterwards."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from lmladder.run import load_matrix, run_matrix
    from tests.helpers import write_matrix

    def blas_threads() -> set[int]:
        return {i["num_threads"] for i in threadpoolctl.threadpool_info()
                if i["user_api"] == "blas"}

    seen, fit = [], HMM.fit

    def watched(self, *args, **kwargs):
        seen.append(blas_threads())
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(HMM, "fit", watched)
    matrix = load_matrix(str(write_matrix(
        tmp_path / "m.toml", [{"name": "hmm", "config": {"states": 4}, "budget": {"steps": 1}}],
        scoring={"accuracy_tokens": 100}, datasets=["synthetic"], devices=["cpu"], threads=1)))
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        summary = run_matrix(matrix, tmp_path / "res", isolated=False)
        assert blas_threads() == {2}
    assert seen == [{1}] and len(summary.paths) == 1
