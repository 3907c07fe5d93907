"""The report, opened in a real headless browser (issue 10).

How: Playwright's Python API drives Debian's ``chromium`` package (``apt-get install chromium``;
``.ci/run`` installs it).  Playwright's own browser download needs the network, so the system
browser is launched with ``executable_path=shutil.which("chromium")``; Playwright 1.65 drives
Debian's Chromium 156 over the DevTools protocol without further setup.

The page is rendered from a real small run (the synthetic corpus; KN3, add-one bigram, a 4-state
HMM for 3 EM steps and a tiny LSTM for 2,000 tokens; about 10 s on 2 CPU cores), opened from its
``file://`` address, and checked for: no console or page errors; no request other than the file
itself (every http(s)/ws request is aborted and recorded); sortable tables that sort; every plot
present; no horizontal page scroll at 1280 and 375 px; a detail toggle that works; a screenshot.

Where no browser exists the tests are skipped with the reason ("no chromium: apt-get install
chromium" / "playwright not installed"); under CI (``$CI`` set) they fail instead, so a CI that
lost its browser cannot pass silently.  Screenshots go to ``tmp_path`` and, when
``$LMLADDER_SCREENSHOTS`` names a folder, there too.

The last four tests check the markup contract of the issue-10 page: ``table.sortable`` with
``data-value`` cells and ``aria-sort`` headers, ``<figure><svg>`` plots, ``div.scroll`` wrappers
and a ``.detail`` toggle; the sort test also runs on the page of ``lmladder report --compare``.
"""

from __future__ import annotations

import math
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.helpers import matrix_text, system_chromium

VIEWPORTS = {"laptop": (1280, 800), "phone": (375, 812)}  # CSS pixels, width x height
# The plots the tiny run must show at least: test perplexity against parameters and against
# training compute, the training curves (the HMM and the LSTM log a history) and throughput by
# model and device.  (One HMM size: no perplexity-against-states plot; no tasks or fractions.)
MIN_PLOTS = 4

MATRIX = matrix_text([
    {"name": "kn3", "label": "KN3"},
    {"name": "laplace2", "label": "Add-one 2"},
    {"name": "hmm", "label": "HMM 4 states (3 EM steps)", "budget": {"steps": 3},
     "config": {"states": 4, "threads": 1}},
    {"name": "lstm", "label": "LSTM 1x16 (2k tokens)", "budget": {"tokens": 2000},
     "config": {"hidden": 16, "layers": 1, "bptt": 10, "batch_size": 8, "eval_tokens": 500}},
], description="browser test: every family, tiny budgets", datasets=["synthetic"], seeds=[0],
    devices=["cpu"])


@pytest.fixture(scope="module")
def browser():
    """A headless system Chromium driven by Playwright, shared by this module's tests."""
    with system_chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """The HTML report of a real tiny run, as ``lmladder run`` writes it."""
    from lmladder import cli

    root = tmp_path_factory.mktemp("browser-run")
    (root / "tiny.toml").write_text(MATRIX)
    with pytest.MonkeyPatch.context() as mp:  # as conftest's per-test isolation, for the module
        mp.setenv("XDG_CACHE_HOME", str(root / "cache"))
        mp.delenv("LMLADDER_DATA", raising=False)
        code = cli.main(["run", str(root / "tiny.toml"), "--results", str(root / "results"),
                         "--in-process"])
    assert code == 0
    html = root / "results" / "report.html"
    assert html.is_file()
    return html


@pytest.fixture(scope="module")
def compare_report(report, tmp_path_factory) -> Path:
    """``lmladder report --compare`` of the tiny run against a copy of itself."""
    from lmladder import cli

    copy = tmp_path_factory.mktemp("browser-run-b") / "results"
    shutil.copytree(report.parent, copy)
    out = copy.parent / "compare.html"
    assert cli.main(["report", "--compare", str(report.parent), str(copy), "-o", str(out)]) == 0
    return out


