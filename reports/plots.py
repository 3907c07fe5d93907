"""The report's figures, as inline SVG: a scatter with its Pareto front, curves, trade-offs
between model variants, bars and grouped bars, one colour per model family everywhere.

Every figure function takes plain dataclasses (:class:`Point`, :class:`Series`, :class:`Line`,
:class:`Mark`) that the page builds from result records, and returns a string of SVG markup
(``<svg ...>...</svg>``, no XML prolog, no DOCTYPE) ready to be embedded in the page, or ``""``
when nothing is left to draw.  The markup is deterministic (same input, same string) and its
``id`` attributes are unique to the figure, so several figures on one page never clash.

The figures are made for a reader pasting them into a slide: 6.4 x 3.8 in (bars grow with their
rows), fonts of at least 9 pt, light grid lines, the legend outside the axes, colours from the
Okabe-Ito colour-blind-safe palette.  Scatter points of one look share one artist, and at most
:data:`POINT_LABELS` points and :data:`MARK_LABELS` marks are labelled per figure.

This module holds the data types, the colours and the figure kinds; the rest lives beside it:

- :mod:`lmladder.reports.axes`: which values an axis can show, limits, ticks and tick labels
  (log axes start and end where the data and the reference lines do);
- :mod:`lmladder.reports.layout`: fitting the axes and legend into the figure, placing labels
  off the data and off each other, and bringing every text inside the figure (shrunk, then
  shortened with :func:`shorten`; checked by :func:`texts_outside`);
- :mod:`lmladder.reports.svg`: the matplotlib style, new figures, and the SVG markup with its
  ids.

matplotlib is imported inside the functions, so ``import lmladder.reports`` stays light, and no
pyplot state is used.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from lmladder.numbers import finite
from lmladder.reports import svg
from lmladder.reports.axes import (
    apply_scale,
    bar_axis,
    linear_limits,
    log_limits,
    log_ticks,
    showable,
    tick_text,
)
from lmladder.reports.layout import (
    MIN_FONT,
    Label,
    annotation,
    marker_radius,
    place_labels,
    point_label,
    shorten,
    texts_outside,
)

# Importable from here as before (the page and the tests use them as plots.<name>).
__all__ = [
    "FAMILIES", "FAMILY_COLOURS", "LITERATURE_COLOUR", "FIGSIZE", "MIN_FONT", "LABEL_CHARS",
    "TITLE_CHARS", "AXIS_CHARS", "LINE_CHARS", "POINT_CHARS", "POINT_LABELS", "MARK_LABELS",
    "Point", "Series", "Line", "Mark", "colour", "shorten", "log_limits", "linear_limits",
    "log_ticks", "tick_text", "pareto_front", "texts_outside",
    "pareto", "curves", "tradeoff", "bars", "grouped_bars",
]

# Every figure goes through this name, so a test can wrap it to see the matplotlib figure.
_svg = svg.markup

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
LABEL_CHARS = 28  # characters: tick labels and legend entries longer than this are shortened
TITLE_CHARS = 70  # characters: a title longer than this would not fit the figure's width
AXIS_CHARS = (55, 45)  # characters: the longest x and y axis labels that fit beside the axes
LINE_CHARS = 40  # characters: a literature line's text, drawn inside the axes
POINT_CHARS = 22  # characters: a label written beside a point
POINT_LABELS = 12  # labels written beside scatter points: the Pareto front's, then the best
MARK_LABELS = 6  # annotated marks (e.g. crossovers) whose text is written

_REFERENCE_MARKER = "D"  # a diamond: lmladder reference-run rows
_MARKERS = ("o", "s", "^", "v", "P", "X", "<", ">")  # series of one family told apart
_FRONT_COLOUR = "#222222"
_NOT_CONVERGED = "not converged"
_REFERENCE = "lmladder reference run"

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

    ``flagged`` series are drawn dashed; ``reference`` ones with diamonds.  ``hollow`` says,
    point by point (in the order of ``points``), which markers are hollow (a learning curve's
    point is a row of its own, converged or not); where empty, every marker is hollow exactly
    when the series is ``flagged``.  ``notes``, where given, label the points one by one (e.g.
    an HMM's "256 states · 9 it."; "" leaves a point unlabelled).
    """

    label: str
    family: str
    points: tuple[tuple[float, float], ...]
    flagged: bool = False
    reference: bool = False
    hollow: tuple[bool, ...] = ()
    notes: tuple[str, ...] = ()


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
# Decorations: titles, literature lines, legends, shades


