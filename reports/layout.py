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
import math
import weakref
from dataclasses import dataclass, field
from typing import Any

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


@dataclass
class Label:
    """A text that :func:`place_labels` places inside the axes.

    ``text``: an annotation made by :func:`annotation`.  ``near``: its placements beside its
    anchor, best first, each (x offset, y offset, ha, va) in points from the anchor, with an
    optional fifth item, another anchor (in the annotation's coordinates).  ``own``: the index
    of the marker it names among place_labels' ``points`` (None: it names a line);
    ``rule``: the index of the line it names among place_labels' ``rules``.  ``leader``: it may
    sit further off, joined to its anchor by a thin leader line, where no near place is free:
    at one of ``far`` (placements as ``near``'s), or where empty, around its first anchor up
    to :data:`_RING`'s last distance away.  ``key``: its legend entry, where it fits nowhere.
    """

    text: Any
    near: list
    own: int | None = None
    rule: int | None = None
    leader: bool = True
    far: list = field(default_factory=list)
    key: str = ""  # where set: the label's entry in the legend if it fits nowhere in the axes


LEADER_COLOUR = "#8A8A8A"


def annotation(ax, words: str, xy, *, name: str, radius: float = 0.0, xycoords="data",
               color: str = "#333333", zorder: float = 5):
    """A label of ``words`` for :func:`place_labels`, anchored at ``xy``, at MIN_FONT, with a
    leader line (hidden until place_labels moves the label away) that stops ``radius`` points
    short of ``xy`` (a marker's edge).  ``name`` becomes its SVG id, ``lmlabel-<name>``, and
    its leader's, ``lmleader-<name>``, so a browser can tell which label names which point."""
    note = ax.annotate(words, xy, xycoords=xycoords, textcoords="offset points", xytext=(0, 0),
                       fontsize=MIN_FONT, color=color, zorder=zorder,
                       arrowprops={"arrowstyle": "-", "color": LEADER_COLOUR, "lw": 0.7,
                                   "shrinkA": 0.0, "shrinkB": radius + 1.0})
    note.arrow_patch.set_visible(False)
    note.set_gid(f"lmlabel-{name}")
    note.arrow_patch.set_gid(f"lmleader-{name}")
    return note


def marker_radius(drawn) -> float:
    """The radius in points of a Line2D's markers, their edge included (a diamond's is its
    half diagonal; a star's tips reach half its size)."""
    size = drawn.get_markersize() * (0.71 if drawn.get_marker() == "D" else 0.5)
    return size + drawn.get_markeredgewidth() / 2


def point_label(ax, words: str, xy, name: str, own: int, obstacles: list) -> Label:
    """A label of ``words`` written beside the marker at ``xy`` (the ``own``-th of
    ``obstacles``, each (x, y, radius)), with the places where :func:`place_labels` may put it
    (right above first, then the other corners, then centred above and below; else further off
    with a leader line)."""
    r = obstacles[own][2] + 1.5
    text = annotation(ax, words, xy, name=name, radius=obstacles[own][2])
    return Label(text, [(r, r * 0.7, "left", "bottom"), (-r, r * 0.7, "right", "bottom"),
                        (r, -r * 0.7, "left", "top"), (-r, -r * 0.7, "right", "top"),
                        (0, r + 1, "center", "bottom"), (0, -r - 1, "center", "top"),
                        (r + 1, 0, "left", "center"), (-r - 1, 0, "right", "center")], own=own)


def place_labels(fig, ax, labels: list[Label], points=(), *, rules=(), paths=(),
                 key=None) -> None:
    """Lay the figure out, then place point, mark and line labels (see :func:`_declutter`).

    ``points`` are the markers no label may cover, each (x, y, radius in points) in data
    coordinates; ``rules`` the reference lines, each ("x" or "y", value): a vertical or a
    horizontal line at a data value; ``paths`` the drawn curves, each a list of (x, y).  The
    labels are left out of the layout, so placing them keeps it current: :func:`fit_texts`
    then checks the texts without running it again.

    ``key``: called with the entries (:attr:`Label.key`) of the labels that fit nowhere, it
    adds them to the legend; the figure is then laid out again and the other labels placed
    anew, as the axes may have narrowed."""
    start = [(label.text.get_text(), label.text.xy) for label in labels]
    for label in labels:
        label.text.set_in_layout(False)  # placed inside the axes; the layout must not make room
    _place(fig, ax, labels, points, rules, paths)
    keyed = [label for label in labels if label.key and not label.text.get_visible()]
    if key is None or not keyed:
        return
    key([label.key for label in keyed])
    for label, (words, xy) in zip(labels, start, strict=True):
        label.text.set_text(words)
        label.text.xy = xy
        label.text.set_visible(True)
        label.text.arrow_patch.set_visible(False)
    for label in keyed:
        label.text.set_visible(False)
    _place(fig, ax, [label for label in labels if label not in keyed], points, rules, paths)


