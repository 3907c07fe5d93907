"""SVG output of the report's figures: the matplotlib style they are drawn in, a new figure,
and the figure as inline SVG markup.

:func:`markup` returns ``<svg ...>...</svg>`` (no XML prolog, no DOCTYPE, no metadata) ready to
be embedded in a page.  It is deterministic (same figure, same string: no date, a fixed hash
salt), and its ``id`` attributes are prefixed with a hash of the figure, so several figures on
one page never clash.  Text stays text (``svg.fonttype = "none"``), so labels can be searched
and copied; record text is drawn literally, never parsed as mathtext or TeX (:func:`style`).

matplotlib is imported inside the functions, so ``import lmladder.reports`` stays light, and no
pyplot state is used: figures are plain :class:`matplotlib.figure.Figure` objects that are
dropped when the caller is done with them.
"""

from __future__ import annotations

import hashlib
import io
import re

from lmladder.reports.layout import MIN_FONT, fit_texts, manage

_GRID = "#E3E3E3"

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


def style():
    """A context manager applying :data:`_STYLE` (matplotlib rc settings) around a figure."""
    import matplotlib

    return matplotlib.rc_context(_STYLE)


def shade(hex_colour: str, amount: float) -> str:
    """``hex_colour`` mixed with white (amount > 0) or black (amount < 0); amount in [-1, 1]."""
    rgb = [int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)]
    target = 255 if amount > 0 else 0
    mixed = [round(c + (target - c) * abs(amount)) for c in rgb]
    return "#" + "".join(f"{c:02X}" for c in mixed)


def new_figure(size: tuple[float, float]):
    """A figure of ``size`` inches with an Agg canvas (for measuring text), laid out by
    :func:`lmladder.reports.layout.lay_out`; no pyplot."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout=None)
    FigureCanvasAgg(fig)
    manage(fig)
    return fig


# Ids the figures give their labels, leader lines, markers and reference lines (``lmlabel-3``,
# ``lmpoints-0``, ...): kept, so a browser test can tell which label belongs to which point.
KEPT_ID = "lm"
_TAG = re.compile(r"<[^>]+>")  # a tag: text content has its "<" and ">" escaped
_ID = re.compile(r'\sid="([^"]+)"')
_REF = re.compile(r'(url\(#|href="#)([^)"]+)')


def _in_tags(pattern: re.Pattern, replace, text: str) -> str:
    """``pattern.sub(replace, ...)`` applied inside tags only, never to text content (a label
    may well read 'id="x"')."""
    return _TAG.sub(lambda tag: pattern.sub(replace, tag.group(0)), text)


def markup(fig, title: str) -> str:
    """The figure as inline SVG markup: fitted (:func:`lmladder.reports.layout.fit_texts`),
    with no prolog, no metadata, and ids unique to this figure's content (a figure drawn twice
    gives the same string); ``title`` becomes the ``aria-label`` of the ``<svg>`` element."""
    from xml.sax.saxutils import quoteattr

    fit_texts(fig)
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    text = text[text.index("<svg"):]
    text = re.sub(r"\s*<metadata>.*?</metadata>", "", text, count=1, flags=re.S)
    # A no-op rotation on every text, and the ids of groups nothing refers to, are only bytes.
    text = re.sub(r' transform="rotate\(-?0 [^"]*\)"', "", text)
    referenced = {m.group(2) for tag in _TAG.findall(text) for m in _REF.finditer(tag)}
    text = _in_tags(_ID, lambda m: m.group(0) if m.group(1) in referenced
                    or m.group(1).startswith(KEPT_ID) else "", text)
    prefix = "f" + hashlib.sha256(text.encode()).hexdigest()[:10] + "-"
    text = _in_tags(_ID, lambda m: f' id="{prefix}{m.group(1)}"', text)
    text = _in_tags(_REF, lambda m: f"{m.group(1)}{prefix}{m.group(2)}", text)
    label = quoteattr(" ".join(str(title).split()))
    text = _fluid(text).replace("<svg ", f"<svg role=\"img\" aria-label={label} ", 1)
    return text.rstrip() + "\n"


_SIZE = re.compile(r'<svg ([^>]*?)width="([0-9.]+)pt" height="([0-9.]+)pt"')


def _fluid(text: str) -> str:
    """The ``<svg>`` element as wide as its container, up to its drawn size, its height
    following from the viewBox: a figure never overflows a narrow screen (a phone's 390 px)
    and fills it, and never grows past the size its fonts were laid out for."""
    return _SIZE.sub(lambda m: f'<svg {m.group(1)}width="100%" '
                               f'style="max-width: {m.group(2)}pt; height: auto"', text, count=1)
