"""Where every row of an address-space picture goes: one layout for every renderer.

A :class:`~uffdsim.snapshot.Snapshot` becomes rows (processes, VMA bands, page-table entries,
runs of alike entries folded into one row) and the heights of the folio and swap-slot rows they
point at.  :mod:`.space` draws it with matplotlib, :mod:`.svg` as SVG for the live book; both
read these functions, so both pictures show the same boxes and labels.  No matplotlib here.
"""
from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from ..snapshot import Changes, EntrySnap, FolioSnap, ProcSnap, Snapshot, VmaSnap
from . import palette as S

MAX_SLOTS = 10        #: rows per VMA before the rest is folded into "... N more pages"
MAX_FRAMES = 20       #: folio rows before the rest is folded
MAX_PROCS = 6         #: processes drawn; the others are one row "... N more processes not drawn"
MAX_VMAS = 8          #: VMA bands drawn per process; the others are one row "... N more VMAs not drawn"
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


def drawn_processes(snap: Snapshot, changes: Changes | None = None, focus: Iterable[tuple[str, str]] = (),
                    limit: int = MAX_PROCS) -> list[ProcSnap]:
    """The processes a picture shows (at most ``limit``, in their order): those a step changed or names first."""
    if len(snap.processes) <= limit:
        return list(snap.processes)
    wanted = {p for p, _ in focus}
    if changes is not None:
        wanted |= set(changes.processes) | {p for p, _ in changes.entries} | {p for p, _ in changes.vmas}
    keep = [p.name for p in snap.processes if p.name in wanted][:limit]
    keep += [p.name for p in snap.processes if p.name not in wanted][:limit - len(keep)]
    chosen = set(keep)
    return [p for p in snap.processes if p.name in chosen]


def drawn_vmas(p: ProcSnap, apart: Iterable[int] = (), changes: Changes | None = None,
               limit: int = MAX_VMAS) -> list[VmaSnap]:
    """The VMA bands a picture shows of ``p`` (at most ``limit``, highest address first): changed ones first."""
    vmas = sorted(p.vmas, key=lambda v: -v.start)
    if len(vmas) <= limit:
        return vmas
    addrs = sorted(apart)
    starts = {s for n, s in (changes.vmas if changes else ()) if n == p.name}

    def wanted(v: VmaSnap) -> bool:
        i = bisect_left(addrs, v.start)
        return v.start in starts or (i < len(addrs) and addrs[i] < v.end)

    keep = [v for v in vmas if wanted(v)][:limit]
    picked = {v.start for v in keep}
    keep += [v for v in vmas if v.start not in picked][:limit - len(keep)]
    return sorted(keep, key=lambda v: -v.start)


def layout(snap: Snapshot, frames: Sequence[int], swaps: Sequence[int],
           changes: Changes | None = None, focus: Iterable[tuple[str, str]] = ()) -> Layout:
    """Rows for at most :data:`MAX_PROCS` processes of at most :data:`MAX_VMAS` VMAs each (the rest folded)."""
    out = Layout()
    focus = frozenset(focus)
    apart = _apart(snap, changes, focus)
    y = 0.0
    procs = drawn_processes(snap, changes, focus)
    for p in procs:
        out.rows.append(("proc", y, p))
        y += ROW
        vmas = drawn_vmas(p, apart.get(p.name, ()), changes)
        for v in vmas:
            slots = group_slots(v.entries, apart=apart.get(p.name, ()))
            head = vma_heading(v)
            hh = ROW * (1.0 + 0.4 * head.count("\n"))
            out.rows.append(("vma", y, (p, v, len(slots), head, hh)))
            y += hh
            for slot in slots:
                out.rows.append(("slot", y, (p, v, slot)))
                y += ROW
            y += 0.35
        if len(p.vmas) > len(vmas):
            out.rows.append(("more", y, f"... {len(p.vmas) - len(vmas)} more VMA(s) of {p.name} not drawn"))
            y += ROW
        y += 0.25
    more = len(snap.processes) - len(procs) + snap.omitted
    if more:
        out.rows.append(("more", y, f"... {more} more process(es) not drawn"))
        y += ROW
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


def vma_heading(v: VmaSnap) -> str:
    """The right-hand side of a VMA band's heading: start address, kind and flags (wrapped)."""
    return S.wrap(f"{v.start:#x} · {v.describe()}", 46)


def _apart(snap: Snapshot, changes: Changes | None, focus: Iterable[tuple[str, str]]) -> dict[str, set[int]]:
    """Per process, the addresses that get a row of their own: changed entries and the step's operands."""
    out: dict[str, set[int]] = {}
    for proc, addr in (changes.entries if changes else ()):
        out.setdefault(proc, set()).add(addr)
    wanted = set(focus)
    if wanted:
        procs = {p for p, _ in wanted}
        for p, _, e in snap.entries():
            if p.name in procs and (p.name, e.label) in wanted:
                out.setdefault(p.name, set()).add(e.addr)
    return out


def proc_title(p: ProcSnap) -> str:
    text = f"process {p.name} (pid {p.pid})" + ("" if p.alive else ": exited")
    extra = [f"thread {n}: {st}" for n, st in p.threads] + [f"pin {n}" for n in p.pins]
    return text + ("   " + ", ".join(extra) if extra else "")


def slot_link(p: ProcSnap, slot: Slot, lay: Layout, ch: Changes) -> tuple[bool, float | None]:
    """Did the step change this row, and the height of the folio or swap slot its arrow points at."""
    e, last = slot.first, slot.last or slot.first
    changed = any((p.name, a) in ch.entries for a in range(slot.first.addr, last.addr + 1, 4096))
    target_y = None
    if e.state in ("present", "zero") and e.folio in lay.frame_y:
        target_y = lay.frame_y[e.folio]
    elif e.state == "swap" and e.swap in lay.swap_y:
        target_y = lay.swap_y[e.swap]
    return changed, target_y
