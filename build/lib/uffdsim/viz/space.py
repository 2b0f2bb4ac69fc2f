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

from dataclasses import dataclass, field
from typing import Iterable, Sequence

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, Patch, Rectangle

from ..snapshot import Changes, EntrySnap, FolioSnap, ProcSnap, Snapshot, VmaSnap, diff
from . import style as S

MAX_SLOTS = 10        #: rows per VMA before the rest is folded into "... N more pages"
MAX_FRAMES = 20       #: folio rows before the rest is folded
X_LABEL, X_ENTRY, X_ENTRY_END = 0.5, 16.0, 43.0
X_FRAME, X_FRAME_END = 60.0, 99.5
ROW = 1.0
BOX = 0.78


@dataclass
class Slot:
    """One drawn row of a VMA: one entry, or a run of alike entries."""

    first: EntrySnap
    count: int = 1
    last: EntrySnap | None = None
    hidden: int = 0          #: >0 for the fold row "... N more pages"
    values: set[int] = field(default_factory=set)

    @property
    def label(self) -> str:
        if self.hidden:
            return ""
        if self.count == 1 or self.last is None:
            return self.first.label
        a, b = self.first.label, self.last.label
        base, _, _ = a.rpartition("+")
        bbase, _, off = b.rpartition("+")
        return f"{a}..{off}" if base and base == bbase else f"{a}..{b}"


def _alike(a: EntrySnap, b: EntrySnap) -> bool:
    """May ``b`` join the row of ``a`` (the page after it)?"""
    if a.state != b.state or a.level != b.level or a.write != b.write:
        return False
    if a.state == "none":
        return True
    if a.state == "zero":
        return a.folio == b.folio
    if a.state == "marker":
        return a.marker == b.marker
    if a.state == "present" and a.level == "pmd":
        return a.folio == b.folio
    if a.state == "present":
        return a.folio == b.folio and a.pfn is not None and b.pfn == a.pfn + 1 \
            and a.exclusive == b.exclusive and a.value == b.value
    return False


def group_slots(entries: Sequence[EntrySnap], limit: int = MAX_SLOTS,
                apart: Iterable[int] = ()) -> list[Slot]:
    """Fold runs of alike entries into rows, then fold everything past ``limit`` rows into one.

    Entries at the addresses in ``apart`` (what a step changed) never share a row with others.
    """
    alone = set(apart)
    slots: list[Slot] = []
    for e in entries:
        cur = slots[-1] if slots else None
        prev = (cur.last or cur.first) if cur is not None else None
        if cur is not None and prev is not None and prev.addr not in alone and e.addr not in alone \
                and _alike(prev, e):
            cur.count += 1
            cur.last = e
        else:
            cur = Slot(e, 1, e)
            slots.append(cur)
        if e.value is not None:
            cur.values.add(e.value)
    if len(slots) > limit:
        rest = slots[limit - 1:]
        slots = slots[:limit - 1] + [Slot(rest[0].first, sum(s.count for s in rest), rest[-1].last,
                                          hidden=sum(s.count for s in rest))]
    return slots


def entry_text(slot: Slot) -> str:
    """What the page-table entry is, in a few words."""
    e, n = slot.first, slot.count
    if slot.hidden:
        return f"... {slot.hidden} more page{'s' if slot.hidden > 1 else ''}"
    times = f" ×{n}" if n > 1 else ""
    if e.state == "none":
        return f"none{times}"
    if e.state == "zero":
        return ("huge zero PMD" if e.level == "pmd" else "zero page") + times
    if e.state == "swap":
        return f"swap entry{' excl' if e.exclusive else ''}"
    if e.state == "marker":
        return f"{e.marker} marker{times}"
    kind = "THP PMD" if e.level == "pmd" else "PTE"
    rw = "rw" if e.write else "ro"
    wp = " wp" if e.uffd_wp else ""
    vals = sorted(slot.values) or [e.value or 0]
    val = f"{vals[0]:#04x}" if len(vals) == 1 else f"{vals[0]:#04x}..{vals[-1]:#04x}"
    return f"{kind} {rw}{wp} {val}{times}"


def folio_text(f: FolioSnap) -> str:
    """Name, content, mapcount and the flags that matter, in one line."""
    if f.kind == "zero":
        return f"{f.label}  (pfn {f.pfn:#x}, shared by all)"
    vals = sorted(set(f.values))
    val = f"{vals[0]:#04x}" if len(vals) == 1 else f"{vals[0]:#04x}..{vals[-1]:#04x}"
    head = f"THP {f.name()} ×{f.nr}" if f.thp else f.name()
    pte_maps = sum(f.mapcount)
    if f.entire_mapcount and pte_maps:
        maps = f"PMD map {f.entire_mapcount} + PTE map {pte_maps}"
    elif f.entire_mapcount:
        maps = f"PMD map {f.entire_mapcount}"
    elif f.thp:
        maps = f"PTE map {pte_maps}"
    else:
        maps = f"map {pte_maps}"
    parts = [head, val, maps]
    if f.kind == "ksm":
        parts.append("KSM")
    if f.pincount:
        parts.append(f"pin {f.pincount}")
    if f.swapcache is not None:
        parts.append(f"swapcache #{f.swapcache}")
    if f.note:
        parts.append(f.note)
    return " · ".join(parts)