def _titles(ax, title: str, x_label: str | None, y_label: str | None) -> None:
    ax.set_title(shorten(title, TITLE_CHARS), loc="left")
    if x_label:
        ax.set_xlabel(shorten(x_label, AXIS_CHARS[0]))
    if y_label:
        ax.set_ylabel(shorten(y_label, AXIS_CHARS[1]))


def _horizontal_lines(ax, lines: list[Line], labels: list, rules: list) -> None:
    """Dashed literature lines across ``ax``, each written on the line (at its right end, else
    its left end or middle), else away from it with a leader line."""
    from matplotlib.transforms import blended_transform_factory

    where = blended_transform_factory(ax.transAxes, ax.transData)
    for j, line in enumerate(lines):
        drawn = ax.axhline(line.value, color=LITERATURE_COLOUR, ls="--", lw=1.0, zorder=1)
        drawn.set_gid(f"lmrule-{j}")
        rules.append(("y", line.value))
        text = annotation(ax, shorten(line.text, LINE_CHARS), (0.99, line.value),
                          name=f"line.{j}", xycoords=where, color=LITERATURE_COLOUR, zorder=4)
        ends = ((0.99, "right"), (0.01, "left"), (0.5, "center"))
        # Off the line, its leader is vertical: a short stroke up or down to the line.
        labels.append(Label(text, [(0, 1.5 if va == "bottom" else -1.5, ha, va, (at, line.value))
                                   for at, ha in ends for va in ("bottom", "top")],
                            rule=len(rules) - 1, key=f"{line.value:g}: {line.text}",
                            far=[(0, d if va == "bottom" else -d, "center", va, (at, line.value))
                                 for d in (9, 15, 22, 30, 40) for at in (0.8, 0.5, 0.2, 0.65, 0.35)
                                 for va in ("bottom", "top")]))


def _legend(fig, handles: list, labels: list[str]):
    """The figure's legend, outside the axes on the right (it never hides data); returns the
    ``key`` for :func:`lmladder.reports.layout.place_labels`, which adds the literature lines
    whose text found no room in the axes to it, each as a dashed line and its text."""
    from matplotlib.lines import Line2D

    def key(entries: list[str]) -> None:
        for legend in list(fig.legends):
            legend.remove()
        more = [Line2D([], [], color=LITERATURE_COLOUR, ls="--", lw=1.0) for _ in entries]
        _legend(fig, handles + more, labels + entries)

    if handles:
        fig.legend(handles, [shorten(label, LABEL_CHARS) for label in labels],
                   loc="outside right upper", frameon=False, handlelength=1.8)
    return key


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


# --------------------------------------------------------------------------------------------
# The figures


def pareto(points: list[Point], *, title: str, x_label: str, y_label: str,
           lines: Sequence[Line] = (), log_x: bool = True, log_y: bool = True) -> str:
    """A scatter of models (e.g. test perplexity against parameters or training FLOPs) with
    its Pareto front: the staircase through the points no other point beats on both axes
    (lower is better on both).

    Colour is the family; each point is hollow or filled by its own row's verdict (hollow:
    ``flagged``, not converged), and the front is drawn through the converged points only (a
    model cut short proves nothing about what its size can reach).  Diamonds are reference-run
    rows.  The front's points are labelled, then the best others where room is left, at most
    :data:`POINT_LABELS` in all (the page's tables name every row).  ``lines`` are literature
    values of y.  Points without a usable x or y are left out; returns "" when none is left.
    """
    usable = [p for p in points
              if showable(p.x, log_x) is not None and showable(p.y, log_y) is not None]
    if not usable:
        return ""
    lines = [line for line in lines if showable(line.value, log_y) is not None]
    front = pareto_front([p for p in usable if not p.flagged])
    with svg.style():
        fig = svg.new_figure(FIGSIZE)
        ax = fig.add_subplot()
        apply_scale(ax, "x", log_x, [p.x for p in usable])
        apply_scale(ax, "y", log_y, [p.y for p in usable] + [line.value for line in lines])
        texts: list = []
        rules: list = []
        _horizontal_lines(ax, lines, texts, rules)
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
        markers: dict[int, tuple] = {}  # id(point) -> (its name, its index among the markers)
        obstacles = []
        for k, ((_, fill, flagged, reference), group) in enumerate(sorted(looks.items())):
            (drawn,) = ax.plot([p.x for p in group], [p.y for p in group], ls="none",
                               zorder=3, marker=_REFERENCE_MARKER if reference else "o",
                               markersize=6 if reference else 7, color=fill,
                               markerfacecolor="white" if flagged else fill,
                               markeredgewidth=1.5 if flagged else 0.8,
                               markeredgecolor=fill if flagged else "white")
            drawn.set_gid(f"lmpoints-{k}")
            for j, p in enumerate(group):
                markers[id(p)] = f"{k}.{j}", len(obstacles)
                obstacles.append((p.x, p.y, marker_radius(drawn)))
        on_front = {id(p) for p in front}
        ranked = front + sorted((p for p in usable if id(p) not in on_front), key=lambda p: p.y)
        # More labels would not fit a half-slide figure (and each costs a measurement); the
        # unlabelled points are in the legend's families and in the page's tables.
        texts += [point_label(ax, shorten(p.label, POINT_CHARS), (p.x, p.y),
                              *markers[id(p)], obstacles)
                   for p in ranked[:POINT_LABELS]]
        handles, labels = _family_handles(p.family for p in usable)
        more = _style_handles(any(p.flagged for p in usable), any(p.reference for p in usable))
        from matplotlib.lines import Line2D

        if len(front) > 1:
            more[0].append(Line2D([], [], color=_FRONT_COLOUR, lw=1.0, alpha=0.7))
            more[1].append("Pareto front")
        key = _legend(fig, handles + more[0], labels + more[1])
        _titles(ax, title, x_label, y_label)
        place_labels(fig, ax, texts, obstacles, rules=rules, key=key)
        return _svg(fig, title)


