"""Third-party models through the ``lmladder.models`` entry-point group, tested for real.

The test writes two small distributions into a temporary site folder the way an installer lays
them out (the package plus its ``*.dist-info`` with ``entry_points.txt``): ``myplug`` provides a
working unigram model; ``badplug`` provides one that fails to import, one that is not a model and
one whose name clashes with a built-in.  The CLI and the registry see them through
``importlib.metadata`` exactly as they would see an installed package.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import lmladder
from lmladder import registry
from lmladder.results import parse_record
from tests import contract
from tests.helpers import write_matrix
from tests.records import v3_record

UNIGRAM = '''
"""A third-party model: an add-k unigram language model."""

from dataclasses import dataclass

import numpy as np

from lmladder import Budget, FitReport, LanguageModel


@dataclass(frozen=True)
class UnigramConfig:
    k: float = 1.0


class UnigramLM(LanguageModel):
    """Add-k unigram LM, from the myplug distribution."""

    Config = UnigramConfig

    def fit(self, train, vocab, *, budget=Budget(), valid=None, callback=None):
        counts = np.bincount(train, minlength=len(vocab)) + self.cfg.k
        self.logp_ = np.log(counts / counts.sum())
        self.vocab_ = vocab
        return FitReport(train_tokens=len(train), steps=1, seconds=0.0)

    def init_state(self, batch):
        return np.zeros(batch)

    def step(self, state, tokens):
        return np.tile(self.logp_, (len(tokens), 1)), state

    def num_parameters(self):
        return len(self.logp_)

    def _state_arrays(self):
        return {"logp": self.logp_}

    def _load_state_arrays(self, arrays):
        self.logp_ = arrays["logp"]


def helper():
    return 1
'''


def _distribution(site: Path, name: str, files: dict[str, str], entry_points: str) -> None:
    for rel, text in files.items():
        path = site / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    info = site / f"{name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    site = tmp_path_factory.mktemp("site")
    _distribution(site, "myplug", {"myplug/__init__.py": "", "myplug/models.py": UNIGRAM}, """
        [lmladder.models]
        myunigram = myplug.models:UnigramLM
        """)
    _distribution(site, "badplug", {
        "badplug/__init__.py": "",
        "badplug/broken.py": "raise RuntimeError('this plugin is broken')\n",
    }, """
        [lmladder.models]
        brokenlm = badplug.broken:Model
        notamodel = myplug.models:helper
        kn5 = myplug.models:UnigramLM
        """)
    return site


@pytest.fixture
def installed(site, monkeypatch):
    """The plugins visible to this process's registry for one test."""
    monkeypatch.syspath_prepend(str(site))
    registry._plugins.cache_clear()
    yield
    monkeypatch.undo()
    registry._plugins.cache_clear()


def _cli(site: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site)}
    cli = Path(sys.executable).with_name("lmladder")
    return subprocess.run([str(cli), *args], cwd=cwd, env=env, capture_output=True, text=True)


def test_list_models_shows_the_plugin_and_reports_bad_ones_once(site, tmp_path):
    done = _cli(site, "list", "models", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (row,) = [line for line in done.stdout.splitlines() if line.startswith("myunigram")]
    assert "Add-k unigram LM" in row and "plugin from myplug" in row
    assert "kn5" in done.stdout and "Traceback" not in done.stderr
    for name, why in [("brokenlm", "RuntimeError: this plugin is broken"),
                      ("notamodel", "not a subclass of lmladder.LanguageModel"),
                      ("kn5", "clashes with the built-in")]:
        lines = [line for line in done.stderr.splitlines() if f"'{name}'" in line]
        assert len(lines) == 1 and why in lines[0] and "badplug" in lines[0], done.stderr


def test_a_plugin_model_runs_in_a_matrix(site, tmp_path):
    write_matrix(tmp_path / "one.toml", ["myunigram"], datasets=["synthetic"])
    done = _cli(site, "run", "one.toml", "--results", "out", "--no-report", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (record,) = [json.loads(p.read_text()) for p in (tmp_path / "out").glob("myunigram*.json")]
    assert record["status"] == "ok"
    assert record["model"]["class"] == "myplug.models:UnigramLM"
    # a unigram model knows word frequencies only: between the source HMM and uniform
    vocab_size = record["dataset"]["vocab_size"]
    assert record["oracle"]["test"]["ppl"] < record["metrics"]["test"]["ppl"] < vocab_size


@pytest.mark.parametrize("check", contract.ALL_CHECKS, ids=lambda c: c.__name__[6:])
def test_a_plugin_model_keeps_the_contract(installed, check, data):
    check(contract.fitted(registry.build("myunigram", smoke=True), data), data)


def test_a_plugin_checkpoint_loads_through_the_registry(installed, data, tmp_path):
    model = contract.fitted(registry.build("myunigram"), data)
    contract.check_save_load(model, data, tmp_path)


def test_register_a_class_at_run_time(data, monkeypatch):
    from lmladder.baselines.ngram import NGramLM

    monkeypatch.setattr(registry, "MODELS", dict(registry.MODELS))
    lmladder.register("bigram-wb", NGramLM, summary="mine", order=2, smoothing="witten-bell")
    model = lmladder.build("bigram-wb")
    assert model.cfg.order == 2 and registry.models()["bigram-wb"].summary == "mine"
    with pytest.raises(ValueError, match="registered already"):
        lmladder.register("kn5", NGramLM)
    with pytest.raises(TypeError, match="not a subclass"):
        lmladder.register("thing", dict)


def test_every_built_in_model_names_its_family():
    families = {name: registry.model_class(name).family for name in registry.models()
                if registry.models()[name].origin == registry.BUILT_IN and not name.endswith(":")}
    assert set(families.values()) <= {"n-gram", "HMM", "RNN", "Transformer"}, families
    assert families["kn5"] == "n-gram" and families["hmm"] == "HMM"
    assert families["gru"] == "RNN" and families["hf-gpt2"] == "Transformer"


def test_an_old_record_gets_the_family_of_its_class_importing_only_lmladder(monkeypatch):
    imported = []
    real = registry.import_target

    def recording(target):
        imported.append(target)
        return real(target)

    monkeypatch.setattr(registry, "import_target", recording)

    def family(model_class):
        """The family of a version 3 record (written before the field) of ``model_class``."""
        old = v3_record()
        old["model"]["class"] = model_class
        assert "family" not in old["model"]
        return parse_record(old, "old.json").family

    assert family("lmladder.baselines.ngram:NGramLM") == "n-gram"
    assert family("lmladder.baselines.hmm:HMM") == "HMM"
    assert {"lmladder.baselines.ngram:NGramLM", "lmladder.baselines.hmm:HMM"} <= set(imported)
    assert family("os:system") == "other"  # never imported
    assert family("myplug.models:UnigramLM") == "other"
    assert family("lmladder.gone:Nothing") == "other"  # removed since the record was written
    assert "lmladder.gone:Nothing" in imported
    assert all(target.startswith("lmladder.") for target in imported), imported
