"""The simulator backend: scenario steps executed on a :class:`uffdsim.Machine`."""
from __future__ import annotations

from typing import Any, Callable

from ..errors import UffdError, errno_name
from ..kernels import KernelProfile, get_profile
from ..mm.machine import FaultBlocked, Machine, MachineConfig
from ..mm.process import Process, page_range
from ..results import BackendRun
from ..scenario import Addr, Scenario, Step
from ..userfaultfd import UNMODELLED_FEATURES, UserfaultfdCtx


class SimBackend:
    """Runs a scenario on a fresh simulated machine; every step record carries the explanation trail."""

    name = "sim"

    def __init__(self, config: MachineConfig | None = None, kernel: "str | KernelProfile | None" = None) -> None:
        self.config = config
        self.kernel = get_profile(kernel)      #: the kernel profile the machine answers as
        self.profile_name = self.kernel.name
        self.machine: Machine | None = None

    def run(self, scenario: Scenario) -> BackendRun:
        for step in scenario.steps:
            unmodelled = [f for f in step.args.get("features", []) if f in UNMODELLED_FEATURES]
            if unmodelled:
                return BackendRun(skipped=f"the simulator does not model {', '.join(unmodelled)}")
        if "guard" in scenario.requires and not self.kernel.has("guard_install"):
            return BackendRun(skipped=f"guard: MADV_GUARD_INSTALL needs Linux 6.13+ (profile {self.kernel.name})")
        run = SimRun(Machine(self.config, kernel=self.kernel))
        self.machine = run.machine
        records: list[dict[str, Any]] = []
        for step in scenario.steps:
            rec = run.step(step)
            records.append(rec)
            if rec.get("hung"):
                break
        return BackendRun(records, info={"profile": self.kernel})


class SimRun:
    """The state of one scenario run: the machine, the regions and the named userfaultfds."""

    def __init__(self, machine: Machine) -> None:
        self.machine = machine
        self.machine.spawn("main")
        self.regions: dict[str, int] = {}
        self.uffds: dict[str, UserfaultfdCtx] = {}

    def addr(self, a: Addr) -> int:
        return a.resolve(self.regions)

    def ctx(self, step: Step, proc: Process) -> UserfaultfdCtx:
        name = step.args.get("uffd")
        if name is not None:
            if name not in self.uffds:          # its uffd step failed: the fd is -1, EBADF
                raise UffdError(9, f"no userfaultfd {name!r} (its uffd step failed)")   # EBADF
            return self.uffds[name]
        if not proc.uffds:
            raise UffdError(9, "no userfaultfd open in this process")   # EBADF
        return proc.uffds[-1]

    def step(self, step: Step) -> dict[str, Any]:
        """Execute one step and return its raw record."""
        rec: dict[str, Any] = {"i": step.i, "op": step.op, "ret": 0, "errno": None}
        out_key = step.op if step.op in ("move", "copy", "zeropage") else None
        if out_key:
            rec[out_key] = None
        name = step.args["proc"] if step.op == "exit" else step.proc
        proc = self.machine.processes.get(name)
        try:
            if proc is None:                    # its fork failed: there is no such pid (as the kernel backend)
                raise UffdError(3, f"process {name} does not exist (its fork failed)")   # ESRCH
            if not proc.alive and step.op not in ("thread", "mthp"):
                raise UffdError(3, f"process {proc.name} has exited")   # ESRCH
            result = OPS[step.op](self, step, proc, rec)
            if out_key:
                rec[out_key] = result
        except UffdError as err:
            rec["ret"], rec["errno"] = -1, errno_name(err.errno)
            if out_key:
                rec[out_key] = err.out
            if err.message:
                rec["why"] = err.message
        except FaultBlocked as blocked:
            rec.update(ret=None, hung=True, why=str(blocked))
        if self.machine.trail.path:
            rec["trail"] = str(self.machine.trail)
        return rec


def _len(step: Step) -> int:
    return int(step.args["length"])


def op_mmap(run: SimRun, step: Step, proc: Process, rec: dict[str, Any]) -> None:
    a = step.args
    file = a.get("file", "none")
    addr = proc.mmap(a["pages"], a.get("prot", "rw"), a.get("shared", False),
                     None if file == "none" else file, a.get("align", 4096))
    run.regions[a["name"]] = addr
    rec["addr"] = addr


def page_record(v: Any) -> dict[str, Any]:
    """A page of ``observe`` as both backends report it: what /proc/kpageflags and /proc/kpagecount
    say (``anon_exclusive``, ``mapcount``, ``order``) only for a mapped page (present or zero);
    the exclusive bit of a swap entry is not something the kernel shows."""
    mapped = v.state in ("present", "zero")
    return {"state": v.state, "value": v.value, "frame": v.pfn, "thp": v.thp,
            "anon_exclusive": v.anon_exclusive if mapped else None,
            "mapcount": v.mapcount if mapped else None, "order": v.order if mapped else None}


def op_observe(run: SimRun, step: Step, proc: Process, rec: dict[str, Any]) -> None:
    rec["pages"] = [page_record(v) for v in proc.observe(run.addr(step.args["at"]), _len(step))]
    run.machine.trail.path.clear()


