"""Layout of the report's figures: every text inside the figure, labels beside their points.

A figure made by :func:`lmladder.reports.svg.new_figure` has one axes and a legend on its right;
:func:`lay_out` sizes the axes to the room their decorations and the legend leave
(:func:`_fit_axes`, what constrained layout does for this one shape at a fraction of its cost).
Point, mark and line labels are then placed by :func:`place_labels`: each at the first of its
places that stays inside the axes, off the other labels and off the data, shortened (with
:func:`shorten`) and then hidden where none is left.  Last, :func:`fit_texts` checks every text
against the figure's bounds (:func:`texts_outside`): a text still outside is shrunk down to
:data:`MIN_FONT`, then shortened, and the layout is frozen, so the SVG is drawn as checked.

A report draws dozens of figures, so each is drawn once: the layout and the checks measure texts
with the canvas's cached Agg renderer without rendering anything, and label placement computes
each label's box at every place it tries from one measurement.  matplotlib is imported inside
the functions.
"""

from __future__ import annotations

import logging
import weakref

log = logging.getLogger(__name__)

MIN_FONT = 9.0  # points: the smallest text drawn
_PAD = 3 / 72  # inches: the margin around the figure's content (constrained layout's default)

# Figures made by new_figure whose layout is not frozen yet: lay_out lays them out itself.
_FITTED: weakref.WeakSet = weakref.WeakSet()
# Figures whose layout is current: laid out by place_labels, nothing in the layout changed since.
_LAID_OUT: weakref.WeakSet = weakref.WeakSet()


def shorten(label: str, n: int) -> str:
    """``label`` on one line and at most ``n`` characters, cut in the middle with "…".

    The middle goes rather than the end because model labels tell their rows apart at both
    ends ("Transformer 2x64 (12 s)" against "Transformer 4x256 (60 s)").  Runs of whitespace,
    newlines included, become one space.

    >>> shorten("Elman RNN ReLU 1x128 (6 s)", 15)
    'Elman RNN…6 s)'
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


def manage(fig) -> None:
    """Have :func:`lay_out` lay ``fig`` (one axes, a legend on its right) out with
    :func:`_fit_axes` until :func:`fit_texts` freezes its layout."""
    _FITTED.add(fig)


def place_labels(fig, ax, texts: list, points=()) -> None:
    """Lay the figure out, then place point and line labels (see :func:`_declutter`).

    ``texts`` is a list of (text artist, its placements, highest priority first); ``points``
    are the data points, in data coordinates, that no label may cover.  An annotation's
    position is its offset from its point, so its placements are offsets.  The labels are
    left out of the layout, so placing them keeps it current: :func:`fit_texts` then checks
    the texts without running it again."""
    for text, _ in texts:
        text.set_in_layout(False)  # placed inside the axes; the layout must not make room
    lay_out(fig)  # the axes' final box
    _LAID_OUT.add(fig)
    if not texts:
        return
    obstacles = ax.transData.transform(list(points)) if len(points) else ()
    _declutter(ax, texts, fig.canvas.get_renderer(), [tuple(p) for p in obstacles])


def fit_texts(fig, rounds: int = 4) -> None:
    """Bring every text inside the figure: shrink fonts above MIN_FONT by 15%, shorten texts
    already at MIN_FONT by a quarter, and lay out again; the layout is then frozen so that the
    SVG is drawn exactly as checked.  A layout left current by :func:`place_labels` is not run
    again unless a text had to change."""
    laid_out = fig in _LAID_OUT
    _LAID_OUT.discard(fig)
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
    # figure once, instead of a first draw to run a layout engine.  svg.style keeps the rc
    # defaults from bringing one back.
    fig.set_layout_engine(None)
    _FITTED.discard(fig)


def texts_outside(fig) -> list:
    """The visible, non-empty text artists of ``fig`` whose extent leaves the figure's box.

    The figure is laid out first (as a draw would lay it out, but nothing is rendered), and
    tick labels of ticks that fall outside their axis's view are skipped (matplotlib does
    not draw them).  A tolerance of half a pixel absorbs rounding.
    """
    lay_out(fig)
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


def lay_out(fig) -> None:
    """Lay ``fig`` out as a draw would, without rendering anything: a figure handed to
    :func:`manage` with :func:`_fit_axes`, any other with its layout engine.

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
            # then fall outside the figure, which fit_texts repairs or logs.
            warnings.filterwarnings("ignore", "constrained_layout not applied", UserWarning)
            engine.execute(fig)


def _fit_axes(fig, renderer) -> None:
    """Lay out a figure of one axes and a legend on its right: the axes take all the room that
    their decorations (tick labels, axis labels, title) and the legend leave.

    What constrained layout does for this one shape (within its padding), at a fraction of its
    cost: two passes, as an automatic tick locator may pick other ticks once the axes' size
    changed (one where both axes have fixed ticks).
    Texts left out of the layout (point labels) and the x extent of the title and x label are
    not counted (they are fitted by :func:`fit_texts`), as with constrained layout."""
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
        # A figure too small for its decorations keeps a sliver of axes; fit_texts then
        # shrinks or shortens what is outside.
        right, top = max(right, left + 0.1 * width), max(top, bottom + 0.1 * height)
        ax.set_position([left / width, bottom / height, (right - left) / width,
                         (top - bottom) / height])
        if all(isinstance(axis.get_major_locator(), FixedLocator)
               for axis in (ax.xaxis, ax.yaxis)):
            break  # fixed ticks (log axes, bar rows): the decorations did not change


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
