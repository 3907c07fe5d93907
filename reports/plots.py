"""The report's figures, as inline SVG: a scatter with its Pareto front, curves, trade-offs
between model variants, bars and grouped bars, one colour per model family everywhere.

Every figure function takes plain dataclasses (:class:`Point`, :class:`Series`, :class:`Line`,
:class:`Mark`) that the page builds from result records, and returns a string of SVG markup
(``<svg ...>...</svg>``, no XML prolog, no DOCTYPE) ready to be embedded in the page, or ``""``
when nothing is left to draw.  The markup is deterministic (same input, same string: no date, a
fixed hash salt) and its ``id`` attributes are prefixed with a hash of the figure, so several
figures on one page never clash.  Text stays text (``svg.fonttype = "none"``), so labels can be
searched and copied; record text is drawn literally, never parsed as mathtext or TeX.

The figures are made for a reader pasting them into a slide: 6.4 x 3.8 in (bars grow with their
rows), fonts of at least 9 pt, light grid lines, the legend outside the axes, colours from the
Okabe-Ito colour-blind-safe palette.  Log axes start and end where the data and the reference
lines do; values a log axis cannot show (zero, negative, NaN, inf) are left out.  Labels that
could escape the figure are shortened (:func:`shorten`), and after layout every text is checked
against the figure's bounds (:func:`texts_outside`); a text still outside is shrunk, then
shortened.

A report draws dozens of figures, so each is drawn once: the layout (:func:`_fit_axes`) and
the checks measure texts with the canvas's cached Agg renderer without rendering anything, the
label placement computes each label's box at every place it tries from one measurement, and
scatter points of one look share one artist.  At most :data:`POINT_LABELS` points and
:data:`MARK_LABELS` marks are labelled per figure.

matplotlib is imported inside the functions, so ``import lmladder.reports`` stays light, and no
pyplot state is used: figures are plain :class:`matplotlib.figure.Figure` objects that are
dropped when the function returns.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import re
import weakref
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from lmladder.numbers import finite

log = logging.getLogger(__name__)

FAMILIES = ("n-gram", "HMM", "RNN", "Transformer", "other")
# Okabe & Ito (2008), "Color Universal Design": distinguishable with every common colour-vision
# deficiency.  Yellow and sky blue are left out: yellow is hard to see on white, sky blue is too
# close to blue once printed.
FAMILY_COLOURS: dict[str, str] = {
    "n-gram": "#E69F00",  # orange
    "HMM": "#009E73",  # bluish green
    "RNN": "#0072B2",  # blue
    "Transformer": "#D55E00",  # vermilion
    "other": "#CC79A7",  # reddish purple
}
LITERATURE_COLOUR = "#4D4D4D"  # dark grey: anchors are context, not competitors

FIGSIZE = (6.4, 3.8)  # inches: a half-slide figure that stays readable when scaled down
MIN_FONT = 9.0  # points: the smallest text drawn
LABEL_CHARS = 28  # characters: tick labels and legend entries longer than this are shortened
TITLE_CHARS = 70  # characters: a title longer than this would not fit the figure's width
AXIS_CHARS = (55, 45)  # characters: the longest x and y axis labels that fit beside the axes
LINE_CHARS = 40  # characters: a literature line's text, drawn inside the axes
POINT_CHARS = 22  # characters: a label written beside a point
POINT_LABELS = 12  # labels written beside scatter points: the Pareto front's, then the best
MARK_LABELS = 6  # annotated marks (e.g. crossovers) whose text is written

_REFERENCE_MARKER = "D"  # a diamond: lmladder reference-run rows
_MARKERS = ("o", "s", "^", "v", "P", "X", "<", ">")  # series of one family told apart
_GRID = "#E3E3E3"
_FRONT_COLOUR = "#222222"
_NOT_CONVERGED = "not converged"
_REFERENCE = "lmladder reference run"

# Applied around every figure: text is never parsed (record text may hold "$" or "\"), fonts and
# sizes for a slide, and the SVG backend's settings that make the output deterministic.
_STYLE = {
    "text.usetex": False,
    "text.parse_math": False,
    "font.family": "sans-serif",
    # Layout is measured with DejaVu Sans (shipped with matplotlib); a browser without it falls
    # back to Arial/Helvetica, which are narrower, so text still fits.
    "font.sans-serif": ["DejaVu Sans", "Arial", "Helvetica"],
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "xtick.labelsize": MIN_FONT,
    "ytick.labelsize": MIN_FONT,
    "legend.fontsize": MIN_FONT,
    "legend.title_fontsize": MIN_FONT,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.axisbelow": True,
    "axes.grid": True,
    "grid.color": _GRID,
    "grid.linewidth": 0.6,
    "figure.autolayout": False,  # figures choose their layout (and then freeze it)
    "figure.constrained_layout.use": False,
    "svg.fonttype": "none",
    "svg.hashsalt": "lmladder",
}


def colour(family: str) -> str:
    """The hex colour of a model family (``"#RRGGBB"``); an unknown family gets "other"'s."""
    return FAMILY_COLOURS.get(family, FAMILY_COLOURS["other"])


@dataclass(frozen=True)
class Point:
    """One model in a scatter or bar chart.

    ``x`` and ``y`` are in the chart's units (e.g. parameters and test perplexity); ``x`` is None
    where the chart has no x (bars).  ``flagged``: not converged or under-trained, drawn hollow.
    ``reference``: a row of an lmladder reference run, drawn with a diamond (or hatched bar).
    """

    label: str
    family: str
    x: float | None
    y: float
    flagged: bool = False
    reference: bool = False


@dataclass(frozen=True)
class Series:
    """One line of (x, y) points: a learning curve, a training curve, ppl against HMM states.

    ``flagged`` series are drawn dashed with hollow markers; ``reference`` ones with diamonds.
    """

    label: str
    family: str
    points: tuple[tuple[float, float], ...]
    flagged: bool = False
    reference: bool = False


