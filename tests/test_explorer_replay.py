"""One model, checked: the atomicity explorer's schedules replayed on the main simulator.

The explorer (``uffdsim.concurrency``) runs its own small state model, which is what makes the
exhaustive search fast.  Here every schedule it enumerates for the small configurations (and a
seeded sample for larger ones) is replayed on ``uffdsim.mm``'s :class:`Machine`, with the mover's
ioctls issued on a real :class:`UserfaultfdCtx` and the mutator's accesses made by the process
(a blocked access is a :meth:`Process.fault_async` thread, queued as a uffd message), and the end
states must be identical: each page's value at its home, which pages are mapped, frames allocated
and freed, the source empty or not, increments lost, the errnos the ioctls returned.

How the explorer's steps map onto the simulator:

* ``UFFDIO_MOVE`` of a page: ``uffd.move`` (one step in both).
* ``UFFDIO_COPY``: the explorer splits it (allocate, copy_from_user, install); the simulator's
  ``uffd.copy`` is issued at the copy_from_user step, when the source is read.  Only the source
  is read and only the (unregistered-by-B) destination written, and B touches the destination
  only after the flip, which comes after the install, so no interleaving can tell them apart.
* ``MADV_DONTNEED``: ``process.madvise(..., "dontneed")``.
* B's load: a read of a present page, or a ``fault_async`` read that blocks in handle_userfault;
  B's store: a write-protect fault (``handle_mm_fault``) where the PTE is read-only, then the
  store; or a ``fault_async`` write that blocks.
* A serving the uffd: ``read_msgs`` (the message must name the same slot and access), then
  ``UFFDIO_WAKE``; the woken thread retries through the forwarding pointer (the explorer's B
  restarts the increment at the page's new home: the read barrier), so its retry reads ``dst``.

``move-allow-copy`` is not replayed: it is hypothetical (not Linux), and the main simulator models
Linux only.  ``move-zero-copy-only`` with its flag is Linux's UFFDIO_MOVE and is replayed as such.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import pytest

from uffdsim import Machine, PAGE_SIZE as P, UffdError
from uffdsim.concurrency import Program, explore
from uffdsim.concurrency.state import SRC_PAGE_KINDS, State
from uffdsim.mm.fault import handle_mm_fault
from uffdsim.mm.pagetable import PresentPte

LINUX = ("move", "copy-dontneed", "move-fallback", "move-zero-copy-only")


@dataclass
class Sim:
    """The main simulator set up as the explorer's initial state, plus the mutator's registers."""

    program: Program
    m: Machine = field(init=False)
    proc: Any = field(init=False)
    uffd: Any = field(init=False)
    src: int = 0
    dst: int = 0
    errors: list[str] = field(default_factory=list)
    gone: list[bool] = field(default_factory=list)
    at_dst: list[bool] = field(default_factory=list)
    flip: list[bool] = field(default_factory=list)
    done: int = 0
    reg: int | None = None       #: None: B's next step is a load
    where: str = "src"
    blocked: Any = None           #: B's thread asleep in handle_userfault
    threads: int = 0

    def __post_init__(self) -> None:
        n = self.program.pages
        self.m = Machine()
        self.proc = self.m.spawn("main")
        self.src, self.dst = self.proc.mmap(n), self.proc.mmap(n)
        self.proc.write(self.src, n * P, 0)                   # counters at 0, exclusive pages
        if self.program.src_page == "pinned":
            self.proc.pin(self.src, n * P, "io")
        elif self.program.src_page == "cow-shared":
            self.proc.fork("child")                           # COW-shared, mapped read-only
        self.uffd = self.proc.userfaultfd(features=["move"])
        self.uffd.register(self.src, n * P)
        self.uffd.register(self.dst, n * P)
        self.gone, self.at_dst, self.flip = [False] * n, [False] * n, [False] * n

    def slot(self, where: str, p: int) -> int:
        return (self.dst if where == "dst" else self.src) + p * P

    def pte(self, addr: int) -> PresentPte | None:
        pte = self.proc.mm.pt.get_pte(addr)
        return pte if isinstance(pte, PresentPte) else None

    # -- thread A: the explorer's phase says which ioctl the mover's program issues next --------
    def mover(self, phase: str, p: int, allow_fallback: bool) -> str | None:
        """Issue A's next call; returns the errno (or None)."""
        if phase == "move":
            try:
                self.uffd.move(self.slot("dst", p), self.slot("src", p), P)
                self.gone[p] = self.at_dst[p] = True
            except UffdError as err:
                self.errors.append(err.name)
                return err.name
        elif phase == "copy":
            self.uffd.copy(self.slot("dst", p), self.slot("src", p), P)
            self.at_dst[p] = True
        elif phase in ("zap", "zap1"):
            pages = range(p, p + 1) if phase == "zap1" else range(self.program.pages)
            self.proc.madvise(self.slot("src", pages.start), len(pages) * P, "dontneed")
            for q in pages:
                self.gone[q] = True
        elif phase == "flip":
            self.flip = [g and d for g, d in zip(self.gone, self.at_dst)]
        elif phase == "serve":
            msgs = self.uffd.read_msgs()
            t = self.blocked
            assert len(msgs) == 1 and t is not None, f"expected one queued fault, got {msgs}"
            assert (msgs[0].addr, msgs[0].write) == (t.addr, t.write)
            p = self.done % self.program.pages
            t.addr, t.write = self.slot("dst" if self.flip[p] else "src", p), False   # read barrier
            self.uffd.wake(t.addr, P)
            assert t.done and not t.blocked, "the woken thread could not retry at the page's home"
            self.blocked = None
        return None

    # -- thread B: counter++ as a load and a store ----------------------------------------------
    def mutator(self) -> None:
        p = self.done % self.program.pages
        if self.blocked is not None:
            raise AssertionError("B is asleep in handle_userfault, yet the schedule runs it")
        if self.reg is None:                          # load
            self.where = "dst" if self.flip[p] else "src"
            addr = self.slot(self.where, p)
            if self.pte(addr) is None:
                return self.block(addr, write=False)
            self.reg = self.proc.peek(addr)
            return None
        addr = self.slot(self.where, p)               # store
        pte = self.pte(addr)
        if pte is None:
            return self.block(addr, write=True)
        if not pte.write:
            handle_mm_fault(self.m, self.proc.mm, addr, True)   # do_wp_page, then retry
            return None
        self.proc.touch(addr, True, self.reg + 1)
        self.done += 1
        self.reg = None
        return None

    def block(self, addr: int, write: bool) -> None:
        self.threads += 1
        t = self.proc.fault_async(f"B{self.threads}", addr, write, (self.reg or 0) + 1)
        assert t.blocked, f"B's access at {addr:#x} did not block on the userfault"
        self.blocked = t
        self.reg = None                               # after the wake-up B restarts the increment

    def end_state(self) -> dict[str, Any]:
        n = self.program.pages
        homes, mapped = [], []
        for p in range(n):
            pte = self.pte(self.slot("dst" if self.flip[p] else "src", p))
            homes.append(None if pte is None else pte.folio.data[pte.idx])
            mapped.append((self.pte(self.slot("src", p)) is not None, self.pte(self.slot("dst", p)) is not None))
        completed = [self.program.completed_on(p) for p in range(n)]
        return {"home values": homes, "mapped (src, dst)": mapped,
                "frames allocated": self.m.phys.allocated,
                "frames freed": self.m.phys.allocated - len(self.m.phys.live),
                "source empty": not any(s for s, _ in mapped),
                "lost increments": sum(max(0, c - (v or 0)) for c, v in zip(completed, homes)),
                "errors": self.errors}