def _series_size(count: int) -> tuple[float, float]:
    """The size of a figure whose legend lists ``count`` series (with room for the entries
    that explain the line styles): taller than :data:`FIGSIZE` only when the legend needs it."""
    return FIGSIZE[0], max(FIGSIZE[1], 0.21 * (count + 3) + 0.8)


def _draw_series(ax, kept: list[tuple[Series, tuple]]) -> tuple[list, list, list, list]:
    """Draw each (series, its (x, y, hollow) points) as a line with markers, each marker
    hollow or filled by its own point's flag.  Returns the legend's handles and labels, the
    markers as (x, y, radius in points) and, per series, each point's (name, index among the
    markers) for its label.  Colour is the family; series of one family differ in shade and
    marker.  Flagged series are dashed, reference series have diamonds."""
    from matplotlib.lines import Line2D

    handles, labels, markers, names = [], [], [], []
    within: dict[str, int] = defaultdict(int)
    for k, (s, pts) in enumerate(kept):
        index = within[s.family]
        within[s.family] += 1
        tint = svg.shade(colour(s.family), (0.0, 0.4, -0.35, 0.65)[index % 4])
        look = {"color": tint, "marker": _REFERENCE_MARKER if s.reference
                else _MARKERS[index % len(_MARKERS)], "markersize": 5, "markeredgewidth": 1.2}
        ax.plot([x for x, *_ in pts], [y for _, y, _ in pts], color=tint,
                ls="--" if s.flagged else "-", lw=1.6, zorder=3)[0].set_gid(f"lmcurve-{k}")
        where = {}
        for hollow, suffix in ((False, ""), (True, "h")):
            mine = [(i, x, y) for i, (x, y, h) in enumerate(pts) if h == hollow]
            if not mine:
                continue
            (drawn,) = ax.plot([x for _, x, _ in mine], [y for *_, y in mine], ls="none",
                               markerfacecolor="white" if hollow else tint, zorder=3, **look)
            drawn.set_gid(f"lmpoints-s{k}{suffix}")
            for j, (i, x, y) in enumerate(mine):
                where[i] = f"s{k}{suffix}.{j}", len(markers)
                markers.append((x, y, marker_radius(drawn)))
        names.append([where[i] for i in range(len(pts))])
        handles.append(Line2D([], [], ls="--" if s.flagged else "-", lw=1.6,
                              markerfacecolor="white" if s.flagged else tint, **look))
        labels.append(s.label)
    return handles, labels, markers, names


def _with_flags(s: Series, log_x: bool, log_y: bool) -> tuple:
    """The series' points a log axis can show, as (x, y, hollow), in x order."""
    hollow = s.hollow if len(s.hollow) == len(s.points) else (s.flagged,) * len(s.points)
    return tuple(sorted((x, y, bool(h)) for (x, y), h in zip(s.points, hollow, strict=True)
                        if showable(x, log_x) is not None and showable(y, log_y) is not None))


def _family_rank(family: str) -> int:
    return FAMILIES.index(family) if family in FAMILIES else len(FAMILIES)


