"""Pictures in words: what an address-space picture shows, for its ``<title>``/``<desc>`` or alt text.

A screen reader reads this instead of looking at the picture, so it is written from the same data
and the same rows as the picture (:mod:`.layout`): each drawn row of each process, then what the
step changed.  Bounded: at most :data:`MAX_ROWS` rows and :data:`MAX_CHANGES` changes are named,
the rest counted.
"""
from __future__ import annotations

from ..snapshot import Changes, EntrySnap, Snapshot
from .layout import frame_order, layout

MAX_ROWS = 24        #: rows named in a description; the others are counted
MAX_CHANGES = 6      #: changes named in a description; the others are counted


def _entry_words(e: EntrySnap, snap: Snapshot) -> str:
    """``maps frame f0, exclusive, read-write``: one page-table entry, as the picture shows it."""
    if e.state == "none":
        return "empty"
    if e.state == "swap":
        return f"swap entry (slot {e.swap})" + (", exclusive" if e.exclusive else "")
    if e.state == "marker":
        return f"{e.marker} marker"
    if e.state == "zero":
        return "maps the huge zero page" if e.level == "pmd" else "maps the zero page"
    f = snap.folio(e.folio)
    name = f.name() if f is not None else f"pfn {e.pfn:#x}"
    words = [("maps THP " if e.level == "pmd" else "maps frame ") + name]
    if f is not None and f.kind == "ksm":
        words.append("KSM")
    elif f is not None and f.kind == "shared":
        words.append("shared copy-on-write")
    elif e.exclusive:
        words.append("exclusive")
    words.append("read-write" if e.write else "read-only")
    if f is not None and f.pinned:
        words.append("pinned")
    return ", ".join(words)


def describe_space(snap: Snapshot, title: str | None = None, changes: Changes | None = None) -> str:
    """One paragraph: the title, every drawn row (``src+0 empty``), what changed; bounded in length."""
    lay = layout(snap, frame_order(snap), [s.entry for s in snap.swap], changes)
    rows: list[tuple[str, list[str]]] = []
    named = hidden = 0
    for kind, _y, payload in lay.rows:
        if kind == "proc":
            p = payload
            rows.append((f"process {p.name}" + ("" if p.alive else " (exited)"), []))  # type: ignore[union-attr]
        elif kind == "slot" and rows:
            _p, _v, slot = payload  # type: ignore[misc]
            if named >= MAX_ROWS:
                hidden += 1
                continue
            named += 1
            if slot.hidden:
                rows[-1][1].append(f"{slot.hidden} more page{'s' if slot.hidden > 1 else ''}")
            else:
                times = f" ({slot.count} pages)" if slot.count > 1 else ""
                rows[-1][1].append(f"{slot.label}{times} {_entry_words(slot.first, snap)}")
    text = [(title or "Address space").rstrip(".") + "."]
    for head, cells in rows:
        text.append(f"{head}: " + ("; ".join(cells) if cells else "no pages mapped") + ".")
    if hidden:
        text.append(f"{hidden} more row{'s' if hidden > 1 else ''} not described.")
    folios = len(snap.folios)
    text.append(f"{folios} frame{'s' if folios != 1 else ''} in use" +
                (f", {len(snap.swap)} swap slot{'s' if len(snap.swap) != 1 else ''} written." if snap.swap else "."))
    if changes is not None and changes.lines:
        named = list(changes.lines[:MAX_CHANGES])
        more = len(changes.lines) - len(named)
        text.append("Changed by this step: " + "; ".join(named) + (f"; and {more} more." if more else "."))
    elif changes is not None:
        text.append("This step changed nothing drawn here.")
    return " ".join(text)


__all__ = ["describe_space", "MAX_ROWS", "MAX_CHANGES"]