@dataclass(frozen=True)
class Line:
    """A literature anchor: a dashed reference line at ``value`` (in the value axis's units),
    with ``text`` (e.g. "KN5 141.2 (Mikolov 2012)") written at its end inside the axes."""

    value: float
    text: str


@dataclass(frozen=True)
class Mark:
    """An annotated point in data coordinates, e.g. where one learning curve crosses another."""

    x: float
    y: float
    text: str


# --------------------------------------------------------------------------------------------
# Pure helpers (no matplotlib)


def shorten(label: str, n: int) -> str:
    """``label`` on one line and at most ``n`` characters, cut in the middle with "…".

    The middle goes rather than the end because model labels tell their rows apart at both
    ends ("Transformer 2x64 (12 s)" against "Transformer 4x256 (60 s)").  Runs of whitespace,
    newlines included, become one space.

    >>> shorten("Elman RNN ReLU 1x128 (6 s)", 15)
    'Elman RN…(6 s)'
    """
    if n < 1:
        raise ValueError(f"shorten: n must be at least 1, got {n}")
    text = " ".join(str(label).split())
    if len(text) <= n:
        return text
    keep = n - 1  # one character for the ellipsis
    head = keep - keep // 3
    tail = keep - head
    return text[:head].rstrip() + "…" + (text[len(text) - tail:].lstrip() if tail else "")


def _usable(value, log: bool) -> float | None:
    """``value`` if an axis (log or not) can show it, else None."""
    number = finite(value)
    if number is None or (log and number <= 0):
        return None
    return number


def log_limits(values: Iterable[float]) -> tuple[float, float]:
    """Limits (lo, hi) of a log axis that shows every positive finite value with a margin.

    The margin is 6% of the values' span in decades, at least 0.02 decades (about 5%), so a
    tiny range such as 100..101 gives about (95.5, 105.8), never an axis from 1 or 0.
    Non-positive and non-finite values are ignored; raises ValueError if none is left.
    """
    usable = [v for v in map(finite, values) if v is not None and v > 0]
    if not usable:
        raise ValueError("log_limits: no positive finite value")
    lo, hi = math.log10(min(usable)), math.log10(max(usable))
    margin = max(0.06 * (hi - lo), 0.02)
    return 10 ** (lo - margin), 10 ** (hi + margin)


def linear_limits(values: Iterable[float], *, zero: bool = False) -> tuple[float, float]:
    """Limits (lo, hi) of a linear axis showing every finite value with a 5% margin; ``zero``
    keeps 0 inside (bars start at zero).  Raises ValueError if no value is finite."""
    usable = [v for v in map(finite, values) if v is not None]
    if zero:
        usable.append(0.0)
    if not usable:
        raise ValueError("linear_limits: no finite value")
    lo, hi = min(usable), max(usable)
    margin = 0.05 * (hi - lo) if hi > lo else max(abs(hi) * 0.1, 1.0)
    return (lo if zero and lo == 0 else lo - margin), (hi if zero and hi == 0 else hi + margin)


def _nice_steps(lo: float, hi: float) -> list[float]:
    """Three to seven round numbers (1, 2, 2.5 or 5 times a power of ten apart) in [lo, hi]:
    the largest such step that gives at least three."""
    if hi <= lo:
        return [lo]
    power = math.floor(math.log10(hi - lo))
    steps = sorted((m * 10.0**e for e in range(power - 2, power + 1) for m in (1, 2, 2.5, 5)),
                   reverse=True)
    for step in steps:
        first, last = math.ceil(lo / step - 1e-9), math.floor(hi / step + 1e-9)
        if last - first + 1 >= 3:
            return [round(k * step, 12) for k in range(first, last + 1)]
    return [lo, hi]


def log_ticks(lo: float, hi: float) -> list[float]:
    """Labelled tick positions for a log axis from ``lo`` to ``hi`` (both > 0): powers of ten,
    then 1-2-5, then 1-2-3-5 steps, whichever first gives at least three ticks (at most eight);
    on a range too narrow for any of them, round linear steps (e.g. 96, 98, 100, 102, 104)."""
    for subs in ((1,), (1, 2, 5), (1, 2, 3, 5)):
        decades = range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
        ticks = [m * 10.0**e for e in decades for m in subs if lo <= m * 10.0**e <= hi]
        if len(ticks) > 8:
            step = math.ceil(len(ticks) / 8)
            ticks = ticks[::step]
        if len(ticks) >= 3:
            return ticks
    return [t for t in _nice_steps(lo, hi) if t > 0]


def tick_text(value: float) -> str:
    """A short tick label: ``950``, ``1.5k``, ``20M``, ``3G``, ``1e+15``, ``0.25``."""
    if value == 0:
        return "0"
    size = abs(value)
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if 1e15 > size >= scale:
            return f"{value / scale:.3g}{suffix}"
    if size >= 1e15 or size < 1e-3:
        return f"{value:.2g}"
    return f"{value:.4g}"


def pareto_front(points: Sequence[Point]) -> list[Point]:
    """The points no other point beats on both x and y (lower is better on both), by x.

    A point is beaten by another that is no worse on both axes and better on at least one;
    two identical points do not beat each other, so both are kept.  Points whose x or y is
    None or not finite are ignored.
    """
    usable = [p for p in points if finite(p.x) is not None and finite(p.y) is not None]
    front: list[Point] = []
    best_y = math.inf
    for p in sorted(usable, key=lambda p: (p.x, p.y)):
        if p.y < best_y:
            front.append(p)
            best_y = p.y
        elif front and (p.x, p.y) == (front[-1].x, front[-1].y):
            front.append(p)
    return front


# --------------------------------------------------------------------------------------------
# Text inside the figure


def texts_outside(fig) -> list:
    """The visible, non-empty text artists of ``fig`` whose extent leaves the figure's box.

    The figure is laid out first (as a draw would lay it out, but nothing is rendered), and
    tick labels of ticks that fall outside their axis's view are skipped (matplotlib does
    not draw them).  A tolerance of half a pixel absorbs rounding.
    """
    _layout(fig)
    return _outside(fig)


