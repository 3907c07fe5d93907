"""The report's SVG figures (lmladder.reports.plots): valid, deterministic, small markup; the
pure helpers behind them (Pareto front, log limits and ticks, label shortening, colours); and
every text inside the figure, even with very long labels."""

from __future__ import annotations

import math
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from lmladder.reports import plots
from lmladder.reports.plots import Line, Mark, Point, Series
from lmladder.reports.svg import _REF as REF

SVG = "{http://www.w3.org/2000/svg}"
LONG = "A very long model label " * 12 + "that ends here"


def texts(svg: str) -> list[str]:
    """The content of every <text> element of an SVG string (which must parse as XML)."""
    root = ET.fromstring(svg)
    assert root.tag == SVG + "svg"
    return ["".join(t.itertext()) for t in root.iter(SVG + "text")]


def ids(svg: str) -> list[str]:
    return [e.get("id") for e in ET.fromstring(svg).iter() if e.get("id") is not None]


def sample_points(n: int = 6) -> list[Point]:
    families = ("n-gram", "HMM", "RNN", "Transformer", "hf-thing")
    return [Point(f"model {i}", families[i % 5], 10.0 ** (4 + i * 4 / max(n - 1, 1)),
                  1000.0 / (1 + i) + 20 * (i % 3), flagged=i % 4 == 1, reference=i % 5 == 2)
            for i in range(n)]


def sample_series(n_series: int = 3, n_points: int = 4) -> list[Series]:
    return [Series(f"curve {s}", ("n-gram", "RNN", "Transformer")[s % 3],
                   tuple((10.0 ** (3 + k), 900.0 / (k + 1) + 30 * s) for k in range(n_points)),
                   flagged=s == 1, reference=s == 2)
            for s in range(n_series)]


LINES = [Line(141.2, "KN5 141.2 (Mikolov 2012)")]


def sample_variants() -> dict[str, list[Point]]:
    """Two models and their compressed variants: (size on disk in MiB, test perplexity)."""
    return {"LSTM small": [Point("uncompressed", "RNN", 17.7, 115.0),
                           Point("int8", "RNN", 4.6, 116.0, flagged=True),
                           Point("50% sparse", "RNN", 17.7, 121.0)],
            "KN5": [Point("uncompressed", "n-gram", 40.0, 141.2),
                    Point("pruned 1e-7", "n-gram", 12.0, 145.0),
                    Point("pruned 1e-6", "n-gram", 3.0, 160.0)]}


def every_figure(n: int = 6) -> dict[str, str]:
    points = sample_points(n)
    return {
        "pareto": plots.pareto(points, title="ppl vs params", x_label="parameters",
                               y_label="test perplexity", lines=LINES),
        "curves": plots.curves(sample_series(), title="learning", x_label="training tokens",
                               y_label="test perplexity", lines=LINES,
                               marks=[Mark(2e4, 400.0, "crossover")], log_x=True, log_y=True),
        "bars": plots.bars([Point(p.label, p.family, None, p.y, p.flagged, p.reference)
                            for p in points], title="ppl by model", y_label="test perplexity",
                           higher_is_better=False, lines=LINES, log=True),
        "grouped": plots.grouped_bars(
            {p.label: {"train tok/s cpu": p.y * 100, "score tok/s cpu": p.y * 300}
             for p in points}, {p.label: p.family for p in points},
            title="throughput", x_label="tokens per second"),
        "tradeoff": plots.tradeoff(sample_variants(), title="ppl vs size",
                                   x_label="size on disk", y_label="test perplexity"),
    }


@pytest.fixture(scope="module")
def figures():
    return every_figure()


