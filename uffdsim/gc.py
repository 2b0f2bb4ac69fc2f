"""A small compacting garbage collector on the simulator: MOVE versus COPY (chapter 8).

The model follows the shape of Android ART's concurrent mark-compact collector, the first user
of UFFDIO_MOVE, at page granularity:

* **Heap.**  ``pages`` from-space pages of ``slots`` equal-size objects each.  Every slot holds
  an object; each object is live with probability ``live_fraction`` (``random.Random(seed)``, so
  the layout is reproducible).  The simulator keeps one byte per page, so a page's byte stands
  for its content: :func:`page_value`, a checksum of the object ids in its slots.
* **Plan** (:func:`plan_compaction`).  In address order, a page whose objects are all live is
  *dense* and is relocated whole.  Other pages with live objects are packed first-fit: a sparse
  page is drained into the first earlier *head* page whose dead slots can take all its live
  objects (a donor page is never split), or else becomes a head itself.  Every head or dense page
  becomes one to-space page, in address order; pages with no live object are garbage.
* **Compaction** (:func:`compact`).  For each to-space page: copy the donors' objects into the
  head (``pack``), install the page into to-space, then ``MADV_DONTNEED`` the from-space pages
  it came from.  With ``method="move"`` the install is ``UFFDIO_MOVE`` (the frame changes
  owner, zero copy); with ``method="copy"`` it is ``UFFDIO_COPY`` into a new frame and the head is
  zapped as well.  A MOVE that fails with EBUSY (the page is shared, e.g. with a forked child)
  falls back to COPY for that page.  Garbage pages are released at the end.
* **Mutators.**  To-space is registered for MISSING faults.  ``accesses`` reads by mutator
  threads (``fault_async``) land on random to-space pages at random ticks; a read of a page not
  yet installed blocks.  Before its next page, the collector reads the fault messages and
  compacts the faulted pages first (as ART's mutators trigger compaction of the page they
  fault on); the MOVE or COPY wakes the thread.

**Cost model** (:class:`CostModel`, in units of one page copy):

==========================  ========================================================
``copy_page`` = 1.0         UFFDIO_COPY of one page (allocate a frame, copy 4 KiB)
``move_page`` = c_move      UFFDIO_MOVE of one page (move a PTE, flush the TLB)
``zap_page`` = c_zap        MADV_DONTNEED of one present page (zap it, free the frame)
``memcpy_page`` = c_mem     memcpy() of 4 KiB in user space (no system call, no fault)
``memcpy_page / slots``     copying one object while packing (its share of a page memcpy)
==========================  ========================================================

``c_move`` comes from the recorded kernel benchmark (``data/kernel_bench.json``, written by
``python -m uffdsim bench kernel --record``) when it exists: ns per page of ``move-4k``
divided by that of ``copy-dontneed-4k`` (one ioctl per page, as this collector issues them),
at the largest size both were measured, is the model's MOVE / (COPY + DONTNEED), that is
``c_move / (1 + c_zap)``.  Otherwise, and for ``c_zap`` always, the defaults are
``c_move = 0.125`` and ``c_zap = 0.25``: one UFFDIO_MOVE, UFFDIO_COPY or MADV_DONTNEED over
1-64 MiB on Linux 6.18 (x86_64) took about 0.06-0.24, 1.5-1.9 and 0.2-0.5 us per page when
this module was written.  ``c_mem`` is the benchmark's ``memcpy`` figure (ns per 4 KiB page,
same size) divided by the ns of one unit, ``copy-dontneed-4k / (1 + c_zap)``; without a
benchmark it is ``0.15`` (a 4 KiB memcpy of about 0.25 us against a UFFDIO_COPY of about 1.7 us).
:func:`load_measured_cost_model` instead prices all three from
``data/compaction.json`` (``benchmarks/compaction.py``, ``make bench-compaction``), where
UFFDIO_MOVE, UFFDIO_COPY and MADV_DONTNEED are each timed on their own: ``c_move = move / copy``,
``c_zap = dontneed / copy``, nothing assumed; :func:`predicted_completion_ratio` is what the
collector then predicts for that benchmark's compacting thread, and ``tests/test_costs.py``
checks it against the record.
Packing is a user-space memcpy of live objects: it pays neither a system call nor a page
allocation, so it is priced from memcpy, not as a share of UFFDIO_COPY.  Waking a thread, reading messages and mutator work cost nothing in
this model.

**Measures.**  ``Compaction.steps`` records every collector step with its cost, the clock (the
sum of costs so far) and the footprint after it: ``len(machine.phys.live)``, the frames in use.
``Compaction.pauses`` gives, for each mutator read that blocked, the cost units from its fault
until its page was installed; ``Compaction.total_work`` is the clock at the end.
"""
from __future__ import annotations

