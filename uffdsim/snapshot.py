"""Plain-data snapshots of a simulated machine, for pictures: processes -> VMAs -> page entries, and folios.

A :class:`Snapshot` holds no reference to live simulator objects: it is frozen dataclasses of
ints, strings and tuples, so it can be kept, compared (:func:`diff`) and drawn after the machine
has moved on.  :func:`snapshot` takes one of a :class:`~uffdsim.Machine`; :func:`scenario_steps`
runs a scenario on the simulator and snapshots the machine before and after every step.
"""
from __future__ import annotations

import copy
from bisect import bisect_left, bisect_right
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Iterator, Mapping

from .mm.folio import PAGE_SIZE, Folio
from .mm.pagetable import HugePmd, MarkerPte, PresentPte, SwapPte, pmd_subpage
from .trail import Trail

#: what an entry can be: the states of the scenario format's ``observe``
ENTRY_STATES = ("none", "present", "zero", "swap", "marker")
#: the colour class of a folio (see :attr:`FolioSnap.kind`)
FOLIO_KINDS = ("exclusive", "shared", "ksm", "zero", "file", "unmapped")


@dataclass(frozen=True)
class EntrySnap:
    """One page of a VMA as its page table maps it."""

    addr: int
    label: str                    #: ``src+3``, or the hex address outside named regions
    state: str                    #: one of :data:`ENTRY_STATES`
    level: str = "pte"            #: ``pmd`` for a page of a PMD-mapped THP
    folio: int | None = None      #: head pfn of the folio mapped (key of :attr:`Snapshot.folios`)
    pfn: int | None = None        #: the page's own frame
    value: int | None = None      #: fill byte of the page (present pages)
    write: bool = False           #: the entry is writable
    exclusive: bool = False       #: PageAnonExclusive (present) / the swap entry's exclusive bit
    swap: int | None = None       #: swap slot (swap entries)
    marker: str | None = None     #: guard, poison, uffd_wp (markers)
    uffd_wp: bool = False


@dataclass(frozen=True)
class VmaSnap:
    """One VMA with its flags and the entry of every page."""

    start: int
    end: int
    label: str                    #: region name (``src``), or the hex start address
    prot: str
    shared: bool
    kind: str                     #: anon, shmem or file
    flags: tuple[str, ...] = ()
    uffd: str | None = None       #: name of the userfaultfd it is registered with
    uffd_modes: tuple[str, ...] = ()
    entries: tuple[EntrySnap, ...] = ()

    @property
    def pages(self) -> int:
        return (self.end - self.start) // PAGE_SIZE

    def describe(self) -> str:
        """``rw- private anon, uffd0[missing], {dontfork}``: the VMA's kind and flags in one line."""
        prot = "".join(c if c in self.prot else "-" for c in "rwx")
        parts = [f"{prot} {'shared' if self.shared else 'private'} {self.kind}"]
        if self.uffd:
            parts.append(f"{self.uffd}[{','.join(self.uffd_modes)}]")
        if self.flags:
            parts.append("{" + ", ".join(self.flags) + "}")
        return ", ".join(parts)


@dataclass(frozen=True)
class ProcSnap:
    name: str
    pid: int
    alive: bool
    vmas: tuple[VmaSnap, ...] = ()
    pins: tuple[str, ...] = ()
    threads: tuple[tuple[str, str], ...] = ()   #: (thread name, status)


@dataclass(frozen=True)
class FolioSnap:
    """A folio: its frames (``pfn`` .. ``pfn + nr - 1``) and the flags pictures show."""

    pfn: int
    nr: int
    kind: str                              #: one of :data:`FOLIO_KINDS`
    values: tuple[int, ...] = ()
    exclusive: tuple[bool, ...] = ()
    mapcount: tuple[int, ...] = ()         #: PTE mappings per page
    entire_mapcount: int = 0               #: PMD mappings of the whole folio
    pincount: int = 0
    swapcache: int | None = None           #: swap slot it caches
    label: str = ""                        #: a name to show instead of the pfn (e.g. ``f1``)
    note: str = ""                         #: one more line to show (e.g. who holds it)

    @property
    def total_mapcount(self) -> int:
        """folio_mapcount(): every PTE mapping a page of the folio, plus each PMD mapping it whole once."""
        return sum(self.mapcount) + self.entire_mapcount

    @property
    def pinned(self) -> bool:
        return self.pincount > 0

    @property
    def thp(self) -> bool:
        return self.nr > 1

    def name(self) -> str:
        return self.label or f"pfn {self.pfn:#x}"


