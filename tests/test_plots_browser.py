"""The report's figures measured in a real browser (issue 21): no label on the wrong point, no
overprinting, no text cut off, and figures as wide as a phone's screen.

How: Playwright drives the system ``chromium`` (as tests/test_browser.py does; skipped without
it, failing under CI).  Figures are drawn from crowded inputs (twenty rows of near-identical
values with long labels, literature lines a few pixels apart, crossing curves) and from the
shipped reference records, put on a page, and every label is measured with
``getBoundingClientRect`` -- the boxes the browser draws, in the fonts it has.  The figures name
their parts with ids (``lmlabel-<group>.<index>`` names the ``index``-th marker of
``lmpoints-<group>``; ``lmlabel-line.<j>`` names the line ``lmrule-<j>``; ``lmleader-...`` is a
label's leader line; ``lmcurve-<k>`` a curve), so the test knows which label belongs to which
point.

Checked for every figure: every text inside the SVG's box (axis titles included); label boxes
off each other and off every other text; off every marker; not crossed by a literature line other
than their own, nor by a drawn curve; a label without a leader line is nearer to its own marker
than to any other; one with a leader line keeps away from other markers, and its leader ends at
its own marker.
"""

from __future__ import annotations

import pytest

from lmladder.reports import plots
from lmladder.reports.plots import Line, Mark, Point, Series
from tests.helpers import system_chromium

TOLERANCE = 0.5  # CSS px: rounding between the layout's measure and the browser's
PHONE = 390  # CSS px: a phone's viewport width
APART = 8.0  # CSS px: a label with a leader keeps this far from every other marker

MEASURE = """(svg) => {
  const box = e => { const b = e.getBoundingClientRect();
                     return [b.left, b.top, b.right, b.bottom]; };
  const part = (g, kind) => g.id.split('-' + kind + '-')[1];
  const at = (path, length) => {
    const p = path.getPointAtLength(length);
    const q = new DOMPoint(p.x, p.y).matrixTransform(path.getScreenCTM());
    return [q.x, q.y];
  };
  const groups = kind => [...svg.querySelectorAll('g[id*="-' + kind + '-"]')];
  const labels = groups('lmlabel').filter(g => g.querySelector('text')).map(g => ({
    name: part(g, 'lmlabel'), text: g.textContent.trim(), box: box(g.querySelector('text'))}));
  const markers = {};
  for (const g of groups('lmpoints')) {
    markers[part(g, 'lmpoints')] = [...g.querySelectorAll('use')].map(box);
  }
  const leaders = {};
  for (const g of groups('lmleader')) {
    const p = g.querySelector('path');
    if (p) leaders[part(g, 'lmleader')] = [at(p, 0), at(p, p.getTotalLength())];
  }
  const rules = {};
  for (const g of groups('lmrule')) rules[part(g, 'lmrule')] = box(g.querySelector('path'));
  const curves = groups('lmcurve').map(g => {
    const p = g.querySelector('path'), n = p.getTotalLength(), out = [];
    for (let s = 0; s <= n; s += 1.5) out.push(at(p, s));
    return out;
  });
  const texts = [...svg.querySelectorAll('text')].map(t => ({text: t.textContent, box: box(t)}));
  return {svg: box(svg), labels, markers, leaders, rules, curves, texts,
          width: svg.getBoundingClientRect().width};
}"""


@pytest.fixture(scope="module")
def browser():
    with system_chromium() as launched:
        yield launched


def measure(browser, svgs: list[str], width: int = 1280) -> list[dict]:
    """Each figure of ``svgs`` on one page ``width`` CSS px wide, measured by :data:`MEASURE`."""
    page = browser.new_page(viewport={"width": width, "height": 900})
    try:
        page.set_content("<!doctype html><html><body style='margin:8px'>"
                         + "".join(f"<figure style='margin:0'>{s}</figure>" for s in svgs)
                         + "</body></html>")
        return [page.evaluate(MEASURE, handle) for handle in page.query_selector_all("svg")]
    finally:
        page.close()


def overlap(a, b, tolerance: float = TOLERANCE) -> bool:
    return (min(a[2], b[2]) - max(a[0], b[0]) > tolerance
            and min(a[3], b[3]) - max(a[1], b[1]) > tolerance)


def gap(a, b) -> float:
    """The distance between two boxes (0 where they touch or overlap)."""
    dx = max(a[0] - b[2], b[0] - a[2], 0.0)
    dy = max(a[1] - b[3], b[1] - a[3], 0.0)
    return (dx * dx + dy * dy) ** 0.5


def centre(b) -> tuple[float, float]:
    return (b[0] + b[2]) / 2, (b[1] + b[3]) / 2


