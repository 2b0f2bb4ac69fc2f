"""Address-space pictures as SVG text, for the live book (no matplotlib in the reader's browser).

:func:`address_space_svg` draws what :func:`uffdsim.viz.draw_address_space` draws, from the same
:mod:`.layout` and :mod:`.palette`: the same rows, texts, colours and hatches, and elements
carrying the same ids (``data-gid``: ``vma:PROC:LABEL``, ``entry:PROC:LABEL``, ``frame:PFN``,
``swap:N``, ``arrow:PROC:LABEL``, ``highlight:...``), so a test can hold the two pictures together.
The output is deterministic: the same snapshot gives the same bytes.
"""
from __future__ import annotations

from html import escape
from ..snapshot import Changes, FolioSnap, ProcSnap, Snapshot
from . import palette as P
from .describe import describe_space
from .layout import (BOX, ROW, X_ENTRY, X_ENTRY_END, X_FRAME, X_FRAME_END, X_LABEL, Layout, Slot,
                     entry_text, folio_text, frame_order, layout, proc_title, slot_link, visible_folios)

SX = 9.0             #: pixels per x unit (the layout is 100 units wide: 900 px, as the 9-inch PNG)
SY = 24.0            #: pixels per row (0.24 inch per row at 100 dpi, as the PNG)
TOP = 48.0           #: room for the title
HATCHES = {P.HATCH_PINNED: "pinned", P.HATCH_SWAPCACHE: "swapcache", P.HATCH_THP: "thp"}


def _x(u: float) -> str:
    return f"{u * SX:.1f}"


def _y(u: float) -> str:
    return f"{TOP + u * SY:.1f}"


def _rect(x: float, y: float, w: float, h: float, gid: str = "", fill: str = "white",
          stroke: str = "#333333", dashed: bool = False, width: float = 0.8, hatch: str | None = None) -> str:
    attrs = [f'x="{_x(x)}" y="{_y(y)}" width="{w * SX:.1f}" height="{h * SY:.1f}"',
             f'fill="{fill}" stroke="{stroke}" stroke-width="{width}"']
    if dashed:
        attrs.append('stroke-dasharray="3 3"')
    if gid:
        attrs.append(f'data-gid="{escape(gid)}"')
    out = f"<rect {' '.join(attrs)}/>"
    if hatch:
        for name in sorted({HATCHES[k] for k in HATCHES if k in hatch}):
            out += (f'<rect x="{_x(x)}" y="{_y(y)}" width="{w * SX:.1f}" height="{h * SY:.1f}" '
                    f'fill="url(#hatch-{name})" stroke="none" data-hatch="{name}"/>')
    return out


def _text(x: float, y: float, text: str, size: float = 7.5, anchor: str = "start", bold: bool = False,
          colour: str = P.BLACK, mono: bool = False, gid: str = "") -> str:
    lines = text.split("\n")
    fam = "DejaVu Sans Mono, monospace" if mono else "DejaVu Sans, Arial, sans-serif"
    attrs = (f'x="{_x(x)}" y="{_y(y)}" font-size="{size * 1.39:.1f}" font-family="{fam}" '
             f'text-anchor="{anchor}" dominant-baseline="middle" fill="{colour}"'
             + (' font-weight="bold"' if bold else "") + (f' data-gid="{escape(gid)}"' if gid else ""))
    if len(lines) == 1:
        return f"<text {attrs}>{escape(text)}</text>"
    dy = size * 1.39 * 1.1
    first = -(len(lines) - 1) * dy / 2
    spans = "".join(f'<tspan x="{_x(x)}" dy="{first if i == 0 else dy:.1f}">{escape(t)}</tspan>'
                    for i, t in enumerate(lines))
    return f"<text {attrs}>{spans}</text>"


def _defs() -> str:
    """The hatch patterns (pinned: crossed, swap cache: dotted, THP entry: diagonal) and the arrow head."""
    return ('<defs>'
            '<pattern id="hatch-thp" width="6" height="6" patternUnits="userSpaceOnUse">'
            '<path d="M0,6 L6,0" stroke="#333333" stroke-width="0.8"/></pattern>'
            '<pattern id="hatch-pinned" width="6" height="6" patternUnits="userSpaceOnUse">'
            '<path d="M0,6 L6,0 M0,0 L6,6" stroke="#333333" stroke-width="0.8"/></pattern>'
            '<pattern id="hatch-swapcache" width="5" height="5" patternUnits="userSpaceOnUse">'
            '<circle cx="2.5" cy="2.5" r="0.8" fill="#333333"/></pattern>'
            '<marker id="arrow-head" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" markerHeight="6" '
            'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="context-stroke"/></marker>'
            '</defs>')


