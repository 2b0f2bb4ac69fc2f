"""Alt text for figures: what a figure shows, in words, for a reader who cannot see it.

A drawing function that knows its data attaches a description with :func:`set_alt` (the address
space from :func:`.describe.describe_space`, a timeline's steps, a decision path's functions);
:func:`describe_figure` returns it, or, for a plain chart, builds one from what the figure itself
says: its title, each panel's title, axis labels, series (legend) and bars.  :func:`.style.to_image`
hands the description to the notebook (``IPython.display.Image(alt=...)``) and the book's
``figure_alt`` extension makes it the ``<img>``'s alt text.  No matplotlib import here.
"""
from __future__ import annotations

from typing import Any, Iterable

ATTR = "_uffdsim_alt"
MAX_CHARS = 1500       #: a description longer than this is cut (screen readers read it whole)


def set_alt(fig: Any, text: str) -> Any:
    """Attach a description to ``fig`` (returned, for chaining)."""
    setattr(fig, ATTR, " ".join(text.split()))
    return fig


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_CHARS else text[:MAX_CHARS - 1].rstrip() + "…"


def _join(parts: Iterable[str]) -> str:
    return " ".join(p.rstrip(".") + "." for p in parts if p and p.strip())


def _axes_words(ax: Any) -> str:
    title = next((t for t in (ax.get_title(loc) for loc in ("center", "left", "right")) if t), "")
    words = [title.replace("\n", " ")] if title else []
    xl, yl = ax.get_xlabel(), ax.get_ylabel()
    if xl or yl:
        words.append(", ".join(w for w in (f"x axis: {xl}" if xl else "", f"y axis: {yl}" if yl else "") if w))
    legend = ax.get_legend()
    labels = [t.get_text() for t in legend.get_texts()] if legend is not None else []
    if labels:
        words.append("legend: " + "; ".join(labels))
    ticks = [t.get_text().replace("\n", " ") for t in ax.get_xticklabels()]
    for c in getattr(ax, "containers", []):
        heights = [p.get_height() for p in c if hasattr(p, "get_height")]
        name = c.get_label() if not str(c.get_label()).startswith("_") else "bars"
        if heights and len(heights) == len(ticks) and all(ticks):
            words.append(f"{name}: " + ", ".join(f"{t} {_num(h)}" for t, h in zip(ticks, heights)))
        elif heights:
            words.append(f"{name}: {len(heights)} bars from {_num(min(heights))} to {_num(max(heights))}")
    for line in ax.get_lines():
        label = str(line.get_label())
        xs, ys = line.get_xdata(), line.get_ydata()
        if label.startswith("_") or len(xs) == 0:
            continue
        words.append(f"{label}: {len(xs)} points, y from {_num(min(ys))} to {_num(max(ys))}")
    return ", ".join(w for w in words if w)


def _num(v: Any) -> str:
    """A number as a reader would say it: 3 significant digits."""
    try:
        return f"{float(v):.3g}"
    except (TypeError, ValueError):
        return str(v)


def describe_figure(fig: Any) -> str:
    """The figure's description: the one attached by :func:`set_alt`, else one read off the figure."""
    attached = getattr(fig, ATTR, None)
    if attached:
        return _clip(attached)
    sup = getattr(fig, "_suptitle", None)
    parts = [sup.get_text().replace("\n", " ")] if sup is not None and sup.get_text() else []
    panels = [w for w in (_axes_words(ax) for ax in fig.axes if ax.get_visible() and ax.axison) if w]
    if len(panels) == 1:
        parts.append("Chart: " + panels[0])
    elif panels:
        parts += [f"Panel {k}: {w}" for k, w in enumerate(panels, 1)]
    return _clip(_join(parts) or "A figure without a title.")


__all__ = ["set_alt", "describe_figure", "MAX_CHARS"]