def _place(fig, ax, labels: list[Label], points, rules, paths) -> None:
    lay_out(fig)  # the axes' final box
    _LAID_OUT.add(fig)
    if not labels:
        return
    scale = fig.dpi / 72.0
    data = ax.transData
    centres = data.transform([(x, y) for x, y, _ in points]) if len(points) else []
    radii = [r * scale for *_, r in points]
    x_in, y_in = ax.get_xlim()[0], ax.get_ylim()[0]  # any value the other axis can show
    pixel_rules = [("x", float(data.transform((v, y_in))[0])) if axis == "x"
                   else ("y", float(data.transform((x_in, v))[1])) for axis, v in rules]
    segments = []
    for path in paths:
        if len(path) > 1:
            xy = data.transform(list(path))
            segments += [(*a, *b) for a, b in zip(xy[:-1], xy[1:], strict=True)]
    scene = _Scene(ax.get_window_extent(fig.canvas.get_renderer()), centres, radii,
                   pixel_rules, segments)
    _declutter(ax, labels, fig.canvas.get_renderer(), scene)


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
_GAP = 2.0  # pixels kept clear between a label and another label, a marker or a line
_APART = 14.0  # pixels between a label away from its anchor and every marker: it names none
_RING = (14, 24, 36, 52, 72, 96)  # points: how far a label with a leader may sit from its point
_ANGLES = (30, 150, -30, -150, 60, 120, -60, -120, 0, 180, 90, -90)  # degrees, tried in order


def _ring(distance: float) -> list[tuple]:
    """Placements ``distance`` points from the anchor, each aligned away from it."""
    out = []
    for angle in _ANGLES:
        c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
        ha = "left" if c > 0.25 else "right" if c < -0.25 else "center"
        va = "bottom" if s > 0.25 else "top" if s < -0.25 else "center"
        out.append((distance * c, distance * s, ha, va))
    return out


def _anchor_pixels(text, anchor) -> tuple[float, float]:
    """``text``'s anchor (its ``xy``, or ``anchor`` where given) in display pixels."""
    from matplotlib.transforms import Transform

    where = text.xycoords if isinstance(text.xycoords, Transform) else text.axes.transData
    px, py = where.transform(anchor if anchor is not None else text.xy)
    return float(px), float(py)


class _Scene:
    """What a label must keep clear of, in display pixels: the axes' box, the markers (centre
    and radius), the reference lines, the drawn curves' segments, and the labels and leader
    lines placed so far."""

    def __init__(self, box, markers, radii, rules, segments):
        import numpy as np

        self.np = np
        self.box = box
        self.markers = np.asarray(markers, float).reshape(-1, 2)
        self.radii = np.asarray(radii, float)
        self.rules = rules  # [("x" or "y", pixel)]
        self.segments = np.asarray(segments, float).reshape(-1, 4)
        self.kept = np.zeros((0, 4))
        self.leaders = np.zeros((0, 4))

    def _box_distance(self, x0, y0, x1, y1):
        np = self.np
        px, py = self.markers[:, 0], self.markers[:, 1]
        dx = np.maximum(np.maximum(x0 - px, px - x1), 0.0)
        dy = np.maximum(np.maximum(y0 - py, py - y1), 0.0)
        return np.hypot(dx, dy) - self.radii  # from the box to each marker's edge

    def _same_place(self, own: int):
        """Markers drawn where the own one is (a curve's point under a crossover's star)."""
        np = self.np
        d = np.hypot(*(self.markers - self.markers[own]).T)
        return d <= self.radii[own]

    def clear(self, x0, y0, x1, y1, *, own=None, rule=None, near=True) -> bool:
        """A box inside the axes that covers no label, marker, leader, curve or other line, and,
        placed ``near`` its own marker, is closer to it than to any other marker."""
        np, box = self.np, self.box
        if x0 < box.x0 or x1 > box.x1 or y0 < box.y0 or y1 > box.y1:
            return False
        k = self.kept
        if len(k) and np.any((x0 < k[:, 2] + _GAP) & (k[:, 0] - _GAP < x1)
                             & (y0 < k[:, 3] + _GAP) & (k[:, 1] - _GAP < y1)):
            return False
        distance = self._box_distance(x0, y0, x1, y1)
        if len(distance) and distance.min() <= _GAP:
            return False
        for j, (axis, at) in enumerate(self.rules):
            lo, hi = (y0, y1) if axis == "y" else (x0, x1)
            room = -1.0 if j == rule else _GAP  # a line's own label may touch it
            if lo - room < at < hi + room:
                return False
        if _crossing(self.segments, x0, y0, x1, y1) or _crossing(self.leaders, x0, y0, x1, y1):
            return False
        if own is not None and len(distance) > 1:
            foreign = ~self._same_place(own)
            if foreign.any():
                nearest = distance[foreign].min()
                # placed with a leader, far from every other marker; beside its own marker,
                # nearer to it than to any other
                if nearest < (distance[own] + 3 * _GAP if near else _APART):
                    return False
        elif not near and len(distance) and distance.min() < _APART:
            return False  # a line's label off its line: not beside a point it would seem to name
        return True

    def leader_clear(self, ax0, ay0, bx, by, own) -> bool:
        """A leader from (ax0, ay0) (the label's centre) to its point (bx, by) passes no other
        marker, label or leader."""
        np = self.np
        if own is not None and len(self.markers):
            a, b = np.array([ax0, ay0]), np.array([bx, by])
            d = b - a
            t = np.clip(((self.markers - a) @ d) / max(d @ d, 1e-9), 0.0, 1.0)
            gap = np.hypot(*(a + t[:, None] * d - self.markers).T) - self.radii
            foreign = ~self._same_place(own)
            if np.any(foreign & (gap <= _GAP)):
                return False
        for x0, y0, x1, y1 in self.kept:
            if _crossing(np.array([[ax0, ay0, bx, by]]), x0 - _GAP, y0 - _GAP, x1 + _GAP,
                         y1 + _GAP):
                return False
        return not _cross_segments(self.leaders, ax0, ay0, bx, by)

    def keep(self, x0, y0, x1, y1, leader=None) -> None:
        self.kept = self.np.vstack([self.kept, [x0, y0, x1, y1]])
        if leader is not None:
            self.leaders = self.np.vstack([self.leaders, leader])


