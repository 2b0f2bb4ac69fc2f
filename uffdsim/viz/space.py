"""Address-space diagrams: page tables on the left, physical frames on the right, arrows between.

Each process is a block of VMA bands (highest address on top, as in the usual drawings of an
address space); each band lists its pages, runs of alike pages folded into one row (a PMD-mapped
THP, an empty stretch, the zero page).  Every present entry has an arrow to its folio; every
swap entry to its swap slot.  Folios are coloured by kind (anon-exclusive, COW-shared, KSM,
zero page, page cache) and hatched when pinned or in the swap cache; each shows its mapcount.

Artists carry ``gid``s a test (or a reader) can look up: ``vma:PROC:LABEL``,
``entry:PROC:LABEL``, ``frame:PFN`` (hex), ``swap:N``, ``arrow:PROC:LABEL``, and for what a step
changed ``highlight:entry:PROC:LABEL``, ``highlight:frame:PFN``, ``highlight:swap:N``.
"""
from __future__ import annotations

from typing import Iterable, Sequence

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, Patch, Rectangle

from ..snapshot import Changes, FolioSnap, ProcSnap, Snapshot, diff
from . import style as S
from .alt import set_alt
from .describe import describe_space
from .layout import (  # noqa: F401  (the layout is shared with the SVG pictures of .svg)
    BOX, MAX_FRAMES, MAX_SLOTS, ROW, X_ENTRY, X_ENTRY_END, X_FRAME, X_FRAME_END, X_LABEL, Layout, Slot,
    entry_text, folio_text, frame_order, group_slots, layout, proc_title, slot_link, visible_folios)


def draw_panel(ax: Axes, snap: Snapshot, frames: Sequence[int], swaps: Sequence[int],
               changes: Changes | None = None, side: str = "after", height: float | None = None,
               focus: Iterable[tuple[str, str]] = ()) -> Layout:
    """Draw one snapshot on ``ax``.  ``changes`` highlights what differs (solid after, dashed before);
    ``focus`` outlines the entries a step operated on, as (process, label) pairs."""
    focus = frozenset(focus)
    lay = layout(snap, frames, swaps, changes, focus)
    h = height or lay.height
    ax.set_xlim(0, 100)
    ax.set_ylim(h, -0.6)
    ax.set_axis_off()
    ch = changes or Changes()
    hl_style = {"linewidth": 2.4, "edgecolor": S.HIGHLIGHT, "facecolor": "none",
                "linestyle": "-" if side == "after" else (0, (3, 2)), "zorder": 6}
    folios = {f.pfn: f for f in snap.folios}
    swap_slots = {s.entry: s for s in snap.swap}
    ax.text(X_FRAME, -0.1, "physical memory (folios)", fontsize=8, fontweight="bold", va="center")

    for kind, y, payload in lay.rows:
        if kind == "proc":
            p = payload
            assert isinstance(p, ProcSnap)
            t = ax.text(X_LABEL, y + 0.1, proc_title(p), fontsize=8.5, fontweight="bold", va="center",
                        color=S.BLACK if p.alive else "#777777")
            t.set_gid(f"proc:{p.name}")
            if p.name in ch.processes:
                t.set_color(S.HIGHLIGHT)
        elif kind == "vma":
            owner, v, n, head, hh = payload  # type: ignore[misc]
            band = Rectangle((X_LABEL - 0.3, y - 0.45), X_ENTRY_END - X_LABEL + 1.2, hh + n * ROW - 0.05,
                             facecolor=S.LIGHT, edgecolor="#999999", linewidth=0.8, zorder=1)
            y += (hh - ROW) / 2
            band.set_gid(f"vma:{owner.name}:{v.label}")
            ax.add_patch(band)
            ax.text(X_LABEL + 0.3, y, v.label, fontsize=7.5, fontweight="bold", va="center", zorder=3)
            ax.text(X_ENTRY_END, y, head, fontsize=6.5, va="center", ha="right", color="#333333", zorder=3,
                    linespacing=1.1)
            if (owner.name, v.start) in ch.vmas:
                hb = Rectangle(band.get_xy(), band.get_width(), band.get_height(), **hl_style)
                hb.set_gid(f"highlight:vma:{owner.name}:{v.label}")
                ax.add_patch(hb)
        elif kind == "slot":
            p, v, slot = payload  # type: ignore[misc]
            _draw_slot(ax, y, p, slot, folios, swap_slots, lay, ch, hl_style, focus)
        elif kind == "swaphead":
            ax.text(X_FRAME, y, "swap device (slots)", fontsize=8, fontweight="bold", va="center")
        elif kind == "more":
            ax.text(X_LABEL, y, str(payload), fontsize=7.5, va="center", color="#555555")

    for pfn, y in lay.frame_y.items():
        _draw_folio(ax, y, pfn, folios.get(pfn), side, pfn in ch.folios, hl_style)
    for entry, y in lay.swap_y.items():
        s = swap_slots.get(entry)
        rect = Rectangle((X_FRAME, y - BOX / 2), X_FRAME_END - X_FRAME, BOX, zorder=2,
                         facecolor=S.SWAP_COLOUR if s else "white", edgecolor="#555555",
                         linestyle="-" if s else (0, (2, 2)), linewidth=0.8)
        rect.set_gid(f"swap:{entry}")
        ax.add_patch(rect)
        if s:
            text = f"swap slot #{s.entry} · {s.value:#04x} · count {s.count}" + \
                   (f" · cached in pfn {s.cache:#x}" if s.cache is not None else "")
        else:
            text = f"swap slot #{entry}: " + ("not yet written" if side == "before" else "freed")
        ax.text(X_FRAME + 0.8, y, text, fontsize=7.5, va="center", zorder=3)
        if entry in ch.swap:
            hr = Rectangle(rect.get_xy(), rect.get_width(), rect.get_height(), **hl_style)
            hr.set_gid(f"highlight:swap:{entry}")
            ax.add_patch(hr)
    hidden = len([f for f in visible_folios(snap) if f not in lay.frame_y])
    if hidden:
        y = max(lay.frame_y.values(), default=0.0) + ROW
        ax.text(X_FRAME + 0.8, y, f"... {hidden} more folio(s) not drawn", fontsize=7.5, va="center",
                color="#555555")
    return lay


