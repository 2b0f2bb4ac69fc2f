"""The explorer's race on the running kernel: a writer on one CPU, the real ioctls on another.

Per trial: the source page(s) are filled by UFFDIO_COPY (a fresh exclusive anonymous page with
the counter at 0; ``move-fallback`` then pins it with an io_uring fixed buffer, so UFFDIO_MOVE
fails with EBUSY and the fallback runs); the C writer (:mod:`._race_writer`, compiled at run
time with the system C compiler) starts incrementing through its forwarding pointer, pinned to
one CPU; this (Python) thread, pinned to another, runs the strategy through
:mod:`uffdsim.backends.kernel.sys` and flips the forwarding pointer to ``dst``; the writer,
woken from its SIGBUS wait if it touched the emptied source, carries on at ``dst`` for a few
more increments and stops.  Lost increments = increments the writer completed - counters found
at ``dst``.

Every wait is bounded (writer start 1 s, fault wait 2 s, stop 5 s).  Skipped, with the reason,
when userfaultfd, UFFDIO_MOVE, ``UFFD_FEATURE_SIGBUS`` or a C compiler is missing, or when fewer
than two CPUs are available: on one CPU the two threads never run at the same time, so a zero
would prove nothing and is not reported.
"""
from __future__ import annotations

import ctypes
import errno
import os
import platform
import random
import shutil
import struct
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field

from uffdsim.backends.kernel.signals import protected
from uffdsim.errors import UffdError

from ._race_writer import C_SOURCE

KERNEL_STRATEGIES: tuple[str, ...] = ("move", "copy-dontneed", "move-fallback")
START_TIMEOUT_NS = 1_000_000_000
FAULT_WAIT_NS = 2_000_000_000
JOIN_TIMEOUT_NS = 5_000_000_000
TAIL = 64                       # increments the writer must do after the flip
_STUCK: list = []               # race structs of writers that never stopped (kept alive)


class _Race(ctypes.Structure):
    """Mirror of ``struct race`` in the C helper."""

    _fields_ = [("target", ctypes.c_uint64), ("src_lo", ctypes.c_uint64),
                ("src_hi", ctypes.c_uint64), ("pages", ctypes.c_int64),
                ("page_size", ctypes.c_int64), ("writer_cpu", ctypes.c_int64),
                ("wait_ns", ctypes.c_int64), ("go", ctypes.c_int64), ("stop", ctypes.c_int64),
                ("ready", ctypes.c_int64), ("exited", ctypes.c_int64), ("done", ctypes.c_int64),
                ("faults", ctypes.c_int64), ("timed_out", ctypes.c_int64),
                ("cpu_err", ctypes.c_int64), ("thread", ctypes.c_uint64)]


@dataclass
class StrategyRace:
    """Loss statistics of one strategy over all trials."""

    strategy: str
    src_page: str
    trials: int = 0
    lost_trials: int = 0          # trials in which at least one increment was lost
    lost_increments: int = 0
    increments: int = 0           # increments the writer completed, all trials
    writer_faults: int = 0        # SIGBUS restarts (the writer found the source gone)
    ebusy: int = 0                # UFFDIO_MOVE returned EBUSY
    fallbacks: int = 0            # user-space COPY + DONTNEED ran
    src_nonempty: int = 0         # trials ending with a source page still mapped
    timeouts: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    skipped: str = ""             # why this strategy did not run (its other fields are 0)

    @property
    def loss_rate(self) -> float:
        return self.lost_trials / self.trials if self.trials else 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["loss_rate"] = round(self.loss_rate, 6)
        return d


@dataclass
class RaceReport:
    """The whole run: environment, status and one entry per strategy."""

    status: str                   # ok | skipped | error
    reason: str
    kernel: str
    cpus: int
    trials: int
    pages: int
    seed: int
    mover_cpu: int | None = None
    writer_cpu: int | None = None
    results: list[StrategyRace] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["results"] = [r.to_dict() for r in self.results]
        return d


# ------------------------------------------------------------------------- availability

