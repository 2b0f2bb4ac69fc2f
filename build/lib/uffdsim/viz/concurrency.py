"""Adapter from the atomicity explorer (:mod:`uffdsim.concurrency`) to the pictures.

:func:`replay` runs one schedule of a strategy through the explorer's own program, keeping every
intermediate state, and turns each atomic step into a :class:`~uffdsim.viz.timeline.TimelineStep`
with flags: the COPY-to-DONTNEED ``window`` and the ``lost`` stores.  A store is lost when it
writes a source page after COPY read it and before DONTNEED dropped it (the explorer's own
definition: the value landed in a frame that is then dropped); the count of lost stores equals
the explorer's ``lost_increments`` for a finished run.  :func:`state_snapshot` draws a state of
that model as an address-space :class:`~uffdsim.snapshot.Snapshot`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ..concurrency import AtomicityResult, Program
from ..concurrency.scheduler import run_to_end
from ..concurrency.state import State
from ..snapshot import EntrySnap, FolioSnap, ProcSnap, Snapshot, VmaSnap
from .timeline import TimelineStep, draw_timeline

LANES = {"A": "A: mover (GC thread)", "B": "B: mutator (counter++)"}
#: the fake addresses the model's two ranges get in pictures (the model has no addresses)
SRC_BASE, DST_BASE = 0x7F00_0010_0000, 0x7F00_0000_0000
_VALUE = re.compile(r"= (\d+)")


@dataclass
class Replay:
    """One schedule, replayed: ``states[k]`` is the machine after ``k`` steps."""

    program: Program
    schedule: str
    states: list[State] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    steps: list[TimelineStep] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.program.finished(self.states[-1])

    def verdict(self) -> str:
        """The explorer's closing line for a finished run, or where the threads are."""
        s = self.states[-1]
        if self.finished:
            return self.program.summary(s)
        return (f"not finished: A {self.program.describe_thread(s, 'A')}, "
                f"B {self.program.describe_thread(s, 'B')}")

    def counters(self, k: int | None = None) -> dict[str, Any]:
        """After ``k`` steps (default: all): increments done, the counter at each page's home, lost so far."""
        k = len(self.steps) if k is None else k
        s = self.states[k]
        homes = {}
        for p in range(self.program.pages):
            where = "dst" if s.flip[p] else "src"
            homes[f"{where}[{p}]"] = self.program.home_value(s, p)
        return {"step": k, "of": len(self.steps), "increments_done": s.b.done,
                "increments": self.program.increments, "home_values": homes,
                "lost_so_far": sum(1 for st in self.steps[:k] if "lost" in st.flags),
                "A": self.program.describe_thread(s, "A"), "B": self.program.describe_thread(s, "B")}

    def timeline(self, current: int | None = None, title: str | None = None) -> Any:
        """The timeline figure; ``current`` (1-based) outlines the step a stepper is at."""
        steps = [TimelineStep(st.thread, st.label, st.flags | ({"current"} if i == current else set()),
                              st.detail) for i, st in enumerate(self.steps, 1)]
        strat = self.program.strategy
        return draw_timeline(steps, title or f"{strat.name}: schedule {self.schedule}",
                             lanes=("A", "B"), verdict=self.verdict() if self.finished else None,
                             lane_names=LANES)


def _mover_label(phase: str, p: int, before: State, after: State, text: str) -> tuple[str, set[str]]:
    if phase == "move":
        failed = len(after.a.errors) > len(before.a.errors)
        if failed:
            return f"MOVE [{p}] -> {after.a.errors[-1]}", {"move", "error"}
        if after.a.copies > before.a.copies:
            return f"MOVE [{p}] (kernel copies)", {"move", "copy"}
        return f"MOVE [{p}]", {"move"}
    if phase == "alloc":
        return f"COPY [{p}]: alloc f{after.a.folio}", {"copy"}
    if phase == "copy":
        m = _VALUE.search(text)
        return f"copy_from_user src[{p}] = {m.group(1) if m else '?'}", {"copy"}
    if phase == "install":
        return f"install dst[{p}]", {"copy"}
    if phase in ("zap", "zap1"):
        return ("DONTNEED src" if phase == "zap" else f"DONTNEED src[{p}]"), {"zap"}
    if phase == "flip":
        return "publish the flip", {"flip"}
    return "read uffd + WAKE", {"wake"}


def _mutator_label(before: State, after: State) -> tuple[str, set[str], str | None, int]:
    """Label, flags, the slot stored to (if a store completed) and its page."""
    p = before.b.done % len(before.src)
    if after.b.pc == "blocked":
        op = "load" if before.b.pc == "load" else "store"
        return f"{op}: fault, sleeps", {"fault"}, None, p
    if before.b.pc == "load":
        return f"load {after.b.where}[{p}] = {after.b.reg}", {"load"}, None, p
    if after.b.done == before.b.done:
        return f"write fault: COW {before.b.where}[{p}]", {"cow"}, None, p
    return f"store {before.b.where}[{p}] = {before.b.reg + 1}", {"store"}, before.b.where, p


