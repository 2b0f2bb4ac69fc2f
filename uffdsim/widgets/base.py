"""What every uffdsim widget shares: figures shown as Image widgets, and a static fallback.

A widget here is a thin layer over plain functions (tested without a browser).  Figures are
PNG bytes in :class:`ipywidgets.Image` widgets (their state is saved with the notebook, so the
static book shows them), never matplotlib output captured in an ``Output`` widget.  When
displayed, a widget also offers its current figure as a plain ``image/png`` next to the widget
view, for renderers without widget support, and a one-line ``text/plain`` summary that is the
same on every run (what nbval compares).
"""
from __future__ import annotations

import base64
import html
from typing import Any

import ipywidgets as widgets
import traitlets
from matplotlib.figure import Figure

from ..viz.palette import TEXT_ON_ERROR, TEXT_ON_SUCCESS
from ..viz.alt import describe_figure
from ..viz.style import png_bytes


class DescribedImage(widgets.Image):
    """An Image whose figure description reaches the page as its ``title`` (the book's ``a11y.js``
    also makes it the ``alt``), through the ``tooltip`` every widget has.

    ipywidgets' view code reads the widget's ``description`` whenever a tooltip is set, and an
    Image has none: the view then fails to render (ipywidgets 8.1, a TypeError in
    ``updateTooltip``).  This Image carries an empty ``description`` for it to read.
    """

    description = traitlets.Unicode("").tag(sync=True)


def image_widget(max_width: str = "100%") -> widgets.Image:
    """An Image at its natural size, shrunk to fit a narrow page (never stretched)."""
    return DescribedImage(format="png", layout=widgets.Layout(max_width=max_width, height="auto"))


def row(*children: widgets.Widget) -> widgets.HBox:
    """Controls side by side, wrapping onto the next line on a narrow page."""
    return widgets.HBox(list(children), layout=widgets.Layout(flex_flow="row wrap"))


def set_figure(image: widgets.Image, fig: Figure) -> bytes:
    """Render ``fig`` into ``image``, its description as the image's tooltip (the page's
    ``a11y.js`` also makes it the alt text); returns the PNG bytes."""
    data = png_bytes(fig)
    image.tooltip = describe_figure(fig)
    image.value = data
    return data


def pre(text: str) -> str:
    """Preformatted, escaped HTML."""
    return (f"<pre style='font-size:85%;line-height:1.25;margin:0;white-space:pre-wrap'>"
            f"{html.escape(text)}</pre>")


def badge(text: str, ok: bool) -> str:
    colour = TEXT_ON_SUCCESS if ok else TEXT_ON_ERROR
    return (f"<span style='background:{colour};color:white;padding:2px 8px;border-radius:3px;"
            f"font-weight:bold'>{html.escape(text)}</span>")


class FigureBox(widgets.VBox):
    """A VBox whose display carries a static PNG of its main figure (or static HTML, for a widget
    whose content is a table) and a stable text summary."""

    def summary(self) -> str:  # pragma: no cover - overridden
        return ""

    def static_png(self) -> bytes:
        return b""

    def static_html(self) -> str:
        return ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}: {self.summary()}"

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        data = dict(super()._repr_mimebundle_(**kwargs) or {})
        data["text/plain"] = repr(self)
        png = self.static_png()
        if png:
            data["image/png"] = base64.b64encode(png).decode("ascii")
        html_text = self.static_html()
        if html_text:
            data["text/html"] = html_text
        return data