@dataclass
class Layout:
    """Where every row of one panel goes (y grows downwards)."""

    rows: list[tuple[str, float, object]] = field(default_factory=list)   # (kind, y, payload)
    frame_y: dict[int, float] = field(default_factory=dict)
    swap_y: dict[int, float] = field(default_factory=dict)
    height: float = 0.0


def visible_folios(snap: Snapshot) -> list[int]:
    """Folios worth a row: every live folio, the zero pages only when something maps them."""
    mapped = {e.folio for _, _, e in snap.entries() if e.folio is not None}
    return [f.pfn for f in snap.folios if f.kind != "zero" or f.pfn in mapped]


def frame_order(*snaps: Snapshot, limit: int = MAX_FRAMES) -> list[int]:
    """Folio rows shared by panels, so that one frame sits at the same height in each (by pfn).

    When there are more than ``limit``, the folios that drawn rows point at are kept first.
    """
    pfns = sorted({p for s in snaps for p in visible_folios(s)})
    if len(pfns) <= limit:
        return pfns
    pointed = {slot.first.folio for s in snaps for p in s.processes for v in p.vmas
               for slot in group_slots(v.entries) if not slot.hidden and slot.first.folio is not None}
    keep = [p for p in pfns if p in pointed][:limit]
    keep += [p for p in pfns if p not in pointed][:limit - len(keep)]
    return sorted(keep)


def layout(snap: Snapshot, frames: Sequence[int], swaps: Sequence[int],
           changes: Changes | None = None, focus: Iterable[tuple[str, str]] = ()) -> Layout:
    out = Layout()
    apart = _apart(snap, changes, focus)
    y = 0.0
    for p in snap.processes:
        out.rows.append(("proc", y, p))
        y += ROW
        for v in sorted(p.vmas, key=lambda v: -v.start):
            slots = group_slots(v.entries, apart=apart.get(p.name, ()))
            head = _vma_heading(v)
            hh = ROW * (1.0 + 0.4 * head.count("\n"))
            out.rows.append(("vma", y, (p, v, len(slots), head, hh)))
            y += hh
            for slot in slots:
                out.rows.append(("slot", y, (p, v, slot)))
                y += ROW
            y += 0.35
        y += 0.25
    left = y
    y = ROW
    for pfn in frames:
        out.frame_y[pfn] = y
        y += ROW
    if swaps:
        y += 0.5
        out.rows.append(("swaphead", y, None))
        y += ROW
        for s in swaps:
            out.swap_y[s] = y
            y += ROW
    out.height = max(left, y) + 0.3
    return out


def _vma_heading(v: VmaSnap) -> str:
    """The right-hand side of a VMA band's heading: start address, kind and flags (wrapped)."""
    return S.wrap(f"{v.start:#x} · {v.describe()}", 46)


def _apart(snap: Snapshot, changes: Changes | None, focus: Iterable[tuple[str, str]]) -> dict[str, set[int]]:
    """Per process, the addresses that get a row of their own: changed entries and the step's operands."""
    out: dict[str, set[int]] = {}
    for proc, addr in (changes.entries if changes else ()):
        out.setdefault(proc, set()).add(addr)
    wanted = set(focus)
    if wanted:
        for p, _, e in snap.entries():
            if (p.name, e.label) in wanted:
                out.setdefault(p.name, set()).add(e.addr)
    return out


def _proc_title(p: ProcSnap) -> str:
    text = f"process {p.name} (pid {p.pid})" + ("" if p.alive else ": exited")
    extra = [f"thread {n}: {st}" for n, st in p.threads] + [f"pin {n}" for n in p.pins]
    return text + ("   " + ", ".join(extra) if extra else "")


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
            t = ax.text(X_LABEL, y + 0.1, _proc_title(p), fontsize=8.5, fontweight="bold", va="center",
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
    last = slot.last or slot.first
    changed = any((p.name, a) in ch.entries for a in range(slot.first.addr, last.addr + 1, 4096))
    target_y = None
    if e.state in ("present", "zero") and e.folio in lay.frame_y:
        target_y = lay.frame_y[e.folio]
    elif e.state == "swap" and e.swap in lay.swap_y:
        target_y = lay.swap_y[e.swap]
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
    return fig


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
    return fig


def highlighted(fig: Figure) -> list[str]:
    """The gids of every highlighted artist in ``fig`` (what a step changed), sorted."""
    return sorted(a.get_gid() for ax in fig.axes for a in ax.patches
                  if (a.get_gid() or "").startswith("highlight:"))


def gids(fig: Figure, prefix: str = "") -> list[str]:
    """Every patch gid in ``fig`` that starts with ``prefix``."""
    return sorted(g for ax in fig.axes for a in ax.patches if (g := a.get_gid() or "").startswith(prefix))