def test_every_function_returns_inline_svg_with_its_labels(figures):
    expected = {
        "pareto": ["ppl vs params", "parameters", "test perplexity", "Pareto front",
                   "not converged", "lmladder reference run", "KN5 141.2 (Mikolov 2012)"],
        "curves": ["learning", "training tokens", "curve 0", "curve 1", "curve 2", "crossover",
                   "not converged", "lmladder reference run", "KN5 141.2 (Mikolov 2012)"],
        "bars": ["ppl by model", "test perplexity (lower is better)", "model 0", "model 5",
                 "not converged", "lmladder reference run", "KN5 141.2 (Mikolov 2012)"],
        "grouped": ["throughput", "tokens per second", "train tok/s cpu", "score tok/s cpu",
                    "model 3"],
        "tradeoff": ["ppl vs size", "size on disk", "test perplexity", "LSTM small", "KN5",
                     "uncompressed", "int8", "50% sparse", "pruned 1e-7", "pruned 1e-6",
                     "not converged"],
    }
    for name, svg in figures.items():
        assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>"), name
        assert "<?xml" not in svg and "DOCTYPE" not in svg and "<metadata" not in svg
        found = texts(svg)
        for label in expected[name]:
            assert label in found, (name, label, found)
        # families are named in every legend but those that name each series
        if name not in ("curves", "tradeoff"):
            assert "n-gram" in found and "RNN" in found, name
    assert "other" in texts(figures["pareto"]) and "hf-thing" not in texts(figures["pareto"])


def test_bars_are_best_first_and_say_which_way_is_better():
    points = [Point("worst", "RNN", None, 0.6), Point("best", "HMM", None, 0.9),
              Point("middle", "n-gram", None, 0.7)]
    svg = plots.bars(points, title="acc", y_label="accuracy", higher_is_better=True, chance=0.5)
    found = texts(svg)
    order = [t for t in found if t in ("worst", "best", "middle")]
    # y tick labels are written top to bottom
    assert order == ["best", "middle", "worst"]
    assert "accuracy (higher is better)" in found and "chance 0.5" in found
    lower = plots.bars(points, title="ppl", y_label="ppl", higher_is_better=False)
    assert [t for t in texts(lower) if t in ("worst", "best", "middle")] == [
        "worst", "middle", "best"]


def test_two_figures_on_one_page_share_no_id(figures):
    all_ids = [i for svg in figures.values() for i in ids(svg)]
    assert all_ids, "figures define ids (clip paths, markers) that the test must see"
    assert len(all_ids) == len(set(all_ids))
    # two figures of the same kind with different data, too
    other = plots.pareto(sample_points(7), title="ppl vs params", x_label="parameters",
                         y_label="test perplexity", lines=LINES)
    page = ids(figures["pareto"]) + ids(other)
    assert len(page) == len(set(page))
    # and every reference points at an id of its own figure
    for svg in figures.values():
        own = set(ids(svg))
        for ref in REF.finditer(svg):
            assert ref.group(2) in own


def test_output_is_deterministic(figures):
    again = every_figure()
    for name, svg in figures.items():
        assert again[name] == svg, name


def test_pareto_front_on_a_hand_made_set():
    a = Point("a", "RNN", 1.0, 10.0)
    b = Point("b", "RNN", 2.0, 5.0)
    c = Point("c", "RNN", 3.0, 7.0)  # beaten by b (smaller and better)
    d = Point("d", "RNN", 4.0, 1.0)
    e = Point("e", "RNN", 2.0, 6.0)  # same size as b, worse: beaten
    f = Point("f", "RNN", 4.0, 1.0)  # identical to d: neither beats the other
    g = Point("g", "RNN", None, 0.5)  # no x: not in a scatter
    h = Point("h", "RNN", 0.5, math.nan)
    front = plots.pareto_front([c, f, e, a, g, d, b, h])
    assert front[:2] == [a, b] and len(front) == 4 and set(front[2:]) == {d, f}
    assert plots.pareto_front([]) == []
    assert plots.pareto_front([c]) == [c]


def test_log_limits_start_at_the_data():
    lo, hi = plots.log_limits([100.0, 101.0])
    assert 90 < lo < 100 and 101 < hi < 112
    lo, hi = plots.log_limits([3e4, 1e8, 0.0, -5.0, math.inf, math.nan])
    assert 1e4 < lo < 3e4 and 1e8 < hi < 3e8
    lo, hi = plots.log_limits([50.0])
    assert lo < 50 < hi and hi / lo < 1.2
    with pytest.raises(ValueError):
        plots.log_limits([0.0, -1.0, math.nan])


