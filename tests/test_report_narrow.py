"""The report on a phone (issue 21): at a 390 px viewport the page itself never scrolls sideways;
wide tables scroll inside their ``div.scroll`` with the first column fixed (position: sticky),
and plots fit the width.  Drives Debian's Chromium through Playwright as tests/test_browser.py
does (skipped without them, failing under CI); the page is rendered from hand-built records.
"""

from __future__ import annotations

import pytest

from lmladder.reports.render import render_html
from tests.helpers import system_chromium
from tests.test_report_honest import KN5_LIT, LSTM_LIT, converged, cut_short
from tests.test_report_page import make, recs

WIDTH = 390  # CSS pixels


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    records = [make("KN5", ppl=141.19, family="n-gram", model="kn5"),
               make("Unigram", ppl=640.0, family="n-gram", model="unigram"),
               converged("LSTM small 2x200 with a rather long label", 120.0, model="lstm"),
               cut_short("Transformer 4x256, context 128, rotary (5,000 steps)", 966.0,
                         model="transformer", family="Transformer")]
    path = tmp_path_factory.mktemp("narrow") / "report.html"
    path.write_text(render_html(recs(records), anchors=[KN5_LIT, LSTM_LIT]))
    with system_chromium() as browser:
        tab = browser.new_page(viewport={"width": WIDTH, "height": 800})
        tab.goto(path.as_uri())
        yield tab


def test_the_page_does_not_scroll_sideways_outside_table_scrollers(page):
    assert page.evaluate("document.documentElement.scrollWidth") <= WIDTH
    # whatever is wider than the viewport sits inside a scroller
    wide = page.evaluate("""() => [...document.querySelectorAll('body *')]
        .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)
        .filter(e => !e.closest('.scroll') && !e.closest('details:not([open])'))
        .map(e => e.tagName + '.' + e.className)""")
    assert wide == []
    tables = page.evaluate("""() => [...document.querySelectorAll('table')]
        .filter(t => !t.closest('details')).map(t => !!t.parentElement.closest('.scroll'))""")
    assert tables and all(tables)


def test_the_first_column_stays_fixed_while_a_table_scrolls(page):
    scroller = page.locator("#results-by-dataset .scroll").first
    assert scroller.evaluate("e => e.scrollWidth > e.clientWidth")  # the table is wider
    first = scroller.locator("tbody tr td").first
    assert first.evaluate("e => getComputedStyle(e).position") == "sticky"
    before = first.evaluate("e => e.getBoundingClientRect().left")
    scroller.evaluate("e => { e.scrollLeft = 300; }")
    assert scroller.evaluate("e => e.scrollLeft") > 0
    assert abs(first.evaluate("e => e.getBoundingClientRect().left") - before) < 1
    second = scroller.locator("tbody tr td").nth(1)
    assert second.evaluate("e => e.getBoundingClientRect().left") < before  # it moved


def test_plots_take_the_full_width_and_no_more(page):
    widths = page.evaluate("""() => [...document.querySelectorAll('figure.plot svg')]
        .map(s => s.getBoundingClientRect().width)""")
    body = page.evaluate("document.body.clientWidth")
    assert widths and all(w <= WIDTH for w in widths)
    assert all(w >= 0.8 * body for w in widths)
