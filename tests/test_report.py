"""The report is rendered from records only; sections appear when the records call for them.

Rows are experiments (identity and code revision), never labels; everything a record holds is
escaped by the templates; the page is written atomically.
"""

import copy
import hashlib
import json
import os
import re
import stat
from types import SimpleNamespace

import pytest

from lmladder import registry
from lmladder.record import RecordError
from lmladder.reports.render import ReportError, aggregate, render_html, render_report
from lmladder.reports.sweeps import find_sweeps
from lmladder.results import load_records, parse_record, record_path, scan_records
from lmladder.run import load_matrix, run_matrix
from tests.helpers import write_matrix

SCRIPT = "<script>alert(1)</script>"
ATTR = '"><img src=x onerror=alert(1)>'
PAYLOAD = SCRIPT + ATTR
ESCAPED = ("&lt;script&gt;alert(1)&lt;/script&gt;", "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;")


@pytest.fixture(scope="module")
def record(tmp_path_factory):
    registry.MODELS.setdefault("toy-uniform", registry.Entry("tests.toy_models:UniformLM"))
    path = tmp_path_factory.mktemp("m") / "m.toml"
    write_matrix(path, ["toy-uniform"], datasets=["synthetic"])
    res = tmp_path_factory.mktemp("res")
    run_matrix(load_matrix(str(path)), res)
    (rec,) = load_records(res)
    del registry.MODELS["toy-uniform"]
    return rec.to_json()  # tests vary the JSON, then read it back with parse_record


def recs(*records):
    """The JSON records as the report receives them: read and checked."""
    return [parse_record(r) for r in records]


def variant(rec, *, label, config, ppl, seed=0, model="hmm", version=None, revision=None,
            date=None, matrix=None):
    """A copy of ``rec`` as another cell; its key is derived from everything that was changed."""
    r = copy.deepcopy(rec)
    r["cell"].update(label=label, config=config, seed=seed, model=model)
    if matrix is not None:
        r["cell"]["matrix"] = matrix
    r["metrics"]["test"]["ppl"] = ppl
    if version is not None:
        r["provenance"]["versions"]["lmladder"] = version
    if revision is not None:
        r["model"]["revision"] = revision
    if date is not None:
        r["provenance"]["date"] = date
    r["key"] = hashlib.sha256(repr((r["cell"], version, revision)).encode()).hexdigest()[:16]
    return r


