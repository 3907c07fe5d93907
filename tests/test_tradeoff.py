"""Efficiency rows of the report (issue 11): compressed variants of one trained model (int8
quantization, weight sparsity, n-gram pruning) beside the uncompressed model, with their ratios,
the trade-off plots and the summary lines.

Records are copies of shipped reference records (reports/reference/ptb) with the fields the
other parts of issue 11 add (``model.disk_bytes``, config ``quantize``/``sparsity``/``prune``)
written in by hand; every expected figure below is computed by hand from those numbers.
"""

import copy
import hashlib
import json
import re
from pathlib import Path

import pytest

from lmladder.reports import plots, render, sections
from lmladder.reports.render import base_identity, compression, render_html
from lmladder.results import parse_record
from tests.test_report import ESCAPED, PAYLOAD, assert_escaped
from tests.test_report_page import rows_of, section

REFERENCE = Path(render.__file__).parent / "reference" / "ptb"
MIB = 2**20


def shipped(name: str) -> dict:
    return json.loads((REFERENCE / name).read_text())


LSTM = shipped("LSTM-small-2x200--Zaremba-__ptb__seed0__cpu__1d016ba78bf8e71a.json")
KN5 = shipped("KN5__ptb__seed0__cpu__15358a3894cd2afc.json")


def variant(source: dict, label: str, **changes):
    """:func:`variant_json` read back as the report receives it (a checked Record)."""
    return parse_record(variant_json(source, label, **changes))


def variant_json(source: dict, label: str, *, ppl: float, disk_mib: float | None = None,
                 speed: float | None = None, rss: float | None = None, seed: int = 0,
                 ngrams: list[int] | None = None, **config) -> dict:
    """``source`` as an own cell of the whole training split, with these numbers and ``config``
    added to its cell's config; its key is derived from the cell."""
    r = copy.deepcopy(source)
    r["cell"].update(label=label, seed=seed, fraction=1.0, matrix="efficiency")
    r["cell"]["config"].update(config)
    r["metrics"]["test"]["ppl"] = ppl
    r["model"].pop("disk_bytes", None)  # only the size given here (reruns record their own)
    if disk_mib is not None:
        r["model"]["disk_bytes"] = int(disk_mib * MIB)
    if speed is not None:
        r["throughput"]["score_tokens_per_s"] = speed
    if rss is not None:
        r["memory"]["rss_peak_mib"] = rss
    if ngrams is not None:
        r["inspect"][0]["rows"] = [[order + 1, n, 0.5, 1.0, 1.5] for order, n in enumerate(ngrams)]
    r["key"] = hashlib.sha256(json.dumps(r["cell"], sort_keys=True).encode()).hexdigest()[:16]
    return r


def ladder() -> list[dict]:
    """LSTM small fp32 and int8 (two seeds each) and 50% sparse (seed 0), KN5 unpruned and
    pruned at 1e-7."""
    return [
        variant(LSTM, "LSTM small", ppl=100.0, disk_mib=20.0, speed=10_000.0, rss=800.0),
        variant(LSTM, "LSTM small", ppl=110.0, disk_mib=20.0, speed=12_000.0, rss=800.0, seed=1),
        variant(LSTM, "LSTM small int8", ppl=101.0, disk_mib=5.0, speed=14_000.0, rss=600.0,
                quantize="int8"),
        variant(LSTM, "LSTM small int8", ppl=112.2, disk_mib=5.0, speed=16_800.0, rss=600.0,
                seed=1, quantize="int8"),
        variant(LSTM, "LSTM small sparse", ppl=103.0, disk_mib=20.0, speed=10_000.0, rss=800.0,
                sparsity=0.5),
        variant(KN5, "KN5", ppl=141.2, disk_mib=40.0, speed=400_000.0, rss=1500.0,
                ngrams=[10_000, 50_000, 80_000, 90_000, 90_000]),
        variant(KN5, "KN5 pruned", ppl=145.0, disk_mib=12.0, speed=500_000.0, rss=1200.0,
                ngrams=[10_000, 20_000, 15_000, 10_000, 5_000], prune=1e-7),
    ]


