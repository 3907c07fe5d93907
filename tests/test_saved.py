"""``saved:<folder>`` (benchmarks/saved.py): a saved model scored as it is by another matrix."""

from __future__ import annotations

import numpy as np
import pytest

import lmladder
from lmladder import registry
from lmladder.api import ConfigError, build_config
from lmladder.saved import SavedLM
from lmladder.synthetic import SyntheticSource, synthetic_dataset
from tests import contract


@pytest.fixture(scope="module")
def folder(data, tmp_path_factory):
    """A KN3 fitted on the contract's corpus and saved (what ``--save-models`` keeps)."""
    model = registry.build("kn3")
    model.fit(data.train.ids, data.vocab)
    return model, model.save(tmp_path_factory.mktemp("run") / "kn3.model")


@pytest.fixture(scope="module")
def saved(folder, data):
    model = registry.build(f"saved:{folder[1]}")
    report = model.fit(data.train.ids, data.vocab)  # loads; trains nothing
    assert report.train_tokens == 0 and report.notes["saved"] == str(folder[1])
    return model


@pytest.mark.parametrize("check", contract.ALL_CHECKS, ids=lambda c: c.__name__[6:])
def test_saved_entry_keeps_the_contract(check, saved, data):
    check(saved, data)


def test_saved_entry_save_load(saved, data, tmp_path):
    contract.check_save_load(saved, data, tmp_path)


def test_scores_and_family_are_the_saved_models(folder, saved, data):
    original, _ = folder
    assert isinstance(saved, SavedLM) and saved.family == "n-gram" == original.family
    assert saved.devices == original.devices and saved.closed_vocabulary
    np.testing.assert_array_equal(saved.token_logprobs(data.test.ids),
                                  original.token_logprobs(data.test.ids))
    assert saved.num_parameters() == original.num_parameters()
    assert saved.inspect() == original.inspect()


def test_refuses_a_dataset_with_another_vocabulary(folder, data):
    other = synthetic_dataset(SyntheticSource(seed=8, states=5, vocab=41, words_per_state=10,
                                              successors=2, mean_length=6.0,
                                              tokens=(500, 50, 50)))
    model = registry.build(f"saved:{folder[1]}")
    with pytest.raises(ValueError) as err:
        model.fit(other.train.ids, other.vocab)
    message = str(err.value)
    assert str(folder[1]) in message and "\n" not in message
    assert data.vocab.sha256[:12] in message and other.vocab.sha256[:12] in message


def test_refuses_a_folder_that_changed_since_it_was_saved(folder, saved, data, tmp_path):
    original, path = folder
    saved.save(tmp_path / "wrapper")
    original.save(path)  # rewritten with the same content: still loads
    assert registry.load_model(tmp_path / "wrapper").num_parameters() == saved.num_parameters()
    try:
        other = registry.build("wb3")
        other.fit(data.train.ids, data.vocab)
        other.save(path)
        with pytest.raises(ValueError, match="changed since this model was saved"):
            registry.load_model(tmp_path / "wrapper")
    finally:
        original.save(path)


def test_config_names_a_folder_that_is_not_a_model(tmp_path):
    for source, message in [(tmp_path / "none", "does not exist"),
                            (tmp_path, "model.json: missing")]:
        with pytest.raises(ConfigError, match=message):
            build_config(SavedLM.Config, {"source": str(source)}, where="m")


def test_runs_where_the_saved_model_runs(folder, tmp_path, data):
    """Devices come from the saved class, before anything is loaded: a saved n-gram is CPU-only
    even though ``saved:`` itself could wrap a CUDA model."""
    _, kn3_folder = folder
    assert SavedLM.devices_for({"source": str(kn3_folder)}) == ("cpu",)
    lstm = registry.build("lstm", smoke=True)
    lstm.fit(data.train.ids[:2000], data.vocab, budget=lmladder.Budget(steps=1))
    lstm_folder = lstm.save(tmp_path / "lstm.model")
    assert SavedLM.devices_for({"source": str(lstm_folder)}) == type(lstm).devices
    assert registry.build(f"saved:{lstm_folder}").devices == type(lstm).devices
