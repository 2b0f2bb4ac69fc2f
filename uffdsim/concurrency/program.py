"""The program whose interleavings the explorer enumerates: a GC thread moves, a mutator writes.

The situation is a concurrent compacting garbage collector (ART's CMC is the one UFFDIO_MOVE was
written for).  ``src`` and ``dst`` are two private anonymous ranges of ``pages`` pages, both
registered with one userfaultfd in MISSING mode.  Each source page holds a counter, initially 0,
in a frame that is ``exclusive`` (movable), ``pinned`` (a long-term pin: MOVE fails with EBUSY)
or ``cow-shared`` (shared with a forked child, mapped read-only: MOVE fails with EBUSY until a
store breaks COW).  ``dst`` starts empty.

Thread A, the mover (the GC thread):
    1. runs the strategy's ioctls page by page (see :mod:`.strategies`), each split into the
       atomic steps of :mod:`.steps`;
    2. publishes the forwarding pointers ("the flip") of the pages that reached ``dst``;
    3. serves the uffd: while B is not finished, each queued fault message is read and the
       faulting thread released.  UFFDIO_MOVE's own wake-up covers only the *destination*
       range, and UFFDIO_WAKE alone would only make a thread asleep on the empty source retry
       the same access and fault again; the release stands for a redirect (see below).
    A is finished when it is serving, the queue is empty and B is done.

Thread B, the mutator, performs ``increments`` read-modify-write increments; increment ``i``
targets page ``i % pages``.  Each increment is two steps:
    load   read the forwarding pointer of the page (``dst`` once flipped, else ``src``) and load
           the counter from that slot;
    store  store the loaded value + 1 to the same slot; the increment is then complete.
(Reading the pointer and loading are one step.  Split, they would only add schedules in which B
reads the old pointer, A flips, and B loads from ``src``: every strategy flips only after the
source is empty, so that load faults exactly as the merged step does just before the flip.)
A store through a read-only PTE takes the write-protect fault first (``do_wp_page``: COW), then
retries.  A load or store on an empty slot faults into ``handle_userfault`` and B sleeps.
When A releases it, the flip has been published, and B restarts the whole increment through the
forwarding pointer: the retried access goes to ``dst`` (the mutator's read barrier; in the C
helper of the kernel race, a SIGBUS handler that waits for the flip and ``siglongjmp``s back).

Outcome of a complete interleaving, per page: its final home is ``dst`` if flipped, else
``src``.  An increment is **lost** when the counter at the page's home is smaller than the
increments B completed on that page: a store landed in a frame that was then dropped (COPY
had already read the page, DONTNEED then zapped it).  The report also counts runs that leave
the source non-empty, that leak (A believes a page left ``src`` but ``src`` still maps one, or
a frame is unreachable yet not freed), in which A copied contents (not zero-copy), in which an
ioctl returned EBUSY, and deadlocks (no thread can run, not all finished).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from . import steps
from .state import SRC_PAGE_KINDS, State, initial_state
from .strategies import Strategy, get_strategy, mover_step

THREADS: tuple[str, ...] = ("A", "B")
#: what "no increment lost" does not cover when a pinned page was copied away from its pin
PIN_CAVEAT = ("atomic for CPU threads only: the page was pinned and its contents copied, so a device "
              "writing through the pin writes into the detached old frame, which no mapping reads")
MAX_PAGES, MAX_INCREMENTS = 8, 64


@dataclass(frozen=True)
class Outcome:
    """What a finished run left behind."""

    lost_increments: int
    src_nonempty: bool
    leaked: bool
    copied: bool
    ebusy: bool
    #: a pinned frame ended up mapped nowhere (the kernel or user space copied it away): a device
    #: writing through the pin writes into that detached frame, and no thread will see it
    detached_pin: bool = False

    @property
    def lost(self) -> bool:
        return self.lost_increments > 0


@dataclass(frozen=True)
class Program:
    """Strategy + sizes: the transition system the scheduler runs and the explorer walks."""

    strategy: Strategy
    pages: int = 1
    increments: int = 3
    src_page: str = ""

    @classmethod
    def build(cls, strategy: str, pages: int = 1, increments: int = 3,
              src_page: str | None = None) -> "Program":
        """Validate the arguments (ValueError with a one-line reason) and build the program."""
        strat = get_strategy(strategy)
        if not isinstance(pages, int) or not 1 <= pages <= MAX_PAGES:
            raise ValueError(f"pages must be an integer from 1 to {MAX_PAGES}, not {pages!r}")
        if not isinstance(increments, int) or not 0 <= increments <= MAX_INCREMENTS:
            raise ValueError(f"increments must be an integer from 0 to {MAX_INCREMENTS}, "
                             f"not {increments!r}")
        kind = src_page or strat.default_src_page
        if kind not in SRC_PAGE_KINDS:
            raise ValueError(f"unknown source page kind {kind!r}; choose from "
                             f"{', '.join(SRC_PAGE_KINDS)}")
        return cls(strat, pages, increments, kind)

    def initial(self) -> State:
        s = initial_state(self.pages, self.src_page, self.strategy.first_phase())
        if self.increments == 0:
            s = replace(s, b=replace(s.b, pc="done"))
        return s

    # -- which threads may take a step ---------------------------------------------------
    def runnable(self, s: State, tid: str) -> bool:
        if tid == "A":
            return s.a.phase != "serve" or bool(s.faults)
        return s.b.pc in ("load", "store")

    def enabled(self, s: State) -> tuple[str, ...]:
        return tuple(t for t in THREADS if self.runnable(s, t))

    def finished(self, s: State) -> bool:
        return s.a.phase == "serve" and not s.faults and s.b.pc == "done"

    # -- one step --------------------------------------------------------------------------
    def step(self, s: State, tid: str) -> tuple[State, str]:
        """Let thread ``tid`` take its next atomic step; ValueError if it cannot run."""
        if not self.runnable(s, tid):
            raise ValueError(f"thread {tid} cannot run now ({self.describe_thread(s, tid)})")
        if tid == "A":
            return mover_step(self.strategy, s)
        if s.b.pc == "load":
            return steps.user_load(s)
        return steps.user_store(s, self.increments)

    @staticmethod
    def describe_thread(s: State, tid: str) -> str:
        if tid == "A":
            return "serving the uffd, nothing queued" if s.a.phase == "serve" else s.a.phase
        return {"blocked": "asleep in handle_userfault", "done": "finished"}.get(s.b.pc, s.b.pc)

    # -- the verdict -------------------------------------------------------------------------
    def completed_on(self, page: int) -> int:
        """Increments B completes on ``page`` when all are done."""
        n = self.increments
        return n // self.pages + (1 if page < n % self.pages else 0)

    def home_value(self, s: State, page: int) -> int | None:
        """Counter at the page's final home (dst if flipped, else src); None if unmapped."""
        pte = (s.dst if s.flip[page] else s.src)[page]
        return None if pte is None else s.frames[pte.frame].value

    def outcome(self, s: State) -> Outcome:
        lost = 0
        for p in range(self.pages):
            value = self.home_value(s, p)
            lost += max(0, self.completed_on(p) - (value or 0))
        unreachable = any(not f.freed and s.references(i) == 0 for i, f in enumerate(s.frames))
        believed_gone_but_mapped = any(g and e is not None for g, e in zip(s.a.gone, s.src))
        return Outcome(
            lost_increments=lost,
            src_nonempty=any(e is not None for e in s.src),
            leaked=unreachable or believed_gone_but_mapped,
            copied=s.a.copies > 0,
            ebusy="EBUSY" in s.a.errors,
            detached_pin=self.detached_pin(s),
        )

    @staticmethod
    def detached_pin(s: State) -> bool:
        """Whether a pinned frame is alive but mapped by neither range (its contents were copied)."""
        mapped = {e.frame for t in (s.src, s.dst) for e in t if e is not None}
        return any(f.pinned and not f.freed and i not in mapped for i, f in enumerate(s.frames))

    def summary(self, s: State) -> str:
        """The closing line of a trace."""
        parts = []
        for p in range(self.pages):
            home = "dst" if s.flip[p] else "src"
            parts.append(f"page {p}: B completed {self.completed_on(p)}, {home}[{p}] holds "
                         f"{self.home_value(s, p)}")
        o = self.outcome(s)
        verdict = (f"LOST {o.lost_increments} increment(s)" if o.lost else "no increment lost")
        extra = "; source still maps a page" if o.src_nonempty else ""
        if o.detached_pin:
            extra += f"; {PIN_CAVEAT}"
        return "; ".join(parts) + f" -> {verdict}{extra}"
