"""Damaged checkpoints: every kind of damage is one CheckpointError naming the file and the problem.

Each case damages a freshly saved checkpoint of an n-gram, an HMM (both backends) and an LSTM,
then loads it through ``lmladder.load_model`` and through the class's own ``load``.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from lmladder import CheckpointError, registry
from lmladder.api import LanguageModel
from lmladder.registry import load_model
from lmladder.synthetic import synthetic_dataset
from tests import contract

FAMILIES = {  # registry name -> a float array of its state whose shape follows V or the config
    "kn3": "logp_1",
    "hmm": "transmat",
    "hmm-hmmlearn": "emissionprob",
    "lstm": None,  # the first param/ array
}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """name -> (pristine checkpoint folder, the fitted model, a checkpoint on another vocabulary)"""
    data = contract.tiny_dataset()
    other = synthetic_dataset(dataclasses.replace(contract.TINY, vocab=60, seed=8))
    root = tmp_path_factory.mktemp("ckpt")
    out = {}
    for name in FAMILIES:
        model = contract.fitted(registry.build(name, smoke=True), data)
        model.save(root / name)
        foreign = contract.fitted(registry.build(name, smoke=True), other)
        foreign.save(root / f"{name}-other-vocab")
        out[name] = (root / name, model, root / f"{name}-other-vocab")
    return out


def _array_name(name: str, arrays: dict) -> str:
    return FAMILIES[name] or next(k for k in arrays if k.startswith("param/"))


def _arrays(folder: Path) -> dict[str, np.ndarray]:
    with np.load(folder / "state.npz") as npz:
        return {k: npz[k] for k in npz.files}


def _write_arrays(folder: Path, arrays: dict) -> None:
    np.savez(folder / "state.npz", **arrays)


def _edit_meta(folder: Path, edit) -> None:
    meta = json.loads((folder / "model.json").read_text())
    edit(meta)
    (folder / "model.json").write_text(json.dumps(meta))


def _bad_config(name: str) -> dict:
    return {"kn3": {"order": 0}, "hmm": {"states": 0}, "hmm-hmmlearn": {"tol": -1.0},
            "lstm": {"batch_size": 0}}[name]


# damage name -> (damage(folder, name, foreign_folder), the file named, words in the message)
DAMAGE = {
    "no folder": (lambda f, n, o: shutil.rmtree(f), "", "does not exist"),
    "no model.json": (lambda f, n, o: (f / "model.json").unlink(), "model.json", "missing"),
    "truncated json": (
        lambda f, n, o: (f / "model.json").write_text((f / "model.json").read_text()[:40]),
        "model.json", "not valid JSON"),
    "json not an object": (lambda f, n, o: (f / "model.json").write_text("[1, 2]"),
                           "model.json", "JSON object"),
    "empty json": (lambda f, n, o: (f / "model.json").write_text(""), "model.json",
                   "not valid JSON"),
    "missing key": (lambda f, n, o: _edit_meta(f, lambda m: m.pop("config")), "model.json",
                    "missing key(s) 'config'"),
    "future format": (lambda f, n, o: _edit_meta(f, lambda m: m.update(format_version=99)),
                      "model.json", "unsupported checkpoint format 99"),
    "bad config": (lambda f, n, o: _edit_meta(f, lambda m: m["config"].update(_bad_config(n))),
                   "model.json", "config is refused"),
    "config not an object": (lambda f, n, o: _edit_meta(f, lambda m: m.update(config=[1])),
                             "model.json", "'config' must be an object"),
    "vocab hash": (lambda f, n, o: _edit_meta(f, lambda m: m.update(vocab_sha256="0" * 64)),
                   "model.json", "recorded hash"),
    "damaged vocab": (lambda f, n, o: _edit_meta(f, lambda m: m["vocab"].pop("boundary")),
                      "model.json", "vocabulary is damaged"),
    "no state.npz": (lambda f, n, o: (f / "state.npz").unlink(), "state.npz", "missing"),
    "state.npz not a zip": (lambda f, n, o: (f / "state.npz").write_bytes(b"not a zip at all"),
                            "state.npz", "not a readable .npz"),
    "state.npz truncated": (
        lambda f, n, o: (f / "state.npz").write_bytes((f / "state.npz").read_bytes()[:100]),
        "state.npz", "not a readable .npz"),
    "missing array": (
        lambda f, n, o: _write_arrays(f, {k: a for k, a in _arrays(f).items()
                                          if k != _array_name(n, _arrays(f))}),
        "state.npz", "missing array"),
    "wrong shape": (
        lambda f, n, o: _write_arrays(f, {k: (a[..., :-1] if k == _array_name(n, _arrays(f))
                                              else a) for k, a in _arrays(f).items()}),
        "state.npz", "shape"),
    "wrong dtype": (
        lambda f, n, o: _write_arrays(f, {k: (np.full(a.shape, "x") if k == _array_name(
            n, _arrays(f)) else a) for k, a in _arrays(f).items()}),
        "state.npz", "dtype"),
    "arrays of another vocabulary": (
        lambda f, n, o: shutil.copy(o / "state.npz", f / "state.npz"), "state.npz", "shape"),
}


@pytest.mark.parametrize("damage", DAMAGE)
@pytest.mark.parametrize("name", FAMILIES)
def test_damaged_checkpoint_is_one_clear_error(name, damage, saved, tmp_path):
    pristine, model, foreign = saved[name]
    folder = tmp_path / "ckpt"
    shutil.copytree(pristine, folder)
    harm, file, words = DAMAGE[damage]
    harm(folder, name, foreign)
    for load in (load_model, type(model).load):
        with pytest.raises(CheckpointError) as err:
            load(folder)
        msg = str(err.value)
        assert "\n" not in msg, msg
        assert str(folder / file) in msg, msg
        assert words in msg, msg


@pytest.mark.parametrize("name", FAMILIES)
def test_pristine_checkpoint_loads(name, saved):
    pristine, model, _ = saved[name]
    ids = contract.tiny_dataset().test.ids[:50]
    np.testing.assert_array_equal(load_model(pristine).token_logprobs(ids),
                                  model.token_logprobs(ids))


def test_checkpoint_error_is_a_value_error_and_public():
    import lmladder

    assert lmladder.CheckpointError is CheckpointError and issubclass(CheckpointError, ValueError)


def test_npz_with_a_pickled_array_is_refused(saved, tmp_path):
    pristine, _, _ = saved["kn3"]
    folder = tmp_path / "ckpt"
    shutil.copytree(pristine, folder)
    arrays = _arrays(folder)
    arrays["logp_1"] = np.array([{"evil": 1}], dtype=object)
    _write_arrays(folder, arrays)
    with pytest.raises(CheckpointError, match="state.npz"):
        load_model(folder)
    assert zipfile.is_zipfile(folder / "state.npz")


@pytest.mark.parametrize("name", FAMILIES)
def test_ids_outside_the_vocabulary_name_the_mismatch(name, saved):
    _, model, _ = saved[name]
    v = len(model.vocab_)
    ids = np.array([1, 2, v + 10_000, 3])
    with pytest.raises(ValueError, match=rf"token id {v + 10_000} is outside this model's "
                       rf"vocabulary of {v} \(was it fitted on another dataset\?\)"):
        model.token_logprobs(ids)
    with pytest.raises(ValueError, match=f"token id -1 is outside .* vocabulary of {v}"):
        model.next_token_ranks(np.array([0, -1]))
    with pytest.raises(ValueError, match="outside"):
        LanguageModel.token_logprobs(model, ids)
