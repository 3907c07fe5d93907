"""``lmladder report --compare``: two result folders side by side, changes flagged beyond noise.

The records are copies of one real record (a uniform toy model on the synthetic dataset) with
hand-set numbers, written into two temporary folders; each test states the numbers it changes.
"""

import copy
import hashlib
import re
import shutil

import pytest

from lmladder import registry
from lmladder.reports.compare import (
    BETTER,
    SAME,
    WORSE,
    comparison_tables,
    judge,
    read_folder,
    render_compare,
)
from lmladder.reports.render import ReportError
from lmladder.results import load_records, parse_record, record_path, write_record
from lmladder.run import load_matrix, run_matrix
from tests.conftest import require_extra, unavailable
from tests.helpers import write_matrix

SCRIPT = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def record(tmp_path_factory):
    """One real record of the toy uniform model on the synthetic dataset, seed 0."""
    registry.MODELS.setdefault("toy-uniform", registry.Entry("tests.toy_models:UniformLM"))
    try:
        path = tmp_path_factory.mktemp("m") / "m.toml"
        write_matrix(path, ["toy-uniform"], datasets=["synthetic"])
        res = tmp_path_factory.mktemp("res")
        run_matrix(load_matrix(str(path)), res)
        (rec,) = load_records(res)
    finally:
        registry.MODELS.pop("toy-uniform", None)
    assert rec.ok
    return rec.to_json()  # tests vary the JSON; folder() writes it back as a checked Record


def cell(rec, *, label="toy", seed=0, config=None, ppl=100.0, train_tps=1000.0, tasks=None,
         status="ok"):
    """A copy of ``rec`` as the cell ``label`` (config ``config``) and ``seed`` with the given
    test perplexity (nats-based, as recorded) and training throughput (tokens/s)."""
    r = copy.deepcopy(rec)
    r["cell"].update(label=label, seed=seed, config=config or {"tag": label})
    r["metrics"]["test"]["ppl"] = ppl
    r["throughput"]["train_tokens_per_s"] = train_tps
    if tasks is not None:
        r["tasks"] = tasks
    if status != "ok":
        r.update(status=status, error={"type": "RuntimeError", "message": "it broke"})
        for section in ("metrics", "throughput", "timing", "memory"):
            r.pop(section, None)
    r["key"] = hashlib.sha256(repr((r["cell"], ppl, train_tps, status)).encode()).hexdigest()[:16]
    return r


def folder(path, records):
    path.mkdir(parents=True, exist_ok=True)
    for r in records:
        checked = parse_record(r)
        write_record(record_path(path, checked.cell, checked.key), checked)
    return path


def verdicts(a, b, thresholds=None) -> dict[tuple[str, str], str]:
    """``{(row label, metric key): verdict}`` of comparing the folders ``a`` and ``b``."""
    out = {}
    for table in comparison_tables(read_folder(a), read_folder(b), thresholds):
        for row in table["rows"]:
            for metric, c in zip(table["metrics"], row["cells"], strict=True):
                out[(row["label"], metric.key)] = c["verdict"]
    return out


def test_identical_folders_are_the_same_everywhere(record, tmp_path):
    records = [cell(record, label=name, seed=s) for name in ("x", "y") for s in (0, 1)]
    a, b = folder(tmp_path / "a", records), folder(tmp_path / "b", records)
    found = verdicts(a, b)
    assert {label for label, _ in found} == {"x", "y"}
    assert ("x", "test_ppl") in found and ("x", "train_tps") in found
    assert set(found.values()) == {SAME}
    html = render_compare(a, b, tmp_path / "c.html").read_text()
    assert not re.search(r'class="text (better|worse|changed)"', html)


def test_a_20_percent_speed_change_is_flagged_but_not_5_percent(record, tmp_path):
    a = folder(tmp_path / "a", [cell(record, label="slow", train_tps=1000.0),
                                cell(record, label="near", train_tps=1000.0)])
    b = folder(tmp_path / "b", [cell(record, label="slow", train_tps=800.0),
                                cell(record, label="near", train_tps=950.0)])
    found = verdicts(a, b)
    assert found[("slow", "train_tps")] == WORSE
    assert found[("near", "train_tps")] == SAME
    assert verdicts(a, b, {"speed": 0.01})[("near", "train_tps")] == WORSE  # caller's threshold