def _outside(fig) -> list:
    """:func:`texts_outside` on the figure's current layout (which is not run again).

    Texts are measured with the canvas's cached Agg renderer: text metrics are cached per
    renderer, so measuring a text that was measured before costs no font work."""
    from matplotlib.text import Text

    renderer = fig.canvas.get_renderer()
    box = fig.bbox

    def escapes(extent) -> bool:
        return (extent.x0 < box.x0 - 0.5 or extent.y0 < box.y0 - 0.5
                or extent.x1 > box.x1 + 0.5 or extent.y1 > box.y1 + 0.5)

    skip = set()  # ids of texts not to check
    for legend in list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend()]:
        if not escapes(legend.get_window_extent(renderer)):
            # The whole legend is inside, so are its texts (measuring them one by one would
            # mean laying the legend out: matplotlib places its entries only when drawing it).
            skip.update(id(text) for text in [*legend.get_texts(), legend.get_title()])
        else:
            _draw_legend(legend, renderer)
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            # Brings the ticks and their labels up to date with the axes' final size, as a
            # draw would (an automatic locator picks its ticks from the axis's length).
            axis.get_tightbbox(renderer)
            lo, hi = sorted(axis.get_view_interval())
            tol = 1e-9 * max(abs(lo), abs(hi), 1e-300)
            for locs, ticks in ((axis.get_majorticklocs(), axis.get_major_ticks),
                                (axis.get_minorticklocs(), axis.get_minor_ticks)):
                for loc, tick in zip(locs, ticks(len(locs)), strict=False):
                    if not lo - tol <= loc <= hi + tol:
                        skip.update((id(tick.label1), id(tick.label2)))
    outside = []
    for text in fig.findobj(Text):
        if id(text) in skip or not text.get_visible() or not text.get_text():
            continue
        if escapes(text.get_window_extent(renderer)):
            outside.append(text)
    return outside


def _draw_legend(legend, renderer) -> None:
    """Draw ``legend`` without output (which places its entries), or the whole figure where
    matplotlib lacks output-free drawing."""
    disabled = getattr(renderer, "_draw_disabled", None)
    if disabled is None:
        legend.figure.canvas.draw()
        return
    with disabled():
        legend.draw(renderer)