def _slot(p: ProcSnap, slot: Slot, y: float, folios: dict[int, FolioSnap], lay: Layout, ch: Changes,
          out: list[str]) -> None:
    e = slot.first
    gid = f"{p.name}:{slot.label or e.label + '...'}"
    out.append(_text(X_ENTRY - 0.8, y, slot.label, anchor="end", mono=True))
    empty = e.state == "none" or bool(slot.hidden)
    out.append(_rect(X_ENTRY, y - BOX / 2, X_ENTRY_END - X_ENTRY, BOX, f"entry:{gid}",
                     stroke="#999999" if empty else "#333333", dashed=empty,
                     hatch=P.HATCH_THP if e.level == "pmd" and not slot.hidden else None))
    out.append(_text(X_ENTRY + 0.8, y, entry_text(slot)))
    if slot.hidden:
        return
    target = folios.get(e.folio) if e.folio is not None else None
    if target is not None or e.state == "swap":
        out.append(_rect(X_ENTRY_END - 2.2, y - BOX / 2 + 0.12, 1.8, BOX - 0.24, width=0.5,
                         fill=P.FOLIO_COLOURS[target.kind] if target is not None else P.SWAP_COLOUR))
    changed, target_y = slot_link(p, slot, lay, ch)
    if target_y is not None:
        colour = P.HIGHLIGHT if changed else "#444444"
        out.append(f'<line x1="{_x(X_ENTRY_END)}" y1="{_y(y)}" x2="{_x(X_FRAME)}" y2="{_y(target_y)}" '
                   f'stroke="{colour}" stroke-width="{1.6 if changed else 0.8}" marker-end="url(#arrow-head)" '
                   f'data-gid="arrow:{escape(gid)}"/>')
    if changed:
        out.append(_rect(X_ENTRY, y - BOX / 2, X_ENTRY_END - X_ENTRY, BOX, f"highlight:entry:{gid}",
                         fill="none", stroke=P.HIGHLIGHT, width=2.4))


def _folio(pfn: int, y: float, f: FolioSnap | None, changed: bool, out: list[str]) -> None:
    if f is None:
        out.append(_rect(X_FRAME, y - BOX / 2, X_FRAME_END - X_FRAME, BOX, f"frame:{pfn:#x}",
                         stroke="#999999", dashed=True))
        out.append(_text(X_FRAME + 0.8, y, f"pfn {pfn:#x}: freed", colour="#777777"))
    else:
        hatch = "".join(h for h, on in ((P.HATCH_PINNED, f.pinned), (P.HATCH_SWAPCACHE, f.swapcache is not None))
                        if on) or None
        out.append(_rect(X_FRAME, y - BOX / 2, X_FRAME_END - X_FRAME, BOX, f"frame:{pfn:#x}",
                         fill=P.FOLIO_COLOURS[f.kind], width=1.6 if f.thp else 0.8, hatch=hatch))
        out.append(_text(X_FRAME + 0.8, y, folio_text(f)))
    if changed:
        out.append(_rect(X_FRAME, y - BOX / 2, X_FRAME_END - X_FRAME, BOX, f"highlight:frame:{pfn:#x}",
                         fill="none", stroke=P.HIGHLIGHT, width=2.4))


