"""The typed flow of a cell: :func:`lmladder.plan.plan_cell` resolves it once, the cell's
process measures it, and the driver writes a checked :class:`lmladder.record.Record`.

Plans are made from real matrix files; runs use the toy models of :mod:`tests.toy_models`.
Records of older schemas come from :mod:`tests.records` and from the shipped reference runs.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from collections import Counter
from pathlib import Path

import pytest

from lmladder import cell as cell_module
from lmladder import plan as plan_module
from lmladder import registry
from lmladder import runner as runner_module
from lmladder import tasks as task_registry
from lmladder.api import Budget
from lmladder.cli import main
from lmladder.migrate import migrate
from lmladder.plan import DEFAULT_TIME_LIMIT, Limits, auto_threads, plan_cell
from lmladder.record import API_VERSION, ErrorInfo, Record, RecordError
from lmladder.results import load_records, parse_record, read_record, record_path
from lmladder.run import failed_record, load_matrix, run_matrix, select_cells
from tests.helpers import write_matrix
from tests.records import v1_record, v2_record, v3_record

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = sorted((ROOT / "reports" / "reference").glob("*/*.json"))


@pytest.fixture(autouse=True)
def toy_registry(monkeypatch):
    for name, target in (("toy-uniform", "UniformLM"), ("toy-seeded", "SeededLM"),
                         ("toy-bad", "BadNumbersLM")):
        monkeypatch.setitem(registry.MODELS, name, registry.Entry(f"tests.toy_models:{target}"))


def _matrix(tmp_path, models, **matrix):
    matrix = {"datasets": ["synthetic"], "devices": ["cpu"], **matrix}
    return load_matrix(str(write_matrix(tmp_path / "m.toml", models, **matrix)))


def _plans(tmp_path, models, limits=Limits(), *, isolated=True, **matrix) -> dict:
    """The plans of a matrix of ``models``, by label (one seed, one device, one fraction)."""
    m = _matrix(tmp_path, models, **matrix)
    plans = [plan_cell(m, cell, limits, isolated=isolated) for cell in select_cells(m)]
    by_label = {p.label: p for p in plans}
    assert len(by_label) == len(plans)
    return by_label


# ---- plan_cell: budget -----------------------------------------------------------------------


def test_max_seconds_caps_the_budget_where_it_is_tighter(tmp_path):
    models = [
        {"name": "toy-uniform", "label": "long", "budget": {"tokens": 1000, "seconds": 60}},
        {"name": "toy-uniform", "label": "short", "budget": {"seconds": 5}},
        {"name": "toy-uniform", "label": "open"},
    ]
    free = _plans(tmp_path, models)
    capped = _plans(tmp_path, models, Limits(max_seconds=10))
    assert free["long"].budget == Budget(tokens=1000, seconds=60)
    assert capped["long"].budget == Budget(tokens=1000, seconds=10)
    assert capped["short"].budget == free["short"].budget == Budget(seconds=5)
    assert free["open"].budget == Budget() and capped["open"].budget == Budget(seconds=10)
    assert capped["long"].section().budget == {"tokens": 1000, "seconds": 10}
    assert capped["open"].section().budget == {"seconds": 10}
    assert free["open"].section().budget == {}
    for label in ("long", "short", "open"):  # the whole share of the data: nothing is scaled
        assert capped[label].fit_budget == capped[label].budget
    # a cap is part of the cell's key where it changes the budget, and only there
    assert capped["long"].key != free["long"].key and capped["open"].key != free["open"].key
    assert capped["short"].key == free["short"].key
    assert _plans(tmp_path, models, Limits(max_seconds=2.5))["long"].budget.seconds == 2.5


@pytest.mark.parametrize(("fraction", "budget", "scaled"), [
    (0.25, {"tokens": 1000, "steps": 3, "seconds": 8.0}, Budget(tokens=250, steps=1, seconds=2.0)),
    (0.3, {"tokens": 17, "steps": 19}, Budget(tokens=5, steps=6)),  # 5.1 and 5.7, rounded
    (0.01, {"tokens": 40, "steps": 2}, Budget(tokens=1, steps=1)),  # 0.4 and 0.02: at least 1
    (0.5, {"seconds": 3}, Budget(seconds=1.5)),
    (1.0, {"tokens": 7, "seconds": 8.0}, Budget(tokens=7, seconds=8.0)),
])
def test_a_share_of_the_data_scales_the_fit_budget(tmp_path, fraction, budget, scaled):
    (plan,) = _plans(tmp_path, [{"name": "toy-uniform", "budget": budget}],
                     fractions=[fraction]).values()
    assert plan.fraction == fraction
    assert plan.fit_budget == scaled
    assert plan.budget == Budget(**budget)  # the cell's budget, as recorded, is not scaled
    assert plan.section().budget == budget and plan.section().fraction == fraction


def test_the_cap_applies_before_the_share_scales_it(tmp_path):
    (plan,) = _plans(tmp_path, [{"name": "toy-uniform", "budget": {"seconds": 60, "tokens": 900}}],
                     Limits(max_seconds=10), fractions=[0.5]).values()
    assert plan.budget == Budget(tokens=900, seconds=10)
    assert plan.fit_budget == Budget(tokens=450, seconds=5.0)
    assert plan.section().budget == {"tokens": 900, "seconds": 10}


# ---- plan_cell: threads, seed, device, limits ------------------------------------------------


def test_threads_auto_and_overrides_run_wide_then_model_then_matrix(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(5)), raising=False)
    assert auto_threads() == 4  # the CPUs this process may use, less one
    models = [{"name": "toy-uniform", "label": "as matrix"},
              {"name": "toy-uniform", "label": "two", "threads": 2},
              {"name": "toy-uniform", "label": "auto", "threads": "auto"}]
    threads = {label: p.threads for label, p in _plans(tmp_path, models, threads=3).items()}
    assert threads == {"as matrix": 3, "two": 2, "auto": 4}
    threads = {label: p.threads for label, p in _plans(tmp_path, models, threads="auto").items()}
    assert threads == {"as matrix": 4, "two": 2, "auto": 4}
    plans = _plans(tmp_path, models, Limits(threads=1), threads=3)
    assert {p.threads for p in plans.values()} == {1}
    assert {p.section().threads for p in plans.values()} == {1}
    assert plans["as matrix"].resources.cpus == 1  # a cell asks Ray for its threads by default
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)
    assert auto_threads() == 8
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert auto_threads() == 1


def test_the_cells_seed_reaches_the_config_of_a_model_that_has_one(tmp_path):
    m = _matrix(tmp_path, ["toy-seeded", "toy-uniform"], seeds=[3, 7])
    plans = [plan_cell(m, cell) for cell in select_cells(m)]
    seeded = sorted((p.seed, p.build_config["seed"]) for p in plans if p.model == "toy-seeded")
    assert seeded == [(3, 3), (7, 7)]
    uniform = [p for p in plans if p.model == "toy-uniform"]
    assert len(uniform) == 2 and all("seed" not in p.build_config for p in uniform)
    assert {p.section().seed for p in uniform} == {3, 7}
    assert len({p.key for p in plans}) == 4  # the seed is part of the key


def test_the_device_resolves_to_what_the_machine_and_model_have(tmp_path, monkeypatch):
    asked = []

    def resolve(requested, supported):
        asked.append((requested, supported))
        return "cpu" if requested == "auto" else requested

    monkeypatch.setattr(plan_module, "resolve_device", resolve)
    (plan,) = _plans(tmp_path, ["toy-uniform"], devices=["auto"]).values()
    assert asked == [("auto", ("cpu",))]  # the model's device kinds, asked once
    assert plan.device == plan.section().device == "cpu" and plan.resources.gpus == 0
    monkeypatch.setattr(plan_module, "resolve_device", lambda requested, supported: "cuda:1")
    (plan,) = _plans(tmp_path, ["toy-uniform"], devices=["auto"]).values()
    assert plan.device == plan.section().device == "cuda:1"
    assert plan.resources.gpus == 1  # a CUDA cell asks Ray for one GPU


def test_time_and_memory_limits_run_wide_then_model_then_matrix(tmp_path):
    models = [{"name": "toy-uniform", "label": "default"},
              {"name": "toy-uniform", "label": "long budget", "budget": {"seconds": 1000}},
              {"name": "toy-uniform", "label": "own", "time_limit": 50, "budget": {"tokens": 9}}]
    limits = {k: p.limits for k, p in _plans(tmp_path, models).items()}
    assert limits["default"].time_limit_s == DEFAULT_TIME_LIMIT == 1800
    assert limits["long budget"].time_limit_s == 2 * 1000 + 600  # twice the budget + 10 min
    assert limits["own"].time_limit_s == 50
    assert {v.memory_limit_mib for v in limits.values()} == {None}
    assert all(v.isolated for v in limits.values())
    limits = {k: p.limits for k, p in _plans(tmp_path, models, time_limit=100,
                                            memory_limit_mib=4096).items()}
    assert {k: v.time_limit_s for k, v in limits.items()} == {
        "default": 100, "long budget": 100, "own": 50}
    assert {v.memory_limit_mib for v in limits.values()} == {4096}
    plans = _plans(tmp_path, models, Limits(time_limit=20, memory_limit_mib=2048),
                   time_limit=100, memory_limit_mib=4096)
    assert {(p.limits.time_limit_s, p.limits.memory_limit_mib) for p in plans.values()} == {
        (20, 2048)}
    plans = _plans(tmp_path, models, Limits(time_limit=20), isolated=False)
    assert {p.limits.to_json() == {"time_limit_s": None, "memory_limit_mib": None,
                                   "isolated": False} for p in plans.values()} == {True}


# ---- a run: each cell planned once, its plan recorded ----------------------------------------


def _count_calls(monkeypatch, log: Path, module, name: str) -> None:
    """Count calls of ``module.name`` in ``log``, one line per call (from any process)."""
    real = getattr(module, name)

    def counted(*args, **kwargs):
        with open(log, "a") as f:
            f.write(name + "\n")
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)


def test_a_run_plans_each_cell_once_and_records_the_plan(tmp_path, monkeypatch):
    log = tmp_path / "calls.log"
    for module, name in ((runner_module, "plan_cell"), (plan_module, "resolve_device"),
                         (plan_module, "auto_threads"), (plan_module, "_time_limit")):
        _count_calls(monkeypatch, log, module, name)
    matrix = _matrix(tmp_path, [
        {"name": "toy-seeded", "budget": {"tokens": 1000}, "fractions": [0.5, 1.0]},
        "toy-uniform",
    ], seeds=[0, 1], devices=["auto"], threads="auto")
    started, ended = [], []
    res = tmp_path / "res"
    summary = run_matrix(matrix, res, on_cell_start=lambda plan, i, n: started.append(plan),
                         on_cell_end=lambda plan, record: ended.append((plan, record)))
    assert summary.done == 6 and not summary.failed
    assert Counter(log.read_text().split()) == {
        "plan_cell": 6, "resolve_device": 6, "auto_threads": 6, "_time_limit": 6}
    assert len(ended) == len(started) == 6
    assert all(plan is start for (plan, _), start in zip(ended, started, strict=True))
    assert len({plan.key for plan in started}) == 6
    for plan, record in ended:
        assert record.ok and record.key == plan.key
        assert record.cell == plan.section()
        assert record.cell.device == "cpu" and record.cell.threads == auto_threads()
        assert record.limits == plan.limits.to_json()
        assert record.limits["time_limit_s"] == DEFAULT_TIME_LIMIT
        assert record.budget_used == dataclasses.asdict(plan.fit_budget)
        path = record_path(res, plan.section(), plan.key)
        assert path.name.endswith(f"__{record.key}.json")
        assert path.name.startswith(f"{plan.label}__synthetic__seed{plan.seed}__cpu__")
        # what was written and read back is the record the run made, as JSON
        assert read_record(path).to_json() == json.loads(json.dumps(record.to_json()))
        if plan.model == "toy-seeded":
            assert record.fit["notes"]["seed"] == plan.seed
            assert record.budget_used["tokens"] == 1000 * plan.fraction
            assert record.cell.budget == {"tokens": 1000}
    assert sorted(p.name for p in res.glob("*.json")) == sorted(
        record_path(res, plan.section(), plan.key).name for plan in started)
    log.unlink()
    again = run_matrix(matrix, res)  # planned again to find its records, and nothing computed
    assert (again.done, again.skipped_existing) == (0, 6)
    assert Counter(log.read_text().split())["plan_cell"] == 6


def test_a_failed_record_outside_the_cell_keeps_the_plan(tmp_path):
    (plan,) = _plans(tmp_path, ["toy-uniform"]).values()
    record = failed_record(plan, "WorkerCrashed", "the node went away")
    assert (record.status, record.key, record.cell) == ("failed", plan.key, plan.section())
    assert record.error == ErrorInfo("WorkerCrashed", "the node went away", None)
    assert record.limits == plan.limits.to_json() and record.metrics is None


# ---- bad numbers are failed records ----------------------------------------------------------


@pytest.mark.parametrize("mode", ["negative", "nan"])
def test_a_model_reporting_a_bad_number_is_a_failed_record_not_a_ranked_one(tmp_path, mode,
                                                                            capsys):
    path = write_matrix(tmp_path / "m.toml", [
        {"name": "toy-bad", "label": "Bad", "config": {"mode": mode}}, "toy-uniform",
    ], datasets=["synthetic"], devices=["cpu"])
    res = tmp_path / "res"
    assert main(["run", str(path), "--results", str(res), "--no-report"]) == 1
    assert "FAILED: Bad on synthetic" in capsys.readouterr().err
    by_model = {r.cell.model: r for r in load_records(res)}
    assert by_model["toy-uniform"].ok
    bad = by_model["toy-bad"]
    assert bad.status == "failed" and not bad.ok and bad.error.type == "RecordError"
    assert "throughput.train_tokens_per_s" in bad.error.message
    assert "\n" not in bad.error.message and "<record>" not in bad.error.message
    assert bad.metrics is None and bad.throughput is None and bad.metric("test", "ppl") is None
    assert bad.cell.label == "Bad" and bad.cell.config == {"mode": mode}


def test_a_negative_score_is_a_failed_record(tmp_path, monkeypatch):
    monkeypatch.setattr(cell_module, "score_accuracy", lambda *args, **kwargs: {
        "accuracy_tokens": 300, "top1": -0.25, "top5": 0.5})
    summary = run_matrix(_matrix(tmp_path, ["toy-uniform"]), tmp_path / "res", isolated=False)
    assert summary.done == 0 and len(summary.failed) == 1
    (record,) = load_records(tmp_path / "res")
    assert record.status == "failed" and record.error.type == "RecordError"
    assert "metrics.test_accuracy.top1 is -0.25" in record.error.message
    assert record.metrics is None


# ---- Record JSON ----------------------------------------------------------------------------


def _current(**changes) -> dict:
    """A record of the current schema, as JSON (the v3 sample, migrated)."""
    return {**parse_record(v3_record()).to_json(), **changes}


def test_a_record_round_trips_through_json():
    record = parse_record(v3_record())
    data = record.to_json()
    assert data["api_version"] == API_VERSION
    assert Record.from_json(data) == record
    assert Record.from_json(json.loads(json.dumps(data))) == record
    assert Record.from_json(data).to_json() == data
    failed = _current(status="failed", metrics=None, error={
        "type": "RuntimeError", "message": "boom", "traceback": "Traceback ...\n"})
    failed["tasks"] = {
        "cloze": {"status": "not applicable", "reason": "no vocabulary", "metrics": [],
                  "seconds": 0.0},
        "other": {"status": "failed", "error": {"type": "KeyError", "message": "x",
                                                "traceback": None}, "metrics": []},
    }
    record = Record.from_json(failed)
    assert record.error == ErrorInfo("RuntimeError", "boom", "Traceback ...\n")
    assert record.tasks["cloze"].reason == "no vocabulary"
    assert record.tasks["other"].error == ErrorInfo("KeyError", "x")
    assert record.to_json() == {k: v for k, v in failed.items() if k != "metrics"}
    assert Record.from_json(record.to_json()) == record


def test_from_json_reads_only_the_current_schema():
    with pytest.raises(RecordError, match="api_version 3 is not 4; read it with lmladder"):
        Record.from_json(v3_record(), "old.json")
    with pytest.raises(RecordError, match="old.json: a JSON list, not a result record"):
        Record.from_json([1], "old.json")


# ---- migration -------------------------------------------------------------------------------


@pytest.mark.parametrize("old", [v1_record, v2_record, v3_record], ids=["v1", "v2", "v3"])
def test_parse_record_migrates_older_schemas(old):
    data = old()
    record = parse_record(data, "old.json")
    assert data == old()  # the JSON read is not changed
    assert record.to_json()["api_version"] == API_VERSION
    assert record.key == "0123456789abcdef" and record.ok
    assert record.family == record.model["family"] == "n-gram"
    assert record.metric("test", "ppl") == data["metrics"]["test"]["ppl"]
    assert record.metrics == data["metrics"] and record.fit == data["fit"]
    assert record.cell.fraction == 1.0
    assert record.cell.threads == data["cell"].get("threads")  # None: v1 did not record it
    assert record.cell.budget == {"tokens": 5000} and record.cell.seed == 0
    if data["api_version"] < 3:
        assert record.tasks == {} and record.cell.tasks == ()
    else:
        assert record.cell.tasks == ("cloze",)
        cloze = record.tasks["cloze"]
        assert cloze.metrics == task_registry.task_class("cloze").metrics
        assert cloze.spec("accuracy").chance == 0.2
        assert cloze.score("accuracy") == 0.71 and cloze.seconds == 0.146
        assert dict(cloze.scores) == {"accuracy": 0.71, "accuracy_ci95": [0.69, 0.74],
                                      "items": 1000, "choices": 5, "seed": 0}


def test_migration_keeps_what_a_record_says_and_gives_no_specs_to_unknown_tasks():
    data = v3_record()
    data["model"]["family"] = "Transformer"
    data["tasks"]["gone-task"] = {"status": "ok", "score": 0.5}
    record = parse_record(data)
    assert record.family == "Transformer"
    assert record.tasks["gone-task"].metrics == ()
    assert record.tasks["gone-task"].score("score") == 0.5
    assert migrate(record.to_json()) == record.to_json()  # the current schema is left alone


@pytest.mark.parametrize("version", [0, 5, 99, "3", None])
def test_unknown_schema_versions_are_refused(version):
    with pytest.raises(RecordError) as err:
        parse_record(v3_record(api_version=version), "x.json")
    message = str(err.value)
    assert message.startswith(f"x.json: result schema version {version!r} ")
    assert "reads versions 1 to 4" in message and "\n" not in message
    assert ("newer than this lmladder reads" in message) == (version in (5, 99))


# ---- refusals --------------------------------------------------------------------------------


def _set(data: dict, path: str, value) -> dict:
    *parents, last = path.split(".")
    at = data
    for key in parents:
        at = at[key]
    at[last] = value
    return data


BAD_MEASUREMENTS = [
    (path, value)
    for path in ("metrics.test.ppl", "metrics.valid.ppl", "metrics.test.nll",
                 "metrics.test_accuracy.top1", "oracle.test.ppl", "timing.fit_s",
                 "throughput.score_tokens_per_s", "memory.rss_peak_mib")
    for value in (math.nan, math.inf, -1.0)
]


@pytest.mark.parametrize(("path", "value"), BAD_MEASUREMENTS)
def test_a_measurement_that_is_not_a_finite_number_at_least_0_is_refused(path, value):
    with pytest.raises(RecordError) as err:
        Record.from_json(_set(_current(), path, value), "x.json")
    message = str(err.value)
    assert message.startswith(f"x.json: {path} is {value!r}") and "\n" not in message


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-0.5"])
def test_a_file_with_a_bad_ppl_is_unreadable_naming_the_file_and_field(tmp_path, literal):
    path = tmp_path / "KN3__synthetic__seed0__cpu__0123456789abcdef.json"
    text = json.dumps(v3_record()).replace('"ppl": 134.28977968493552', f'"ppl": {literal}')
    assert literal in text
    path.write_text(text)
    with pytest.raises(RecordError, match=f"^{re.escape(str(path))}: metrics.test.ppl is "):
        read_record(path)
    assert load_records(tmp_path) == []


@pytest.mark.parametrize(("path", "value", "why"), [
    ("status", "done", "is 'done'; a record's status is one of ok, failed, skipped"),
    ("status", None, "is None"),
    ("tasks.cloze.status", "great", "is 'great'"),
    ("tasks.cloze.accuracy", math.nan, "is nan; a score is a finite number"),
    ("tasks.cloze.metrics", [{"name": "accuracy"}], "is not a metric spec"),
    ("cell.seed", "0", "is '0', not a whole number >= 0"),
    ("cell.seed", -1, "is -1, not a whole number >= 0"),
    ("cell.seed", True, "is True, not a whole number >= 0"),
    ("cell.label", 3, "is missing or not a string"),
    ("cell.device", None, "is missing or not a string"),
    ("cell.dataset", ["synthetic"], "is missing or not a string"),
    ("cell.threads", 0, "is 0, not a whole number >= 1"),
    ("cell.threads", "auto", "is 'auto', not a whole number >= 1"),
    ("cell.fraction", 0, "is 0, not a share in (0, 1]"),
    ("cell.fraction", 1.5, "is 1.5, not a share in (0, 1]"),
    ("cell.fraction", "all", "is 'all', not a share in (0, 1]"),
    ("cell.config", ["order", 3], "is not an object"),
    ("cell.budget", {"tokens": -5}, None),
    ("cell.tasks", "cloze", "is not a list of task names"),
    ("key", "", "is missing or not a string"),
    ("metrics", [1], "is a list, not an object"),
    ("metrics.test", None, "is missing from an ok record"),
    ("model.family", None, "is missing"),
    ("error", {"message": "no type"}, "is not an object with a type and a message"),
])
def test_a_record_with_a_wrong_field_is_refused_naming_it(path, value, why):
    with pytest.raises(RecordError) as err:
        Record.from_json(_set(_current(), path, value), "x.json")
    message = str(err.value)
    named = {"cell.budget": "cell.budget.tokens", "metrics.test": "metrics.test.ppl",
             "tasks.cloze.metrics": "tasks.cloze.metrics[0]"}.get(path, path)
    assert message.startswith(f"x.json: {named} "), message
    assert why is None or why in message, message
    assert "\n" not in message


# ---- the shipped reference records -----------------------------------------------------------


def _added_by_migration(data: dict) -> dict:
    """``data`` less what migrating a version 3 record adds: the schema version, the model's
    family, each task's metric specs and the protocol's worked example."""
    out = json.loads(json.dumps(data))
    out.pop("api_version")
    (out.get("model") or {}).pop("family", None)
    (out.get("protocol") or {}).pop("example", None)
    for result in out.get("tasks", {}).values():
        result.pop("metrics", None)
    return out


def test_the_reference_records_are_shipped():
    assert len(REFERENCE) >= 30
    assert {p.parent.name for p in REFERENCE} >= {"ptb", "wikitext2", "shakespeare"}


@pytest.mark.parametrize("path", REFERENCE, ids=lambda p: f"{p.parent.name}/{p.stem[-16:]}")
def test_every_reference_record_reads_and_round_trips_with_its_numbers(path):
    old = json.loads(path.read_text())
    record = parse_record(old, path)
    assert read_record(path) == record
    new = record.to_json()
    assert new["api_version"] == API_VERSION
    assert _added_by_migration(new) == _added_by_migration(old)  # every number as it was
    assert set(new) == set(old)
    if record.ok:  # records older than schema 4 gain the protocol's worked example
        assert set(new["protocol"]) - set(old["protocol"]) == (
            set() if old["api_version"] == API_VERSION else {"example"})
        klass = registry.import_target(old["model"]["class"])
        assert record.family == klass.family in ("n-gram", "HMM", "RNN", "Transformer")
    else:  # a cell that ran out of time: nothing was measured, nothing is added
        assert new == {**old, "api_version": API_VERSION} and record.family == "other"
    for name, result in record.tasks.items():  # what a record says of a metric, the task says
        now = {m.name: m for m in task_registry.task_class(name).metrics}
        assert all(now[m.name] == m for m in result.metrics if m.name in now), name
        assert new["tasks"][name]["metrics"] == [m.to_json() for m in result.metrics]
    assert Record.from_json(new, path) == record