def _fit_texts(fig, rounds: int = 4, *, laid_out: bool = False) -> None:
    """Bring every text inside the figure: shrink fonts above MIN_FONT by 15%, shorten texts
    already at MIN_FONT by a quarter, and lay out again; the layout is then frozen so that the
    SVG is drawn exactly as checked.  ``laid_out``: the layout is current (it is not run again
    unless a text had to change)."""
    for _ in range(rounds):
        outside = _outside(fig) if laid_out else texts_outside(fig)
        laid_out = False
        if not outside:
            break
        for text in outside:
            if text.get_fontsize() > MIN_FONT:
                text.set_fontsize(max(MIN_FONT, text.get_fontsize() * 0.85))
            else:
                content = text.get_text()
                text.set_text(shorten(content, max(4, len(content) * 3 // 4)))
    else:
        if outside := texts_outside(fig):
            log.warning("plots: %d text(s) still outside the figure: %s", len(outside),
                        [shorten(t.get_text(), 30) for t in outside])
    # No engine at all (not "none", which leaves a placeholder engine): savefig then draws the
    # figure once, instead of a first draw to run a layout engine.  _STYLE keeps the rc
    # defaults from bringing one back.
    fig.set_layout_engine(None)
    _FITTED.discard(fig)


def _layout(fig) -> None:
    """Lay ``fig`` out as a draw would, without rendering anything: a figure made by
    :func:`_new_figure` with :func:`_fit_axes`, any other with its layout engine.

    Texts are measured with the canvas's cached Agg renderer, whose text metrics are cached;
    a full draw would also rasterise every artist, and the SVG is drawn once at the end."""
    import warnings

    renderer = fig.canvas.get_renderer()
    engine = fig.get_layout_engine()
    if fig in _FITTED:
        _fit_axes(fig, renderer)
    elif engine is not None:
        with warnings.catch_warnings():
            # Constrained layout warns when decorations leave no room for the axes: texts
            # then fall outside the figure, which _fit_texts repairs or logs.
            warnings.filterwarnings("ignore", "constrained_layout not applied", UserWarning)
            engine.execute(fig)


# (x, y) fractions of a text's width and height from its anchor to its box's lower left corner
_H_SHIFT = {"left": 0.0, "center": 0.5, "right": 1.0}
_V_SHIFT = {"bottom": 0.0, "center": 0.5, "top": 1.0}


def _anchor_pixels(text, x: float, y: float, anchor: list) -> tuple[float, float]:
    """Where a placement (x, y[, anchor]) puts ``text``'s anchor, in display pixels.

    For an annotation (whose text coordinates are "offset points"), (x, y) is the offset in
    points from its data point: ``anchor[0]`` where given, else its current one; for any other
    text, (x, y) is its position in its own transform."""
    from matplotlib.text import Annotation

    if isinstance(text, Annotation):
        px, py = text.axes.transData.transform(anchor[0] if anchor else text.xy)
        scale = text.axes.figure.dpi / 72.0  # points to pixels
        return px + x * scale, py + y * scale
    px, py = text.get_transform().transform((x, y))
    return px, py


def _declutter(ax, texts: list, renderer, obstacles=()) -> None:
    """Keep the point and line labels of ``ax`` inside it, off each other and off the data.

    Each entry of ``texts`` is (text artist, alternative placements), highest priority first:
    a placement is (x, y, ha, va), or (x offset, y offset, ha, va, anchor point) for an
    annotation; ``obstacles`` are data points in display pixels.  The first placement that lies
    inside the axes and covers no kept label and no obstacle is used; a label with none is
    shortened, then hidden (its row is still in the page's tables).

    Each text is measured once per length tried (a text's size does not depend on where it
    goes); its box at every placement is then computed, not drawn."""
    from matplotlib.transforms import Bbox

    box = ax.get_window_extent(renderer)
    pad = 3.0  # pixels kept clear around a data point
    kept = []
    points = [(px, py) for px, py in obstacles
              if box.x0 - pad <= px <= box.x1 + pad and box.y0 - pad <= py <= box.y1 + pad]

    def fits(x0: float, y0: float, x1: float, y1: float) -> bool:
        return (x0 >= box.x0 and x1 <= box.x1 and y0 >= box.y0 and y1 <= box.y1
                and not any(x0 < k.x1 and k.x0 < x1 and y0 < k.y1 and k.y0 < y1 for k in kept)
                and not any(x0 - pad <= px <= x1 + pad and y0 - pad <= py <= y1 + pad
                            for px, py in points))

    for text, placements in texts:
        # A label that fits nowhere is shortened (down to a dozen characters) before it is hidden.
        full = text.get_text()
        lengths = [len(full)] + [n for n in (len(full) * 3 // 4, len(full) // 2, 12)
                                 if 12 <= n < len(full)]
        anchors = [_anchor_pixels(text, x, y, anchor) for x, y, _, _, *anchor in placements]
        chosen = None
        for n in lengths:
            text.set_text(shorten(full, n) if n < len(full) else full)
            extent = text.get_window_extent(renderer)
            width, height = extent.width, extent.height
            for (px, py), placement in zip(anchors, placements, strict=True):
                x0 = px - _H_SHIFT[placement[2]] * width
                y0 = py - _V_SHIFT[placement[3]] * height
                if fits(x0, y0, x0 + width, y0 + height):
                    kept.append(Bbox.from_extents(x0, y0, x0 + width, y0 + height))
                    chosen = placement
                    break
            if chosen:
                break
        if chosen is None:
            text.set_text(full)
            text.set_visible(False)
            continue
        x, y, ha, va, *anchor = chosen
        if anchor:
            text.xy = anchor[0]
        text.set_position((x, y))
        text.set_horizontalalignment(ha)
        text.set_verticalalignment(va)


# --------------------------------------------------------------------------------------------
# Figure plumbing


def _new_figure(size: tuple[float, float] = FIGSIZE):
    """A figure with an Agg canvas (for measuring text), laid out by :func:`_fit_axes`; no
    pyplot."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout=None)
    FigureCanvasAgg(fig)
    _FITTED.add(fig)
    return fig


# Figures made by _new_figure whose layout is not frozen yet: _layout lays them out itself.
_FITTED: weakref.WeakSet = weakref.WeakSet()
_PAD = 3 / 72  # inches: the margin around the figure's content (constrained layout's default)


def _fit_axes(fig, renderer) -> None:
    """Lay out a figure of one axes and a legend on its right: the axes take all the room that
    their decorations (tick labels, axis labels, title) and the legend leave.

    What constrained layout does for this one shape (within its padding), at a fraction of its
    cost: two passes, as an automatic tick locator may pick other ticks once the axes' size
    changed (one where both axes have fixed ticks).
    Texts left out of the layout (point labels) and the x extent of the title and x label are
    not counted (they are fitted by :func:`_fit_texts`), as with constrained layout."""
    from matplotlib.ticker import FixedLocator

    (ax,) = fig.axes
    width, height = fig.bbox.width, fig.bbox.height
    pad = _PAD * fig.dpi
    right_room = 0.0
    for legend in fig.legends:
        right_room = max(right_room, legend.get_window_extent(renderer).width + pad)
    for _ in range(2):
        box = ax.get_window_extent(renderer)
        tight = ax.get_tightbbox(renderer, for_layout_only=True)
        left = pad + max(box.x0 - tight.x0, 0.0)
        bottom = pad + max(box.y0 - tight.y0, 0.0)
        right = width - pad - right_room - max(tight.x1 - box.x1, 0.0)
        top = height - pad - max(tight.y1 - box.y1, 0.0)
        # A figure too small for its decorations keeps a sliver of axes; _fit_texts then
        # shrinks or shortens what is outside.
        right, top = max(right, left + 0.1 * width), max(top, bottom + 0.1 * height)
        ax.set_position([left / width, bottom / height, (right - left) / width,
                         (top - bottom) / height])
        if all(isinstance(axis.get_major_locator(), FixedLocator)
               for axis in (ax.xaxis, ax.yaxis)):
            break  # fixed ticks (log axes, bar rows): the decorations did not change


# Figures whose layout is current: laid out by _place_labels, nothing in the layout changed since.
_LAID_OUT: weakref.WeakSet = weakref.WeakSet()
_TAG = re.compile(r"<[^>]+>")  # a tag: text content has its "<" and ">" escaped
_ID = re.compile(r'\sid="([^"]+)"')
_REF = re.compile(r'(url\(#|href="#)([^)"]+)')


def _in_tags(pattern: re.Pattern, replace, text: str) -> str:
    """``pattern.sub(replace, ...)`` applied inside tags only, never to text content (a label
    may well read 'id="x"')."""
    return _TAG.sub(lambda tag: pattern.sub(replace, tag.group(0)), text)


def _svg(fig, title: str) -> str:
    """The figure as inline SVG markup: fitted, with no prolog, no metadata, and ids unique to
    this figure's content (a figure drawn twice gives the same string)."""
    from xml.sax.saxutils import quoteattr

    _fit_texts(fig, laid_out=fig in _LAID_OUT)
    _LAID_OUT.discard(fig)
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    text = text[text.index("<svg"):]
    text = re.sub(r"\s*<metadata>.*?</metadata>", "", text, count=1, flags=re.S)
    # A no-op rotation on every text, and the ids of groups nothing refers to, are only bytes.
    text = re.sub(r' transform="rotate\(-?0 [^"]*\)"', "", text)
    referenced = {m.group(2) for tag in _TAG.findall(text) for m in _REF.finditer(tag)}
    text = _in_tags(_ID, lambda m: m.group(0) if m.group(1) in referenced else "", text)
    prefix = "f" + hashlib.sha256(text.encode()).hexdigest()[:10] + "-"
    text = _in_tags(_ID, lambda m: f' id="{prefix}{m.group(1)}"', text)
    text = _in_tags(_REF, lambda m: f"{m.group(1)}{prefix}{m.group(2)}", text)
    label = quoteattr(" ".join(str(title).split()))
    return text.replace("<svg ", f"<svg role=\"img\" aria-label={label} ", 1).rstrip() + "\n"


def _style():
    import matplotlib

    return matplotlib.rc_context(_STYLE)


def _set_log_axis(axis, lo: float, hi: float) -> None:
    """A log axis from lo to hi with round, plainly written tick labels (no 10^x mathtext)."""
    from matplotlib import ticker

    axis.set_major_locator(ticker.FixedLocator(log_ticks(lo, hi)))
    axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: tick_text(v)))
    # No unlabelled minor ticks: the labelled 1-2-5 ticks and their grid lines read the axis,
    # and matplotlib lays out and draws every tick as four artists (dozens per log axis).
    axis.set_minor_locator(ticker.NullLocator())


def _set_linear_axis(axis) -> None:
    from matplotlib import ticker

    axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: tick_text(v)))