def test_a_1_percent_perplexity_change_of_one_seed_is_flagged(record, tmp_path):
    a = folder(tmp_path / "a", [cell(record, ppl=100.0)])
    b = folder(tmp_path / "b", [cell(record, ppl=101.0)])
    assert verdicts(a, b)[("toy", "test_ppl")] == WORSE
    assert verdicts(b, a)[("toy", "test_ppl")] == BETTER


def test_seed_spread_decides_for_several_seeds(record, tmp_path):
    """A 5% perplexity change is noise against a seed spread of 10 but not of 0.1."""
    def side(name, centre, spread):
        return folder(tmp_path / name, [cell(record, seed=s, ppl=centre + d * spread)
                                        for s, d in enumerate((-1, 0, 1))])

    noisy = verdicts(side("a", 100.0, 10.0), side("b", 105.0, 10.0))
    tight = verdicts(side("c", 100.0, 0.1), side("d", 105.0, 0.1))
    assert noisy[("toy", "test_ppl")] == SAME
    assert tight[("toy", "test_ppl")] == WORSE


def test_judge_states_its_rule():
    v = judge([100.0, 110.0, 90.0], [105.0, 115.0, 95.0], kind="quality", higher_is_better=False)
    assert v.word == SAME and v.ratio == pytest.approx(1.05) and "SE" in v.reason
    assert judge([1.0], [1.2], kind="speed", higher_is_better=True).word == BETTER
    assert judge([1.0], [1.2], kind="speed", higher_is_better=None).word == "changed"
    assert judge([], [1.0], kind="speed", higher_is_better=True).word == "not compared"


def cloze(acc, specs=({"name": "accuracy", "higher_is_better": True, "chance": 0.2},)):
    return {"cloze": {"status": "ok", "accuracy": acc, "items": 1000, "seed": 0,
                      "metrics": list(specs)}}


def test_task_scores_use_the_direction_their_records_carry(record, tmp_path):
    a = folder(tmp_path / "a", [cell(record, tasks=cloze(0.40))])
    b = folder(tmp_path / "b", [cell(record, tasks=cloze(0.50))])
    found = verdicts(a, b)
    assert found[("toy", "task:cloze:accuracy")] == BETTER  # cloze: higher is better
    assert not any(key.startswith("task:cloze:items") for _, key in found)
    lower = ({"name": "accuracy", "higher_is_better": False, "chance": None},)
    a = folder(tmp_path / "c", [cell(record, tasks=cloze(0.40, lower))])
    b = folder(tmp_path / "d", [cell(record, tasks=cloze(0.50, lower))])
    assert verdicts(a, b)[("toy", "task:cloze:accuracy")] == WORSE  # the record decides


def test_task_scores_without_specs_are_changed_not_judged(record, tmp_path):
    a = folder(tmp_path / "a", [cell(record, tasks=cloze(0.40, ()))])
    b = folder(tmp_path / "b", [cell(record, tasks=cloze(0.50, ()))])
    found = verdicts(a, b)
    assert found[("toy", "task:cloze:accuracy")] == "changed"  # direction unknown
    assert not any(key.startswith(("task:cloze:items", "task:cloze:seed")) for _, key in found)


def test_experiments_in_one_folder_only_are_listed_apart(record, tmp_path):
    a = folder(tmp_path / "a", [cell(record, label="shared")])
    b = folder(tmp_path / "b", [cell(record, label="shared"), cell(record, label="newcomer")])
    assert {label for label, _ in verdicts(a, b)} == {"shared"}
    html = render_compare(a, b, tmp_path / "c.html").read_text()
    only_b = html[html.index("Only in B"):]
    assert ">newcomer</td>" in only_b and ">shared</td>" not in only_b
    assert "Only in A" not in html