def _draw_slot(ax: Axes, y: float, p: ProcSnap, slot: Slot, folios: dict[int, FolioSnap],
               swap_slots: dict, lay: Layout, ch: Changes, hl_style: dict,
               focus: frozenset[tuple[str, str]] = frozenset()) -> None:
    e = slot.first
    gid = f"{p.name}:{slot.label or e.label + '...'}"
    ax.text(X_ENTRY - 0.8, y, slot.label, fontsize=7.5, ha="right", va="center", zorder=3,
            family="DejaVu Sans Mono")
    empty = e.state == "none" or slot.hidden
    box = Rectangle((X_ENTRY, y - BOX / 2), X_ENTRY_END - X_ENTRY, BOX, zorder=2,
                    facecolor="white", edgecolor="#999999" if empty else "#333333",
                    linestyle=(0, (2, 2)) if empty else "-", linewidth=0.8,
                    hatch=S.HATCH_THP if e.level == "pmd" and not slot.hidden else None)
    box.set_gid(f"entry:{gid}")
    ax.add_patch(box)
    ax.text(X_ENTRY + 0.8, y, entry_text(slot), fontsize=7.5, va="center", zorder=3,
            bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.5} if e.level == "pmd" else None)
    if slot.hidden:
        return
    target = folios.get(e.folio) if e.folio is not None else None
    if target is not None or e.state == "swap":
        sw = Rectangle((X_ENTRY_END - 2.2, y - BOX / 2 + 0.12), 1.8, BOX - 0.24, zorder=3, linewidth=0.5,
                       edgecolor="#333333",
                       facecolor=S.FOLIO_COLOURS[target.kind] if target is not None else S.SWAP_COLOUR)
        ax.add_patch(sw)
    changed, target_y = slot_link(p, slot, lay, ch)
    if target_y is not None:
        arrow = FancyArrowPatch((X_ENTRY_END, y), (X_FRAME, target_y), arrowstyle="-|>",
                                mutation_scale=8, shrinkA=0, shrinkB=1, zorder=4,
                                color=S.HIGHLIGHT if changed else "#444444",
                                linewidth=1.6 if changed else 0.8)
        arrow.set_gid(f"arrow:{gid}")
        ax.add_patch(arrow)
    if changed:
        hb = Rectangle(box.get_xy(), box.get_width(), box.get_height(), **hl_style)
        hb.set_gid(f"highlight:entry:{gid}")
        ax.add_patch(hb)
    if (p.name, e.label) in focus:
        fb = Rectangle((X_ENTRY - 0.6, y - BOX / 2 - 0.09), X_ENTRY_END - X_ENTRY + 1.2, BOX + 0.18,
                       facecolor="none", edgecolor=S.BLUE, linewidth=1.3, linestyle=(0, (1, 1.5)), zorder=7)
        fb.set_gid(f"focus:entry:{gid}")
        ax.add_patch(fb)


