"""The ``{claim}`` role: a sentence cites the corpus scenario that proves it.

Usage in a notebook's Markdown or a book page: ``... fails with EBUSY {claim}`move-after-fork`.``
One scenario name per role (use several roles for several scenarios). This is the minimal
version: it renders the name as a small badge; uffdsim's claims checker reads the same syntax.
"""
from __future__ import annotations

from typing import Any

from docutils import nodes


def claim_role(name: str, rawtext: str, text: str, lineno: int, inliner: Any,
               options: dict | None = None, content: list | None = None) -> tuple[list, list]:
    """Render ``{claim}`scenario``` as a badge naming the scenario."""
    scenario = text.strip()
    return [nodes.literal(rawtext, f"✓ {scenario}", classes=["claim"])], []


def setup(app: Any) -> dict[str, Any]:
    app.add_role("claim", claim_role)
    return {"version": "0.1", "parallel_read_safe": True, "parallel_write_safe": True}