def test_log_axes_of_a_narrow_range_have_limits_and_labelled_ticks(monkeypatch):
    seen = {}
    original = plots._svg

    def capture(fig, title):
        seen["axes"] = fig.axes[0]
        return original(fig, title)

    monkeypatch.setattr(plots, "_svg", capture)
    svg = plots.pareto([Point("a", "RNN", 1000.0, 100.0), Point("b", "HMM", 1010.0, 101.0)],
                       title="narrow", x_label="x", y_label="y")
    lo, hi = seen["axes"].get_ylim()
    assert 90 < lo < 100 and 101 < hi < 112  # not from 1, not from 0
    ticks = plots.log_ticks(lo, hi)
    assert len(ticks) >= 3 and all(lo <= t <= hi for t in ticks)
    assert all(plots.tick_text(t) in texts(svg) for t in ticks)
    assert plots.log_ticks(1e3, 1e9) == [1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9]
    assert plots.log_ticks(100, 1000) == [100, 200, 500, 1000]
    assert plots.log_ticks(95.5, 105.8) == [97.5, 100, 102.5, 105]


def test_tick_text_is_short():
    assert [plots.tick_text(v) for v in (950, 1500, 2e7, 3e9, 1e15, 0.25, 0)] == [
        "950", "1.5k", "20M", "3G", "1e+15", "0.25", "0"]


def test_shorten_keeps_both_ends():
    assert plots.shorten("short", 10) == "short"
    cut = plots.shorten("Transformer 4x256 (60 s)", 15)
    assert len(cut) == 15 and "…" in cut and cut.startswith("Transfor") and cut.endswith("s)")
    assert plots.shorten("a\n  b", 10) == "a b"
    assert 26 <= len(plots.shorten(LONG, 28)) <= 28
    assert plots.shorten("abcdef", 1) == "…"
    with pytest.raises(ValueError):
        plots.shorten("abc", 0)


def test_empty_input_gives_no_figure():
    assert plots.pareto([], title="t", x_label="x", y_label="y") == ""
    assert plots.curves([], title="t", x_label="x", y_label="y") == ""
    assert plots.bars([], title="t", y_label="y", higher_is_better=True) == ""
    assert plots.grouped_bars({}, {}, title="t", x_label="x") == ""
    # nothing left once a log axis drops what it cannot show
    assert plots.pareto([Point("a", "RNN", 0.0, 5.0), Point("b", "RNN", 3.0, -1.0)],
                        title="t", x_label="x", y_label="y", lines=LINES) == ""
    assert plots.curves([Series("s", "RNN", ((1.0, 0.0), (2.0, math.nan)))], title="t",
                        x_label="x", y_label="y", log_y=True) == ""
    assert plots.bars([Point("a", "RNN", None, -3.0)], title="t", y_label="y",
                      higher_is_better=False, log=True) == ""
    assert plots.grouped_bars({"m": {"s": 0.0}}, {"m": "RNN"}, title="t", x_label="x") == ""
    assert plots.tradeoff({}, title="t", x_label="x", y_label="y") == ""
    assert plots.tradeoff({"m": [Point("int8", "RNN", 0.0, 5.0)]}, title="t", x_label="x",
                          y_label="y") == ""


def test_values_a_log_axis_cannot_show_are_dropped():
    points = [Point("kept", "RNN", 10.0, 5.0), Point("kept too", "HMM", 100.0, 3.0),
              Point("zero", "RNN", 0.0, 4.0), Point("negative", "RNN", 50.0, -2.0),
              Point("inf", "RNN", math.inf, 2.0)]
    found = texts(plots.pareto(points, title="t", x_label="x", y_label="y",
                               lines=[Line(-1.0, "impossible line"), Line(4.0, "anchor")]))
    assert "kept" in found and "kept too" in found and "anchor" in found
    for gone in ("zero", "negative", "inf", "impossible line"):
        assert gone not in found
    svg = plots.curves([Series("mixed", "RNN", ((1.0, 10.0), (0.0, 5.0), (10.0, 4.0))),
                        Series("gone", "RNN", ((-1.0, 3.0),))],
                       title="t", x_label="x", y_label="y", log_x=True, log_y=True)
    assert "mixed" in texts(svg) and "gone" not in texts(svg)
    # on a linear axis zero and negative values are fine
    assert "negative" in texts(plots.pareto(points, title="t", x_label="x", y_label="y",
                                            log_x=False, log_y=False))