def problems(figure: dict) -> list[str]:
    """Everything wrong with one measured figure, in words (empty: nothing)."""
    found = []
    svg = figure["svg"]
    for t in figure["texts"]:
        b = t["box"]
        if t["text"].strip() and (b[0] < svg[0] - TOLERANCE or b[1] < svg[1] - TOLERANCE
                                  or b[2] > svg[2] + TOLERANCE or b[3] > svg[3] + TOLERANCE):
            found.append(f"text cut off: {t['text']!r} {b} outside {svg}")
    labels = figure["labels"]
    for i, a in enumerate(labels):
        for b in labels[i + 1:]:
            if overlap(a["box"], b["box"]):
                found.append(f"labels overlap: {a['text']!r} and {b['text']!r}")
        others = [t for t in figure["texts"] if t["box"] != a["box"]]
        for t in others:
            if t["text"].strip() and overlap(a["box"], t["box"]):
                found.append(f"label {a['text']!r} overprints text {t['text']!r}")
    markers = {(group, j): b for group, boxes in figure["markers"].items()
               for j, b in enumerate(boxes)}
    for label in labels:
        box = label["box"]
        for key, b in markers.items():
            if overlap(box, b):
                found.append(f"label {label['text']!r} covers marker {key}")
        for name, rule in figure["rules"].items():
            own = label["name"] == f"line.{name}"
            horizontal = rule[3] - rule[1] < rule[2] - rule[0]
            lo, hi, at = ((box[1], box[3], centre(rule)[1]) if horizontal
                          else (box[0], box[2], centre(rule)[0]))
            if not own and lo + TOLERANCE < at < hi - TOLERANCE:
                found.append(f"label {label['text']!r} is crossed by line {name}")
        for k, curve in enumerate(figure["curves"]):
            inner = (box[0] + 1, box[1] + 1, box[2] - 1, box[3] - 1)
            if any(inner[0] < x < inner[2] and inner[1] < y < inner[3] for x, y in curve):
                found.append(f"label {label['text']!r} is crossed by curve {k}")
        group, _, index = label["name"].rpartition(".")
        if group == "line":
            continue
        own = markers[(group, int(index))]
        # other markers, but not those drawn on the same place (a curve's point under a star)
        others = [b for key, b in markers.items() if key != (group, int(index))
                  and max(abs(c - d) for c, d in zip(centre(b), centre(own), strict=True)) > 2]
        leader = figure["leaders"].get(label["name"])
        if leader is None:
            if others and min(gap(box, b) for b in others) < gap(box, own):
                found.append(f"label {label['text']!r} is nearer another marker than its own")
        else:
            if others and min(gap(box, b) for b in others) < APART:
                found.append(f"label {label['text']!r}, away from its marker, sits by another")
            end = min(leader, key=lambda p: gap((*p, *p), own))
            if gap((*end, *end), own) > 3:
                found.append(f"leader of {label['text']!r} ends {end}, off its marker {own}")
    return found


LONG = "Transformer 4x256, context 128, rotary, dropout 0.3, run"