def _apply_scale(ax, which: str, log: bool, values: list[float]) -> None:
    """Scale and limits of ``ax``'s x or y axis from the values it must show."""
    if log:
        lo, hi = log_limits(values)
        getattr(ax, f"set_{which}scale")("log")
        getattr(ax, f"set_{which}lim")(lo, hi)
        _set_log_axis(getattr(ax, f"{which}axis"), lo, hi)
    else:
        getattr(ax, f"set_{which}lim")(*linear_limits(values))
        _set_linear_axis(getattr(ax, f"{which}axis"))


def _titles(ax, title: str, x_label: str | None, y_label: str | None) -> None:
    ax.set_title(shorten(title, TITLE_CHARS), loc="left")
    if x_label:
        ax.set_xlabel(shorten(x_label, AXIS_CHARS[0]))
    if y_label:
        ax.set_ylabel(shorten(y_label, AXIS_CHARS[1]))


def _horizontal_lines(ax, lines: list[Line], texts: list) -> None:
    """Dashed literature lines across ``ax``, their text at the right end inside the axes."""
    from matplotlib.transforms import blended_transform_factory

    where = blended_transform_factory(ax.transAxes, ax.transData)
    for line in lines:
        ax.axhline(line.value, color=LITERATURE_COLOUR, ls="--", lw=1.0, zorder=1)
        text = ax.text(0.99, line.value, shorten(line.text, LINE_CHARS), transform=where,
                       color=LITERATURE_COLOUR, fontsize=MIN_FONT, zorder=4)
        texts.append((text, [(0.99, line.value, "right", "bottom"),
                             (0.99, line.value, "right", "top"),
                             (0.01, line.value, "left", "bottom"),
                             (0.01, line.value, "left", "top")]))


def _legend(fig, handles: list, labels: list[str]) -> None:
    """The figure's legend, outside the axes on the right (it never hides data)."""
    if handles:
        fig.legend(handles, [shorten(label, LABEL_CHARS) for label in labels],
                   loc="outside right upper", frameon=False, handlelength=1.8)


def _style_handles(flagged: bool, reference: bool, *, line: bool = False) -> tuple[list, list]:
    """Legend entries that explain hollow/dashed (not converged) and diamonds (reference)."""
    from matplotlib.lines import Line2D

    handles, labels = [], []
    if flagged:
        handles.append(Line2D([], [], color="#777777", ls="--" if line else "none", marker="o",
                              markerfacecolor="white", markeredgewidth=1.5))
        labels.append(_NOT_CONVERGED)
    if reference:
        handles.append(Line2D([], [], color="#777777", ls="none", marker=_REFERENCE_MARKER))
        labels.append(_REFERENCE)
    return handles, labels


def _family_handles(families: Iterable[str]) -> tuple[list, list]:
    from matplotlib.lines import Line2D

    present = sorted(set(families), key=lambda f: FAMILIES.index(f) if f in FAMILIES else 99)
    return ([Line2D([], [], color=colour(f), ls="none", marker="o", markersize=7)
             for f in present], [f if f in FAMILIES else "other" for f in present])


def _shade(hex_colour: str, amount: float) -> str:
    """``hex_colour`` mixed with white (amount > 0) or black (amount < 0); amount in [-1, 1]."""
    rgb = [int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)]
    target = 255 if amount > 0 else 0
    mixed = [round(c + (target - c) * abs(amount)) for c in rgb]
    return "#" + "".join(f"{c:02X}" for c in mixed)


# --------------------------------------------------------------------------------------------
# The figures