def test_a_changed_config_is_named_for_a_label_on_both_sides(record, tmp_path):
    a = folder(tmp_path / "a", [cell(record, label="lstm", config={"hidden": 64})])
    b = folder(tmp_path / "b", [cell(record, label="lstm", config={"hidden": 128})])
    html = render_compare(a, b, tmp_path / "c.html").read_text()
    assert "No experiment is in both folders" in html
    assert "the other folder has this label with another config" in html


def test_failed_cells_show_their_status_and_are_not_compared(record, tmp_path):
    a = folder(tmp_path / "a", [cell(record, label="ok"), cell(record, label="broken")])
    b = folder(tmp_path / "b", [cell(record, label="ok"),
                                cell(record, label="broken", status="failed")])
    found = verdicts(a, b)
    assert found[("broken", "test_ppl")] == "not compared"
    assert found[("ok", "test_ppl")] == SAME
    html = render_compare(a, b, tmp_path / "c.html").read_text()
    assert re.search(r'<td class="status"[^>]*>failed</td>', html)


def test_missing_or_empty_folder_is_a_report_error_naming_it(record, tmp_path):
    a = folder(tmp_path / "a", [cell(record)])
    missing = tmp_path / "nowhere"
    with pytest.raises(ReportError, match=re.escape(str(missing))):
        render_compare(a, missing, tmp_path / "c.html")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReportError, match="empty.*no readable result records"):
        render_compare(tmp_path / "empty", a, tmp_path / "c.html")
    with pytest.raises(ReportError, match="is a folder"):
        render_compare(a, a, tmp_path)
    with pytest.raises(ReportError, match="unknown comparison threshold 'sped'"):
        render_compare(a, a, tmp_path / "c.html", thresholds={"sped": 0.2})
    assert not (tmp_path / "c.html").exists()


def test_page_is_self_contained_and_escapes_records(record, tmp_path):
    a = folder(tmp_path / "a", [cell(record, label=SCRIPT, ppl=100.0)])
    b = folder(tmp_path / "b", [cell(record, label=SCRIPT, ppl=120.0),
                                cell(record, label=SCRIPT + "b")])
    out = render_compare(a, b, tmp_path / "sub" / "c.html")
    assert out == tmp_path / "sub" / "c.html"
    html = out.read_text()
    assert "http" not in html and "<link" not in html and " src=" not in html
    assert SCRIPT not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert html.count("<script>") == 1  # the page's own sorting script only
    assert '<div class="scroll">' in html and 'class="sortable"' in html
    assert ".scroll { overflow-x: auto" in html
    assert [p.name for p in out.parent.iterdir()] == ["c.html"]  # no temporary file left


def test_page_sorts_in_a_headless_browser_without_errors_or_network(record, tmp_path):
    sync_api = require_extra("playwright.sync_api", "test")
    browser_path = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser_path is None:
        unavailable("no chromium on PATH (Debian: apt-get install chromium)")
    a = folder(tmp_path / "a", [cell(record, label=n, ppl=p) for n, p in (("m", 30.0),
                                                                          ("n", 10.0))])
    b = folder(tmp_path / "b", [cell(record, label=n, ppl=p) for n, p in (("m", 20.0),
                                                                          ("n", 40.0))])
    out = render_compare(a, b, tmp_path / "c.html")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
        page = browser.new_page()
        errors, requests = [], []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: requests.append(r.url))
        page.goto(out.as_uri())
        table = page.locator("table.sortable").first
        header = table.locator("thead tr:last-child th").nth(6)  # the B column of test ppl

        def labels():
            return table.locator("tbody tr td:first-child").all_text_contents()

        assert labels() == ["m", "n"]
        header.click()
        assert labels() == ["m", "n"] and header.get_attribute("aria-sort") == "ascending"
        header.click()
        assert labels() == ["n", "m"] and header.get_attribute("aria-sort") == "descending"
        browser.close()
    assert errors == [] and requests == [out.as_uri()]
