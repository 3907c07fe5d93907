"""lmladder installs as one package, imports cleanly, and keeps its layers one-way.

The source folders map onto one import name (pyproject.toml): ``benchmarks/`` is ``lmladder``,
``baselines/``, ``neural/`` and ``reports/`` are its subpackages.  These tests read the built wheel
and the modules' import statements, and import in subprocesses where torch cannot be imported.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import lmladder
from lmladder import registry

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"lmladder": "benchmarks", "lmladder.baselines": "baselines",
           "lmladder.neural": "neural", "lmladder.reports": "reports"}


def _modules() -> dict[str, Path]:
    """Every module of the package by its import name."""
    out = {}
    for package, folder in FOLDERS.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join((package, *parts))] = path
    return out


MODULES = _modules()


def _imports(name: str) -> set[str]:
    """The lmladder modules that module ``name`` imports, anywhere in its code."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package.split(".")[: len(package.split(".")) - node.level + 1],
                                 *([base] if base else [])])
            # "from lmladder import registry" imports the submodule lmladder.registry
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base
                       for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in MODULES:  # "lmladder.api.X" -> the module lmladder.api
                t = t.rpartition(".")[0]
            if t.startswith("lmladder") and t != name:
                found.add(t)
    return found


GRAPH = {name: _imports(name) for name in MODULES}


def test_wheel_installs_exactly_one_top_level_package(tmp_path):
    # Build from a copy: setuptools leaves a build/ folder beside the sources it builds.
    source = tmp_path / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".*", "build", "dist", "*.egg-info", "results", "__pycache__"))
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(source)], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("lmladder-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names}
    assert top == {"lmladder", f"lmladder-{lmladder.__version__}.dist-info"}
    info = f"lmladder-{lmladder.__version__}.dist-info"
    assert "lmladder.__main__:main" in zipfile.ZipFile(wheel).read(
        f"{info}/entry_points.txt").decode()
    assert any(n.startswith("lmladder/baselines/ngram_kernels.") and n.endswith(".so")
               for n in names)  # the compiled n-gram kernels
    for expected in ("lmladder/api.py", "lmladder/baselines/ngram.py", "lmladder/neural/rnn.py",
                     "lmladder/reports/render.py", "lmladder/perf/ngram.py",
                     "lmladder/tasks/cloze.py",
                     "lmladder/matrices/quick.toml", "lmladder/reports/templates/report.html.j2",
                     "lmladder/reports/anchors.toml"):
        assert expected in names
    shipped = {n for n in names if n.startswith("lmladder/reports/reference/")}
    records = {f"lmladder/reports/reference/{p.parent.name}/{p.name}"
               for p in (ROOT / "reports" / "reference").glob("*/*__*.json")}
    assert records and shipped == records  # every reference record, and nothing else


def test_only_lmladder_names_outside_the_checkout(tmp_path):
    """From a folder outside the checkout: the version, the CLI, and no ``benchmarks`` module."""
    env = {**os.environ, "PYTHONPATH": ""}
    code = ("import lmladder; print(lmladder.__version__)\n"
            "try:\n    import benchmarks\nexcept ModuleNotFoundError:\n    print('no benchmarks')")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True)
    assert done.stdout.split() == [lmladder.__version__, "no", "benchmarks"], done.stderr
    cli = Path(sys.executable).with_name("lmladder")
    version = subprocess.run([str(cli), "--version"], cwd=tmp_path, capture_output=True, text=True)
    assert version.stdout.strip() == f"lmladder {lmladder.__version__}"


def test_code_and_docs_use_only_lmladder_names():
    old = ("from benchmarks", "import benchmarks", "from baselines", "import baselines",
           "from neural", "import neural", "from reports", "import reports")
    for path in [*MODULES.values(), *ROOT.joinpath("tests").glob("*.py")]:
        for line in path.read_text().splitlines():
            assert not line.strip().startswith(old), f"{path}: {line.strip()}"
    for e in registry.models().values():
        assert e.target.startswith("lmladder."), e.target


def test_public_api():
    for name in lmladder.__all__:
        assert getattr(lmladder, name) is not None
    assert issubclass(lmladder.LanguageModel, object) and callable(lmladder.load_results)
    with pytest.raises(AttributeError):
        lmladder.no_such_name  # noqa: B018


def test_no_import_cycles():
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(GRAPH[node]):
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt):] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for name in sorted(GRAPH):
        if name not in state:
            visit(name, [name])


CONTRACT = {"lmladder.api", "lmladder.vocab", "lmladder.budget", "lmladder.config",
            "lmladder.checkpoint"}


def test_layers_depend_one_way():
    """The contract layer (``lmladder.api`` and the modules it re-exports) imports nothing of
    lmladder outside itself; the harness core imports no model family and no performance script
    (the registry names families as strings)."""
    for name in sorted(CONTRACT):
        outside = GRAPH[name] - CONTRACT
        assert not outside, f"{name} is in the contract layer but imports {sorted(outside)}"
    assert CONTRACT - {"lmladder.api"} <= GRAPH["lmladder.api"]  # api re-exports all of them
    families = ("lmladder.baselines", "lmladder.neural", "lmladder.perf")
    core = [m for m in MODULES if not m.startswith(families)]
    for name in core:
        bad = {m for m in GRAPH[name] if m.startswith(families)}
        assert not bad, f"{name} imports {sorted(bad)}"
    for name in MODULES:
        if not name.startswith("lmladder.perf"):
            assert not any(m.startswith("lmladder.perf") for m in GRAPH[name]), name