def pareto(points: list[Point], *, title: str, x_label: str, y_label: str,
           lines: Sequence[Line] = (), log_x: bool = True, log_y: bool = True) -> str:
    """A scatter of models (e.g. test perplexity against parameters or training FLOPs) with
    its Pareto front: the staircase through the points no other point beats on both axes
    (lower is better on both).

    Colour is the family; hollow markers are flagged (not converged) rows; diamonds are
    reference-run rows.  The front's points are labelled, then the best others where room is
    left, at most :data:`POINT_LABELS` in all (the page's tables name every row).
    ``lines`` are literature values of y.  Points without a usable x or y are left out; returns
    "" when none is left.
    """
    usable = [p for p in points
              if _usable(p.x, log_x) is not None and _usable(p.y, log_y) is not None]
    if not usable:
        return ""
    lines = [line for line in lines if _usable(line.value, log_y) is not None]
    front = pareto_front(usable)
    with _style():
        fig = _new_figure()
        ax = fig.add_subplot()
        _apply_scale(ax, "x", log_x, [p.x for p in usable])
        _apply_scale(ax, "y", log_y, [p.y for p in usable] + [line.value for line in lines])
        texts: list = []
        _horizontal_lines(ax, lines, texts)
        if len(front) > 1:
            ax.step([p.x for p in front], [p.y for p in front], where="post",
                    color=_FRONT_COLOUR, lw=1.0, alpha=0.7, zorder=2)
        # Plotted in a fixed order (sorted by family, then label) so the output does not
        # depend on the order of the input list beyond ties.
        # One artist per look (family, hollow, diamond), not per point: fewer artists to lay
        # out and draw, and one SVG marker definition per look.
        looks: dict[tuple, list[Point]] = defaultdict(list)
        for p in sorted(usable, key=lambda p: (_family_rank(p.family), p.label, p.x, p.y)):
            looks[(_family_rank(p.family), colour(p.family), p.flagged, p.reference)].append(p)
        for (_, fill, flagged, reference), group in sorted(looks.items()):
            ax.plot([p.x for p in group], [p.y for p in group], ls="none", zorder=3,
                    marker=_REFERENCE_MARKER if reference else "o",
                    markersize=6 if reference else 7, color=fill,
                    markerfacecolor="white" if flagged else fill,
                    markeredgewidth=1.5 if flagged else 0.8,
                    markeredgecolor=fill if flagged else "white")
        on_front = {id(p) for p in front}
        ranked = front + sorted((p for p in usable if id(p) not in on_front), key=lambda p: p.y)
        # More labels would not fit a half-slide figure (and each costs a measurement); the
        # unlabelled points are in the legend's families and in the page's tables.
        texts += [_point_label(ax, p) for p in ranked[:POINT_LABELS]]
        handles, labels = _family_handles(p.family for p in usable)
        more = _style_handles(any(p.flagged for p in usable), any(p.reference for p in usable))
        from matplotlib.lines import Line2D

        if len(front) > 1:
            more[0].append(Line2D([], [], color=_FRONT_COLOUR, lw=1.0, alpha=0.7))
            more[1].append("Pareto front")
        _legend(fig, handles + more[0], labels + more[1])
        _titles(ax, title, x_label, y_label)
        _place_labels(fig, ax, texts, [(p.x, p.y) for p in usable])
        return _svg(fig, title)


def _point_label(ax, p: Point) -> tuple:
    """A label written beside a scatter point, with the places :func:`_declutter` may put it
    (right above first, then the other corners, then centred above and below)."""
    text = ax.annotate(shorten(p.label, POINT_CHARS), (p.x, p.y), textcoords="offset points",
                       xytext=(5, 4), fontsize=MIN_FONT, color="#333333", zorder=5)
    return text, [(5, 4, "left", "bottom"), (-5, 4, "right", "bottom"),
                  (5, -4, "left", "top"), (-5, -4, "right", "top"),
                  (0, 7, "center", "bottom"), (0, -7, "center", "top")]


def _series_size(count: int) -> tuple[float, float]:
    """The size of a figure whose legend lists ``count`` series (with room for the entries
    that explain the line styles): taller than :data:`FIGSIZE` only when the legend needs it."""
    return FIGSIZE[0], max(FIGSIZE[1], 0.21 * (count + 3) + 0.8)


def _draw_series(ax, kept: list[tuple[Series, tuple]]) -> tuple[list, list]:
    """Draw each (series, its points) as a line with markers; returns the legend's handles and
    labels.  Colour is the family; series of one family differ in shade and marker.  Flagged
    series are dashed with hollow markers, reference series have diamonds."""
    handles, labels = [], []
    within: dict[str, int] = defaultdict(int)
    for s, pts in kept:
        index = within[s.family]
        within[s.family] += 1
        tint = _shade(colour(s.family), (0.0, 0.4, -0.35, 0.65)[index % 4])
        marker = _REFERENCE_MARKER if s.reference else _MARKERS[index % len(_MARKERS)]
        (handle,) = ax.plot([x for x, _ in pts], [y for _, y in pts], color=tint,
                            ls="--" if s.flagged else "-", lw=1.6, marker=marker,
                            markersize=5, markerfacecolor="white" if s.flagged else tint,
                            markeredgewidth=1.2, zorder=3)
        handles.append(handle)
        labels.append(s.label)
    return handles, labels


def _place_labels(fig, ax, texts: list, points=()) -> None:
    """Lay the figure out, then place point and line labels (see :func:`_declutter`).

    An annotation's position is its offset from its point, so its placements are offsets.
    The labels are left out of the layout, so placing them keeps it current: :func:`_svg`
    then checks the texts without running it again."""
    for text, _ in texts:
        text.set_in_layout(False)  # placed inside the axes; the layout must not make room
    _layout(fig)  # the axes' final box
    _LAID_OUT.add(fig)
    if not texts:
        return
    obstacles = ax.transData.transform(list(points)) if len(points) else ()
    _declutter(ax, texts, fig.canvas.get_renderer(), [tuple(p) for p in obstacles])


def _family_rank(family: str) -> int:
    return FAMILIES.index(family) if family in FAMILIES else len(FAMILIES)