def test_each_figure_stays_small_with_thirty_points():
    points = sample_points(30)
    sizes = {
        "pareto": plots.pareto(points, title="t", x_label="x", y_label="y", lines=LINES),
        "curves": plots.curves(sample_series(6, 5), title="t", x_label="x", y_label="y",
                               lines=LINES, log_x=True),
        "bars": plots.bars(points, title="t", y_label="y", higher_is_better=False, lines=LINES),
        "grouped": plots.grouped_bars({p.label: {"a": p.y, "b": p.y * 2, "c": p.y * 3}
                                       for p in points[:10]},
                                      {p.label: p.family for p in points}, title="t",
                                      x_label="x"),
    }
    for name, svg in sizes.items():
        assert svg and len(svg.encode()) < 60_000, (name, len(svg))


def test_colours_are_stable_and_colour_blind_safe():
    assert set(plots.FAMILY_COLOURS) == set(plots.FAMILIES)
    assert len(set(plots.FAMILY_COLOURS.values())) == len(plots.FAMILIES)
    okabe_ito = {"#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7"}
    assert set(plots.FAMILY_COLOURS.values()) <= okabe_ito
    assert plots.colour("RNN") == plots.colour("RNN") == plots.FAMILY_COLOURS["RNN"]
    assert plots.colour("no such family") == plots.colour("") == plots.FAMILY_COLOURS["other"]
    assert plots.LITERATURE_COLOUR not in plots.FAMILY_COLOURS.values()
    # the same family gets the same colour in every figure
    for svg in every_figure(4).values():
        assert plots.colour("n-gram").lower() in svg.lower()


def test_texts_outside_finds_a_text_that_leaves_the_figure():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4, 3), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot([1, 2], [1, 2])
    inside = fig.text(0.1, 0.5, "fine")
    escaping = fig.text(0.8, 0.5, LONG)
    found = plots.texts_outside(fig)
    assert escaping in found and inside not in found
    escaping.set_text("ok")
    assert plots.texts_outside(fig) == []


def test_long_labels_stay_inside_every_figure(monkeypatch):
    checked = []
    original = plots._svg

    def check(fig, title):
        svg = original(fig, title)  # fits the texts and freezes the layout
        checked.append(plots.texts_outside(fig))
        return svg

    monkeypatch.setattr(plots, "_svg", check)
    points = [Point(LONG + str(i), "RNN", 10.0 ** (i + 1), 50.0 * (i + 1)) for i in range(5)]
    outputs = [
        plots.pareto(points, title=LONG, x_label=LONG, y_label=LONG,
                     lines=[Line(120.0, LONG)]),
        plots.curves([Series(LONG, "HMM", ((1.0, 2.0), (2.0, 3.0)))], title=LONG,
                     x_label=LONG, y_label=LONG, marks=[Mark(1.5, 2.5, LONG)]),
        plots.bars(points, title=LONG, y_label=LONG, higher_is_better=True, chance=60.0,
                   lines=[Line(120.0, LONG)]),
        plots.grouped_bars({LONG: {LONG: 5.0, "b": 7.0}}, {LONG: "RNN"}, title=LONG,
                           x_label=LONG),
        plots.tradeoff({LONG: [Point(LONG, "RNN", 20.0, 100.0), Point(LONG + "2", "RNN", 5.0,
                                                                      101.0)]},
                       title=LONG, x_label=LONG, y_label=LONG),
    ]
    assert all(outputs) and len(checked) == 5
    assert checked == [[], [], [], [], []]
    for svg in outputs:
        assert LONG not in texts(svg)  # shortened
        assert any("…" in t for t in texts(svg))