# Small leaf modules a family may use besides the contract: device resolution, the number and
# error-line rules, the process helpers of its own worker processes, and link-safe files.
LEAVES = {"lmladder.devices", "lmladder.numbers", "lmladder.process", "lmladder.files"}
# What a report may read: records and their files (and the paired tests of their task
# statistics), nothing that runs or scores a model.
RECORDS = {"lmladder.record", "lmladder.results", "lmladder.numbers", "lmladder.files",
           "lmladder._version", "lmladder.significance"}


@pytest.mark.parametrize("family", ["lmladder.baselines", "lmladder.neural"])
def test_families_import_only_the_contract(family):
    """A model family sees the harness only through the contract: no registry, runner, tasks,
    data loading or scoring (the harness turns log-probabilities into metrics, never a model)."""
    for name in (m for m in MODULES if m.startswith(family)):
        outside = {m for m in GRAPH[name] if not m.startswith(family)} - CONTRACT - LEAVES
        assert not outside, f"{name} imports {sorted(outside)}; families import the contract only"


def test_reports_read_records_only():
    """The report renders records: it imports no registry, task, runner, data or scoring
    module (task metric specs and model families travel in the records)."""
    reports = [m for m in MODULES if m.startswith("lmladder.reports")]
    assert len(reports) > 5
    for name in reports:
        outside = {m for m in GRAPH[name] if not m.startswith("lmladder.reports")} - RECORDS
        assert not outside, f"{name} imports {sorted(outside)}; a report reads records only"


def test_no_module_holds_more_than_a_reader_can_hold():
    """No module over ~600 lines (the big rooms were split along the flow)."""
    long = {name: n for name, path in MODULES.items()
            if (n := len(path.read_text().splitlines())) > 620}
    assert not long, f"modules over 620 lines: {long}"


BLOCK_TORCH = """
import importlib.abc, sys
class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is not installed (blocked by the test)")
sys.meta_path.insert(0, NoTorch())
"""


def test_count_models_and_harness_import_and_run_without_torch():
    modules = sorted(m for m in MODULES if not m.startswith(("lmladder.neural", "lmladder.perf"))
                     and m != "lmladder.baselines.hmm_torch")
    code = BLOCK_TORCH + f"""
import importlib
for m in {modules!r}:
    importlib.import_module(m)
from lmladder import registry, load_dataset, score
data = load_dataset("synthetic")
kn = registry.build("kn3"); kn.fit(data.train.ids, data.vocab)
hl = registry.build("hmm-hmmlearn", smoke=True); hl.fit(data.train.ids[:2000], data.vocab)
hm = registry.build("hmm", smoke=True); hm.fit(data.train.ids[:2000], data.vocab)  # EM on numpy
print("ppl", round(score(kn, data).ppl, 2), round(score(hl, data).ppl, 2),
      round(score(hm, data).ppl, 2))
try:
    registry.build("hmm", dict(trainer="adam"))
except ImportError as err:
    print("adam:", err)
assert "torch" not in sys.modules or sys.modules["torch"] is None
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ppl ")
    assert ("adam: hmm: trainer='adam' needs torch, which cannot be imported: torch is not "
            "installed") in done.stdout


def test_load_refuses_a_class_it_does_not_know_before_importing_it(tmp_path, data):
    model = registry.build("kn3")
    model.fit(data.train.ids, data.vocab)
    model.save(tmp_path / "ckpt")
    meta = json.loads((tmp_path / "ckpt" / "model.json").read_text())
    assert meta["class"] == "lmladder.baselines.ngram:NGramLM"
    assert type(lmladder.load_model(tmp_path / "ckpt")) is type(model)
    # a module that would leave a mark if it were ever imported
    (tmp_path / "mark_on_import.py").write_text(
        f"open({str(tmp_path / 'imported')!r}, 'w').close()\n"
        "from lmladder.baselines.ngram import NGramLM as Evil\n")
    meta["class"] = "mark_on_import:Evil"
    (tmp_path / "ckpt" / "model.json").write_text(json.dumps(meta))
    sys.path.insert(0, str(tmp_path))
    try:
        with pytest.raises(registry.UnknownNameError, match="mark_on_import:Evil"):
            lmladder.load_model(tmp_path / "ckpt")
    finally:
        sys.path.remove(str(tmp_path))
    assert "mark_on_import" not in sys.modules and not (tmp_path / "imported").exists()


def test_a_concrete_class_loads_only_its_own_checkpoints(tmp_path, data):
    from lmladder.baselines.hmm_hmmlearn import HmmlearnHMM
    from lmladder.baselines.ngram import NGramLM

    model = NGramLM(order=2)
    model.fit(data.train.ids, data.vocab)
    model.save(tmp_path / "ckpt")
    assert NGramLM.load(tmp_path / "ckpt").config() == model.config()
    with pytest.raises(TypeError, match="lmladder.load_model"):
        HmmlearnHMM.load(tmp_path / "ckpt")
    with pytest.raises(TypeError, match="lmladder.load_model"):
        lmladder.LanguageModel.load(tmp_path / "ckpt")