def _crossing(segments, x0, y0, x1, y1) -> bool:
    """Whether any segment (rows of ax, ay, bx, by) enters the box."""
    import numpy as np

    if not len(segments):
        return False
    ax_, ay, bx, by = segments.T
    near = ((np.minimum(ax_, bx) <= x1) & (np.maximum(ax_, bx) >= x0)
            & (np.minimum(ay, by) <= y1) & (np.maximum(ay, by) >= y0))
    if not near.any():
        return False
    ax_, ay, bx, by = segments[near].T
    dx, dy = bx - ax_, by - ay
    sides = np.stack([dx * (cy - ay) - dy * (cx - ax_)
                      for cx, cy in ((x0, y0), (x0, y1), (x1, y0), (x1, y1))])
    return bool(np.any(~((sides > 0).all(0) | (sides < 0).all(0))))


def _cross_segments(segments, ax0, ay0, bx, by) -> bool:
    """Whether the segment (ax0, ay0)-(bx, by) crosses any of ``segments``."""
    import numpy as np

    if not len(segments):
        return False
    cx, cy, dx, dy = segments.T

    def side(px, py, qx, qy, rx, ry):
        return np.sign((qx - px) * (ry - py) - (qy - py) * (rx - px))

    return bool(np.any((side(ax0, ay0, bx, by, cx, cy) * side(ax0, ay0, bx, by, dx, dy) < 0)
                       & (side(cx, cy, dx, dy, ax0, ay0) * side(cx, cy, dx, dy, bx, by) < 0)))


def _declutter(ax, labels: list[Label], renderer, scene: _Scene) -> None:
    """Place each label of ``labels`` (highest priority first) inside ``ax``, clear of
    everything in ``scene``: at the first of its own placements beside its anchor, else (where
    it may) up to :data:`_RING`'s last distance away with a leader line, else shortened (down
    to a dozen characters) and tried again, else hidden (its row is still in the page's tables).

    Each text is measured once per length tried (a text's size does not depend on where it
    goes); its box at every placement is then computed, not drawn."""
    from matplotlib.text import Text

    scale = ax.figure.dpi / 72.0  # points to pixels
    for label in labels:
        text = label.text
        full = text.get_text()
        lengths = [len(full)] + [n for n in (len(full) * 3 // 4, len(full) // 2, 12)
                                 if 12 <= n < len(full)]
        home = label.near[0][4] if len(label.near[0]) > 4 else None
        tries = [(p, False) for p in label.near]
        if label.leader:
            tries += [(p, True) for p in label.far or
                      [p for distance in _RING for p in _ring(distance)]]
        chosen = None
        for n in lengths:
            text.set_text(shorten(full, n) if n < len(full) else full)
            extent = Text.get_window_extent(text, renderer)
            width, height = extent.width, extent.height
            for placement, leader in tries:
                dx, dy, ha, va, *anchor = placement
                ox, oy = _anchor_pixels(text, anchor[0] if anchor else home)
                x0 = ox + dx * scale - _H_SHIFT[ha] * width
                y0 = oy + dy * scale - _V_SHIFT[va] * height
                x1, y1 = x0 + width, y0 + height
                if not scene.clear(x0, y0, x1, y1, own=label.own, rule=label.rule,
                                   near=not leader):
                    continue
                line = (x0 + x1) / 2, (y0 + y1) / 2, ox, oy
                if leader and not scene.leader_clear(*line, label.own):
                    continue
                scene.keep(x0, y0, x1, y1, line if leader else None)
                chosen = placement, leader, anchor[0] if anchor else home
                break
            if chosen:
                break
        if chosen is None:
            text.set_text(full)
            text.set_visible(False)
            continue
        (dx, dy, ha, va, *_), leader, anchor = chosen
        if anchor is not None:
            text.xy = anchor
        text.set_position((dx, dy))
        text.set_horizontalalignment(ha)
        text.set_verticalalignment(va)
        text.arrow_patch.set_visible(leader)
