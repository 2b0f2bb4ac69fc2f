"""``python -m uffdsim bench kernel``: what moving memory costs on the running kernel.

Methods (each moves or copies ``size`` bytes from a populated ``src`` to a MISSING-registered
``dst``):

* ``move-4k``: UFFDIO_MOVE, one ioctl per 4 KiB page (small pages: MADV_NOHUGEPAGE);
* ``move-2m``: UFFDIO_MOVE, one ioctl per 2 MiB of small pages;
* ``move-thp``: UFFDIO_MOVE of THP-backed memory, one ioctl per 2 MiB (whole-PMD moves; both
  regions MADV_HUGEPAGE and 2 MiB aligned; ``thp`` says which fraction of src really was THP);
* ``copy-dontneed-4k`` / ``copy-dontneed-2m``: UFFDIO_COPY then MADV_DONTNEED on the source,
  per page / per 2 MiB (the emulation of a move);
* ``memcpy``: memcpy into an already populated ``dst`` (pure copy bandwidth, no faults).

Only the kernel-facing loop is timed.  With a C compiler, a tiny helper (compiled at run time
into a temporary directory) runs each loop and reads CLOCK_MONOTONIC around it; without one the
loop runs in Python through ctypes and the numbers include that overhead (the output says so).
Each (method, size) is run several times on fresh mappings; the median is reported as ns per
4 KiB page and GiB/s.
"""
from __future__ import annotations

import ctypes
import datetime as _dt
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from ...errors import UffdError
from . import sys as k
from .caps import capabilities
from .signals import protected

MiB = 1 << 20
GiB = 1 << 30
PAGE = k.PAGE_SIZE
SIZES_MIB = (1, 16, 256)
METHODS = ("move-4k", "move-2m", "move-thp", "copy-dontneed-4k", "copy-dontneed-2m", "memcpy")

C_SOURCE = r"""
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

struct range_op { uint64_t dst, src, len, mode; int64_t out; };

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* UFFDIO_MOVE or UFFDIO_COPY over [0, len) in steps; optionally MADV_DONTNEED each source step.
   Returns 0, or -errno of the first failure; *ns = time spent in the loop. */
int64_t range_loop(int fd, unsigned long request, uint64_t dst, uint64_t src, uint64_t len,
                   uint64_t step, uint64_t mode, int dontneed, int64_t *ns) {
    struct range_op op;
    int64_t t0 = now_ns();
    for (uint64_t off = 0; off < len; off += step) {
        op.dst = dst + off; op.src = src + off; op.len = step; op.mode = mode; op.out = 0;
        if (ioctl(fd, request, &op) != 0) { *ns = now_ns() - t0; return -errno; }
        if (dontneed && madvise((void *)(uintptr_t)(src + off), step, MADV_DONTNEED) != 0) {
            *ns = now_ns() - t0; return -errno;
        }
    }
    *ns = now_ns() - t0;
    return 0;
}

int64_t syscall_loop(int64_t n, int64_t *ns) {
    int64_t t0 = now_ns();
    for (int64_t i = 0; i < n; i++)
        syscall(SYS_getppid);
    *ns = now_ns() - t0;
    return 0;
}

int64_t memcpy_loop(uint64_t dst, uint64_t src, uint64_t len, int64_t *ns) {
    int64_t t0 = now_ns();
    memcpy((void *)(uintptr_t)dst, (void *)(uintptr_t)src, len);
    *ns = now_ns() - t0;
    return 0;
}
"""