def _legend(y: float) -> list[str]:
    """The folio kinds and hatches, as the PNG's legend names them."""
    items: list[tuple[str, str, str | None]] = [(P.FOLIO_NAMES[k], P.FOLIO_COLOURS[k], None)
                                                for k in ("exclusive", "shared", "ksm", "zero", "file", "unmapped")]
    items += [("pinned (FOLL_LONGTERM)", "white", P.HATCH_PINNED), ("in the swap cache", "white", P.HATCH_SWAPCACHE),
              ("PMD-mapped THP entry", "white", P.HATCH_THP), ("swap slot", P.SWAP_COLOUR, None)]
    out = []
    for i, (label, fill, hatch) in enumerate(items):
        x, yy = 2 + (i % 4) * 25, y + (i // 4) * ROW
        out.append(_rect(x, yy - 0.3, 2.2, 0.6, fill=fill, hatch=hatch))
        out.append(_text(x + 3, yy, label))
    return out


def address_space_svg(snap: Snapshot, title: str | None = None, changes: Changes | None = None) -> str:
    """One snapshot as an SVG document: the picture :func:`~uffdsim.viz.draw_address_space` draws.

    It is ``role="img"`` with a ``<title>`` (the tooltip) and, as its ``aria-label``, the picture
    in words (:func:`.describe.describe_space`): what a screen reader reads out."""
    frames = frame_order(snap)
    swaps = [s.entry for s in snap.swap]
    lay = layout(snap, frames, swaps, changes)
    ch = changes or Changes()
    folios = {f.pfn: f for f in snap.folios}
    out: list[str] = [_defs()]
    out.append(_text(50, -1.4, title or "Address space: page tables and frames", size=9, anchor="middle", bold=True))
    if snap.caption:
        out.append(_text(X_LABEL, -0.55, P.wrap(snap.caption, 110).split("\n")[0], size=7.5))
    out.append(_text(X_FRAME, -0.1, "physical memory (folios)", size=8, bold=True))
    for kind, y, payload in lay.rows:
        if kind == "proc":
            assert isinstance(payload, ProcSnap)
            colour = P.HIGHLIGHT if payload.name in ch.processes else (P.BLACK if payload.alive else "#777777")
            out.append(_text(X_LABEL, y + 0.1, proc_title(payload), size=8.5, bold=True, colour=colour,
                             gid=f"proc:{payload.name}"))
        elif kind == "vma":
            owner, v, n, head, hh = payload  # type: ignore[misc]
            out.append(_rect(X_LABEL - 0.3, y - 0.45, X_ENTRY_END - X_LABEL + 1.2, hh + n * ROW - 0.05,
                             f"vma:{owner.name}:{v.label}", fill=P.LIGHT, stroke="#999999"))
            yy = y + (hh - ROW) / 2
            out.append(_text(X_LABEL + 0.3, yy, v.label, bold=True))
            out.append(_text(X_ENTRY_END, yy, head, size=6.5, anchor="end", colour="#333333"))
        elif kind == "slot":
            p, _v, slot = payload  # type: ignore[misc]
            _slot(p, slot, y, folios, lay, ch, out)
        elif kind == "swaphead":
            out.append(_text(X_FRAME, y, "swap device (slots)", size=8, bold=True))
        elif kind == "more":
            out.append(_text(X_LABEL, y, str(payload), colour="#555555"))
    for pfn, y in lay.frame_y.items():
        _folio(pfn, y, folios.get(pfn), pfn in ch.folios, out)
    slots = {s.entry: s for s in snap.swap}
    for entry, y in lay.swap_y.items():
        s = slots.get(entry)
        out.append(_rect(X_FRAME, y - BOX / 2, X_FRAME_END - X_FRAME, BOX, f"swap:{entry}",
                         fill=P.SWAP_COLOUR if s else "white", stroke="#555555", dashed=s is None))
        text = (f"swap slot #{s.entry} · {s.value:#04x} · count {s.count}"
                + (f" · cached in pfn {s.cache:#x}" if s.cache is not None else "")) if s else f"swap slot #{entry}: freed"
        out.append(_text(X_FRAME + 0.8, y, text))
    hidden = len([f for f in visible_folios(snap) if f not in lay.frame_y])
    if hidden:
        y = max(lay.frame_y.values(), default=0.0) + ROW
        out.append(_text(X_FRAME + 0.8, y, f"... {hidden} more folio(s) not drawn", colour="#555555"))
    legend_y = lay.height + 0.8
    out += _legend(legend_y)
    height = TOP + (legend_y + 3 * ROW) * SY
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 900 {height:.0f}" width="900" '
            f'height="{height:.0f}" role="img" class="uffdsim-space" '
            f'aria-label="{escape(describe_space(snap, title, changes))}">'
            f'<title>{escape(title or "Address space: page tables and frames")}</title>'
            f'<rect x="0" y="0" width="900" height="{height:.0f}" fill="white"/>'
            + "".join(out) + "</svg>")


def gids(svg: str, prefix: str = "") -> list[str]:
    """Every ``data-gid`` in an SVG made here that starts with ``prefix`` (mirrors :func:`.space.gids`)."""
    import re
    from html import unescape
    return sorted(g for g in (unescape(m) for m in re.findall(r'<(?:rect|line)[^>]*data-gid="([^"]*)"', svg))
                  if g.startswith(prefix))


def texts(svg: str) -> list[str]:
    """The text of every ``<text>`` element, lines joined by newlines (for comparing with the PNG)."""
    import re
    from html import unescape
    out = []
    for body in re.findall(r"<text [^>]*>(.*?)</text>", svg):
        spans = re.findall(r"<tspan [^>]*>(.*?)</tspan>", body)
        out.append(unescape("\n".join(spans) if spans else body))
    return out