@dataclass
class Visit:
    """A page opened with every request, console message and page error recorded."""

    page: object
    url: str
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)

    def assert_clean(self) -> None:
        """No console error, no uncaught exception, no request but the page's own file."""
        assert self.console_errors == []
        assert self.page_errors == []
        assert self.blocked == []
        # data: URIs are inline content; everything else is a resource the page loads
        assert [u for u in self.requests if not u.startswith("data:")] == [self.url]


def open_report(browser, html: Path, viewport=VIEWPORTS["laptop"]) -> Visit:
    """Open ``html`` from its file:// address in a fresh context of ``viewport`` (w, h) px."""
    context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]},
                                  java_script_enabled=True)
    page = context.new_page()
    visit = Visit(page=page, url=html.resolve().as_uri())

    def block(route):
        # Abort at once: the test must never wait on (or reach) the network.
        visit.blocked.append(route.request.url)
        route.abort()

    context.route(re.compile(r"^(https?|wss?|ftp)://"), block)
    page.on("request", lambda r: visit.requests.append(r.url))
    page.on("websocket", lambda ws: visit.blocked.append(ws.url))
    page.on("console", lambda m: visit.console_errors.append(m.text) if m.type == "error"
            else None)
    page.on("pageerror", lambda err: visit.page_errors.append(str(err)))
    page.goto(visit.url, wait_until="load")
    return visit


@pytest.fixture
def visit(browser, report):
    """The report at the laptop viewport, closed after the test (which checks it is clean)."""
    opened = open_report(browser, report)
    yield opened
    opened.page.context.close()


def _page_scroll(page) -> tuple[int, int]:
    """(document scroll width, window inner width), CSS px."""
    return tuple(page.evaluate(
        "[document.documentElement.scrollWidth, window.innerWidth]"))


def _column_values(page, table_index: int, column: int) -> list[str | None]:
    """The ``data-value`` of column ``column`` in every body row of the
    ``table_index``-th sortable table."""
    return page.evaluate(
        """([t, c]) => {
            const table = document.querySelectorAll('table.sortable')[t];
            return Array.from(table.tBodies).flatMap(b => Array.from(b.rows))
                .map(r => r.cells[c] ? r.cells[c].getAttribute('data-value') : null);
        }""", [table_index, column])


def _ordered(values: list[str | None], descending: bool) -> bool:
    """Whether the non-empty ``values`` are in order: numerically where all are numbers, else
    as text (case-insensitive, or exactly as written: either is a fair text order)."""
    present = [v for v in values if v not in (None, "")]
    try:
        keys = [float(v) for v in present]
    except ValueError:
        return any(_ordered_as(present, key, descending) for key in (str.casefold, str))
    keys = [k for k in keys if not math.isnan(k)]
    return keys == sorted(keys, reverse=descending)


def _ordered_as(values: list[str], key, descending: bool) -> bool:
    return values == sorted(values, key=key, reverse=descending)


def _detail_toggle(page):
    """The control that shows and hides the ``.detail`` columns, or None."""
    name = re.compile("detail", re.I)
    for role in ("checkbox", "switch", "button"):
        found = page.get_by_role(role, name=name)
        if found.count():
            return found.first
    found = page.locator("[data-toggle='detail'], .detail-toggle, #detail-toggle")
    return found.first if found.count() else None


def _visible_detail_cells(page) -> int:
    return page.evaluate("""Array.from(document.querySelectorAll('.detail'))
        .filter(e => e.getClientRects().length > 0
                     && getComputedStyle(e).visibility !== 'hidden').length""")


# ---- what the current page and the new page must both do ----

def test_the_page_loads_offline_without_errors(visit):
    assert visit.page.title()
    assert visit.page.locator("table").count() >= 1
    visit.assert_clean()


def test_a_screenshot_is_written(browser, report, tmp_path):
    written = []
    for name, viewport in VIEWPORTS.items():
        opened = open_report(browser, report, viewport)
        path = tmp_path / f"report-{name}.png"
        opened.page.screenshot(path=str(path), full_page=True)
        opened.assert_clean()
        opened.page.context.close()
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert path.stat().st_size > 10_000  # a rendered page, not a blank image
        written.append(path)
    if folder := os.environ.get("LMLADDER_SCREENSHOTS"):
        Path(folder).mkdir(parents=True, exist_ok=True)
        for path in written:
            shutil.copy(path, Path(folder) / f"browser-test-{path.name}")


