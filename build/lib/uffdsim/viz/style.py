"""Colours, hatches and the style context every figure is drawn in; deterministic PNG output.

The palette is Okabe and Ito's, which stays distinguishable under the common forms of colour
blindness; states that must not rely on colour alone also get a hatch or a label.  Nothing here
touches matplotlib's global settings: :func:`style` is a context manager the drawing functions
enter, and :func:`png_bytes` saves inside it.
"""
from __future__ import annotations

import io
from contextlib import contextmanager
from typing import Any, Iterator

import matplotlib
from matplotlib.figure import Figure

#: Okabe-Ito colours
BLACK, ORANGE, SKY, GREEN, YELLOW, BLUE, VERMILLION, PURPLE = (
    "#000000", "#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7")
GREY, LIGHT = "#BBBBBB", "#F2F2F2"

#: fill colour of a folio by kind (see uffdsim.snapshot.FOLIO_KINDS)
FOLIO_COLOURS = {"exclusive": SKY, "shared": ORANGE, "ksm": PURPLE, "zero": GREY,
                 "file": GREEN, "unmapped": "#FFFFFF"}
FOLIO_NAMES = {"exclusive": "anon-exclusive", "shared": "COW-shared (not exclusive)", "ksm": "KSM page",
               "zero": "zero page", "file": "page cache (file)", "unmapped": "unmapped, still held"}
HATCH_PINNED, HATCH_SWAPCACHE, HATCH_THP = "xxx", "...", "///"
SWAP_COLOUR = YELLOW
HIGHLIGHT = VERMILLION       #: what a step changed
ERROR, SUCCESS = VERMILLION, GREEN
LANE_COLOURS = (BLUE, ORANGE, GREEN, PURPLE)
#: line styles and markers for series, so that they differ without colour too
SERIES = ((BLUE, "o", "-"), (VERMILLION, "s", "--"), (GREEN, "^", "-."), (ORANGE, "D", ":"),
          (PURPLE, "v", "-"), (SKY, "P", "--"), (BLACK, "X", "-."))

DPI = 100
STYLE: dict[str, Any] = {
    "font.family": "DejaVu Sans",
    "font.size": 8,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "figure.titlesize": 12,
    "legend.fontsize": 8,
    "hatch.linewidth": 0.8,
    "hatch.color": "#333333",
    "savefig.dpi": DPI,
    "figure.dpi": DPI,
    "savefig.facecolor": "white",
    "figure.facecolor": "white",
    "axes.facecolor": "white",
    "svg.hashsalt": "uffdsim",
    "path.simplify": False,
}


@contextmanager
def style() -> Iterator[None]:
    """The rcParams every uffdsim figure is drawn and saved with (restored on exit)."""
    with matplotlib.rc_context(STYLE):
        yield


def new_figure(width: float, height: float) -> Figure:
    """A figure of a fixed size that pyplot does not track (so it is never shown twice)."""
    return Figure(figsize=(width, height), dpi=DPI)


def png_bytes(fig: Figure) -> bytes:
    """The figure as PNG bytes: fixed size and dpi, no timestamp or version metadata."""
    buf = io.BytesIO()
    with style():
        fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def save_png(fig: Figure, path: str) -> None:
    """Write the figure as a deterministic PNG (PNG only: SVG output embeds random ids)."""
    if not str(path).lower().endswith(".png"):
        raise ValueError(f"{path}: figures are written as PNG only (use a .png name)")
    with open(path, "wb") as fh:
        fh.write(png_bytes(fig))


def to_image(fig: Figure) -> Any:
    """An ``IPython.display.Image`` of the figure, for notebooks (the same bytes every run)."""
    from IPython.display import Image
    return Image(data=png_bytes(fig), format="png")


def wrap(text: str, width: int) -> str:
    """Break ``text`` into lines of at most ``width`` characters at spaces (long words kept whole)."""
    import textwrap
    return "\n".join(textwrap.wrap(text, width, break_long_words=False, break_on_hyphens=False)) or text