def table(html: str) -> dict[str, dict[str, str]]:
    """The efficiency table's rows: variant -> column -> the cell's text."""
    part = section(html, "efficiency")
    heads = [h.split("<br>")[0] for h in re.findall(r"<th[^>]*>(.*?)</th>", part, re.S)]
    out = {}
    for row in re.findall(r"<tr class=\"own\">(.*?)</tr>", part, re.S):
        cells = [re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
        out[cells[0]] = dict(zip(heads, cells, strict=True))
    return out


@pytest.fixture(scope="module")
def page():
    """The ladder's page, and the figures drawn for it (matplotlib figures, by title)."""
    figures = {}
    original = plots._svg

    def keep(fig, title):
        figures[title] = fig
        return original(fig, title)

    plots._svg = keep
    try:
        html = render_html(ladder(), anchors=[])
    finally:
        plots._svg = original
    return html, figures


# ---- matching variants -------------------------------------------------------------------------


def test_compression_is_the_config_keys_that_are_on():
    assert compression(variant(LSTM, "a", ppl=1.0)) == {}
    assert compression(variant(LSTM, "a", ppl=1.0, quantize="none", sparsity=0, prune=0.0)) == {}
    assert compression(variant(LSTM, "a", ppl=1.0, quantize=None)) == {}
    assert compression(variant(LSTM, "a", ppl=1.0, quantize="int8", sparsity=0.25)) == {
        "quantize": "int8", "sparsity": 0.25}
    assert compression(variant(KN5, "a", ppl=1.0, prune=1e-8)) == {"prune": 1e-8}


def test_variants_share_the_cell_minus_the_compression_keys():
    plain = variant_json(LSTM, "LSTM", ppl=100.0)
    for config in ({"quantize": "int8"}, {"sparsity": 0.5}, {"quantize": "int8", "sparsity": 0.9},
                   {"quantize": "none"}):
        assert (base_identity(variant(LSTM, "any label", ppl=90.0, **config))
                == base_identity(parse_record(plain)))
    # the seed pairs variants within a base; the label and matrix never matter
    assert (base_identity(variant(LSTM, "LSTM", ppl=100.0, seed=3))
            == base_identity(parse_record(plain)))
    # anything else that defines the trained model makes another base
    others = [variant(LSTM, "LSTM", ppl=100.0, hidden=650),
              variant(KN5, "LSTM", ppl=100.0)]
    for key, value in (("dataset", "wikitext2"), ("device", "cuda"), ("threads", 2),
                       ("budget", {"seconds": 60}), ("model", "gru-small"), ("fraction", 0.5)):
        other = copy.deepcopy(plain)
        other["cell"][key] = value
        others.append(parse_record(other))
    assert (len({base_identity(r) for r in others} | {base_identity(parse_record(plain))})
            == len(others) + 1)


# ---- the table -----------------------------------------------------------------------------------


def test_the_table_gives_hand_computed_ratios(page):
    html, _ = page
    rows = table(html)
    # models by perplexity; the uncompressed one first, then the largest on disk
    assert list(rows) == ["LSTM small · uncompressed", "LSTM small · 50% sparse",
                          "LSTM small · int8", "KN5 · uncompressed", "KN5 · pruned 1e-7"]
    int8 = rows["LSTM small · int8"]
    # ppl ratios per seed: 101/100 = 1.01 and 112.2/110 = 1.02, mean 1.015
    assert int8["Δ ppl"] == "+1.50%" and int8["seeds"] == "2"
    assert int8["test ppl"] == "106.60 ± 7.92"  # mean and sample std of 101 and 112.2
    assert int8["size on disk"] == "5.00" and int8["× size"] == "0.25×"  # 5 / 20 MiB
    # 14000/10000 = 1.4 and 16800/12000 = 1.4
    assert int8["score tok/s"] == "15,400 ± 1,980" and int8["× speed"] == "1.40×"
    assert int8["× memory"] == "0.75×" and int8["n-grams"] == ""  # 600 / 800 MiB
    # seed 0 only: 103 / 100
    sparse = rows["LSTM small · 50% sparse"]
    assert (sparse["Δ ppl"], sparse["× size"], sparse["× speed"]) == ("+3.00%", "1.00×", "1.00×")
    base = rows["LSTM small · uncompressed"]
    assert (base["Δ ppl"], base["× size"], base["size on disk"]) == ("+0.00%", "1.00×", "20.00")
    pruned = rows["KN5 · pruned 1e-7"]
    # 145 / 141.2 = 1.02691..., 12 / 40, 500k / 400k, 1200 / 1500; n-grams summed over orders
    assert pruned["Δ ppl"] == "+2.69%" and pruned["× size"] == "0.30×"
    assert (pruned["× speed"], pruned["× memory"]) == ("1.25×", "0.80×")
    assert pruned["n-grams"] == "60,000" and rows["KN5 · uncompressed"]["n-grams"] == "320,000"


def test_the_summary_has_a_line_per_variant_worth_a_mention(page):
    html, _ = page
    top = section(html, "summary")
    group = top.split("compressed variants</h3>")[1].split("</ul>")[0]
    lines = re.findall(r"<li>(.*?)</li>", group)
    # sorted by the perplexity they lose; the sparse LSTM is neither smaller nor faster
    assert lines == ["LSTM small · int8 on ptb: 4× smaller, 1.4× faster scoring, +1.50% ppl",
                     "KN5 · pruned 1e-7 on ptb: 3.3× smaller, 1.2× faster scoring, +2.69% ppl"]


def test_the_tradeoff_plots_have_a_point_per_variant_joined_per_model(page):
    html, figures = page
    part = section(html, "efficiency")
    assert part.count("<svg") == 2
    for what, lstm_x, kn5_x in (("size on disk", [5.0, 20.0, 20.0], [12.0, 40.0]),
                                ("scoring speed", [10_000.0, 11_000.0, 15_400.0],
                                 [400_000.0, 500_000.0])):
        fig = figures[f"ptb: test ppl against {what}"]
        ax = fig.axes[0]
        assert ax.get_xscale() == ax.get_yscale() == "log"
        lines = {tuple(line.get_xdata()): list(line.get_ydata()) for line in ax.lines}
        assert sorted(lines) == sorted([tuple(lstm_x), tuple(kn5_x)])
        assert sorted(lines[tuple(kn5_x)]) == [141.2, 145.0]
        assert sorted(lines[tuple(lstm_x)]) == pytest.approx([103.0, 105.0, 106.6])
        shown = [t.get_text() for t in ax.texts if t.get_visible()]
        assert {"int8", "50% sparse", "pruned 1e-7", "uncompressed"} <= set(shown)
        legend = [t.get_text() for t in fig.legends[0].get_texts()]
        assert legend[:2] == ["KN5", "LSTM small"]  # n-grams first, as in every figure
        assert plots.texts_outside(fig) == []
    for svg in re.findall(r"<svg.*?</svg>", part, re.S):
        assert len(svg.encode()) < 60_000


def test_size_on_disk_is_a_leaderboard_detail_column(page):
    html, _ = page
    board = section(html, "results-by-dataset")
    assert re.search(r'<th class="detail">size on disk<br><small>MiB</small>', board)
    (row,) = rows_of(board, "LSTM small int8")
    assert 'class="detail" data-value="5.0">5.00</td>' in row


# ---- records without the new fields ----------------------------------------------------------


def test_records_without_the_fields_render_no_efficiency_at_all(monkeypatch):
    records = [variant(LSTM, "LSTM small", ppl=100.0), variant(KN5, "KN5", ppl=141.2)]
    html = render_html(records, anchors=[])
    assert 'id="efficiency"' not in html and "compressed variants" not in html
    assert "size on disk" not in html and "× size" not in html
    # the page is the one the report drew before the efficiency rows existed
    monkeypatch.setattr(render, "SECTIONS", [f for f in render.SECTIONS
                                             if f is not sections.efficiency])
    monkeypatch.setattr(sections, "variant_lines", lambda ctx: [])
    assert render_html(records, anchors=[]) == html


def test_a_size_on_disk_without_variants_is_a_point_not_a_table_row():
    records = [variant(KN5, "KN5", ppl=141.2, disk_mib=40.0),
               variant(LSTM, "LSTM small", ppl=100.0, disk_mib=20.0)]
    html = render_html(records, anchors=[])
    part = section(html, "efficiency")
    # the leaderboard has their numbers: no table, one point per model in each plot
    assert table(html) == {} and "<table" not in part and part.count("<svg") == 2
    assert "KN5" in part and "LSTM small" in part
    assert "compressed variants" not in section(html, "summary")


def test_a_variant_without_its_uncompressed_model_has_no_ratios():
    records = [variant(LSTM, "int8", ppl=101.0, disk_mib=5.0, quantize="int8"),
               variant(LSTM, "sparse", ppl=103.0, disk_mib=20.0, sparsity=0.5)]
    rows = table(render_html(records, anchors=[]))
    assert list(rows) == ["sparse · 50% sparse", "sparse · int8"]
    assert all("× size" not in r and "Δ ppl" not in r for r in rows.values())


def test_reference_rows_are_not_efficiency_rows():
    reference = [variant(LSTM, "LSTM small", ppl=100.0, disk_mib=20.0),
                 variant(LSTM, "LSTM small int8", ppl=101.0, disk_mib=5.0, quantize="int8")]
    html = render_html([variant(KN5, "KN5", ppl=141.2)], reference_records=reference, anchors=[])
    assert "LSTM small int8" in section(html, "results-by-dataset")
    assert 'id="efficiency"' not in html


# ---- escaping ------------------------------------------------------------------------------------


def test_record_text_in_the_efficiency_rows_is_escaped():
    records = [variant_json(LSTM, "L" + PAYLOAD, ppl=100.0, disk_mib=20.0),
               variant_json(LSTM, "x", ppl=101.0, disk_mib=5.0, quantize=PAYLOAD),
               variant_json(LSTM, "y", ppl=102.0, disk_mib=4.0, quantize="int8",
                            sparsity=PAYLOAD)]
    records[2]["inspect"] = [{"title": PAYLOAD, "columns": ["n-grams"], "rows": [[PAYLOAD]]}]
    html = render_html([parse_record(r) for r in records], anchors=[])
    assert_escaped(html)
    part = section(html, "efficiency")
    assert any(e in part for e in ESCAPED) and part.count("<svg") == 2