def save(folder, r):
    """Write the JSON record ``r`` as it is (valid or not) where a run would put it."""
    path = record_path(folder, SimpleNamespace(**r["cell"]), r["key"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(r))
    return path


def rows_of(html: str, label: str) -> list[str]:
    """The table rows of ``html`` whose first cell starts with ``label``."""
    return re.findall(rf"<tr[^>]*><td[^>]*>{re.escape(label)}[^<]*</td>.*?</tr>", html, re.S)


def test_sweep_curve_for_one_varying_numeric_key(record):
    records = [variant(record, label=f"HMM K={k}", config={"states": k, "lr": 0.1}, ppl=p)
               for k, p in ((16, 300.0), (64, 200.0), (256, 150.0))]
    records.append(variant(record, label="HMM K=64 b", config={"states": 64, "lr": 0.1},
                           ppl=220.0, seed=1))
    found = find_sweeps(recs(*records))
    assert found == {("hmm", "synthetic", "states"): [(16, 300.0), (64, 210.0), (256, 150.0)]}
    html = render_html(recs(*records))
    assert "Scaling curves" in html


def test_no_sweep_when_two_keys_vary(record):
    records = [variant(record, label=str(k), config={"states": k, "lr": k / 10}, ppl=1.0 + k)
               for k in (1, 2, 3)]
    assert find_sweeps(recs(*records)) == {}
    assert "Scaling curves" not in render_html(recs(*records))


def test_no_sweep_across_code_revisions(record):
    records = [variant(record, label=f"K={k}", config={"states": k}, ppl=float(k),
                       version="0.1.0" if k == 16 else None) for k in (16, 64, 256)]
    assert find_sweeps(recs(*records)) == {}


def test_model_inspection_tables_are_rendered_escaped(record):
    r = copy.deepcopy(record)
    r["inspect"] = [{"title": "top words per state", "columns": ["state", "words"],
                     "rows": [[0, "<eos>"], [1, "the of a"]]}]
    html = render_html(recs(r))
    assert "top words per state" in html and "&lt;eos&gt;" in html and "<eos>" not in html


def test_best_marking_and_order(record):
    a = variant(record, label="A", config={}, ppl=10.0)
    b = variant(record, label="B", config={}, ppl=20.0, model="kn3")
    assert [row.label for row in aggregate(recs(b, a))] == ["A", "B"]
    html = render_html(recs(a, b))
    assert '<td class="best" data-value="10.0">10.00</td>' in html
    assert html.index(">A</td>") < html.index(">B</td>")  # sorted by test ppl


def test_empty_results_are_an_error():
    with pytest.raises(ValueError):
        render_html([])


# ---- aggregation: one row per experiment -----------------------------------------------------


def test_two_models_with_one_label_are_two_rows(record):
    kn = variant(record, label="X", config={"order": 3}, ppl=43.81, model="kn3")
    wb = variant(record, label="X", config={"order": 3}, ppl=47.80, model="wb3")
    rows = aggregate(recs(kn, wb))
    assert [row.label for row in rows] == ["X [model=kn3]", "X [model=wb3]"]
    html = render_html(recs(kn, wb))
    assert "45.80" not in html  # the invented mean of two experiments
    assert len(rows_of(html, "X [model=kn3]")) == 1 and "43.81" in rows_of(html, "X [model")[0]
    assert "47.80" in rows_of(html, "X [model=wb3]")[0]


def test_one_label_two_configs_named_by_the_differing_key(record):
    a = variant(record, label="X", config={"order": 3, "k": 1}, ppl=40.0, model="kn")
    b = variant(record, label="X", config={"order": 5, "k": 1}, ppl=30.0, model="kn")
    assert sorted(row.label for row in aggregate(recs(a, b))) == ["X [order=3]", "X [order=5]"]


def test_seeds_are_averaged_with_count_and_spread(record):
    records = [variant(record, label="S", config={}, ppl=p, seed=s)
               for s, p in enumerate((10.0, 11.0, 12.0))]
    (row,) = aggregate(recs(*records))
    assert len(row.records) == 3 and row.text("test ppl") == "11.00 ± 1.00"
    html = render_html(recs(*records))
    (line,) = rows_of(html, "S")
    assert "<td>3</td>" in line and "11.00 ± 1.00" in line
    assert "sample standard deviation" in html


def test_older_code_revision_is_shown_apart_never_mixed(record):
    old = [variant(record, label="S", config={}, ppl=100.0, seed=s, version="0.1.0",
                   date="2026-01-01T00:00:00+00:00") for s in (0, 1)]
    new = variant(record, label="S", config={}, ppl=10.0, seed=0,
                  date="2026-11-01T00:00:00+00:00")
    rows = aggregate(recs(*old, new))
    assert [(row.current, len(row.records)) for row in rows] == [(True, 1), (False, 2)]
    html = render_html(recs(*old, new))
    assert "55.00" not in html and "40.00" not in html  # no mean across revisions
    fresh, stale = rows_of(html, "S")  # the current table comes first
    assert ">S</td>" in fresh and "10.00" in fresh
    assert "S (older code: lmladder 0.1.0, model revision 1)" in stale
    assert 'class="older"' in stale and "100.00 ± 0.00" in stale and "best" not in stale


def test_renamed_matrix_does_not_list_cells_twice(record, tmp_path):
    for matrix, date in (("quick", "2026-11-01T00:00:00+00:00"),
                         ("quick-renamed", "2026-11-02T00:00:00+00:00")):
        r = variant(record, label="kn3", config={}, ppl=43.0, matrix=matrix, date=date)
        r["sample"] = "a sample text"
        save(tmp_path, r)
    failed = variant(record, label="bad", config={}, ppl=1.0, matrix="quick")
    failed.update(status="failed", error={"type": "Killed", "message": "killed by signal 9"})
    save(tmp_path, failed)
    save(tmp_path, {**failed, "key": "f" * 16, "cell": {**failed["cell"], "matrix": "other"}})
    assert len(scan_records(tmp_path).records) == 4  # two keys each, one experiment each
    html = render_report(tmp_path, tmp_path / "report.html").read_text()
    (line,) = rows_of(html, "kn3")
    assert "<td>1</td>" in line  # one seed
    assert "— 2 cells</p>" in html and "1 ok, 1 failed" in html
    assert html.count("a sample text") == 1
    assert "(1 cell)" in html and "bad on synthetic (cpu): seed 0" in html


def test_failed_cells_one_entry_per_cause(record):
    def failed(label, seed, kind, message):
        r = variant(record, label=label, config={}, ppl=1.0, seed=seed, model=label)
        r.update(status="failed", error={"type": kind, "message": message})
        return r

    records = [failed("A", 0, "TimeLimit", "exceeded the cell time limit of 60 s"),
               failed("A", 1, "TimeLimit", "exceeded the cell time limit of 60 s"),
               failed("B", 0, "TimeLimit", "exceeded the cell time limit of 60 s"),
               failed("B", 1, "Killed", "killed by signal 9 -- likely out of memory")]
    html = render_html(recs(*records))
    section = html[html.index('id="failed-and-skipped-cells"'):]
    assert section.count("<li>") == 2
    assert section.count("exceeded the cell time limit") == 1
    assert "(3 cells)" in section and "A on synthetic (cpu): seeds 0, 1" in section


def test_records_with_only_required_fields_render(record, tmp_path):
    cell = {"matrix": "q", "model": "m", "label": "L", "dataset": "d", "device": "cpu", "seed": 0}
    minimal = {"api_version": 2, "key": "0" * 16, "status": "ok", "cell": cell,
               "model": {"family": "n-gram"},
               "metrics": {"valid": {"ppl": 12.0}, "test": {"ppl": 11.0}}}
    failed = {"api_version": 2, "key": "1" * 16, "status": "failed", "cell": {**cell, "seed": 1}}
    save(tmp_path, minimal)
    save(tmp_path, failed)
    html = render_report(tmp_path, tmp_path / "r.html").read_text()
    assert "Results by dataset" in html and ">L</td>" in html and "no error type" in html
    assert "11.00" in rows_of(html, "L")[0]
    render_html(recs(minimal, failed))


# ---- records a report cannot trust are refused when read, never ranked -------------------------


def untrustworthy(record):
    """(field named in the refusal, a record that is wrong in that field only)."""
    cases = []

    def case(field, change):
        r = variant(record, label="W", config={}, ppl=2.0, seed=7)
        change(r)
        cases.append((field, r))

    case("metrics.test.ppl", lambda r: r["metrics"]["test"].update(ppl=float("nan")))
    case("metrics.test.ppl", lambda r: r["metrics"]["test"].update(ppl=-3.0))
    case("metrics.test.ppl", lambda r: r["metrics"]["test"].update(ppl=float("inf")))
    case("metrics.test.ppl", lambda r: r["metrics"]["test"].update(ppl="high"))
    case("metrics.test.bpc", lambda r: r["metrics"]["test"].update(bpc=True))
    case("metrics.valid", lambda r: r["metrics"].update(valid="x"))
    case("throughput.train_tokens_per_s",
         lambda r: r["throughput"].update(train_tokens_per_s=-1.0))
    case("provenance", lambda r: r.update(provenance="yesterday"))
    case("model", lambda r: r.update(model=7))
    case("dataset", lambda r: r.update(dataset=[1]))
    case("protocol", lambda r: r.update(protocol="p"))
    case("oracle", lambda r: r.update(oracle=3))
    case("sample", lambda r: r.update(sample=5))
    case("cell.budget", lambda r: r["cell"].update(budget="none"))
    case("cell.scoring", lambda r: r["cell"].update(scoring=[1]))
    case("cell.threads", lambda r: r["cell"].update(threads="two"))
    case("cell.config", lambda r: r["cell"].update(config=["not", "a", "dict"]))
    case("cell.seed", lambda r: r["cell"].update(seed="0"))
    case("status", lambda r: r.update(status="done"))
    return cases


def test_records_a_report_cannot_trust_are_refused_naming_the_field(record):
    for field, bad in untrustworthy(record):
        with pytest.raises(RecordError) as err:
            parse_record(bad, "x.json")
        message = str(err.value)
        assert "\n" not in message and message.startswith(f"x.json: {field} "), (field, message)


def test_a_folder_with_untrustworthy_files_lists_them_and_ranks_only_the_good(record, tmp_path):
    good = variant(record, label="Good", config={}, ppl=3.0)
    save(tmp_path, good)
    bad_files = []
    for i, (field, bad) in enumerate(untrustworthy(record)):
        bad["key"] = f"{i:016x}"
        bad["cell"]["label"] = f"Bad{i}" if isinstance(bad.get("cell"), dict) else "x"
        bad_files.append((field, save(tmp_path, bad)))
    html = render_report(tmp_path, tmp_path / "r.html").read_text()
    section = html[html.index("Files that could not be read"):]
    for field, path in bad_files:
        assert path.name in section and f"{field} " in section, field
    board = html[html.index('id="results-by-dataset"'):]
    assert "Good" in board and "Bad" not in board and "nan" not in board.lower().split("<svg")[0]
    assert "— 1 cells</p>" in html


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning", "ignore:Tight layout:UserWarning")
def test_huge_but_valid_numbers_do_not_crash(record):
    r = variant(record, label="W", config={}, ppl=2.0)
    r["fit"] = {"train_tokens": 10**400}  # free-form: a number no float can hold is no number
    r["inspect"] = [5, {"title": None, "columns": "c", "rows": 3}]
    r["throughput"] = {"train_tokens_per_s": 1e308}
    other = variant(record, label="W", config={}, ppl=2.0, seed=1)
    other["throughput"] = {"train_tokens_per_s": 1e308}
    twin = variant(record, label="W", config={"k": 1}, ppl=1e308, seed=2)
    twin["throughput"] = {"train_tokens_per_s": 1e308}
    html = render_html(recs(r, other, twin))
    assert "W [" in html


# ---- escaping ---------------------------------------------------------------------------------


def crafted(record, seed=0):
    """A record with the payload in every text a report might print."""
    r = variant(record, label="L" + PAYLOAD, config={PAYLOAD: PAYLOAD}, ppl=5.0, seed=seed,
                model="m" + PAYLOAD)
    r["cell"].update(dataset="d" + PAYLOAD, device="cpu" + PAYLOAD, matrix="x" + PAYLOAD)
    r["sample"] = PAYLOAD
    r["inspect"] = [{"title": PAYLOAD, "columns": [PAYLOAD], "rows": [[PAYLOAD]]}]
    r["dataset"]["level"] = PAYLOAD
    r["protocol"][PAYLOAD] = PAYLOAD
    r["provenance"].update(git_commit=PAYLOAD, platform=PAYLOAD, python=PAYLOAD, date=PAYLOAD)
    r["provenance"]["versions"][PAYLOAD] = PAYLOAD
    r["provenance"]["versions"]["lmladder"] = PAYLOAD
    r["model"]["revision"] = PAYLOAD
    return r


def assert_escaped(html: str):
    assert SCRIPT not in html and ATTR not in html and "<img src=x" not in html
    for escaped in ESCAPED:
        assert escaped in html


def test_everything_from_a_record_is_escaped(record):
    ok = crafted(record)
    ok["cell"]["config"]["k"] = "x"
    twin = crafted(record)  # same label, another config: the config shows in the row label
    twin["cell"]["config"]["k"] = "<i>c</i>"
    failed = crafted(record, seed=1)
    failed.update(status="failed", error={"type": PAYLOAD, "message": PAYLOAD})
    html = render_html(recs(ok, twin, failed), title=PAYLOAD, unreadable=[PAYLOAD])
    assert_escaped(html)
    assert "[k=&lt;i&gt;c&lt;/i&gt;]" in html and "<i>" not in html
    for part in ("Files that could not be read", "Summary", "Failed and skipped cells"):
        assert part in html


def test_a_scanned_crafted_folder_is_escaped(record, tmp_path):
    r = crafted(record)
    save(tmp_path, r)
    failed = crafted(record, seed=1)
    failed.update(status="failed", key="e" * 16, error={"type": PAYLOAD, "message": PAYLOAD})
    save(tmp_path, failed)
    (tmp_path / f"x{ATTR.replace('/', '')}__d__seed0__cpu__{'a' * 16}.json").write_text("{")
    html = render_report(tmp_path, tmp_path / "r.html").read_text()
    assert_escaped(html)


def test_no_markup_is_marked_safe_in_templates():
    from pathlib import Path

    import lmladder.reports

    folder = Path(lmladder.reports.__file__).parent / "templates"
    for template in folder.glob("*.j2"):
        assert "safe" not in template.read_text(), template.name


# ---- plots -------------------------------------------------------------------------------------


@pytest.mark.parametrize("label", [r"$\frac{$", "a$b", "$x^$", "$", "$$", r"\$5", "$\\alpha$"])
def test_labels_with_dollars_do_not_crash_the_plots(record, label):
    records = [variant(record, label=label, config={label: k}, ppl=10.0 * k, model=label)
               for k in (1, 2, 3)]
    for r in records:
        r["cell"]["dataset"] = label
    html = render_html(recs(*records))
    assert "Scaling curves" in html and "<svg" in html


def test_report_is_written_atomically_and_readable(record, tmp_path):
    results = tmp_path / "results"
    save(results, variant(record, label="A", config={}, ppl=1.5))
    out = tmp_path / "site" / "report.html"
    old = os.umask(0o022)
    try:
        render_report(results, out)
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    assert sorted(p.name for p in out.parent.iterdir()) == [
        "report.html", "results.csv", "results.json", "results.md", "results.tex"]
    for p in out.parent.iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o644


def test_a_failed_write_keeps_the_old_report_and_no_temp_file(record, tmp_path, monkeypatch):
    save(tmp_path / "results", variant(record, label="A", config={}, ppl=1.5))
    out = tmp_path / "report.html"
    out.write_text("previous")

    def broken(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError):
        render_report(tmp_path / "results", out)
    assert out.read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html", "results"]


def test_output_that_is_a_folder_is_a_clear_error(record, tmp_path):
    save(tmp_path, variant(record, label="A", config={}, ppl=1.5))
    with pytest.raises(ReportError) as err:
        render_report(tmp_path, tmp_path)
    message = str(err.value)
    assert "\n" not in message and str(tmp_path) in message and "file name" in message


def test_unreadable_files_are_listed(record, tmp_path):
    save(tmp_path, variant(record, label="A", config={}, ppl=1.5))
    broken = tmp_path / f"B__synthetic__seed0__cpu__{'0' * 16}.json"
    broken.write_text('{"api_version": 2, "key": ')
    (tmp_path / "notes.json").write_text("not a record, never read")
    html = render_report(tmp_path, tmp_path / "report.html").read_text()
    section = html[html.index("Files that could not be read"):]
    assert broken.name in section and "not valid JSON" in section and "notes.json" not in html


def test_a_folder_of_only_unreadable_files_is_a_clear_error(tmp_path):
    (tmp_path / f"B__synthetic__seed0__cpu__{'0' * 16}.json").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="no readable result records; 1 could not"):
        render_report(tmp_path, tmp_path / "report.html")
    assert not (tmp_path / "report.html").exists()