# ---- the markup contract of the issue-10 page ----

@pytest.mark.parametrize("which", ["report", "compare_report"])
def test_every_sortable_table_sorts_when_a_header_is_clicked(browser, request, which):
    visit = open_report(browser, request.getfixturevalue(which))
    request.addfinalizer(visit.page.context.close)
    page = visit.page
    tables = page.locator("table.sortable")
    assert tables.count() >= 1, "no table.sortable on the page"
    for t in range(tables.count()):
        headers = tables.nth(t).locator("thead tr").last.locator("th")
        sorted_columns = orderable = 0
        for c in range(headers.count()):
            header = headers.nth(c)
            if not header.is_visible():  # a .detail column behind the toggle
                continue
            values = _column_values(page, t, c)
            if len({v for v in values if v not in (None, "")}) < 2:
                continue  # nothing to order
            orderable += 1
            header.click()
            first = header.get_attribute("aria-sort")
            assert first in ("ascending", "descending"), f"table {t}, column {c}: {first!r}"
            assert _ordered(_column_values(page, t, c), first == "descending"), (t, c)
            header.click()
            second = header.get_attribute("aria-sort")
            assert {first, second} == {"ascending", "descending"}, (t, c)
            after = _column_values(page, t, c)
            assert _ordered(after, second == "descending"), (t, c)
            assert sorted(after, key=str) == sorted(values, key=str)  # rows moved, none lost
            others = [headers.nth(o).get_attribute("aria-sort") for o in range(headers.count())
                      if o != c]
            assert not {"ascending", "descending"} & set(others), (t, c)
            sorted_columns += 1
        # every column with two values sorts; a table is sortable only where some column can
        assert orderable >= 1 and sorted_columns == orderable, f"table {t}: nothing to sort"
    visit.assert_clean()


def test_every_plot_is_present_as_inline_svg(visit):
    page = visit.page
    plots = page.locator("figure svg")
    assert plots.count() >= MIN_PLOTS
    assert page.locator("figure").count() == page.locator("figure:has(svg)").count()
    for i in range(plots.count()):
        box = plots.nth(i).bounding_box()
        assert box is None or (box["width"] > 50 and box["height"] > 50), f"plot {i}: {box}"
        # a plot draws something: marks or lines, not an empty frame
        assert plots.nth(i).locator("path, circle, line, polyline, rect").count() > 2
    # no raster or external images any more: inline SVG only
    assert page.locator("img:not([src^='data:'])").count() == 0
    visit.assert_clean()


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_the_page_never_scrolls_horizontally(browser, report, viewport):
    opened = open_report(browser, report, VIEWPORTS[viewport])
    page = opened.page
    try:
        leaderboards = page.locator("table.sortable")
        assert leaderboards.count() == page.locator("div.scroll > table.sortable").count(), (
            "every leaderboard sits in a div.scroll")
        width, inner = _page_scroll(page)
        assert width <= inner, f"{viewport}: the page is {width} px wide in {inner} px"
        # Everything open, as a reader who wants it all sees it: the detail columns shown and
        # every collapsed model card expanded still scroll inside their boxes, not the page.
        toggle = _detail_toggle(page)
        if toggle is not None:
            toggle.click()
        page.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")
        width, inner = _page_scroll(page)
        assert width <= inner, f"{viewport}, all open: the page is {width} px wide in {inner} px"
        opened.assert_clean()
    finally:
        page.context.close()


def test_the_detail_toggle_shows_and_hides_detail_columns(visit):
    page = visit.page
    total = page.locator(".detail").count()
    assert total > 0, "no .detail cells on the page"
    toggle = _detail_toggle(page)
    assert toggle is not None, "no control named 'detail' (checkbox, switch or button)"
    assert _visible_detail_cells(page) == 0, "the tables start compact: details hidden"
    toggle.click()
    assert _visible_detail_cells(page) > 0
    toggle.click()
    assert _visible_detail_cells(page) == 0
    visit.assert_clean()