_HELPER: ctypes.CDLL | None = None
_HELPER_REASON = ""


def find_compiler() -> str | None:
    for cc in (os.environ.get("CC", ""), "cc", "gcc", "clang"):
        if cc and shutil.which(cc):
            return shutil.which(cc)
    return None


def _compile(cc: str, tmp: str) -> tuple[ctypes.CDLL | None, str]:
    src, lib = os.path.join(tmp, "race.c"), os.path.join(tmp, "race.so")
    with open(src, "w") as f:
        f.write(C_SOURCE)
    try:
        proc = subprocess.run([cc, "-O2", "-shared", "-fPIC", "-pthread", "-o", lib, src],
                              capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, f"compiling the writer with {cc} failed: {e}"
    if proc.returncode != 0:
        first = (proc.stderr.strip().splitlines() or ["?"])[0]
        return None, f"compiling the writer with {cc} failed: {first}"
    return ctypes.CDLL(lib), ""


def load_helper() -> tuple[ctypes.CDLL | None, str]:
    """Compile the writer into a temporary directory (once per process) and load it."""
    global _HELPER, _HELPER_REASON
    if _HELPER is not None or _HELPER_REASON:
        return _HELPER, _HELPER_REASON
    cc = find_compiler()
    if cc is None:
        _HELPER_REASON = "no C compiler (cc, gcc or clang) on PATH to build the writer thread"
        return None, _HELPER_REASON
    # the folder lives only while compiling and loading (the loaded library stays mapped after
    # its file is gone), with signals blocked so no SIGINT/SIGTERM/SIGHUP can strand it
    with protected():
        tmp = tempfile.mkdtemp(prefix=f"uffdsim-race-{os.getpid()}-")
        try:
            h, _HELPER_REASON = _compile(cc, tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    if h is None:
        return None, _HELPER_REASON
    for name in ("race_install", "race_uninstall"):
        getattr(h, name).restype = ctypes.c_int
        getattr(h, name).argtypes = []
    for name in ("race_start", "race_join"):
        getattr(h, name).restype = ctypes.c_int
        getattr(h, name).argtypes = [ctypes.POINTER(_Race), ctypes.c_int64]
    _HELPER = h
    return h, ""


def cpus_available() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def availability() -> tuple[bool, str]:
    """Can the race run here?  (ok, reason) -- checks the kernel, the CPUs and the compiler."""
    if platform.system() != "Linux":
        return False, f"userfaultfd is Linux-only (this is {platform.system()})"
    from uffdsim.backends.kernel import sys as k
    ok, reason = k.userfaultfd_available(need_move=True)
    if not ok:
        return False, reason
    try:
        with k.Userfaultfd.open() as u:
            u.api(k.UFFD_FEATURE_MOVE | k.UFFD_FEATURE_SIGBUS)
    except UffdError as e:
        return False, f"UFFDIO_API with MOVE|SIGBUS failed: {e}"
    if len(cpus_available()) < 2:
        return False, ("only one CPU is available: the writer and the mover would take turns "
                       "instead of racing, so a zero loss count would prove nothing; not reported")
    _, why = load_helper()
    if why:
        return False, why
    return True, "ok"


# ------------------------------------------------------------------------- one run

class _Env:
    """The ranges, the uffd and the writer library for a whole run."""

    def __init__(self, lib: ctypes.CDLL, pages: int) -> None:
        from uffdsim.backends.kernel import sys as k
        self.k, self.lib, self.pages = k, lib, pages
        self.length = pages * k.PAGE_SIZE
        self.uffd = k.Userfaultfd.open()
        self.src = self.dst = 0
        try:
            self.uffd.api(k.UFFD_FEATURE_MOVE | k.UFFD_FEATURE_SIGBUS)
            self.src = k.mmap(self.length)
            self.dst = k.mmap(self.length)
            for a in (self.src, self.dst):
                try:
                    k.madvise(a, self.length, k.MADV_NOHUGEPAGE)
                except UffdError:
                    pass
                self.uffd.register(a, self.length, k.UFFDIO_REGISTER_MODE_MISSING)
        except BaseException:
            self.close()
            raise
        self.zero = (ctypes.c_char * self.length)()

    def close(self) -> None:
        for a in (self.src, self.dst):
            if a:
                self.k.munmap(a, self.length)
        self.src = self.dst = 0
        self.uffd.close()

    def present(self, base: int) -> list[bool]:
        return [e.present for e in self.k.pagemap(base, self.pages)]

    def counters(self, base: int) -> int | None:
        """Sum of the counters at ``base`` (None if a page is not mapped: never touch it)."""
        if not all(self.present(base)):
            return None
        return sum(struct.unpack("=Q", self.k.peek(base + p * self.k.PAGE_SIZE, 8))[0]
                   for p in range(self.pages))


def _errname(e: UffdError) -> str:
    return errno.errorcode.get(e.errno, str(e.errno))


def _wait(cond, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
    return True


def _mover(env: _Env, strategy: str, stats: StrategyRace) -> bool:
    """Run ``strategy`` once; True when every page is at dst and the source is emptied."""
    k, u, n = env.k, env.uffd, env.length
    moved = 0
    if strategy in ("move", "move-fallback"):
        try:
            moved = u.move(env.dst, env.src, n)
        except UffdError as e:
            if e.errno == errno.EBUSY:
                stats.ebusy += 1
            moved = e.out if e.out and e.out > 0 else 0
            if strategy == "move" or e.errno not in (errno.EBUSY, errno.EAGAIN):
                stats.errors[_errname(e)] = stats.errors.get(_errname(e), 0) + 1
                return False
        if moved == n:
            return True
    # copy-dontneed, or the fallback for what MOVE left behind
    if strategy == "move-fallback":
        stats.fallbacks += 1
    try:
        u.copy(env.dst + moved, env.src + moved, n - moved)
        k.madvise(env.src + moved, n - moved, k.MADV_DONTNEED)
    except UffdError as e:
        stats.errors[_errname(e)] = stats.errors.get(_errname(e), 0) + 1
        return False
    return True


def _trial(env: _Env, strategy: str, race: _Race, writer_cpu: int, warm: int,
           stats: StrategyRace) -> None:
    k = env.k
    k_pin = None
    env.uffd.copy(env.src, ctypes.addressof(env.zero), env.length)   # fresh exclusive pages
    if strategy == "move-fallback":
        k_pin = k.Pin(env.src, env.length)
    try:
        ctypes.memset(ctypes.addressof(race), 0, ctypes.sizeof(race))
        race.target, race.src_lo, race.src_hi = env.src, env.src, env.src + env.length
        race.pages, race.page_size = env.pages, k.PAGE_SIZE
        race.writer_cpu, race.wait_ns = writer_cpu, FAULT_WAIT_NS
        err = env.lib.race_start(ctypes.byref(race), START_TIMEOUT_NS)
        if err:
            raise UffdError(err, f"starting the writer thread: {os.strerror(err)}")
        race.go = 1
        _wait(lambda: race.done >= warm, 1.0)
        ok = _mover(env, strategy, stats)
        if ok:
            race.target = env.dst                                   # the flip
            mark = race.done
            _wait(lambda: race.done >= mark + TAIL or race.timed_out, 1.0)
        if env.lib.race_join(ctypes.byref(race), JOIN_TIMEOUT_NS):
            _STUCK.append(race)             # the detached thread may still touch it
            raise UffdError(errno.ETIMEDOUT, "the writer thread did not stop within 5 s")
        if race.cpu_err:
            raise UffdError(int(race.cpu_err), "pinning the writer to its CPU failed")
        final = env.counters(env.dst if ok else env.src)
        stats.trials += 1
        stats.increments += race.done
        stats.writer_faults += race.faults
        stats.timeouts += race.timed_out
        lost = race.done - (final or 0)
        if lost > 0:
            stats.lost_trials += 1
            stats.lost_increments += lost
        stats.src_nonempty += any(env.present(env.src))
    finally:
        for base in (env.dst, env.src):
            k.madvise(base, env.length, k.MADV_DONTNEED)
        if k_pin is not None:
            k_pin.release()


def _pin_unavailable(env: _Env) -> str:
    """'' if an io_uring fixed buffer can pin a page here, else why not."""
    k = env.k
    scratch = k.mmap(k.PAGE_SIZE)
    try:
        k.fill(scratch, k.PAGE_SIZE, 1)
        k.Pin(scratch, k.PAGE_SIZE).release()
        return ""
    except UffdError as e:
        return f"cannot pin the source page to make UFFDIO_MOVE fail with EBUSY: {e}"
    finally:
        k.munmap(scratch, k.PAGE_SIZE)


def race(strategies: list[str] | tuple[str, ...] = KERNEL_STRATEGIES, trials: int = 1000,
         pages: int = 1, seed: int = 0) -> RaceReport:
    """Run ``trials`` races per strategy; a skipped report (with the reason) where impossible."""
    cpus = cpus_available()
    report = RaceReport("ok", "", platform.release(), len(cpus), trials, pages, seed)
    for s in strategies:
        if s not in KERNEL_STRATEGIES:
            raise ValueError(f"strategy {s!r} cannot run on the kernel; choose from "
                             f"{', '.join(KERNEL_STRATEGIES)}")
    ok, why = availability()
    if not ok:
        report.status, report.reason = "skipped", why
        return report
    lib, _ = load_helper()
    assert lib is not None
    report.mover_cpu, report.writer_cpu = cpus[0], cpus[1]
    rng = random.Random(seed)
    saved = os.sched_getaffinity(0)
    env = _Env(lib, pages)
    err = lib.race_install()
    if err:
        env.close()
        report.status, report.reason = "error", f"installing the SIGBUS handler: {os.strerror(err)}"
        return report
    try:
        os.sched_setaffinity(0, {cpus[0]})            # this thread is the mover
        for s in strategies:
            stats = StrategyRace(s, "pinned" if s == "move-fallback" else "exclusive")
            report.results.append(stats)
            if s == "move-fallback":
                stats.skipped = _pin_unavailable(env)
                if stats.skipped:
                    continue
            for _ in range(trials):
                _trial(env, s, _Race(), cpus[1], rng.randrange(0, 256), stats)
    except (UffdError, OSError) as e:
        report.status, report.reason = "error", str(e)
    finally:
        lib.race_uninstall()
        os.sched_setaffinity(0, saved)
        env.close()
    return report


def format_report(rep: RaceReport) -> list[str]:
    head = f"kernel race on Linux {rep.kernel}, {rep.cpus} CPU(s)"
    if rep.status == "skipped":
        return [head, f"skipped: {rep.reason}"]
    lines = [head + f": mover on CPU {rep.mover_cpu}, writer on CPU {rep.writer_cpu}; "
             f"{rep.trials} trial(s) per strategy, {rep.pages} page(s)"]
    if rep.status == "error":
        lines.append(f"error: {rep.reason}")
    hdr = (f"{'strategy':<15} {'src page':<10} {'trials':>7} {'lossy':>7} {'rate':>7} "
           f"{'lost incs':>10} {'writer incs':>12} {'EBUSY':>6} {'src!=empty':>10}")
    lines += [hdr, "-" * len(hdr)]
    for r in rep.results:
        if r.skipped:
            lines.append(f"{r.strategy:<15} skipped: {r.skipped}")
            continue
        lines.append(f"{r.strategy:<15} {r.src_page:<10} {r.trials:>7} {r.lost_trials:>7} "
                     f"{r.loss_rate:>7.1%} {r.lost_increments:>10} {r.increments:>12} "
                     f"{r.ebusy:>6} {r.src_nonempty:>10}")
        if r.errors or r.timeouts:
            lines.append(f"    errors {r.errors}, writer timeouts {r.timeouts}")
    return lines