class Helper:
    """The timed loops: compiled C when a compiler is present, else ctypes (with Python overhead)."""

    def __init__(self) -> None:
        self.lib: Any = None
        self.how = "ctypes"
        self.note = "no C compiler: the loops run in Python via ctypes, Python overhead included"
        cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
        if cc is None:
            return
        with protected():         # no signal between creating the folder and removing it
            self._compile(cc)

    def _compile(self, cc: str) -> None:
        tmp = tempfile.mkdtemp(prefix=f"uffdsim-bench-{os.getpid()}-")
        try:
            src, lib = os.path.join(tmp, "loops.c"), os.path.join(tmp, "loops.so")
            with open(src, "w") as f:
                f.write(C_SOURCE)
            proc = subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", lib, src],
                                  capture_output=True, text=True, timeout=60)
            if proc.returncode != 0:
                self.note = f"C helper did not compile ({proc.stderr.strip()[:200]}): ctypes loops"
                return
            self.lib = ctypes.CDLL(lib)
        except (OSError, subprocess.SubprocessError) as err:
            self.note = f"C helper unavailable ({err}): ctypes loops, Python overhead included"
            return
        finally:
            shutil.rmtree(tmp, ignore_errors=True)   # the loaded library stays mapped
        i64, u64 = ctypes.c_int64, ctypes.c_uint64
        self.lib.range_loop.restype = i64
        self.lib.range_loop.argtypes = [ctypes.c_int, ctypes.c_ulong, u64, u64, u64, u64, u64,
                                        ctypes.c_int, ctypes.POINTER(i64)]
        self.lib.memcpy_loop.restype = i64
        self.lib.memcpy_loop.argtypes = [u64, u64, u64, ctypes.POINTER(i64)]
        self.lib.syscall_loop.restype = i64
        self.lib.syscall_loop.argtypes = [i64, ctypes.POINTER(i64)]
        self.how = f"C helper compiled with {cc}"
        self.note = "timed inside a C loop (CLOCK_MONOTONIC), no Python overhead"

    def range_loop(self, fd: int, request: int, dst: int, src: int, length: int, step: int,
                   mode: int = 0, dontneed: bool = False) -> int:
        """ns spent; raises UffdError on failure."""
        if self.lib is not None:
            ns = ctypes.c_int64()
            ret = self.lib.range_loop(fd, request, dst, src, length, step, mode, int(dontneed),
                                      ctypes.byref(ns))
            if ret:
                raise UffdError(-ret, f"benchmark loop: {os.strerror(-ret)}")
            return ns.value
        bufs = [bytearray(k._MOVE.pack(dst + off, src + off, step, mode, 0))
                for off in range(0, length, step)]
        t0 = time.perf_counter_ns()
        for off, buf in zip(range(0, length, step), bufs):
            k.ioctl(fd, request, buf)
            if dontneed:
                k.madvise(src + off, step, k.MADV_DONTNEED)
        return time.perf_counter_ns() - t0

    def null_syscall(self, n: int = 200_000) -> float:
        """ns per getppid(): the fixed cost of entering the kernel here."""
        if self.lib is not None:
            ns = ctypes.c_int64()
            self.lib.syscall_loop(n, ctypes.byref(ns))
            return ns.value / n
        t0 = time.perf_counter_ns()
        for _ in range(n):
            os.getppid()
        return (time.perf_counter_ns() - t0) / n

    def memcpy(self, dst: int, src: int, length: int) -> int:
        if self.lib is not None:
            ns = ctypes.c_int64()
            self.lib.memcpy_loop(dst, src, length, ctypes.byref(ns))
            return ns.value
        t0 = time.perf_counter_ns()
        ctypes.memmove(dst, src, length)
        return time.perf_counter_ns() - t0


@dataclass
class Result:
    method: str
    size_mib: int
    ns_per_page: float
    gib_per_s: float
    runs_ns: list[int] = field(default_factory=list)
    thp: float | None = None          #: fraction of src mapped by huge PMDs (move-thp only)


def _regions(size: int, huge: bool) -> tuple[int, int]:
    advice = k.MADV_HUGEPAGE if huge else k.MADV_NOHUGEPAGE
    src = k.mmap_aligned(size, k.PMD_SIZE)
    dst = k.mmap_aligned(size, k.PMD_SIZE)
    for r in (src, dst):
        try:
            k.madvise(r, size, advice)
        except UffdError:
            pass
    return src, dst


def _thp_fraction(addr: int, size: int) -> float:
    try:
        huge = sum(e - s for s, e, c in k.pagemap_scan(addr, size, k.PAGE_IS_HUGE) if c & k.PAGE_IS_HUGE)
        return huge / size
    except UffdError:
        return max(0, k.smaps_field(addr, "AnonHugePages")) * 1024 / size


