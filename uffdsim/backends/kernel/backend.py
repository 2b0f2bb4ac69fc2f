"""The kernel backend: scenario steps executed on the running kernel, in a real process tree.

Per scenario: check the ``requires`` against :func:`.caps.capabilities` (skip with the reason),
set up swap if the scenario needs it (:mod:`.swap`), keep khugepaged from collapsing THP
scenarios' memory (:mod:`.khugepaged`), keep the KSM runs of concurrent runs apart (:mod:`.ksm`),
fork ``main`` (:mod:`.proctree`) and send each step to the process that runs it (:mod:`.server`).  Addresses are resolved here, from the
regions mapped so far; regions are laid out top-down from :data:`TOP` with an unmapped page
between neighbours, as the simulator does, far below the kernel's own mmap area so nothing else
ever lands in the gaps.  A step that hangs ends the scenario (the runner marks the rest "not
run"); the process tree is always killed and reaped, and the swap device removed, also on SIGINT,
SIGTERM and SIGHUP (:mod:`.signals`; the signal takes effect once everything is undone).
"""
from __future__ import annotations

import errno as E
import os
import time
from contextlib import ExitStack
from typing import Any

from ...errors import UffdError, errno_name
from ...results import BackendRun
from ...scenario import Addr, Scenario, Step
from . import signals
from . import sys as k
from .caps import capabilities
from .khugepaged import quiet_khugepaged, uses_thp
from .ksm import ksm_guard, uses_ksm
from .mthp import missing_knob, mthp_guard, set_mthp
from .needs import unmet
from .profile import running_profile_cached
from .proctree import ProcessDied, ProcTree
from .swap import temporary_swap

#: where regions start (top-down): 1 TiB below the lowest randomised mmap base on x86_64/arm64
TOP = 0x7E00_0000_0000
STEP_TIMEOUT = 5.0
SCENARIO_TIMEOUT = 300.0
#: steps that may take longer: ksmd scans, populating, and the range calls that may ask the
#: kernel in a probe process first (a new interpreter: seconds under TCG in the lab; .probe)
SLOW_STEPS = {"ksm_merge": 60.0, "madvise": 30.0, "pin": 10.0, "mlock": 30.0, "munlock": 30.0,
              "mprotect": 30.0, "munmap": 30.0, "register": 30.0, "move": 30.0}
#: a scenario's time limit is SCENARIO_TIMEOUT plus these, for each page its steps touch and each
#: thread they start: the real-size selftest port (8,192 fault threads, 65,544 steps) took 216 s of
#: kernel time on a loaded 2-CPU machine, close to the flat 300 s that used to be its whole limit
SCENARIO_PER_PAGE = 0.002
SCENARIO_PER_THREAD = 0.1
#: s per page a write or read may take: each page is a user access by an accessor task of its
#: own (.access), a few milliseconds each under TCG in the lab
ACCESS_SECONDS = 0.05