def explorer_end_state(program: Program, s: State) -> dict[str, Any]:
    n = program.pages
    o = program.outcome(s)
    return {"home values": [program.home_value(s, p) for p in range(n)],
            "mapped (src, dst)": [(s.src[p] is not None, s.dst[p] is not None) for p in range(n)],
            "frames allocated": len(s.frames),
            "frames freed": sum(f.freed for f in s.frames),
            "source empty": not o.src_nonempty,
            "lost increments": o.lost_increments,
            "errors": list(s.a.errors)}


def replay(program: Program, schedule: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run ``schedule`` on the explorer's model and on the main simulator; both end states."""
    s = program.initial()
    sim = Sim(program)
    for n, tid in enumerate(schedule, 1):
        if tid == "A":
            phase, p = s.a.phase, s.a.page
            errors = len(s.a.errors)
            s, _ = program.step(s, tid)
            got = sim.mover(phase, p, program.strategy.name == "move-fallback")
            want = s.a.errors[-1] if len(s.a.errors) > errors else None
            assert got == want, f"step {n} ({phase} page {p}): explorer {want}, simulator {got}"
        else:
            s, _ = program.step(s, tid)
            sim.mutator()
            assert (s.b.pc == "blocked") == (sim.blocked is not None), f"step {n}: B blocked differs"
    assert program.finished(s)
    return explorer_end_state(program, s), sim.end_state()


def all_schedules(program: Program) -> list[str]:
    """Every complete schedule, depth first (the explorer counts them; here they are listed)."""
    out: list[str] = []
    stack: list[tuple[State, str]] = [(program.initial(), "")]
    while stack:
        s, sched = stack.pop()
        ready = program.enabled(s)
        if not ready:
            assert program.finished(s), f"deadlock after {sched}"
            out.append(sched)
        for tid in reversed(ready):
            stack.append((program.step(s, tid)[0], sched + tid))
    return out


def sampled_schedules(program: Program, count: int, seed: int) -> list[str]:
    """``count`` random complete schedules (each step picks a runnable thread), seeded."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        s, sched = program.initial(), ""
        while not program.finished(s):
            tid = rng.choice(program.enabled(s))
            s, sched = program.step(s, tid)[0], sched + tid
        out.append(sched)
    return out


SMALL = [(st, kind, 1, inc) for st in LINUX for kind in SRC_PAGE_KINDS for inc in (1, 2, 3)]
LARGE = [(st, kind, pages, inc) for st in LINUX for kind in SRC_PAGE_KINDS for pages, inc in ((2, 4), (3, 5))]
SAMPLE, SEED = 40, 11
REPLAYED: dict[str, int] = {"all": 0, "sampled": 0}


@pytest.mark.parametrize("strategy, kind, pages, increments", SMALL,
                         ids=[f"{s}-{k}-{p}p{i}" for s, k, p, i in SMALL])
def test_every_schedule_of_a_small_configuration(strategy: str, kind: str, pages: int, increments: int) -> None:
    program = Program.build(strategy, pages, increments, kind)
    schedules = all_schedules(program)
    assert len(schedules) == explore(program).interleavings      # the explorer counts the same set
    for sched in schedules:
        want, got = replay(program, sched)
        assert got == want, f"schedule {sched}:\n explorer  {want}\n simulator {got}"
    REPLAYED["all"] += len(schedules)


@pytest.mark.parametrize("strategy, kind, pages, increments", LARGE,
                         ids=[f"{s}-{k}-{p}p{i}" for s, k, p, i in LARGE])
def test_a_seeded_sample_of_a_larger_configuration(strategy: str, kind: str, pages: int, increments: int) -> None:
    program = Program.build(strategy, pages, increments, kind)
    for sched in sampled_schedules(program, SAMPLE, SEED):
        want, got = replay(program, sched)
        assert got == want, f"schedule {sched}:\n explorer  {want}\n simulator {got}"
    REPLAYED["sampled"] += SAMPLE


def test_the_replay_detects_a_disagreement(monkeypatch: pytest.MonkeyPatch) -> None:
    """The comparison can fail: an explorer whose MADV_DONTNEED forgot to zap disagrees."""
    from uffdsim.concurrency import steps
    program = Program.build("copy-dontneed", 1, 1, "exclusive")
    sched = all_schedules(program)[0]
    want, got = replay(program, sched)
    assert got == want and want["source empty"]
    monkeypatch.setattr(steps, "zap_pte_range", lambda s, pages: (s, "zap forgotten"))
    want, got = replay(program, sched)
    assert want != got and not want["source empty"] and got["source empty"]