def curves(series: list[Series], *, title: str, x_label: str, y_label: str,
           lines: Sequence[Line] = (), marks: Sequence[Mark] = (), log_x: bool = False,
           log_y: bool = False) -> str:
    """Lines of (x, y) points: learning curves (perplexity against training tokens, with
    crossovers as ``marks``), training curves (validation loss against step), HMM perplexity
    against the number of states.

    Colour is the family; series of one family differ in shade and marker.  Flagged series are
    dashed, each marker hollow or filled by its own point (:attr:`Series.hollow`), reference
    series have diamonds; a point with a :attr:`Series.notes` text is labelled with it.  Points
    a log axis cannot show are left out, as are series with none left; returns "" when none is.
    """
    kept = [(s, pts) for s in series if (pts := _with_flags(s, log_x, log_y))]
    if not kept:
        return ""
    lines = [line for line in lines if showable(line.value, log_y) is not None]
    marks = [m for m in marks
             if showable(m.x, log_x) is not None and showable(m.y, log_y) is not None]
    kept.sort(key=lambda item: (_family_rank(item[0].family), item[0].label))
    with svg.style():
        fig = svg.new_figure(_series_size(len(kept)))
        ax = fig.add_subplot()
        xs = [x for _, pts in kept for x, *_ in pts] + [m.x for m in marks]
        ys = [y for _, pts in kept for _, y, _ in pts] + [m.y for m in marks]
        apply_scale(ax, "x", log_x, xs)
        apply_scale(ax, "y", log_y, ys + [line.value for line in lines])
        texts: list = []
        rules: list = []
        _horizontal_lines(ax, lines, texts, rules)
        handles, labels, obstacles, names = _draw_series(ax, kept)
        for (s, pts), named in zip(kept, names, strict=True):
            notes = dict(zip(s.points, s.notes, strict=False))
            texts += [point_label(ax, shorten(note, POINT_CHARS), (x, y), *name, obstacles)
                      for (x, y, _), name in zip(pts, named, strict=True)
                      if (note := notes.get((x, y)))]
        if marks:
            # One artist for every star: one SVG marker definition, used at each point.
            (stars,) = ax.plot([m.x for m in marks], [m.y for m in marks], ls="none",
                               marker="*", markersize=12, color="#111111",
                               markeredgecolor="white", markeredgewidth=0.6, zorder=4)
            stars.set_gid("lmpoints-marks")
            first = len(obstacles)
            obstacles += [(m.x, m.y, marker_radius(stars)) for m in marks]
            # The first MARK_LABELS marks are written (more would cover the curves); the rest
            # are stars only.  Placed before the literature lines' texts.
            texts[:0] = [Label(annotation(ax, shorten(m.text, LINE_CHARS), (m.x, m.y),
                                          name=f"marks.{j}", radius=marker_radius(stars),
                                          color="#111111"),
                               [(dx, dy, ha, va) for dy, va in ((7, "bottom"), (-7, "top"))
                                for dx, ha in ((7, "left"), (-7, "right"))], own=first + j)
                         for j, m in enumerate(marks[:MARK_LABELS])]
        hollow = any(h for _, pts in kept for *_, h in pts)
        more = _style_handles(any(s.flagged for s, _ in kept) or hollow,
                              any(s.reference for s, _ in kept), line=True)
        key = _legend(fig, handles + more[0], labels + more[1])
        _titles(ax, title, x_label, y_label)
        place_labels(fig, ax, texts, obstacles, rules=rules, key=key,
                     paths=[[(x, y) for x, y, _ in pts] for _, pts in kept])
        return _svg(fig, title)