def crowded_figures() -> list[str]:
    """Figures that are hard to label: near-identical values, long labels, close lines."""
    twenty = [Point(f"{LONG} {i}", ("RNN", "Transformer", "n-gram", "HMM")[i % 4],
                    1e6 * (1 + 0.004 * i), 100.0 + 0.25 * i, flagged=i % 3 == 0,
                    reference=i % 7 == 0) for i in range(20)]
    spread = [Point(f"model number {i}", ("RNN", "HMM", "n-gram")[i % 3], 10.0 ** (3 + i / 4),
                    300.0 / (1 + i / 5) + 15 * (i % 4), flagged=i % 2 == 0) for i in range(20)]
    close_lines = [Line(141.2, "KN5 141.2 (Mikolov 2012)"), Line(148.3, "KN3 148.3 (Mikolov)"),
                   Line(124.7, "Elman RNN 124.7 (Mikolov 2012)"),
                   Line(114.5, "LSTM small 114.5 (Zaremba et al. 2014)"),
                   Line(82.7, "LSTM medium 82.7"), Line(78.4, "LSTM large 78.4")]
    curves = [Series(f"{LONG} curve {s}", ("n-gram", "RNN", "Transformer", "HMM")[s % 4],
                     tuple((10.0 ** (4 + k / 2), 900.0 / (k + 1) ** (0.3 + s / 8) + 5 * s)
                           for k in range(5)), flagged=s % 2 == 1,
                     hollow=tuple(k < 3 for k in range(5)))
              for s in range(8)]
    marks = [Mark(10.0 ** (4 + k / 2), 900.0 / (k + 1) ** 0.3, f"{LONG} {k} overtakes")
             for k in range(1, 5)]
    # HMM states with each point's iteration count: own and reference curves close together
    states = [Series(f"hmm{' (reference)' * ref}", "HMM",
                     tuple((float(n), 330.0 * n ** -0.12 + 4 * ref) for n in (16, 64, 256, 1024)),
                     reference=bool(ref), hollow=(False, False, True, True),
                     notes=tuple(f"{n} states · {150 - n // 8} it." for n in (16, 64, 256, 1024)))
              for ref in (0, 1)]
    return [
        plots.pareto(twenty, title="twenty near-identical rows", x_label="parameters",
                     y_label="test perplexity (per token, log scale)", lines=close_lines[:3]),
        plots.pareto(spread, title="twenty rows and six close lines", x_label="FLOPs",
                     y_label="test perplexity (per token, log scale)", lines=close_lines),
        plots.curves(curves, title="crossing learning curves", x_label="training tokens",
                     y_label="test perplexity (per token, log scale)", lines=close_lines,
                     marks=marks, log_x=True, log_y=True),
        plots.curves(states, title="HMM test ppl against states", x_label="hidden states",
                     y_label="test ppl (per token, log scale)", lines=close_lines[:2],
                     log_x=True, log_y=True),
        plots.tradeoff({f"{LONG} {i}": [Point(f"int{8 >> k} variant {i}", "RNN", 2.0 ** k + i,
                                              100.0 + i + k, flagged=k == 1) for k in range(3)]
                        for i in range(6)}, title="variants", x_label="size on disk",
                       y_label="test perplexity"),
        plots.bars([Point(f"{LONG} {i}", "RNN", None, 0.5 + i / 50) for i in range(8)],
                   title="accuracy", y_label="accuracy", higher_is_better=True, chance=0.5,
                   lines=[Line(0.6, "KN5 0.6 (literature)"), Line(0.61, "RNN 0.61 (lit.)"),
                          Line(0.62, "LSTM 0.62 (lit.)")]),
    ]


def test_crowded_figures_have_no_collision_in_the_browser(browser):
    svgs = crowded_figures()
    assert all(svgs)
    measured = measure(browser, svgs)
    assert len(measured) == len(svgs)
    for svg, figure in zip(svgs, measured, strict=True):
        assert figure["labels"], svg[:200]  # something is labelled
        assert problems(figure) == [], svg[:120]


def test_the_checks_catch_a_label_on_another_point(browser):
    # The test's own check, on a figure moved by hand: a label over a foreign marker is seen.
    (figure,) = measure(browser, [plots.pareto(
        [Point("a", "RNN", 1e3, 100.0), Point("b", "HMM", 1e4, 200.0)], title="t",
        x_label="x", y_label="y")])
    assert problems(figure) == []
    label = figure["labels"][0]
    other = next(b for key, boxes in figure["markers"].items() for j, b in enumerate(boxes)
                 if f"{key}.{j}" != label["name"])
    label["box"] = [other[0] - 2, other[1] - 2, other[0] + 30, other[1] + 10]
    assert any("covers marker" in p or "nearer another marker" in p for p in problems(figure))


@pytest.fixture(scope="module")
def reference_page(tmp_path_factory):
    """The report of the shipped reference records, rendered into a temporary folder."""
    from lmladder.reports.reference import REFERENCE
    from lmladder.reports.render import render_report

    out = tmp_path_factory.mktemp("reference") / "report.html"
    render_report(REFERENCE, out)
    return out


def test_every_figure_of_the_reference_report_is_clean(browser, reference_page):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        page.goto(reference_page.as_uri())
        figures = [page.evaluate(MEASURE, h) for h in page.query_selector_all("figure svg")]
    finally:
        page.close()
    assert len(figures) >= 8
    for figure in figures:
        assert problems(figure) == []


def test_figures_fill_a_phone_screen_and_never_overflow_it(browser, reference_page):
    page = browser.new_page(viewport={"width": PHONE, "height": 800})
    try:
        page.goto(reference_page.as_uri())
        found = page.evaluate("""() => [...document.querySelectorAll('figure svg')].map(s => {
            const b = s.getBoundingClientRect(), f = s.parentElement.getBoundingClientRect();
            const v = s.viewBox.baseVal;
            return [b.left, b.right, f.width, b.width, b.height, v.width / v.height];
        })""")
    finally:
        page.close()
    assert found
    for left, right, room, width, height, aspect in found:
        assert left >= -TOLERANCE and right <= PHONE + TOLERANCE  # never wider than the screen
        assert width >= room - 1  # as wide as its figure: the whole width left by the page
        assert width < PHONE  # scaled down ...
        assert width / height == pytest.approx(aspect, rel=0.02)  # ... with its viewBox's aspect