def _draw_folio(ax: Axes, y: float, pfn: int, f: FolioSnap | None, side: str, changed: bool,
                hl_style: dict) -> None:
    if f is None:
        rect = Rectangle((X_FRAME, y - BOX / 2), X_FRAME_END - X_FRAME, BOX, facecolor="white",
                         edgecolor="#999999", linestyle=(0, (2, 2)), linewidth=0.8, zorder=2)
        text = f"pfn {pfn:#x}: " + ("not allocated yet" if side == "before" else "freed")
        colour = "#777777"
    else:
        hatch = "".join(h for h, on in ((S.HATCH_PINNED, f.pinned), (S.HATCH_SWAPCACHE, f.swapcache is not None))
                        if on) or None
        rect = Rectangle((X_FRAME, y - BOX / 2), X_FRAME_END - X_FRAME, BOX, zorder=2,
                         facecolor=S.FOLIO_COLOURS[f.kind], edgecolor="#333333",
                         linewidth=1.6 if f.thp else 0.8, hatch=hatch)
        text = folio_text(f)
        colour = S.BLACK
    rect.set_gid(f"frame:{pfn:#x}")
    ax.add_patch(rect)
    hatched = f is not None and rect.get_hatch()
    ax.text(X_FRAME + 0.8, y, text, fontsize=7.5, va="center", zorder=3, color=colour,
            bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.6, "alpha": 0.9} if hatched else None)
    if changed:
        hr = Rectangle(rect.get_xy(), rect.get_width(), rect.get_height(), **hl_style)
        hr.set_gid(f"highlight:frame:{pfn:#x}")
        ax.add_patch(hr)


def legend_handles(highlight: bool = False, focus: bool = False) -> list[Patch]:
    """The legend: folio kinds, the two hatches, swap slots, THP and (with a step) the highlight."""
    handles = [Patch(facecolor=S.FOLIO_COLOURS[k], edgecolor="#333333", label=S.FOLIO_NAMES[k])
               for k in ("exclusive", "shared", "ksm", "zero", "file", "unmapped")]
    handles += [Patch(facecolor="white", edgecolor="#333333", hatch=S.HATCH_PINNED, label="pinned (FOLL_LONGTERM)"),
                Patch(facecolor="white", edgecolor="#333333", hatch=S.HATCH_SWAPCACHE, label="in the swap cache"),
                Patch(facecolor="white", edgecolor="#333333", hatch=S.HATCH_THP, label="PMD-mapped THP entry"),
                Patch(facecolor=S.SWAP_COLOUR, edgecolor="#555555", label="swap slot")]
    if highlight:
        handles.append(Patch(facecolor="none", edgecolor=S.HIGHLIGHT, linewidth=2.4, label="changed by the step"))
    if focus:
        handles.append(Patch(facecolor="none", edgecolor=S.BLUE, linewidth=1.3, linestyle=(0, (1, 1.5)),
                             label="operand of the step"))
    return handles


WIDTH = 9.0          #: inches: readable in a book's text column
ROW_IN = 0.24        #: inches per row of a panel
TITLE_IN, CAPTION_IN, LEGEND_IN, GAP_IN = 0.45, 0.32, 0.8, 0.15


def _axes_at(fig: Figure, top_in: float, height_in: float, fig_h: float) -> Axes:
    """An axes spanning the width, ``top_in`` inches below the top edge, ``height_in`` tall."""
    return fig.add_axes((0.01, 1 - (top_in + height_in) / fig_h, 0.98, height_in / fig_h))


def _legend(fig: Figure, highlight: bool, focus: bool) -> None:
    fig.legend(handles=legend_handles(highlight, focus), loc="lower center", ncol=4, frameon=False,
               fontsize=7.5, handlelength=1.6, columnspacing=1.5, borderaxespad=0.3)


