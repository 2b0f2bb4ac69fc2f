"""How thread A gets the page(s) from ``src`` to ``dst``: five strategies, as programs of steps.

Linux offers three of them:

``move``
    ``UFFDIO_MOVE`` per page; on failure nothing else is tried (the page stays at ``src``).
``copy-dontneed``
    The pre-6.8 emulation: ``UFFDIO_COPY`` of every page, then ``MADV_DONTNEED`` of the range.
``move-fallback``
    ``UFFDIO_MOVE``; a page that fails with ``EBUSY`` is copied in user space with
    ``UFFDIO_COPY`` + ``MADV_DONTNEED`` (what ART's developer described as one option).  Its
    default source page is *pinned*, so the fallback is always taken and the strategy inherits
    the copy's race; with ``--src-page exclusive`` it behaves as ``move``; with ``cow-shared``
    a store by B before the move breaks COW, makes the page exclusive and lets the move succeed.

Two more were debated on linux-mm in October 2023 and never merged.  They are HYPOTHETICAL:

``move-allow-copy``
    A ``UFFDIO_MOVE_MODE_ALLOW_COPY`` flag (Suren Baghdasaryan's proposal): when the folio cannot
    be moved the kernel copies it *inside the same critical section*, clearing the source as a
    move would (David Hildenbrand's "copy+delete", "the src_vma would always be empty").  On a
    pinned page that is atomic for CPU threads only: the pin keeps the old frame, and a device
    writing through it writes into a frame nothing maps any more (``Outcome.detached_pin``).
``move-zero-copy-only``
    David Hildenbrand's alternative: a ``ZERO_COPY_ONLY`` flag that every caller must pass from
    the start ("we would fail if the latter is not specified"), so that a copying default could
    be added later without surprising anyone.  With the flag the call behaves as Linux's real
    UFFDIO_MOVE does; it is listed to show what that promises, by default on a pinned page
    where it fails.

After its ioctls A publishes the forwarding pointers of the pages now at ``dst`` (the flip)
and then serves uffd faults: it reads each queued message and wakes the faulting thread.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from . import steps
from .state import State


@dataclass(frozen=True)
class Strategy:
    """A named mover program and what it claims by design."""

    name: str
    summary: str
    default_src_page: str
    hypothetical: bool = False
    label: str = "Linux"

    def first_phase(self) -> str:
        return "alloc" if self.name == "copy-dontneed" else "move"


_NOT_LINUX = "HYPOTHETICAL, not Linux: proposed on linux-mm in October 2023, never merged"

STRATEGIES: dict[str, Strategy] = {s.name: s for s in (
    Strategy("move", "UFFDIO_MOVE of each page; a failure leaves the page at src",
             "exclusive", label="Linux: UFFDIO_MOVE (6.8+)"),
    Strategy("copy-dontneed", "UFFDIO_COPY of each page, then MADV_DONTNEED of the source",
             "exclusive", label="Linux: UFFDIO_COPY + MADV_DONTNEED"),
    Strategy("move-fallback", "UFFDIO_MOVE; on EBUSY, UFFDIO_COPY + MADV_DONTNEED in user space",
             "pinned", label="Linux: UFFDIO_MOVE with a user-space fallback"),
    Strategy("move-allow-copy",
             "MOVE with an ALLOW_COPY flag: the kernel copies under its locks instead of EBUSY, "
             "clearing the source (on a pinned page atomic for CPU threads only: a device writing "
             "through the pin writes into the detached old frame)", "pinned", hypothetical=True,
             label=_NOT_LINUX + " (UFFDIO_MOVE_MODE_ALLOW_COPY)"),
    Strategy("move-zero-copy-only",
             "MOVE with a mandatory ZERO_COPY_ONLY flag: never copies, fails with EBUSY instead",
             "pinned", hypothetical=True,
             label=_NOT_LINUX + " (UFFDIO_MOVE_ZERO_COPY_ONLY)"),
)}


def get_strategy(name: str) -> Strategy:
    """The strategy called ``name``; ValueError naming the choices otherwise."""
    try:
        return STRATEGIES[name]
    except KeyError:
        raise ValueError(f"unknown strategy {name!r}; choose from "
                         f"{', '.join(STRATEGIES)}") from None


def _goto(s: State, phase: str, page: int) -> State:
    return replace(s, a=replace(s.a, phase=phase, page=page))


def _after_page(s: State, strategy: Strategy, p: int) -> State:
    """Next page of the same loop, or the flip when the range is done."""
    pages = len(s.src)
    if p + 1 < pages:
        return _goto(s, strategy.first_phase(), p + 1)
    return _goto(s, "zap" if strategy.name == "copy-dontneed" else "flip", 0)


def mover_step(strategy: Strategy, s: State) -> tuple[State, str]:
    """Run A's next step under ``strategy``; returns the new state and the trace text."""
    phase, p = s.a.phase, s.a.page
    if phase == "move":
        before = len(s.a.errors)
        s, text = steps.move_present_ptes(s, p, allow_copy=strategy.name == "move-allow-copy")
        failed = len(s.a.errors) > before
        if failed and strategy.name == "move-fallback" and s.a.errors[-1] == "EBUSY":
            return _goto(s, "alloc", p), text + "; user space falls back to COPY + DONTNEED"
        if failed:
            return _goto(s, "flip", 0), text
        return _after_page(s, strategy, p), text
    if phase == "alloc":
        s, text = steps.mfill_atomic_pte_copy_alloc(s, p)
        return _goto(s, "copy", p), text
    if phase == "copy":
        s, text = steps.mfill_atomic_pte_copy_from_user(s, p)
        return _goto(s, "install", p), text
    if phase == "install":
        s, text = steps.mfill_atomic_install_pte(s, p)
        if strategy.name == "move-fallback":
            return _goto(s, "zap1", p), text
        return _after_page(s, strategy, p), text
    if phase == "zap1":                          # the fallback's MADV_DONTNEED of one page
        s, text = steps.zap_pte_range(s, range(p, p + 1))
        return _after_page(s, strategy, p), text
    if phase == "zap":
        s, text = steps.zap_pte_range(s, range(len(s.src)))
        return _goto(s, "flip", 0), text
    if phase == "flip":
        s, text = steps.publish_flip(s)
        return _goto(s, "serve", 0), text
    if phase == "serve":
        return steps.userfaultfd_read_and_wake(s)
    raise AssertionError(f"mover has no phase {phase!r}")