def test_record_text_is_drawn_literally():
    label = 'a id="x" url(#y) $5$\\a<&'
    svg = plots.bars([Point(label, "RNN", None, 3.0)], title="a $x^2$ title",
                     y_label="y", higher_is_better=True)
    assert label in texts(svg) and "a $x^2$ title" in texts(svg)


def test_importing_the_module_does_not_import_matplotlib():
    code = "import sys, lmladder.reports.plots; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    assert out.stdout.strip() == "False"


def test_no_text_is_smaller_than_nine_points(figures):
    for name, svg in figures.items():
        sizes = [float(s) for s in re.findall(r"font-size: ([0-9.]+)px", svg)]
        assert sizes and min(sizes) >= plots.MIN_FONT == 9, name


def capture_figures(monkeypatch) -> list:
    """Make every figure function hand its matplotlib figure (after fitting) to the list."""
    figures = []
    original = plots._svg

    def keep(fig, title):
        svg = original(fig, title)
        figures.append(fig)
        return svg

    monkeypatch.setattr(plots, "_svg", keep)
    return figures


def test_placed_labels_are_inside_the_axes_and_off_each_other(monkeypatch):
    # The label placement computes each label's box instead of drawing it at every place it
    # tries: the boxes matplotlib gives for the labels as finally placed must agree.
    from matplotlib.text import Text

    figures = capture_figures(monkeypatch)
    points = [Point(f"model number {i}", ("RNN", "HMM", "n-gram")[i % 3], 10.0 ** (3 + i / 4),
                    300.0 / (1 + i / 5) + 15 * (i % 4)) for i in range(20)]
    plots.pareto(points, title="t", x_label="x", y_label="y",
                 lines=[Line(120.0, "KN5 141.2 (Mikolov 2012)"), Line(90.0, "LSTM 82.7")])
    plots.curves(sample_series(4, 5), title="t", x_label="x", y_label="y", lines=LINES,
                 marks=[Mark(10.0 ** (3 + k), 500.0 - 40 * k, f"mark {k}") for k in range(4)],
                 log_x=True, log_y=True)
    plots.bars(points[:6], title="t", y_label="y", higher_is_better=False, chance=200.0,
               lines=LINES)
    plots.tradeoff(sample_variants(), title="t", x_label="x", y_label="y")
    for fig in figures:
        ax = fig.axes[0]
        renderer = fig.canvas.get_renderer()
        box = ax.get_window_extent(renderer)
        placed = [t for t in ax.texts
                  if t.get_visible() and t.get_text() and not t.get_in_layout()]
        for t in placed:
            t.update_positions(renderer)  # as drawing does
        # the text's own box (an annotation's extent also holds its leader line)
        placed = [Text.get_window_extent(t, renderer) for t in placed]
        assert len(placed) >= 2  # line labels, and point or mark labels
        for extent in placed:
            assert (box.x0 - 0.5 <= extent.x0 and extent.x1 <= box.x1 + 0.5
                    and box.y0 - 0.5 <= extent.y0 and extent.y1 <= box.y1 + 0.5), extent
        for i, a in enumerate(placed):
            for b in placed[i + 1:]:
                overlap = min(a.x1, b.x1) - max(a.x0, b.x0), min(a.y1, b.y1) - max(a.y0, b.y0)
                assert min(overlap) <= 0.5, (a, b)


def test_scatter_and_mark_labels_are_capped(monkeypatch):
    figures = capture_figures(monkeypatch)
    points = sample_points(40)
    svg = plots.pareto(points, title="t", x_label="x", y_label="y")
    written = [t for t in texts(svg) if t.startswith("model ")]
    assert 1 <= len(written) <= plots.POINT_LABELS
    # the front (of the converged points) is labelled first
    front = [p.label for p in plots.pareto_front([p for p in points if not p.flagged])]
    front = front[:plots.POINT_LABELS]
    assert set(front[:3]) <= set(written)
    marks = [Mark(10.0 ** (3 + k / 4), 300.0 + 10 * k, f"crossing {k}") for k in range(12)]
    svg = plots.curves(sample_series(3, 5), title="t", x_label="x", y_label="y", marks=marks,
                       log_x=True, log_y=True)
    assert sum(t.startswith("crossing") for t in texts(svg)) <= plots.MARK_LABELS
    stars = [line for line in figures[-1].axes[0].lines if line.get_marker() == "*"]
    assert sum(len(line.get_xdata()) for line in stars) == len(marks)  # every mark is drawn