def one_run(helper: Helper, method: str, size: int) -> tuple[int, float | None]:
    """Set up fresh regions, time one method once; (ns, THP fraction of src for move-thp)."""
    huge = method == "move-thp"
    src, dst = _regions(size, huge)
    thp = None
    try:
        k.fill(src, size, 0x5A)
        if method == "memcpy":
            k.fill(dst, size, 0)
            return helper.memcpy(dst, src, size), None
        if huge:
            thp = _thp_fraction(src, size)
        with k.Userfaultfd.open() as u:
            u.api(k.UFFD_FEATURE_MOVE)
            u.register(dst, size)
            step = PAGE if method.endswith("4k") else k.PMD_SIZE
            if method.startswith("move"):
                ns = helper.range_loop(u.fd, k.UFFDIO_MOVE, dst, src, size, min(step, size))
            else:
                ns = helper.range_loop(u.fd, k.UFFDIO_COPY, dst, src, size, min(step, size),
                                       dontneed=True)
        return ns, thp
    finally:
        k.munmap(src, size)
        k.munmap(dst, size)


def run_bench(sizes_mib: tuple[int, ...] = SIZES_MIB, runs: int = 5,
              methods: tuple[str, ...] = METHODS,
              progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Every method over every size, ``runs`` times each (3 for sizes of 256 MiB and more), with
    the calling thread pinned to one CPU; the document records the load average afterwards."""
    caps = capabilities()
    why = caps.missing([])
    doc: dict[str, Any] = {"kernel": caps.kernel, "machine": caps.machine, "cpus": caps.cpus,
                           "date": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
                           "thp": caps.thp.facts.get("enabled")}
    if why:
        doc["skipped"] = why
        return doc
    helper = Helper()
    cpus = os.sched_getaffinity(0)
    cpu = min(cpus)
    os.sched_setaffinity(0, {cpu})         # no migrations in the middle of a timed loop
    try:
        _measure(doc, helper, sizes_mib, runs, methods, progress)
    finally:
        os.sched_setaffinity(0, cpus)
    doc["pinned_cpu"] = cpu
    doc["loadavg_1min"] = round(os.getloadavg()[0], 2)   # other work on the machine skews the numbers
    return doc


def _measure(doc: dict[str, Any], helper: Helper, sizes_mib: tuple[int, ...], runs: int,
             methods: tuple[str, ...], progress: Callable[[str], None] | None) -> None:
    doc.update(helper=helper.how, note=helper.note, page_size=PAGE,
               null_syscall_ns=round(statistics.median(helper.null_syscall() for _ in range(3)), 1),
               results=[])
    for size_mib in sizes_mib:
        size = size_mib * MiB
        n = runs if size_mib < 256 else min(runs, 3)
        for method in methods:
            if progress:
                progress(f"{method} {size_mib} MiB x{n}")
            samples = [one_run(helper, method, size) for _ in range(n)]
            ns = statistics.median(s[0] for s in samples)
            thps = [s[1] for s in samples if s[1] is not None]
            doc["results"].append(asdict(Result(
                method, size_mib, round(ns / (size // PAGE), 1), round(size / GiB / (ns / 1e9), 2),
                [s[0] for s in samples], round(min(thps), 3) if thps else None)))


def format_table(doc: dict[str, Any]) -> str:
    if "skipped" in doc:
        return f"bench kernel: skipped: {doc['skipped']}"
    where = f"kernel {doc['kernel']} ({doc['machine']}, {doc['cpus']} CPUs, THP {doc['thp']}), {doc['date']}"
    if "pinned_cpu" in doc:
        where += f", pinned to CPU {doc['pinned_cpu']}, load average {doc.get('loadavg_1min')}"
    lines = [where,
             f"{doc['helper']}: {doc['note']}",
             f"a null system call (getppid) costs {doc.get('null_syscall_ns', '?')} ns here",
             f"{'method':<18} {'size':>8} {'ns/page':>10} {'GiB/s':>8}  note"]
    for r in doc["results"]:
        note = ""
        if r["thp"] is not None:
            note = f"src {r['thp'] * 100:.0f}% THP" + (" (smaller than a PMD)" if r["size_mib"] * MiB < k.PMD_SIZE else "")
        lines.append(f"{r['method']:<18} {r['size_mib']:>4} MiB {r['ns_per_page']:>10.1f} "
                     f"{r['gib_per_s']:>8.2f}  {note}")
    lines.append("median of the runs; ns per 4 KiB page moved or copied")
    return "\n".join(lines)