def curves(series: list[Series], *, title: str, x_label: str, y_label: str,
           lines: Sequence[Line] = (), marks: Sequence[Mark] = (), log_x: bool = False,
           log_y: bool = False) -> str:
    """Lines of (x, y) points: learning curves (perplexity against training tokens, with
    crossovers as ``marks``), training curves (validation loss against step), HMM perplexity
    against the number of states.

    Colour is the family; series of one family differ in shade and marker.  Flagged series are
    dashed with hollow markers, reference series have diamonds.  Points a log axis cannot show
    are left out, as are series with none left; returns "" when no series is left.
    """
    kept = []
    for s in series:
        pts = tuple(sorted((x, y) for x, y in s.points
                           if _usable(x, log_x) is not None and _usable(y, log_y) is not None))
        if pts:
            kept.append((s, pts))
    if not kept:
        return ""
    lines = [line for line in lines if _usable(line.value, log_y) is not None]
    marks = [m for m in marks
             if _usable(m.x, log_x) is not None and _usable(m.y, log_y) is not None]
    kept.sort(key=lambda item: (_family_rank(item[0].family), item[0].label))
    with _style():
        fig = _new_figure(_series_size(len(kept)))
        ax = fig.add_subplot()
        xs = [x for _, pts in kept for x, _ in pts] + [m.x for m in marks]
        ys = [y for _, pts in kept for _, y in pts] + [m.y for m in marks]
        _apply_scale(ax, "x", log_x, xs)
        _apply_scale(ax, "y", log_y, ys + [line.value for line in lines])
        texts: list = []
        _horizontal_lines(ax, lines, texts)
        handles, labels = _draw_series(ax, kept)
        if marks:
            # One artist for every star: one SVG marker definition, used at each point.
            ax.plot([m.x for m in marks], [m.y for m in marks], ls="none", marker="*",
                    markersize=12, color="#111111", markeredgecolor="white",
                    markeredgewidth=0.6, zorder=4)
        # The first MARK_LABELS marks are written (more would cover the curves); the rest are
        # stars only.  Inserted in front: they are placed before the literature lines' texts.
        for m in reversed(marks[:MARK_LABELS]):
            text = ax.annotate(shorten(m.text, LINE_CHARS), (m.x, m.y), textcoords="offset points",
                               xytext=(7, 7), fontsize=MIN_FONT, color="#111111", zorder=5)
            texts.insert(0, (text, [(7, 7, "left", "bottom"), (-7, 7, "right", "bottom"),
                                    (7, -7, "left", "top"), (-7, -7, "right", "top")]))
        more = _style_handles(any(s.flagged for s, _ in kept), any(s.reference for s, _ in kept),
                              line=True)
        _legend(fig, handles + more[0], labels + more[1])
        _titles(ax, title, x_label, y_label)
        _place_labels(fig, ax, texts, [xy for _, pts in kept for xy in pts]
                      + [(m.x, m.y) for m in marks])
        return _svg(fig, title)


def tradeoff(groups: dict[str, Sequence[Point]], *, title: str, x_label: str,
             y_label: str) -> str:
    """Variants of models on log-log axes, e.g. test perplexity against size on disk or
    against scoring speed: ``groups`` maps a model (its legend entry) to its variants (one
    uncompressed, some quantized or pruned), drawn as points joined by a line in x order.

    Each point's ``label`` is written beside it (a few words, e.g. "int8", "pruned 1e-7"; ""
    writes nothing), at most :data:`POINT_LABELS` in all; the legend names the models, so the
    labels stay short.  A group's colour is its first point's family; a group with a flagged
    point is drawn dashed, one with a reference point with diamonds.  Points a log axis cannot
    show are left out, as are groups with none left; returns "" when no group is left.
    """
    kept = []
    for name, points in groups.items():
        usable = sorted((p for p in points
                         if _usable(p.x, True) is not None and _usable(p.y, True) is not None),
                        key=lambda p: (p.x, p.y, p.label))
        if usable:
            series = Series(name, usable[0].family, tuple((p.x, p.y) for p in usable),
                            any(p.flagged for p in usable), any(p.reference for p in usable))
            kept.append((series, series.points, usable))
    if not kept:
        return ""
    kept.sort(key=lambda item: (_family_rank(item[0].family), item[0].label))
    every = [p for *_, usable in kept for p in usable]
    with _style():
        fig = _new_figure(_series_size(len(kept)))
        ax = fig.add_subplot()
        _apply_scale(ax, "x", True, [p.x for p in every])
        _apply_scale(ax, "y", True, [p.y for p in every])
        handles, labels = _draw_series(ax, [(s, pts) for s, pts, _ in kept])
        texts = [_point_label(ax, p) for p in [p for p in every if p.label][:POINT_LABELS]]
        more = _style_handles(any(s.flagged for s, *_ in kept), any(s.reference for s, *_ in kept),
                              line=True)
        _legend(fig, handles + more[0], labels + more[1])
        _titles(ax, title, x_label, y_label)
        _place_labels(fig, ax, texts, [(p.x, p.y) for p in every])
        return _svg(fig, title)


_LABEL_ROWS = 0.75  # bar rows: the height of one level of line labels above the bars