from . import lerrno as E  # Linux's numbers, not the host's
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import UffdError
from .resources import data_file
from .mm.folio import PAGE_SIZE
from .mm.machine import Machine
from .mm.process import Process

METHODS = ("move", "copy")
DEFAULT_MOVE_COST = 0.125
DEFAULT_ZAP_COST = 0.25
DEFAULT_MEMCPY_COST = 0.15
BENCH_FILE = data_file("kernel_bench.json")
COMPACTION_FILE = data_file("compaction.json")


class GcError(ValueError):
    """A bad argument to the collector (one line, no traceback needed to understand it)."""


# -- the cost model -------------------------------------------------------------------------------

@dataclass(frozen=True)
class CostModel:
    """The price of each collector operation, in units of one page copy (see the module docstring)."""

    move_page: float = DEFAULT_MOVE_COST
    zap_page: float = DEFAULT_ZAP_COST
    copy_page: float = 1.0
    memcpy_page: float = DEFAULT_MEMCPY_COST
    source: str = "default"

    def __post_init__(self) -> None:
        for name in ("move_page", "zap_page", "copy_page", "memcpy_page"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value < 0:
                raise GcError(f"CostModel.{name} must be a number >= 0, not {value!r}")

    def object_copy(self, slots: int) -> float:
        """Copying one object of a page with ``slots`` objects: its share of a 4 KiB memcpy."""
        return self.memcpy_page / slots


#: benchmark method names (``python -m uffdsim bench kernel``) -> what the model prices.  The
#: collector issues one ioctl per page, so only the per-page (4 KiB) variants are used.
BENCH_METHODS = {"move-4k": "move", "copy-dontneed-4k": "copy+dontneed",
                 "move": "move", "copy": "copy", "copy+dontneed": "copy+dontneed", "memcpy": "memcpy"}


def load_cost_model(path: str | Path | None = None) -> CostModel:
    """The cost model from a kernel benchmark file, or the documented defaults when there is none."""
    path = Path(path) if path is not None else BENCH_FILE
    if not path.is_file():
        return CostModel(source="default (no kernel benchmark recorded)")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise GcError(f"{path}: not a readable JSON file ({err})") from None
    if isinstance(data, dict):
        data = next((data[k] for k in ("results", "records", "data", "runs")
                     if isinstance(data.get(k), list)), [])
    ns: dict[tuple[str, float], float] = {}
    for r in data if isinstance(data, list) else []:
        try:
            method = BENCH_METHODS.get(str(r["method"]))
            size = float(r["size_mib"] if "size_mib" in r else r["size_mb"])
            value = float(r["ns_per_page"])
        except (KeyError, TypeError, ValueError):
            continue
        if method is not None and value > 0:
            ns[(method, size)] = value
    for copy in ("copy", "copy+dontneed"):
        sizes = sorted(s for m, s in ns if m == "move" and (copy, s) in ns)
        if sizes:
            break
    else:
        return CostModel(source=f"default ({path.name} has no per-page move/copy pair)")
    size = sizes[-1]
    ratio = ns[("move", size)] / ns[(copy, size)]
    if copy == "copy":
        c_zap = DEFAULT_ZAP_COST
        if ("copy+dontneed", size) in ns:
            c_zap = max(0.0, ns[("copy+dontneed", size)] / ns[("copy", size)] - 1.0)
        c_move = ratio
        unit_ns = ns[("copy", size)]
    else:                           # only COPY + DONTNEED measured: it costs 1 + c_zap units
        c_zap = DEFAULT_ZAP_COST
        c_move = ratio * (1.0 + c_zap)
        unit_ns = ns[(copy, size)] / (1.0 + c_zap)
    c_mem, mem_note = DEFAULT_MEMCPY_COST, "memcpy: default"
    if ("memcpy", size) in ns:
        c_mem, mem_note = ns[("memcpy", size)] / unit_ns, f"memcpy / unit = {ns[('memcpy', size)] / unit_ns:.3f}"
    return CostModel(move_page=round(c_move, 3), zap_page=round(c_zap, 3), memcpy_page=round(c_mem, 3),
                     source=f"{path.name}, {size:g} MiB, one ioctl per page: "
                            f"move / {copy} = {ratio:.3f}; {mem_note}")


def load_measured_cost_model(path: str | Path | None = None,
                             bench: str | Path | None = None) -> CostModel:
    """The cost model from measured per-page costs: ``benchmarks/compaction.py``'s record.

    ``data/compaction.json`` times ``UFFDIO_MOVE``, ``UFFDIO_COPY`` and ``MADV_DONTNEED`` each on
    its own, one call per 4 KiB page, so nothing is assumed: ``move_page = move / copy`` and
    ``zap_page = dontneed / copy`` (medians, ns per page).  ``memcpy_page`` still comes from the
    kernel benchmark (``bench``, ``data/kernel_bench.json``) when it has a ``memcpy`` figure, in
    units of that file's COPY (or COPY + DONTNEED over ``1 + zap_page``); else the default.
    Without a compaction record, :func:`load_cost_model`.
    """
    path = Path(path) if path is not None else COMPACTION_FILE
    if not path.is_file():
        return load_cost_model(bench)
    try:
        data = json.loads(path.read_text())
        ns = {k: float(data[f"{k}_ns_per_page"]["median"]) for k in ("move", "copy", "dontneed")}
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise GcError(f"{path}: not a compaction record ({err})") from None
    if min(ns.values()) <= 0:
        raise GcError(f"{path}: per-page costs must be > 0, not {ns}")
    c_mem = load_cost_model(bench)
    mem = c_mem.memcpy_page if "memcpy /" in c_mem.source else DEFAULT_MEMCPY_COST
    return CostModel(move_page=round(ns["move"] / ns["copy"], 3), zap_page=round(ns["dontneed"] / ns["copy"], 3),
                     memcpy_page=mem,
                     source=(f"{path.name} ({data.get('kernel', '?')}, {data.get('cpus', '?')} CPUs), "
                             f"one call per page: move / copy = {ns['move'] / ns['copy']:.3f}, "
                             f"dontneed / copy = {ns['dontneed'] / ns['copy']:.3f}; "
                             f"memcpy: {'kernel_bench' if mem != DEFAULT_MEMCPY_COST else 'default'}"))


def predicted_completion_ratio(cost: CostModel, pages: int = 16) -> float:
    """The model's MOVE / COPY completion time of a compaction with no packing and no mutator.

    A dense heap (every object live) relocates each page whole: MOVE pays ``move_page`` per page,
    COPY pays ``copy_page + zap_page`` (the copy, then the zap of its source), as the compacting
    thread of ``benchmarks/compaction.py`` does with one call per page.
    """
    return cost.move_page / (cost.copy_page + cost.zap_page)


# -- the heap and the plan ------------------------------------------------------------------------

def page_value(slots: tuple[int, ...]) -> int:
    """The byte that stands for a page's content: a checksum (1..255) of its objects, in slot order."""
    h = 0
    for obj in slots:
        h = (h * 31 + obj + 1) % 65521
    return 1 + h % 255


@dataclass(frozen=True)
class HeapLayout:
    """Which object sits in which slot of which page, and which objects are live."""

    pages: int
    slots: int
    live_fraction: float
    seed: int
    live: frozenset[int]

    def page_slots(self, page: int) -> tuple[int, ...]:
        """The object ids of from-space page ``page`` (object ``page * slots + i`` in slot ``i``)."""
        return tuple(range(page * self.slots, (page + 1) * self.slots))

    def live_in(self, page: int) -> list[int]:
        """The live objects of a from-space page, in slot order."""
        return [o for o in self.page_slots(page) if o in self.live]


def make_heap(pages: int, live_fraction: float, slots: int = 8, seed: int = 0) -> HeapLayout:
    """A heap layout: each object is live with probability ``live_fraction`` (seeded, reproducible)."""
    if not isinstance(pages, int) or isinstance(pages, bool) or pages <= 0:
        raise GcError(f"pages must be a positive integer, not {pages!r}")
    if not isinstance(slots, int) or isinstance(slots, bool) or not 1 <= slots <= 64:
        raise GcError(f"slots must be an integer from 1 to 64, not {slots!r}")
    if not isinstance(live_fraction, (int, float)) or not 0.0 <= live_fraction <= 1.0:
        raise GcError(f"live_fraction must be a number from 0 to 1, not {live_fraction!r}")
    if not isinstance(seed, int):
        raise GcError(f"seed must be an integer, not {seed!r}")
    rng = random.Random(seed)
    live = frozenset(o for o in range(pages * slots) if rng.random() < live_fraction)
    return HeapLayout(pages, slots, float(live_fraction), seed, live)


@dataclass(frozen=True)
class ToPage:
    """One to-space page of the plan: the from-space ``head`` page it is made of, plus ``donors``."""

    index: int
    head: int
    donors: tuple[int, ...]
    slots: tuple[int, ...]          #: object ids in the page after packing (dead ones included)
    kind: str                       #: "dense" (all live, relocated whole) or "packed"

    @property
    def value(self) -> int:
        """The byte the page holds once compacted."""
        return page_value(self.slots)


def plan_compaction(layout: HeapLayout) -> list[ToPage]:
    """The compaction plan: dense pages whole; each sparse page drained into the first earlier head it fits."""
    heads: dict[int, tuple[list[int], list[int]]] = {}     # head page -> (slots, donor pages)
    kinds: list[tuple[str, int]] = []
    for page in range(layout.pages):
        live = layout.live_in(page)
        if len(live) == layout.slots:
            kinds.append(("dense", page))
            continue
        if not live:
            continue
        for slots, donors in heads.values():
            free = [i for i, o in enumerate(slots) if o not in layout.live]
            if len(live) <= len(free):
                for i, obj in zip(free, live):
                    slots[i] = obj
                donors.append(page)
                break
        else:
            heads[page] = (list(layout.page_slots(page)), [])
            kinds.append(("packed", page))
    plan = []
    for index, (kind, page) in enumerate(kinds):
        if kind == "dense":
            plan.append(ToPage(index, page, (), layout.page_slots(page), "dense"))
        else:
            slots, donors = heads[page]
            plan.append(ToPage(index, page, tuple(donors), tuple(slots), "packed"))
    return plan


# -- the heap on the simulator --------------------------------------------------------------------

class Heap:
    """A process with a populated from-space and an empty to-space registered for MISSING faults."""

    def __init__(self, layout: HeapLayout, machine: Machine | None = None, name: str = "runtime") -> None:
        if not isinstance(layout, HeapLayout):
            raise GcError(f"layout must be a HeapLayout (see make_heap), not {type(layout).__name__}")
        self.layout = layout
        self.plan = plan_compaction(layout)
        self.machine = machine or Machine()
        self.proc: Process = self.machine.spawn(name)
        self.from_space = self.proc.mmap(layout.pages)
        self.to_space = self.proc.mmap(max(1, len(self.plan)))
        for page in range(layout.pages):
            self.proc.write(self.from_addr(page), PAGE_SIZE, page_value(layout.page_slots(page)))
        self.uffd = self.proc.userfaultfd(name="gc", features=["move"])
        self.uffd.register(self.to_space, max(1, len(self.plan)) * PAGE_SIZE, ["missing"])
        self.children: list[Process] = []
        self.compacted = False

    def from_addr(self, page: int) -> int:
        """The address of from-space page ``page``."""
        return self.from_space + page * PAGE_SIZE

    def to_addr(self, index: int) -> int:
        """The address of to-space page ``index``."""
        return self.to_space + index * PAGE_SIZE

    def fork(self, name: str = "child") -> Process:
        """fork(): the child shares every heap page copy-on-write, so none is anon-exclusive."""
        child = self.proc.fork(name)
        self.children.append(child)
        return child

    def footprint(self) -> int:
        """Frames in use on the machine (every process): ``len(machine.phys.live)``."""
        return len(self.machine.phys.live)


@dataclass(frozen=True)
class Step:
    """One collector step: what it did, its cost, the clock after it and the footprint after it."""

    n: int
    op: str                 #: start, pack, move, copy, copy-fallback, dontneed, release
    page: int | None        #: the to-space page it worked for (None: start, release)
    cost: float
    clock: float
    footprint: int


@dataclass(frozen=True)
class Pause:
    """A mutator read that blocked on a to-space page, from its fault until the page was installed."""

    thread: str
    page: int
    start: float
    end: float

    @property
    def length(self) -> float:
        """The pause, in page-copy units."""
        return self.end - self.start


@dataclass
class Compaction:
    """The outcome of :func:`compact`: every step, every pause, and the tallies."""

    heap: Heap
    method: str
    cost: CostModel
    steps: list[Step] = field(default_factory=list)
    pauses: list[Pause] = field(default_factory=list)
    hits: int = 0                       #: mutator reads of pages already installed (no fault)
    fallbacks: list[int] = field(default_factory=list)   #: to-space pages MOVE could not take
    order: list[int] = field(default_factory=list)        #: to-space pages in the order installed
    tally: dict[str, int] = field(default_factory=lambda: dict(
        pages_moved=0, pages_copied=0, objects_copied=0, pages_zapped=0))

    @property
    def total_work(self) -> float:
        """The clock at the end: every step's cost, summed (page-copy units)."""
        return self.steps[-1].clock if self.steps else 0.0

    @property
    def footprint(self) -> list[int]:
        """Frames in use after each step (``len(machine.phys.live)``)."""
        return [s.footprint for s in self.steps]

    def summary(self) -> dict[str, Any]:
        """The numbers a reader compares, rounded for printing."""
        lengths = [p.length for p in self.pauses]
        return {"method": self.method, "to_pages": len(self.heap.plan), **self.tally,
                "fallbacks": len(self.fallbacks), "total_work": round(self.total_work, 3),
                "footprint_start": self.footprint[0], "footprint_peak": max(self.footprint),
                "footprint_end": self.footprint[-1], "faults": len(self.pauses), "hits": self.hits,
                "pause_max": round(max(lengths), 3) if lengths else 0.0,
                "pause_mean": round(sum(lengths) / len(lengths), 3) if lengths else 0.0}


def mutator_schedule(ticks: int, pages: int, accesses: int, seed: int) -> list[tuple[int, int]]:
    """(tick, to-space page) of each mutator read, sorted by tick (seeded, reproducible)."""
    if ticks <= 0 or pages <= 0:
        return []                      # no to-space page: nothing for a mutator to read
    rng = random.Random(seed)
    reads = [(rng.randrange(ticks), rng.randrange(pages), k) for k in range(accesses)]
    return [(tick, page) for tick, page, _ in sorted(reads)]


def compact(heap: Heap, method: str = "move", accesses: int = 0, seed: int | None = None,
            cost: CostModel | None = None) -> Compaction:
    """Compact the heap into to-space by ``method`` ("move" or "copy") while mutators read to-space."""
    if not isinstance(heap, Heap):
        raise GcError(f"heap must be a Heap, not {type(heap).__name__}")
    if method not in METHODS:
        raise GcError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
    if not isinstance(accesses, int) or isinstance(accesses, bool) or accesses < 0:
        raise GcError(f"accesses must be an integer >= 0, not {accesses!r}")
    if seed is not None and not isinstance(seed, int):
        raise GcError(f"seed must be an integer or None, not {seed!r}")
    if heap.compacted:
        raise GcError("this heap was compacted already; build a new Heap")
    heap.compacted = True
    run = Compaction(heap, method, cost if cost is not None else load_cost_model())
    schedule = mutator_schedule(len(heap.plan), len(heap.plan), accesses,
                                heap.layout.seed if seed is None else seed)
    _Collector(run).collect(schedule)
    return run


class _Collector:
    """One compaction in progress: the clock, the pages done, the mutators waiting."""

    def __init__(self, run: Compaction) -> None:
        self.run, self.heap = run, run.heap
        self.done = [False] * len(run.heap.plan)
        self.clock = 0.0
        self.waiting: list[Pause] = []          #: blocked mutators (end not known yet)

    def step(self, op: str, page: int | None, price: float) -> None:
        self.clock += price
        self.run.steps.append(Step(len(self.run.steps), op, page, round(price, 6),
                                   round(self.clock, 6), self.heap.footprint()))

    def dontneed(self, addr: int, length: int, op: str, page: int | None) -> None:
        """MADV_DONTNEED of from-space pages; costs ``zap_page`` per page that was present."""
        proc = self.heap.proc
        present = sum(v.state != "none" for v in proc.observe(addr, length))
        proc.madvise(addr, length, "dontneed")
        self.run.tally["pages_zapped"] += present
        self.step(op, page, self.run.cost.zap_page * present)

    def compact_page(self, j: int) -> None:
        """Pack, install and release to-space page ``j`` (ART: compact one moving-space page)."""
        run, heap, tp = self.run, self.heap, self.heap.plan[j]
        proc, uffd, cost = heap.proc, heap.uffd, run.cost
        if tp.donors:                               # pack: copy the donors' objects into the head
            objects = sum(len(heap.layout.live_in(d)) for d in tp.donors)
            proc.write(heap.from_addr(tp.head), PAGE_SIZE, tp.value)
            run.tally["objects_copied"] += objects
            self.step("pack", j, objects * cost.object_copy(heap.layout.slots))
        dst, src = heap.to_addr(j), heap.from_addr(tp.head)
        copied = run.method == "copy"
        if not copied:
            try:
                uffd.move(dst, src, PAGE_SIZE)      # install: the head's frame itself
                run.tally["pages_moved"] += 1
                self.step("move", j, cost.move_page)
            except UffdError as err:
                if err.errno != E.EBUSY:
                    raise
                run.fallbacks.append(j)             # not anon-exclusive: copy this one
                copied = True
        if copied:
            uffd.copy(dst, src, PAGE_SIZE)          # install: a new frame with the same bytes
            run.tally["pages_copied"] += 1
            self.step("copy" if run.method == "copy" else "copy-fallback", j, cost.copy_page)
        self.done[j] = True
        run.order.append(j)
        for p in [p for p in self.waiting if p.page == j]:     # the ioctl woke them
            run.pauses.append(Pause(p.thread, j, p.start, self.clock))
            self.waiting.remove(p)
        for page in ((tp.head,) if copied else ()) + tp.donors:
            self.dontneed(heap.from_addr(page), PAGE_SIZE, "dontneed", j)

    def collect(self, schedule: list[tuple[int, int]]) -> None:
        """One to-space page per tick; faulted pages first; then release the from-space."""
        heap, run = self.heap, self.run
        self.step("start", None, 0.0)
        cursor = reads = 0
        for tick in range(len(heap.plan)):
            while reads < len(schedule) and schedule[reads][0] == tick:
                page, name = schedule[reads][1], f"mutator{reads}"
                reads += 1
                if heap.proc.fault_async(name, heap.to_addr(page), write=False).blocked:
                    self.waiting.append(Pause(name, page, self.clock, self.clock))
                else:
                    run.hits += 1
            for msg in heap.uffd.read_msgs():
                j = (msg.addr - heap.to_space) // PAGE_SIZE
                if msg.type == "pagefault" and 0 <= j < len(heap.plan) and not self.done[j]:
                    self.compact_page(j)
            while cursor < len(heap.plan) and self.done[cursor]:
                cursor += 1
            if cursor < len(heap.plan):
                self.compact_page(cursor)
        self.dontneed(heap.from_space, heap.layout.pages * PAGE_SIZE, "release", None)


def check_conservation(run: Compaction) -> list[str]:
    """Problems found in to-space (empty when every live object arrived exactly once, intact)."""
    heap, problems = run.heap, []
    seen: list[int] = []
    for tp in heap.plan:
        view = heap.proc.observe(heap.to_addr(tp.index), PAGE_SIZE)[0]
        if view.state != "present" or view.value != tp.value:
            problems.append(f"to-space page {tp.index}: {view.state} {view.value}, expected {tp.value}")
        seen += [o for o in tp.slots if o in heap.layout.live]
    if sorted(seen) != sorted(heap.layout.live):
        problems.append(f"{len(seen)} live objects placed, {len(heap.layout.live)} live in the heap")
    leftover = [v for v in heap.proc.observe(heap.from_space, heap.layout.pages * PAGE_SIZE)
                if v.state != "none"]
    if leftover:
        problems.append(f"{len(leftover)} from-space pages still mapped")
    return problems


__all__ = ["CostModel", "GcError", "HeapLayout", "Heap", "ToPage", "Step", "Pause", "Compaction",
           "load_cost_model", "load_measured_cost_model", "predicted_completion_ratio", "make_heap", "plan_compaction", "page_value", "mutator_schedule",
           "compact", "check_conservation", "METHODS"]