def op_madvise(run: SimRun, step: Step, proc: Process, rec: dict[str, Any]) -> None:
    a = step.args
    if "thread" in a:
        rec["blocked"] = proc.madvise_async(a["thread"], run.addr(a["at"]), _len(step), a["advice"]).blocked
    else:
        proc.madvise(run.addr(a["at"]), _len(step), a["advice"])


def op_uffd(run: SimRun, step: Step, proc: Process, rec: dict[str, Any]) -> None:
    a = step.args
    ctx = proc.userfaultfd(a.get("name"), a.get("features", []), a.get("user_mode_only", False),
                           a.get("api", True))
    run.uffds[ctx.name] = ctx
    if "name" in a:
        run.uffds[a["name"]] = ctx


def op_fork(run: SimRun, step: Step, proc: Process, rec: dict[str, Any]) -> None:
    proc.fork(step.args["child"])


def op_thread(run: SimRun, step: Step, proc: Process, rec: dict[str, Any]) -> None:
    t = proc.threads.get(step.args["thread"])
    if t is None:
        raise UffdError(22, f"no thread named {step.args['thread']!r}")
    rec["blocked"] = t.blocked


def op_read_events(run: SimRun, step: Step, proc: Process, rec: dict[str, Any]) -> None:
    ctx = run.ctx(step, proc)
    rec["events"] = [{"type": m.type, "addr": m.addr, "write": m.write} for m in ctx.read_msgs()]
    proc.machine.trail.path.clear()


def op_fault_async(run: SimRun, step: Step, proc: Process, rec: dict[str, Any]) -> None:
    a = step.args
    t = proc.fault_async(a["thread"], run.addr(a["at"]), a.get("write", False), a.get("value", 0))
    rec["blocked"] = t.blocked


def op_ioctl(run: SimRun, step: Step, proc: Process, rec: dict[str, Any]) -> int | None:
    """The userfaultfd ioctls; returns the output field for COPY/ZEROPAGE/MOVE."""
    a, ctx = step.args, run.ctx(step, proc)
    at = run.addr(a["at"]) if "at" in a else None
    if step.op == "api":
        ctx.api(a.get("features", []))
    elif step.op == "register":
        ctx.register(at, _len(step), a.get("mode", ["missing"]))
    elif step.op == "unregister":
        ctx.unregister(at, _len(step))
    elif step.op == "copy":
        return ctx.copy(run.addr(a["dst"]), run.addr(a["src"]), _len(step), a.get("mode", []), caller=proc)
    elif step.op == "zeropage":
        return ctx.zeropage(at, _len(step), a.get("mode", []))
    elif step.op == "move":
        return ctx.move(run.addr(a["dst"]), run.addr(a["src"]), _len(step), a.get("mode", []), caller=proc)
    elif step.op == "wake":
        ctx.wake(at, _len(step))
    elif step.op == "writeprotect":
        ctx.writeprotect(at, _len(step), a["wp"])
    return None


def op_memory(run: SimRun, step: Step, proc: Process, rec: dict[str, Any]) -> None:
    """The system calls and accesses on a range of the process's memory."""
    a = step.args
    at, length = run.addr(a["at"]), _len(step)
    if step.op == "munmap":
        proc.munmap(at, length)
    elif step.op == "mprotect":
        proc.mprotect(at, length, a["prot"])
    elif step.op == "mlock":
        proc.mlock(at, length, a.get("onfault", False))
    elif step.op == "munlock":
        proc.munlock(at, length)
    elif step.op == "write" and a.get("value_step"):    # page k gets value + k * value_step (mod 256)
        for k, page in enumerate(page_range(at, length)):
            proc.write(page, 4096, (a["value"] + k * a["value_step"]) & 255)
    elif step.op == "write":
        proc.write(at, length, a["value"])
    elif step.op == "read":
        proc.read(at, length)
    elif step.op == "pin":
        proc.pin(at, length, a["name"])
    elif step.op == "ref":
        proc.ref(at, length, a["name"])


OPS: dict[str, Callable[[SimRun, Step, Process, dict[str, Any]], Any]] = {
    "mmap": op_mmap,
    **dict.fromkeys(("munmap", "mprotect", "mlock", "munlock", "write", "read", "pin", "ref"), op_memory),
    **dict.fromkeys(("api", "register", "unregister", "copy", "zeropage", "move", "wake", "writeprotect"), op_ioctl),
    "madvise": op_madvise,
    "fork": op_fork,
    "exit": lambda r, s, p, rec: p.exit(),
    "uffd": op_uffd,
    "ksm_merge": lambda r, s, p, rec: p.ksm_merge(),
    "unpin": lambda r, s, p, rec: p.unpin(s.args["name"]),
    "unref": lambda r, s, p, rec: p.unref(s.args["name"]),
    "mthp": lambda r, s, p, rec: r.machine.set_mthp(s.args["size"], s.args["enabled"]),
    "observe": op_observe,
    "fault_async": op_fault_async,
    "thread": op_thread,
    "read_events": op_read_events,
}