def bars(points: list[Point], *, title: str, y_label: str, higher_is_better: bool,
         chance: float | None = None, lines: Sequence[Line] = (), log: bool = False) -> str:
    """Horizontal bars, one per model, best first (at the top): task scores, perplexity.

    ``y_label`` names the value axis (drawn horizontally); each bar carries its value.  Bars
    start at zero on a linear axis; with ``log`` (e.g. perplexities from 80 to 10,000) the axis
    is logarithmic and starts where the data and lines do.  ``chance`` and ``lines`` are drawn
    as vertical lines (dotted and dashed).  Flagged rows are hollow bars, reference rows are
    hatched.  Returns "" when no point has a usable value.
    """
    from matplotlib.patches import Patch

    usable = [p for p in points if _usable(p.y, log) is not None]
    if not usable:
        return ""
    lines = [line for line in lines if _usable(line.value, log) is not None]
    chance = _usable(chance, log)
    usable.sort(key=lambda p: (-p.y if higher_is_better else p.y, p.label))
    with _style():
        marked = len(lines) + (chance is not None)
        fig = _new_figure((FIGSIZE[0], max(2.4, 0.27 * (len(usable) + _LABEL_ROWS * marked) + 1.3)))
        ax = fig.add_subplot()
        ax.grid(axis="y", visible=False)
        extra = [line.value for line in lines] + ([chance] if chance is not None else [])
        values = [p.y for p in usable] + extra
        if log:
            lo, hi = log_limits(values)
            hi *= (hi / lo) ** 0.12  # room for the value written after the longest bar
            ax.set_xscale("log")
            ax.set_xlim(lo, hi)
            _set_log_axis(ax.xaxis, lo, hi)
            base = lo
        else:
            lo, hi = linear_limits(values, zero=True)
            hi += 0.12 * (hi - lo)
            ax.set_xlim(lo, hi)
            _set_linear_axis(ax.xaxis)
            base = 0.0
        rows = range(len(usable))
        for row, p in zip(rows, usable, strict=True):
            fill = colour(p.family)
            # A hatch is drawn in the edge colour: white on a filled bar, the family's on a
            # hollow one.
            ax.barh(row, p.y - base, left=base, height=0.7, zorder=2,
                    color="white" if p.flagged else fill,
                    edgecolor=fill if p.flagged else "white",
                    linewidth=1.5 if p.flagged else 0.0, hatch="////" if p.reference else None)
            # An offset, not a leading space: browsers drop leading spaces of SVG text.
            ax.annotate(f"{p.y:.4g}", (p.y, row), textcoords="offset points", xytext=(3, 0),
                        va="center", ha="left", fontsize=MIN_FONT, color="#333333", zorder=4)
        ax.set_yticks(list(rows), labels=[shorten(p.label, LABEL_CHARS) for p in usable])
        # Above the best bar, a band with one level per line label, so no label covers a bar.
        marks = [(line.value, line.text, "--", LITERATURE_COLOUR) for line in lines]
        if chance is not None:
            marks.append((chance, f"chance {chance:.3g}", ":", "#555555"))
        levels = [-0.6 - _LABEL_ROWS * j for j in range(len(marks))]
        ax.set_ylim(len(usable) - 0.5, -0.6 - _LABEL_ROWS * len(marks))  # best at the top
        texts: list = []
        for value, words, style, shade in marks:
            ax.axvline(value, color=shade, ls=style, lw=1.0, zorder=3)
            text = ax.annotate(shorten(words, LINE_CHARS), (value, levels[0]),
                               textcoords="offset points", xytext=(3, 1), fontsize=MIN_FONT,
                               color=shade, zorder=5)
            texts.append((text, [(dx, 1, ha, "bottom", (value, y)) for y in levels
                                 for dx, ha in ((3, "left"), (-3, "right"))]))
        handles, labels = [], []
        for family in sorted({p.family for p in usable}, key=_family_rank):
            handles.append(Patch(color=colour(family)))
            labels.append(family if family in FAMILIES else "other")
        if any(p.flagged for p in usable):
            handles.append(Patch(facecolor="white", edgecolor="#777777", linewidth=1.5))
            labels.append(_NOT_CONVERGED)
        if any(p.reference for p in usable):
            handles.append(Patch(facecolor="#999999", hatch="////", edgecolor="white"))
            labels.append(_REFERENCE)
        _legend(fig, handles, labels)
        better = " (higher is better)" if higher_is_better else " (lower is better)"
        _titles(ax, title, shorten(y_label, AXIS_CHARS[0] - len(better)) + better, None)
        _place_labels(fig, ax, texts)
        return _svg(fig, title)


# Line hatches only: dotted and circle hatches are written as thousands of SVG path segments.
_HATCHES = ("", "////", "\\\\\\\\", "xxxx", "----", "||||")
_SHADES = (0.0, 0.45, -0.3, 0.65, -0.5, 0.25)


def grouped_bars(groups: dict[str, dict[str, float]], families: dict[str, str], *,
                 title: str, x_label: str, log_x: bool = True) -> str:
    """Horizontal bars grouped by model, one bar per series (e.g. "train tok/s cpu",
    "score tok/s cpu"): throughput by model and device.

    ``groups`` maps a model label to {series name: value}; ``families`` maps a model label to
    its family (the bar colour; a missing one is "other").  Series are told apart by shade and
    hatching, in the order they first appear.  Models are ordered by their largest value,
    largest first.  Values a log axis cannot show are left out; returns "" if none is left.
    """
    from matplotlib.patches import Patch

    kept = {}
    for label, values in groups.items():
        row = {name: v for name, v in values.items() if _usable(v, log_x) is not None}
        if row:
            kept[label] = row
    if not kept:
        return ""
    names: list[str] = []
    for row in kept.values():
        names += [name for name in row if name not in names]
    order = sorted(kept, key=lambda label: (-max(kept[label].values()), label))
    per = len(names)
    with _style():
        fig = _new_figure((FIGSIZE[0], max(2.4, (0.18 * per + 0.12) * len(order) + 1.3)))
        ax = fig.add_subplot()
        ax.grid(axis="y", visible=False)
        values = [v for row in kept.values() for v in row.values()]
        if log_x:
            lo, hi = log_limits(values)
            ax.set_xscale("log")
            ax.set_xlim(lo, hi)
            _set_log_axis(ax.xaxis, lo, hi)
            base = lo
        else:
            lo, hi = linear_limits(values, zero=True)
            ax.set_xlim(lo, hi)
            _set_linear_axis(ax.xaxis)
            base = 0.0
        height = 0.8 / per
        for k, name in enumerate(names):  # one call per series: its bars in every row
            rows = [row for row, label in enumerate(order) if name in kept[label]]
            ax.barh([row - 0.4 + height * (k + 0.5) for row in rows],
                    [kept[order[row]][name] - base for row in rows], left=base,
                    height=height * 0.92, hatch=_HATCHES[k % len(_HATCHES)] or None,
                    color=[_shade(colour(families.get(order[row], "other")),
                                  _SHADES[k % len(_SHADES)]) for row in rows],
                    edgecolor="white", linewidth=0.0, zorder=2)
        ax.set_yticks(range(len(order)), labels=[shorten(label, LABEL_CHARS) for label in order])
        ax.set_ylim(len(order) - 0.5, -0.5)
        handles, labels = _family_handles(families.get(label, "other") for label in order)
        handles = [Patch(color=h.get_color()) for h in handles]
        for k, name in enumerate(names):
            handles.append(Patch(facecolor=_shade("#777777", _SHADES[k % len(_SHADES)]),
                                 hatch=_HATCHES[k % len(_HATCHES)] or None, edgecolor="white"))
            labels.append(name)
        _legend(fig, handles, labels)
        _titles(ax, title, x_label, None)
        return _svg(fig, title)
