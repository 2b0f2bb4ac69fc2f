"""A widget: one scenario on several kernel profiles side by side (Appendix A2)."""
from __future__ import annotations

import html
from typing import Sequence

import ipywidgets as widgets

from ..kernel_compare import DEFAULT_KERNELS, differing_rows, side_by_side
from ..kernels import PROFILES
from ..resources import corpus_files
from .base import FigureBox


def table_html(header: list[str], rows: list[list[str]]) -> str:
    diff = {id(r) for r in differing_rows(header, rows)}
    head = "".join(f"<th style='text-align:left;padding:2px 6px'>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr" + (" style='background:#fff3cd'" if id(r) in diff else "") + ">" +
        "".join(f"<td style='padding:2px 6px;font-family:monospace;font-size:85%'>{html.escape(str(c))}</td>"
                for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


class KernelCompare(FigureBox):
    """Pick a scenario and the kernels; the steps whose outcome differs are highlighted."""

    def __init__(self, scenario: str = "zero-page-move", kernels: Sequence[str] = DEFAULT_KERNELS) -> None:
        names = [p.stem for p in corpus_files()]
        self.pick = widgets.Dropdown(options=names, value=scenario, description="scenario")
        self.kernels = widgets.SelectMultiple(options=list(PROFILES), value=tuple(kernels),
                                              description="kernels", rows=len(PROFILES))
        self.out = widgets.HTML()
        super().__init__([widgets.HBox([self.pick, self.kernels]), self.out])
        self.pick.observe(lambda _: self.refresh(), "value")
        self.kernels.observe(lambda _: self.refresh(), "value")
        self.refresh()

    def refresh(self) -> None:
        self.header, self.rows = side_by_side(self.pick.value, self.kernels.value or DEFAULT_KERNELS)
        self.out.value = table_html(self.header, self.rows)

    def summary(self) -> str:
        n = len(differing_rows(self.header, self.rows))
        return f"{self.pick.value} on {', '.join(self.kernels.value)}: {n} step(s) differ"

    def static_html(self) -> str:
        return table_html(self.header, self.rows)