def scenario_work(scenario: Scenario) -> tuple[int, int]:
    """The pages a scenario's steps touch and the threads they start: what its time limit grows with."""
    pages = sum(-(-s.args["length"] // k.PAGE_SIZE) for s in scenario.steps if "length" in s.args)
    threads = sum(1 for s in scenario.steps if s.op == "fault_async" or (s.op == "madvise" and "thread" in s.args))
    return pages, threads


class KernelBackend:
    """Runs a scenario on the running kernel through userfaultfd (ctypes, no compiler needed)."""

    name = "kernel"

    def __init__(self, step_timeout: float = STEP_TIMEOUT, scenario_timeout: float = SCENARIO_TIMEOUT,
                 per_page: float = SCENARIO_PER_PAGE, per_thread: float = SCENARIO_PER_THREAD) -> None:
        self.step_timeout = step_timeout
        self.scenario_timeout = scenario_timeout
        self.per_page, self.per_thread = per_page, per_thread

    def time_limit(self, scenario: Scenario) -> float:
        """Seconds the scenario may run: ``scenario_timeout`` plus its pages' and threads' share."""
        pages, threads = scenario_work(scenario)
        return self.scenario_timeout + self.per_page * pages + self.per_thread * threads

    def available(self) -> tuple[bool, str]:
        """Can this backend run scenarios here at all (and why not)?"""
        why = capabilities().missing([])
        return (why is None, why or "userfaultfd and UFFDIO_MOVE usable")

    def run(self, scenario: Scenario) -> BackendRun:
        caps = capabilities()
        running_profile_cached()          # kernels.profile_of() answers for this kernel with it
        info: dict[str, Any] = {"kernel": caps.kernel, "uffd": caps.uffd_via}
        why = caps.missing(scenario.requires) or unmet(scenario, caps) or missing_knob(scenario)
        if why:
            return BackendRun(skipped=why, info=info)
        records: list[dict[str, Any]] = []
        # machine-wide changes are made and undone with SIGINT/SIGTERM/SIGHUP blocked; only the
        # steps run interruptible, and a signal there unwinds through the undoing (.signals)
        with signals.protected(), ExitStack() as stack:
            try:
                if "swap" in scenario.requires:
                    info["swap"] = stack.enter_context(temporary_swap())
                if uses_thp(scenario):
                    stack.enter_context(quiet_khugepaged())
                if uses_ksm(scenario):
                    stack.enter_context(ksm_guard())
                stack.enter_context(mthp_guard(scenario))
            except UffdError as err:
                return BackendRun(skipped=f"swap: {err.message}", info=info)
            except TimeoutError as err:
                return BackendRun(skipped=f"machine busy: {err}", info=info)
            with ProcTree() as tree, signals.interruptible():
                run = KernelRun(tree, self.step_timeout)
                limit = self.time_limit(scenario)
                deadline = time.monotonic() + limit
                for step in scenario.steps:
                    if time.monotonic() > deadline:
                        records.append({"i": step.i, "op": step.op, "ret": None, "errno": None, "hung": True,
                                        "why": f"not started: the scenario used up its {limit:g} s"})
                        break
                    rec = run.step(step)
                    records.append(rec)
                    if rec.get("hung") or run.stopped:
                        break
        return BackendRun(records, info=info)


class KernelRun:
    """One scenario's state on the runner side: regions, the layout cursor, the process tree."""

    def __init__(self, tree: ProcTree, step_timeout: float) -> None:
        self.tree = tree
        self.step_timeout = step_timeout
        self.regions: dict[str, int] = {}
        self.cursor = TOP
        self.stopped = False

    def resolve(self, step: Step) -> dict[str, Any]:
        args = dict(step.args)
        for key in ("at", "dst", "src"):
            a = args.get(key)
            if isinstance(a, Addr):
                try:
                    args[key] = a.resolve(self.regions)
                except KeyError:
                    raise UffdError(E.EINVAL, f"region {a.region!r} is not mapped") from None
        return args

    def step(self, step: Step) -> dict[str, Any]:
        """Execute one step in its process; the raw record."""
        rec: dict[str, Any] = {"i": step.i, "op": step.op, "ret": 0, "errno": None}
        if step.op in ("move", "copy", "zeropage"):
            rec[step.op] = None
        name = step.args["proc"] if step.op == "exit" else step.proc
        proc = self.tree.procs.get(name)
        try:
            if step.op == "mthp":
                set_mthp(step.args["size"], step.args["enabled"])
                return rec
            if proc is None or not proc.alive:
                if step.op == "thread" and proc is not None:
                    if step.args["thread"] not in proc.threads:
                        raise UffdError(E.EINVAL, f"no thread named {step.args['thread']!r}")
                    rec["blocked"] = False      # its process is gone, and the thread with it
                    return rec
                raise UffdError(E.ESRCH, f"process {name} has exited")
            args = self.resolve(step)
            if step.op == "exit":
                self.tree.exit(name)
                return rec
            if step.op == "mmap":
                args["cursor"] = self.cursor
            elif step.op == "ksm_merge":
                args["pids"] = [p.pid for p in self.tree.procs.values() if p.alive]
                args["runner"] = os.getpid()
            timeout = SLOW_STEPS.get(step.op, self.step_timeout)
            if step.op in ("write", "read"):
                pages = args.get("length", 0) // k.PAGE_SIZE
                timeout = min(max(timeout, pages * ACCESS_SECONDS), SCENARIO_TIMEOUT)
            reply, fds = self.tree.call(name, {"i": step.i, "op": step.op, "args": args,
                                               "timeout": timeout}, timeout)
        except UffdError as err:
            rec.update(ret=-1, errno=errno_name(err.errno), why=err.message)
            return rec
        except ProcessDied as died:
            # never a guessed errno: user accesses are made by accessors (.access), so a scenario
            # process that dies is a crash, reported as one (a divergence on any expectation)
            self.stopped = True
            rec.update(ret=-1, errno="ECRASHED", crashed=True, why=f"the scenario process crashed: {died} during {step.op}")
            return rec
        except TimeoutError:
            self.stopped = True
            rec.update(ret=None, hung=True, why=f"process {name} did not answer")
            return rec
        rec.update(reply)
        rec.pop("pid", None)
        if step.op == "mmap" and rec.get("addr") is not None:
            self.regions[step.args["name"]] = rec["addr"]
            self.cursor = rec["addr"]
        elif step.op == "fork" and rec.get("errno") is None:
            self.tree.adopt(step.args["child"], name, reply["pid"], fds[0])
        elif step.op == "fault_async" or (step.op == "madvise" and "thread" in step.args):
            proc.threads.add(step.args["thread"])
        return rec
