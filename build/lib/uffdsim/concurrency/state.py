"""The whole machine of the atomicity model as one immutable, hashable value.

Two page-table ranges of ``pages`` slots each, ``src`` and ``dst`` (both anonymous, private,
registered with one userfaultfd in MISSING mode), the frames (folios) they can point at, the
forwarding table the garbage collector publishes, the uffd message queue, and the program
counters of the two threads: ``A`` the mover (the GC thread) and ``B`` the mutator.

Everything is a frozen dataclass of tuples, so a state can be a dictionary key: the explorer
deduplicates on it.  Nothing here knows about schedules or strategies.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

#: where a page of the source range starts out
SrcPage = Literal["exclusive", "pinned", "cow-shared"]
SRC_PAGE_KINDS: tuple[str, ...] = ("exclusive", "pinned", "cow-shared")

Where = Literal["src", "dst"]


@dataclass(frozen=True, slots=True)
class Pte:
    """A present page-table entry: the frame it maps and its write bit."""

    frame: int
    writable: bool = True


@dataclass(frozen=True, slots=True)
class Frame:
    """One small anonymous folio: the counter word it holds and what the kernel knows about it.

    ``exclusive`` mirrors PageAnonExclusive; ``pinned`` a long-term pin (folio_maybe_dma_pinned,
    e.g. an io_uring fixed buffer) that holds a reference of its own; ``child`` a reference held
    by a forked child that COW-shares the page; ``freed`` the frame went back to the allocator.
    """

    value: int = 0
    exclusive: bool = True
    pinned: bool = False
    child: bool = False
    freed: bool = False


@dataclass(frozen=True, slots=True)
class Fault:
    """A queued uffd_msg of type PAGEFAULT: which slot, and whether the access was a write."""

    where: Where
    page: int
    write: bool


@dataclass(frozen=True, slots=True)
class Mover:
    """Thread A: the phase of its program, the folio it holds privately, what it believes.

    ``phase`` is one of the strategy's phases (see :mod:`.strategies`) applied to ``page``;
    ``folio`` is a frame allocated by a COPY and not yet installed; ``gone[p]`` says A believes
    page p has left the source; ``at_dst[p]`` that A installed or moved it into the destination;
    ``copies`` counts page contents A (or the kernel on its behalf) copied; ``errors`` the
    errnos its ioctls returned, in order.
    """

    phase: str
    page: int = 0
    folio: int | None = None
    gone: tuple[bool, ...] = ()
    at_dst: tuple[bool, ...] = ()
    copies: int = 0
    errors: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Mutator:
    """Thread B: ``pc`` in load/store/blocked/done, increments completed, the slot and value
    of the read-modify-write in flight."""

    pc: str = "load"
    done: int = 0
    where: Where = "src"
    reg: int = 0


@dataclass(frozen=True, slots=True)
class State:
    """The machine.  ``flip[p]``: the GC has published that page p now lives at ``dst``."""

    src: tuple[Pte | None, ...]
    dst: tuple[Pte | None, ...]
    frames: tuple[Frame, ...]
    flip: tuple[bool, ...]
    faults: tuple[Fault, ...]
    a: Mover
    b: Mutator

    # -- small accessors used by the steps and the report ---------------------------------
    def table(self, where: Where) -> tuple[Pte | None, ...]:
        return self.src if where == "src" else self.dst

    def with_pte(self, where: Where, page: int, pte: Pte | None) -> "State":
        tab = list(self.table(where))
        tab[page] = pte
        return replace(self, **{where: tuple(tab)})

    def with_frame(self, fid: int, frame: Frame) -> "State":
        frames = list(self.frames)
        frames[fid] = frame
        return replace(self, frames=tuple(frames))

    def alloc(self, frame: Frame) -> tuple["State", int]:
        """A new frame (folio_alloc); returns the state and the frame id."""
        return replace(self, frames=self.frames + (frame,)), len(self.frames)

    def references(self, fid: int) -> int:
        """Mappings plus private references (A's unmapped folio, a pin, a fork child)."""
        f = self.frames[fid]
        n = sum(1 for t in (self.src, self.dst) for e in t if e is not None and e.frame == fid)
        return n + (self.a.folio == fid) + f.pinned + f.child

    def release_if_unused(self, fid: int) -> "State":
        """folio_put: free the frame when the last reference is gone."""
        if self.references(fid) == 0 and not self.frames[fid].freed:
            return self.with_frame(fid, Frame(freed=True))
        return self


def initial_state(pages: int, src_page: str, first_phase: str) -> State:
    """Source populated with counters at 0, destination empty, nothing flipped; A at
    ``first_phase`` of its strategy on page 0, B about to load."""
    if src_page not in SRC_PAGE_KINDS:
        raise ValueError(f"unknown source page kind {src_page!r}; choose from "
                         f"{', '.join(SRC_PAGE_KINDS)}")
    frame = {
        "exclusive": Frame(),
        "pinned": Frame(pinned=True),
        "cow-shared": Frame(exclusive=False, child=True),
    }[src_page]
    writable = src_page != "cow-shared"      # a COW-shared page is mapped read-only
    return State(
        src=tuple(Pte(i, writable) for i in range(pages)),
        dst=(None,) * pages,
        frames=(frame,) * pages,
        flip=(False,) * pages,
        faults=(),
        a=Mover(phase=first_phase, gone=(False,) * pages, at_dst=(False,) * pages),
        b=Mutator(),
    )