@dataclass(frozen=True)
class SwapSnap:
    entry: int
    value: int
    count: int
    cache: int | None = None               #: pfn of the swap-cache folio


@dataclass(frozen=True)
class Snapshot:
    """The whole picture: processes, live folios (by pfn) and swap slots; ``caption`` names the moment."""

    processes: tuple[ProcSnap, ...] = ()
    folios: tuple[FolioSnap, ...] = ()
    swap: tuple[SwapSnap, ...] = ()
    caption: str = ""
    omitted: int = 0                       #: processes of the machine left out (see :func:`snapshot`)

    def folio(self, pfn: int | None) -> FolioSnap | None:
        for f in self.folios:
            if f.pfn == pfn:
                return f
        return None

    def process(self, name: str) -> ProcSnap:
        for p in self.processes:
            if p.name == name:
                return p
        raise KeyError(name)

    def entries(self) -> Iterator[tuple[ProcSnap, VmaSnap, EntrySnap]]:
        for p in self.processes:
            for v in p.vmas:
                for e in v.entries:
                    yield p, v, e

    def entry(self, proc: str, label: str) -> EntrySnap:
        """The entry of ``proc`` whose label is ``label`` (``src+0``)."""
        for p, _, e in self.entries():
            if p.name == proc and e.label == label:
                return e
        raise KeyError(f"{proc}:{label}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------------------ taking one

class Labeller:
    """Names addresses after the scenario's regions: ``src``, ``src+3``."""

    def __init__(self, regions: Mapping[str, int | tuple[int, int]] | None, vmas: list[Any]) -> None:
        self.spans: list[tuple[int, int, str]] = []
        starts = sorted((v.start, v.end) for v in vmas)
        for name, spec in (regions or {}).items():
            base, pages = (spec, None) if isinstance(spec, int) else spec
            if pages:
                end = base + pages * PAGE_SIZE
            else:
                i = bisect_right(starts, (base, 1 << 64)) - 1
                end = starts[i][1] if i >= 0 and starts[i][0] <= base < starts[i][1] else base + PAGE_SIZE
            self.spans.append((base, end, name))
        self.spans.sort()
        self.bases = [b for b, _, _ in self.spans]
        #: regions never overlap unless one was unmapped and another mapped over it: then scan them all
        self.disjoint = all(a[1] <= b[0] for a, b in zip(self.spans, self.spans[1:]))

    def region(self, addr: int) -> tuple[str, int] | None:
        if self.disjoint:
            i = bisect_right(self.bases, addr) - 1
            spans = self.spans[i:i + 1] if i >= 0 else []
        else:
            spans = self.spans
        for base, end, name in spans:
            if base <= addr < end:
                return name, (addr - base) // PAGE_SIZE
        return None

    def entry(self, addr: int) -> str:
        hit = self.region(addr)
        return f"{hit[0]}+{hit[1]}" if hit else f"{addr:#x}"

    def vma(self, start: int, end: int) -> str:
        if self.disjoint:
            lo = max(0, bisect_right(self.bases, start) - 1)
            hi = bisect_left(self.bases, end)
            spans = self.spans[lo:hi]
        else:
            spans = self.spans
        names = []
        for base, rend, name in spans:
            if base < end and start < rend:
                names.append(name if base >= start else f"{name}+{(start - base) // PAGE_SIZE}")
        return "/".join(names) if names else f"{start:#x}"


def folio_kind(folio: Folio) -> str:
    """The colour class of a folio: zero page, KSM, page cache, anon-exclusive, COW-shared, unmapped."""
    if folio.special:
        return "zero"
    if folio.ksm:
        return "ksm"
    if not folio.anon:
        return "file"
    if not folio.is_mapped():
        return "unmapped"
    mapped = [i for i in range(folio.nr) if folio.page_mapcount(i) > 0]
    return "exclusive" if all(folio.exclusive[i] for i in mapped) else "shared"


def folio_snap(folio: Folio, note: str = "") -> FolioSnap:
    return FolioSnap(pfn=folio.pfn, nr=folio.nr, kind=folio_kind(folio), values=tuple(folio.data),
                     exclusive=tuple(folio.exclusive), mapcount=tuple(folio.mapcount),
                     entire_mapcount=folio.entire_mapcount, pincount=folio.pincount,
                     swapcache=folio.swap_entry,
                     label="zero page" if folio.zero else "huge zero page" if folio.huge_zero else "",
                     note=note)


def entry_snap(mm: Any, addr: int, label: str) -> tuple[EntrySnap, Folio | None]:
    """The entry of one page and the folio it maps (if any)."""
    pmd = mm.pt.pmd(addr)
    if isinstance(pmd, HugePmd):
        f, i = pmd.folio, pmd_subpage(addr)
        state = "zero" if f.huge_zero else "present"
        return EntrySnap(addr, label, state, "pmd", f.pfn, f.pfn + i, f.data[i], pmd.write,
                         f.exclusive[i]), f
    pte = mm.pt.get_pte(addr)
    if pte is None:
        return EntrySnap(addr, label, "none"), None
    if isinstance(pte, SwapPte):
        return EntrySnap(addr, label, "swap", exclusive=pte.exclusive, swap=pte.entry,
                         uffd_wp=pte.uffd_wp), None
    if isinstance(pte, MarkerPte):
        return EntrySnap(addr, label, "marker", marker=pte.kind), None
    assert isinstance(pte, PresentPte)
    f = pte.folio
    state = "zero" if f.special else "present"
    return EntrySnap(addr, label, state, "pte", f.pfn, pte.pfn, f.data[pte.idx], pte.write,
                     f.exclusive[pte.idx], uffd_wp=pte.uffd_wp), f


#: pages of one VMA a snapshot lists (the first ones): a picture shows far fewer, so that a huge
#: region costs no more than this to snapshot and draw
SNAPSHOT_MAX_PAGES = 4096
#: processes the snapshots of a scenario step keep (a picture draws these): the step's own first
SNAPSHOT_MAX_PROCS = 6


def snapshot(machine: Any, regions: Mapping[str, int | tuple[int, int]] | None = None,
             caption: str = "", procs: Iterable[str] | None = None,
             vmas_with_pages: int | None = None) -> Snapshot:
    """A plain-data copy of ``machine``'s processes, VMAs, page entries, live folios and swap slots.

    ``regions`` names addresses: ``{"src": base}`` or ``{"src": (base, pages)}``.  Exited
    processes are kept (with no VMAs) so that a picture can say the child is gone.  ``procs``
    keeps only the processes named (and the folios they map, and live folios nobody maps).
    ``vmas_with_pages`` lists the page entries of only that many VMAs per process, the highest
    (those a picture with no step's changes draws), so that thousands of VMAs cost what is drawn.
    """
    wanted = None if procs is None else set(procs)
    chosen = [p for p in machine.processes.values() if wanted is None or p.name in wanted]
    all_vmas = [v for p in chosen for v in p.mm.vmas]
    names = Labeller(regions, all_vmas)
    folios: dict[int, Folio] = {}
    procs_out = []
    for proc in chosen:
        vmas = []
        listed = None if vmas_with_pages is None else \
            {v.start for v in sorted(proc.mm.vmas, key=lambda v: -v.start)[:vmas_with_pages]}
        for v in proc.mm.vmas:
            entries = []
            end = v.start if listed is not None and v.start not in listed else v.end
            for addr in range(v.start, min(end, v.start + SNAPSHOT_MAX_PAGES * PAGE_SIZE), PAGE_SIZE):
                e, f = entry_snap(proc.mm, addr, names.entry(addr))
                entries.append(e)
                if f is not None:
                    folios[f.pfn] = f
            kind = "anon" if v.file is None else "shmem" if v.file.shmem else "file"
            flags = tuple(sorted(v.flags))
            vmas.append(VmaSnap(v.start, v.end, names.vma(v.start, v.end), v.prot, v.shared, kind, flags,
                                getattr(v.uffd_ctx, "name", None), tuple(sorted(v.uffd_modes)),
                                tuple(entries)))
        threads = tuple((t.name, "blocked" if t.blocked else "done" if t.done else "running")
                        for t in proc.threads.values())
        procs_out.append(ProcSnap(proc.name, proc.pid, proc.alive, tuple(vmas), tuple(proc.pins), threads))
    for f in machine.phys.live.values():
        if wanted is None or not f.is_mapped():
            folios.setdefault(f.pfn, f)
    swap = tuple(SwapSnap(entry, slot.data, slot.count, slot.cache.pfn if slot.cache else None)
                 for entry, slot in sorted(machine.swap.slots.items()))
    for s in machine.swap.slots.values():
        if s.cache is not None:
            folios.setdefault(s.cache.pfn, s.cache)
    return Snapshot(tuple(procs_out), tuple(folio_snap(folios[k]) for k in sorted(folios)), swap, caption,
                    len(machine.processes) - len(procs_out))


# ------------------------------------------------------------------------------ comparing two

@dataclass(frozen=True)
class Changes:
    """What differs between two snapshots: keys of entries, folios, VMAs, processes and swap slots."""

    entries: frozenset[tuple[str, int]] = frozenset()    #: (process, address)
    folios: frozenset[int] = frozenset()                 #: pfn: appeared, vanished or changed
    vmas: frozenset[tuple[str, int]] = frozenset()       #: (process, start)
    processes: frozenset[str] = frozenset()              #: appeared or exited
    swap: frozenset[int] = frozenset()
    lines: tuple[str, ...] = field(default=(), compare=False)   #: the changes, in words

    def __bool__(self) -> bool:
        return bool(self.entries or self.folios or self.vmas or self.processes or self.swap)


def _entry_text(e: EntrySnap | None, snap: Snapshot) -> str:
    if e is None:
        return "unmapped"
    if e.state == "present":
        f = snap.folio(e.folio)
        where = f.name() if f else f"{e.pfn:#x}"
        return f"present {e.value:#04x} @ {where}{'' if e.write else ' (read-only)'}"
    if e.state == "swap":
        return f"swap slot {e.swap}"
    if e.state == "marker":
        return f"{e.marker} marker"
    return e.state


def diff(before: Snapshot, after: Snapshot) -> Changes:
    """Every entry, folio, VMA, process and swap slot that is not the same in ``after``."""
    lines: list[str] = []
    eb = {(p.name, e.addr): e for p, _, e in before.entries()}
    ea = {(p.name, e.addr): e for p, _, e in after.entries()}
    entries = set()
    for key in sorted(set(eb) | set(ea)):
        if eb.get(key) != ea.get(key):
            entries.add(key)
            label = (ea.get(key) or eb.get(key)).label  # type: ignore[union-attr]
            lines.append(f"{key[0]}:{label}: {_entry_text(eb.get(key), before)} -> "
                         f"{_entry_text(ea.get(key), after)}")
    fb = {f.pfn: f for f in before.folios}
    fa = {f.pfn: f for f in after.folios}
    folios = set()
    for pfn in sorted(set(fb) | set(fa)):
        x, y = fb.get(pfn), fa.get(pfn)
        if x != y:
            folios.add(pfn)
            name = (y or x).name()  # type: ignore[union-attr]
            if x is None:
                lines.append(f"{name}: new ({y.kind})")  # type: ignore[union-attr]
            elif y is None:
                lines.append(f"{name}: freed")
            else:
                lines.append(f"{name}: {x.kind}, map {x.total_mapcount} -> {y.kind}, map {y.total_mapcount}"
                             + (f", pins {x.pincount} -> {y.pincount}" if x.pincount != y.pincount else ""))
    vb = {(p.name, v.start): v for p in before.processes for v in p.vmas}
    va = {(p.name, v.start): v for p in after.processes for v in p.vmas}
    vmas = set()
    for key in sorted(set(vb) | set(va)):
        x, y = vb.get(key), va.get(key)
        if x is None or y is None or (x.end, x.prot, x.flags, x.uffd, x.uffd_modes) != \
                (y.end, y.prot, y.flags, y.uffd, y.uffd_modes):
            vmas.add(key)
            if x is not None and y is not None:
                lines.append(f"{key[0]}: VMA {y.label}: {x.describe()} -> {y.describe()}")
    pb = {p.name: p.alive for p in before.processes}
    pa = {p.name: p.alive for p in after.processes}
    procs = {n for n in set(pb) | set(pa) if pb.get(n) != pa.get(n)}
    for n in sorted(procs):
        lines.append(f"process {n}: " + ("created" if n not in pb else "exited" if not pa.get(n) else "changed"))
    sb = {s.entry: s for s in before.swap}
    sa = {s.entry: s for s in after.swap}
    swap = {k for k in set(sb) | set(sa) if sb.get(k) != sa.get(k)}
    for k in sorted(swap):
        lines.append(f"swap slot {k}: " + ("written" if k not in sb else "freed" if k not in sa else "changed"))
    return Changes(frozenset(entries), frozenset(folios), frozenset(vmas), frozenset(procs),
                   frozenset(swap), tuple(lines))


# ------------------------------------------------------------------------------ a scenario, step by step

@dataclass
class StepSnapshots:
    """One executed step: its record (as the simulator backend returns it), the trail, and the pictures."""

    step: Any                     #: the scenario's Step
    record: dict[str, Any]
    trail: Trail
    before: Snapshot
    after: Snapshot

    @property
    def changes(self) -> Changes:
        return diff(self.before, self.after)

    def outcome(self) -> str:
        """``move -> EBUSY (move = -16)`` / ``fork -> ok``."""
        rec = self.record
        text = "HUNG" if rec.get("hung") else (rec.get("errno") or "ok")
        out = [f"{k} = {'unwritten' if rec[k] is None else rec[k]}" for k in ("move", "copy", "zeropage")
               if k in rec]
        return f"{self.step.op} -> {text}" + (f" ({', '.join(out)})" if out else "")


def step_title(step: Any) -> str:
    """``6: move dst=dst, src=src, pages=1``: a step in one line."""
    fields = step.raw.get(step.op) or {}
    args = ", ".join(f"{k}={v}" for k, v in fields.items()) if isinstance(fields, dict) else ""
    return f"{step.i}: {step.op} {args}".rstrip()


class StepList(list):  # type: ignore[type-arg]
    """The executed steps, plus the machine they ran on (``machine``) and the regions' base addresses."""

    def __init__(self, machine: Any = None, regions: dict[str, int] | None = None) -> None:
        super().__init__()
        self.machine = machine
        self.regions: dict[str, int] = regions if regions is not None else {}


def scenario_steps(scenario: Any, upto: int | None = None, config: Any = None, only_last: bool = False) -> StepList:
    """Run ``scenario`` on the simulator, snapshotting before and after each step (up to step ``upto``).

    ``only_last``: snapshot step ``upto`` alone (the steps before it run without snapshots, so that
    drawing one step costs one pair of snapshots, whatever the scenario did before).

    Stops after a step that hangs, as the simulator backend does.  The result is a list of
    :class:`StepSnapshots` whose ``machine`` attribute is the simulated machine afterwards.
    ValueError (one line) when the scenario asks for a feature the simulator does not model.
    """
    from .backends.sim import SimRun
    from .mm.machine import Machine
    from .userfaultfd import UNMODELLED_FEATURES

    for step in scenario.steps:
        unmodelled = [f for f in step.args.get("features", []) if f in UNMODELLED_FEATURES]
        if unmodelled:
            raise ValueError(f"{scenario.name}: the simulator does not model {', '.join(unmodelled)}")

    run = SimRun(Machine(config))
    sizes = scenario.region_pages()
    out = StepList(run.machine, run.regions)

    def regions() -> dict[str, tuple[int, int]]:
        return {n: (base, sizes.get(n, 1)) for n, base in run.regions.items()}

    def shown(step: Any) -> list[str] | None:
        """The processes a picture of ``step`` draws: all, or the step's own and those it names first."""
        names = list(run.machine.processes)
        if len(names) + 1 <= SNAPSHOT_MAX_PROCS:
            return None
        first = [step.proc] + [step.args[k] for k in ("child", "proc") if isinstance(step.args.get(k), str)]
        keep = list(dict.fromkeys(first)) + [n for n in names if n not in first]
        return keep[:SNAPSHOT_MAX_PROCS]

    for step in scenario.steps:
        if upto is not None and step.i > upto:
            break
        if only_last and upto is not None and step.i < upto:
            if run.step(step).get("hung"):
                out.append(StepSnapshots(step, {"hung": True}, Trail(), Snapshot((), (), ()), Snapshot((), (), ())))
                break
            continue
        procs = shown(step)
        before = snapshot(run.machine, regions(), caption=f"before {step_title(step)}", procs=procs)
        run.machine.trail = Trail()
        rec = run.step(step)
        trail = copy.deepcopy(run.machine.trail)
        after = snapshot(run.machine, regions(), caption=f"after {step_title(step)}", procs=procs)
        out.append(StepSnapshots(step, rec, trail, before, after))
        if rec.get("hung"):
            break
    return out


__all__ = ["Snapshot", "ProcSnap", "VmaSnap", "EntrySnap", "FolioSnap", "SwapSnap", "Changes",
           "StepSnapshots", "StepList", "snapshot", "diff", "scenario_steps", "step_title", "folio_kind"]