def tradeoff(groups: dict[str, Sequence[Point]], *, title: str, x_label: str,
             y_label: str) -> str:
    """Variants of models on log-log axes, e.g. test perplexity against size on disk or
    against scoring speed: ``groups`` maps a model (its legend entry) to its variants (one
    uncompressed, some quantized or pruned), drawn as points joined by a line in x order.

    Each point's ``label`` is written beside it (a few words, e.g. "int8", "pruned 1e-7"; ""
    writes nothing), at most :data:`POINT_LABELS` in all; the legend names the models, so the
    labels stay short.  A group's colour is its first point's family; a group with a flagged
    point is drawn dashed, each flagged point hollow, and one with a reference point with
    diamonds.  Points a log axis cannot show are left out, as are groups with none left;
    returns "" when no group is left.
    """
    kept = []
    for name, points in groups.items():
        usable = sorted((p for p in points
                         if showable(p.x, True) is not None and showable(p.y, True) is not None),
                        key=lambda p: (p.x, p.y, p.flagged, p.label))
        if usable:
            series = Series(name, usable[0].family, tuple((p.x, p.y) for p in usable),
                            any(p.flagged for p in usable), any(p.reference for p in usable))
            kept.append((series, tuple((p.x, p.y, p.flagged) for p in usable), usable))
    if not kept:
        return ""
    kept.sort(key=lambda item: (_family_rank(item[0].family), item[0].label))
    every = [p for *_, usable in kept for p in usable]
    with svg.style():
        fig = svg.new_figure(_series_size(len(kept)))
        ax = fig.add_subplot()
        apply_scale(ax, "x", True, [p.x for p in every])
        apply_scale(ax, "y", True, [p.y for p in every])
        handles, labels, obstacles, names = _draw_series(ax, [(s, pts) for s, pts, _ in kept])
        named = [(p, where) for (*_, usable), series_names in zip(kept, names, strict=True)
                 for p, where in zip(usable, series_names, strict=True) if p.label]
        texts = [point_label(ax, shorten(p.label, POINT_CHARS), (p.x, p.y), *where, obstacles)
                 for p, where in named[:POINT_LABELS]]
        more = _style_handles(any(s.flagged for s, *_ in kept), any(s.reference for s, *_ in kept),
                              line=True)
        _legend(fig, handles + more[0], labels + more[1])
        _titles(ax, title, x_label, y_label)
        place_labels(fig, ax, texts, obstacles,
                     paths=[[(x, y) for x, y, _ in pts] for _, pts, _ in kept])
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

    usable = [p for p in points if showable(p.y, log) is not None]
    if not usable:
        return ""
    lines = [line for line in lines if showable(line.value, log) is not None]
    chance = showable(chance, log)
    usable.sort(key=lambda p: (-p.y if higher_is_better else p.y, p.label))
    with svg.style():
        marked = len(lines) + (chance is not None)
        height = max(2.4, 0.27 * (len(usable) + _LABEL_ROWS * marked) + 1.3)
        fig = svg.new_figure((FIGSIZE[0], height))
        ax = fig.add_subplot()
        ax.grid(axis="y", visible=False)
        extra = [line.value for line in lines] + ([chance] if chance is not None else [])
        values = [p.y for p in usable] + extra
        base = bar_axis(ax, log, values, room=0.12)  # room for the value after the longest bar
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
        rules = [("x", value) for value, *_ in marks]
        for j, (value, words, style, shade) in enumerate(marks):
            ax.axvline(value, color=shade, ls=style, lw=1.0, zorder=3).set_gid(f"lmrule-{j}")
            text = annotation(ax, shorten(words, LINE_CHARS), (value, levels[0]),
                              name=f"line.{j}", color=shade)
            # Each in the band above the bars, at one of its levels: no leader needed.
            texts.append(Label(text, [(dx, 1, ha, "bottom", (value, y)) for y in levels
                                      for dx, ha in ((3, "left"), (-3, "right"))],
                               rule=j, leader=False))
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
        place_labels(fig, ax, texts, rules=rules)
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
        row = {name: v for name, v in values.items() if showable(v, log_x) is not None}
        if row:
            kept[label] = row
    if not kept:
        return ""
    names: list[str] = []
    for row in kept.values():
        names += [name for name in row if name not in names]
    order = sorted(kept, key=lambda label: (-max(kept[label].values()), label))
    per = len(names)
    with svg.style():
        fig = svg.new_figure((FIGSIZE[0], max(2.4, (0.18 * per + 0.12) * len(order) + 1.3)))
        ax = fig.add_subplot()
        ax.grid(axis="y", visible=False)
        values = [v for row in kept.values() for v in row.values()]
        base = bar_axis(ax, log_x, values)
        height = 0.8 / per
        for k, name in enumerate(names):  # one call per series: its bars in every row
            rows = [row for row, label in enumerate(order) if name in kept[label]]
            ax.barh([row - 0.4 + height * (k + 0.5) for row in rows],
                    [kept[order[row]][name] - base for row in rows], left=base,
                    height=height * 0.92, hatch=_HATCHES[k % len(_HATCHES)] or None,
                    color=[svg.shade(colour(families.get(order[row], "other")),
                                  _SHADES[k % len(_SHADES)]) for row in rows],
                    edgecolor="white", linewidth=0.0, zorder=2)
        ax.set_yticks(range(len(order)), labels=[shorten(label, LABEL_CHARS) for label in order])
        ax.set_ylim(len(order) - 0.5, -0.5)
        handles, labels = _family_handles(families.get(label, "other") for label in order)
        handles = [Patch(color=h.get_color()) for h in handles]
        for k, name in enumerate(names):
            handles.append(Patch(facecolor=svg.shade("#777777", _SHADES[k % len(_SHADES)]),
                                 hatch=_HATCHES[k % len(_HATCHES)] or None, edgecolor="white"))
            labels.append(name)
        _legend(fig, handles, labels)
        _titles(ax, title, x_label, None)
        return _svg(fig, title)