def test_tradeoff_joins_each_model_s_variants_in_x_order(monkeypatch):
    figures = capture_figures(monkeypatch)
    svg = plots.tradeoff(sample_variants(), title="t", x_label="x", y_label="y")
    (fig,) = figures
    ax = fig.axes[0]
    assert ax.get_xscale() == ax.get_yscale() == "log"
    # one line per model, n-grams first (as in every legend), each in x order
    drawn = [line for line in ax.lines if line.get_linestyle() != "None"]  # not the markers
    kn5, lstm = ([(x, y) for x, y in zip(line.get_xdata(), line.get_ydata(), strict=True)]
                 for line in drawn)
    assert kn5 == [(3.0, 160.0), (12.0, 145.0), (40.0, 141.2)]
    assert lstm == [(4.6, 116.0), (17.7, 115.0), (17.7, 121.0)]
    assert drawn[0].get_color() == plots.colour("n-gram")
    assert drawn[1].get_linestyle() == "--"  # a flagged variant: the model's line is dashed
    # and only that variant's marker is hollow
    hollow = [(x, y) for line in ax.lines if line.get_linestyle() == "None"
              and line.get_markerfacecolor() == "white"
              for x, y in zip(line.get_xdata(), line.get_ydata(), strict=True)]
    assert hollow == [(4.6, 116.0)]
    # a point labelled "" gets no text; at most POINT_LABELS are written
    alone = plots.tradeoff({"KN5": [Point("", "n-gram", 40.0, 141.2)]}, title="t",
                           x_label="x", y_label="y")
    assert "KN5" in texts(alone) and not figures[-1].axes[0].texts
    many = plots.tradeoff({f"m{i}": [Point(f"v{i}-{k}", "RNN", 2.0 ** k, 100.0 + i + k)
                                     for k in range(3)] for i in range(6)},
                          title="t", x_label="x", y_label="y")
    assert 1 <= sum(t.startswith("v") for t in texts(many)) <= plots.POINT_LABELS
    assert svg == plots.tradeoff(sample_variants(), title="t", x_label="x", y_label="y")


def test_layout_keeps_the_legend_beside_the_axes(monkeypatch):
    figures = capture_figures(monkeypatch)
    every_figure()
    for fig in figures:
        renderer = fig.canvas.get_renderer()
        assert fig.get_layout_engine() is None  # frozen: the SVG is drawn as it was checked
        (legend,) = fig.legends
        axes = fig.axes[0].get_tightbbox(renderer)
        beside = legend.get_window_extent(renderer)
        assert axes.x1 <= beside.x0 + 0.5  # the legend never covers the data or ticks
        assert fig.axes[0].get_window_extent(renderer).width > 0.4 * fig.bbox.width


def test_series_notes_label_their_own_points_and_an_empty_note_none():
    series = [Series("hmm", "HMM", ((64.0, 250.0), (16.0, 330.0), (256.0, 190.0)),
                     hollow=(False, False, True),
                     notes=("64 states · 17 it.", "16 states · 10 it.", ""))]
    svg = plots.curves(series, title="HMM states", x_label="states", y_label="test ppl",
                       log_x=True, log_y=True)
    labels = dict(re.findall(r'id="[^"]*lmlabel-(s0h?\.\d)"[^>]*>.*?<text[^>]*>([^<]+)</text>',
                             svg, re.S))
    # points are drawn in x order: 16 and 64 states filled (s0.0, s0.1), 256 hollow, unlabelled
    assert labels == {"s0.0": "16 states · 10 it.", "s0.1": "64 states · 17 it."}
    plain = plots.curves([Series("hmm", "HMM", series[0].points)], title="HMM states",
                         x_label="states", y_label="test ppl", log_x=True, log_y=True)
    assert "lmlabel-s0" not in plain