def replay(strategy: str, schedule: str = "", pages: int = 1, increments: int = 3,
           src_page: str | None = None, complete: bool = True) -> Replay:
    """Replay ``schedule`` (``"AABAB..."``) of ``strategy``; with ``complete``, run on to the end
    preferring A, as ``python -m uffdsim atomicity --schedule`` does.  ValueError on a schedule
    that names a thread that cannot run."""
    program = Program.build(strategy, pages, increments, src_page)
    ids = schedule.strip().upper()
    if complete:
        ids = run_to_end(program, ids).schedule
    out = Replay(program, ids, [program.initial()])
    open_pages: set[int] = set()      # pages COPY has read and DONTNEED not yet dropped
    pending: list[tuple[int, int]] = []   # (step index, page) of stores made inside a window
    s = out.states[0]
    for n, tid in enumerate(ids, 1):
        if tid not in ("A", "B"):
            raise ValueError(f"step {n}: unknown thread {tid!r}; threads are A, B")
        try:
            nxt, text = program.step(s, tid)
        except ValueError as e:
            raise ValueError(f"step {n}: {e}") from None
        if tid == "A":
            phase, p = s.a.phase, s.a.page
            label, flags = _mover_label(phase, p, s, nxt, text)
            if phase == "copy":
                open_pages.add(p)
            if open_pages:
                flags.add("window")
            if phase in ("zap", "zap1"):
                dropped = set(range(len(s.src))) if phase == "zap" else {p}
                for idx, page in pending:
                    if page in dropped:
                        out.steps[idx] = TimelineStep(out.steps[idx].thread, out.steps[idx].label,
                                                      out.steps[idx].flags | {"lost"}, out.steps[idx].detail)
                pending = [(i, pg) for i, pg in pending if pg not in dropped]
                open_pages -= dropped
        else:
            label, flags, where, p = _mutator_label(s, nxt)
            if open_pages:
                flags.add("window")
            if where == "src" and p in open_pages:
                pending.append((n - 1, p))
        out.steps.append(TimelineStep(tid, label, frozenset(flags), text))
        out.texts.append(text)
        out.states.append(nxt)
        s = nxt
    return out


def replay_result(result: AtomicityResult) -> Replay:
    """The explorer's shortest counterexample (or, with none, the schedule that runs A first)."""
    return replay(result.strategy, result.counterexample_schedule, result.pages, result.increments,
                  result.src_page)


def state_snapshot(program: Program, s: State, caption: str = "") -> Snapshot:
    """The model's state as an address-space snapshot: one process, ``src`` and ``dst``, frames f0, f1, ..."""
    pages = program.pages
    maps: dict[int, int] = {}
    entries: dict[str, list[EntrySnap]] = {}
    for where, base, table in (("src", SRC_BASE, s.src), ("dst", DST_BASE, s.dst)):
        rows = []
        for p, pte in enumerate(table):
            addr = base + p * 4096
            if pte is None:
                rows.append(EntrySnap(addr, f"{where}+{p}", "none"))
                continue
            f = s.frames[pte.frame]
            maps[pte.frame] = maps.get(pte.frame, 0) + 1
            rows.append(EntrySnap(addr, f"{where}+{p}", "present", "pte", pte.frame, pte.frame, f.value,
                                  pte.writable, f.exclusive))
        entries[where] = rows
    folios = []
    for fid, f in enumerate(s.frames):
        if f.freed:
            continue
        n = maps.get(fid, 0) + f.child
        notes = []
        if f.child:
            notes.append("also mapped by the fork child")
        if s.a.folio == fid:
            notes.append("held by A: COPY in flight")
        kind = ("exclusive" if f.exclusive and not f.child else "shared") if n else "unmapped"
        folios.append(FolioSnap(fid, 1, kind, (f.value,), (f.exclusive,), (n,), 0, int(f.pinned),
                                label=f"f{fid}", note="; ".join(notes)))
    rw = ("rw", False, "anon")
    vmas = (VmaSnap(SRC_BASE, SRC_BASE + pages * 4096, "src", *rw, entries=tuple(entries["src"])),
            VmaSnap(DST_BASE, DST_BASE + pages * 4096, "dst", *rw, uffd="uffd", uffd_modes=("missing",),
                    entries=tuple(entries["dst"])))
    threads = (("A", program.describe_thread(s, "A")), ("B", program.describe_thread(s, "B")))
    proc = ProcSnap("gc", 1, True, tuple(sorted(vmas, key=lambda v: -v.start)), (), threads)
    return Snapshot((proc,), tuple(folios), (), caption)
