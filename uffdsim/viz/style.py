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

# The palette lives in .palette (no matplotlib there: the live book's SVG pictures use it too).
from .palette import (  # noqa: F401  (re-exported: the figures read them from here)
    BLACK, BLUE, ERROR, FOLIO_COLOURS, FOLIO_NAMES, GREEN, GREY, HATCH_PINNED, HATCH_SWAPCACHE,
    HATCH_THP, HIGHLIGHT, LANE_COLOURS, LIGHT, ORANGE, PURPLE, SERIES, SKY, SUCCESS, SWAP_COLOUR,
    TEXT_ON_ERROR, TEXT_ON_SUCCESS, VERMILLION, YELLOW, wrap)

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
    """An ``IPython.display.Image`` of the figure, for notebooks (the same bytes every run), with
    its description (:func:`.alt.describe_figure`) as alt text in the output's metadata."""
    from IPython.display import Image
    from .alt import describe_figure
    return Image(data=png_bytes(fig), format="png", alt=describe_figure(fig))