def draw_address_space(snap: Snapshot, title: str | None = None, changes: Changes | None = None,
                       focus: Iterable[tuple[str, str]] = ()) -> Figure:
    """One snapshot as an address-space diagram (page tables, arrows, frames, legend).

    ``changes`` highlights entries and folios; ``focus`` outlines entries given as (process, label).
    """
    focus = frozenset(focus)
    with S.style():
        frames = frame_order(snap)
        swaps = [s.entry for s in snap.swap]
        lay = layout(snap, frames, swaps, changes, focus)
        panel_in = (lay.height + 0.4) * ROW_IN
        top = TITLE_IN + (CAPTION_IN if snap.caption else 0.0)
        height = top + panel_in + LEGEND_IN
        fig = S.new_figure(WIDTH, height)
        ax = _axes_at(fig, top, panel_in, height)
        draw_panel(ax, snap, frames, swaps, changes, "after", lay.height, focus)
        if snap.caption:
            ax.set_title(S.wrap(snap.caption, 110), fontsize=9, loc="left")
        fig.suptitle(title or "Address space: page tables and frames", fontweight="bold")
        _legend(fig, changes is not None, bool(focus))
    return set_alt(fig, describe_space(snap, title or "Address space: page tables and frames", changes))


def draw_before_after(before: Snapshot, after: Snapshot, title: str | None = None,
                      changes: Changes | None = None, notes: Iterable[str] = (),
                      focus: Iterable[tuple[str, str]] = (), failed: bool | None = None) -> Figure:
    """Two panels, before (top) and after (bottom) one step, what the step changed highlighted in both.

    Frames keep their row in both panels, so an arrow that moves is easy to follow.  ``notes``
    (for example the step's outcome) are printed under the title, in vermillion when ``failed``;
    ``focus`` outlines the step's operands, as (process, entry label) pairs.
    """
    ch = changes if changes is not None else diff(before, after)
    focus = frozenset(focus)
    with S.style():
        frames = frame_order(before, after)
        swaps = sorted({s.entry for s in before.swap} | {s.entry for s in after.swap})
        heights = [layout(snap, frames, swaps, ch, focus).height for snap in (before, after)]
        note_lines = [n for n in notes if n] + ([] if ch else ["nothing changed"])
        notes_in = 0.2 * len(note_lines) + (0.1 if note_lines else 0.0)
        panels_in = [(h + 0.4) * ROW_IN for h in heights]
        height = TITLE_IN + notes_in + sum(CAPTION_IN + p for p in panels_in) + GAP_IN + LEGEND_IN
        fig = S.new_figure(WIDTH, height)
        fig.suptitle(title or "Before and after one step", fontweight="bold")
        if note_lines:
            fig.text(0.5, 1 - (TITLE_IN + 0.02) / height, "\n".join(note_lines), ha="center", va="top",
                     fontsize=8.5, color=S.ERROR if failed else S.BLACK, gid="notes")
        top = TITLE_IN + notes_in
        for snap, side, h, p_in in ((before, "before", heights[0], panels_in[0]),
                                    (after, "after", heights[1], panels_in[1])):
            ax = _axes_at(fig, top + CAPTION_IN, p_in, height)
            draw_panel(ax, snap, frames, swaps, ch, side, h, focus)
            caption = snap.caption or side
            if not caption.lower().startswith(side):
                caption = f"{side}: {caption}"
            ax.set_title(S.wrap(caption[0].upper() + caption[1:], 110), fontsize=9, loc="left", fontweight="bold")
            ax.set_gid(f"panel:{side}")
            top += CAPTION_IN + p_in + GAP_IN
        _legend(fig, True, bool(focus))
    changed = "; ".join(ch.lines) if ch else ""
    words = [f"{(title or 'Before and after one step').rstrip('.')}.", *(n.rstrip(".") + "." for n in note_lines),
             describe_space(before, "Before"), f"After: {changed}." if changed else "After: the same."]
    return set_alt(fig, " ".join(words))


def highlighted(fig: Figure) -> list[str]:
    """The gids of every highlighted artist in ``fig`` (what a step changed), sorted."""
    return sorted(a.get_gid() for ax in fig.axes for a in ax.patches
                  if (a.get_gid() or "").startswith("highlight:"))


def gids(fig: Figure, prefix: str = "") -> list[str]:
    """Every patch gid in ``fig`` that starts with ``prefix``."""
    return sorted(g for ax in fig.axes for a in ax.patches if (g := a.get_gid() or "").startswith(prefix))
