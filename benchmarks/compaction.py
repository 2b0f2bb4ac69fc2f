#!/usr/bin/env python3
"""What MOVE costs a running program: a heap-compaction emulation on the running kernel.

``benchmarks/compaction.c`` (compiled here with ``cc -O2 -pthread`` into a temporary folder that
is removed afterwards) does the work; this script runs it, repeats each configuration, and prints
one JSON object:

* ``completion_s``: method (``move``, ``copy`` = UFFDIO_COPY + MADV_DONTNEED) -> batch
  (``4k``, ``64k``, ``2m``) -> mutator threads (0, 1) -> the compacting thread's completion
  time in seconds (median of ``--runs``), with ``spread`` (min, max) beside it;
* ``reduction``: mutator count -> batch -> ``1 - move/copy`` of those medians (the 6.8 commit
  reports "over 40% reduction in the compacting thread's completion time" on a Pixel 6);
* ``move_ns_per_page``, ``copy_ns_per_page``, ``dontneed_ns_per_page``: one call per 4 KiB page,
  each timed on its own (median and spread);
* ``fault_latency_us``: a mutator's access to a to-space page the compactor had not reached
  (it faults, a handler thread resolves it the same way), p50/p99 per method, one mutator;
* ``munmap_blocked_s``: the worst wait of a ``munmap`` of an unrelated page of the same VMA
  while one UFFDIO_MOVE of ``--munmap-mib`` (1 GiB by default) runs (6.9+ holds the VMA's read
  lock for the whole call; ``munmap`` needs the write lock);
* ``c_harness_ratio``: the per-page MOVE and COPY figures as this Python script measures them
  (timing one ctypes call of the C loop) over those of the C program run on its own (median
  of the runs; 1.0 means the Python harness adds nothing).  ``python_loop_ratio`` is the same for
  a loop written in Python (one ctypes ioctl per page), for contrast.

The machine (CPUs, kernel) is in the output: these numbers hold for it only.  Needs root or
``vm.unprivileged_userfaultfd``-free user-mode userfaultfd (it uses UFFD_USER_MODE_ONLY) and
Linux 6.8+.  Exit status 2 with a one-line reason when the kernel or a C compiler is missing.

Usage: python benchmarks/compaction.py [--runs N] [--heap-mib M] [--munmap-mib M] [--quick] [--record FILE]
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "compaction.c"
BATCHES = {"4k": 1, "64k": 16, "2m": 512}
METHODS = ("move", "copy")
MUTATORS = (0, 1)


def build(tmp: Path) -> tuple[Path, Path]:
    """The C program and the same code as a shared library (for the harness ratio)."""
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        raise SystemExit("error: compaction: no C compiler (cc) found")
    exe, lib = tmp / "compaction", tmp / "libcompaction.so"
    for cmd in ([cc, "-O2", "-pthread", "-o", str(exe), str(SOURCE)],
                [cc, "-O2", "-pthread", "-shared", "-fPIC", "-Wno-unused-function",
                 "-DCOMPACTION_LIBRARY", "-o", str(lib), str(SOURCE)]):
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"error: compaction: {cc} failed: {done.stderr.strip().splitlines()[-1:]}")
    return exe, lib


def run_c(exe: Path, *args: Any) -> dict[str, Any]:
    """One run of the C program: its JSON line."""
    done = subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, timeout=600)
    try:
        doc = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        raise SystemExit(f"error: compaction {' '.join(map(str, args))}: no result ({done.stderr.strip()[:200]})")
    if "error" in doc:
        raise SystemExit(f"error: compaction {' '.join(map(str, args))}: {doc['error']}")
    return doc


def stat(values: list[float], digits: int = 6) -> dict[str, Any]:
    """Median and spread (min, max) of repeated measurements."""
    return {"median": round(statistics.median(values), digits),
            "spread": [round(min(values), digits), round(max(values), digits)], "runs": len(values)}


def python_loop_ns(method: str, pages: int) -> float:
    """ns per page of a per-page loop written in Python (one ctypes ioctl per page)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    size = pages * 4096
    src = libc.mmap(None, size, 3, 0x22, -1, 0)
    dst = libc.mmap(None, size, 3, 0x22, -1, 0)
    libc.madvise(ctypes.c_void_p(src), ctypes.c_size_t(size), 15)          # MADV_NOHUGEPAGE
    libc.madvise(ctypes.c_void_p(dst), ctypes.c_size_t(size), 15)
    ctypes.memset(src, 1, size)
    fd = libc.syscall(323, 0o2000000 | 0o4000 | 1)                         # userfaultfd(CLOEXEC|NONBLOCK|USER_MODE_ONLY)
    if fd < 0:
        raise SystemExit(f"error: compaction: userfaultfd: {os.strerror(ctypes.get_errno())}")
    api = (ctypes.c_uint64 * 3)(0xAA, 1 << 16, 0)
    libc.ioctl(fd, 0xC018AA3F, api)                                        # UFFDIO_API, FEATURE_MOVE
    reg = (ctypes.c_uint64 * 4)(dst, size, 1, 0)
    libc.ioctl(fd, 0xC020AA00, reg)                                        # UFFDIO_REGISTER, MISSING
    move = (ctypes.c_uint64 * 5)()
    copy = (ctypes.c_uint64 * 5)()
    ioctl = libc.ioctl
    t0 = time.perf_counter_ns()
    if method == "move":
        for i in range(pages):
            move[0], move[1], move[2], move[3] = dst + i * 4096, src + i * 4096, 4096, 0
            ioctl(fd, 0xC028AA05, move)                                    # UFFDIO_MOVE
    else:
        for i in range(pages):
            copy[0], copy[1], copy[2], copy[3] = dst + i * 4096, src + i * 4096, 4096, 0
            ioctl(fd, 0xC028AA03, copy)                                    # UFFDIO_COPY
    t1 = time.perf_counter_ns()
    os.close(fd)
    libc.munmap(ctypes.c_void_p(src), ctypes.c_size_t(size))
    libc.munmap(ctypes.c_void_p(dst), ctypes.c_size_t(size))
    return (t1 - t0) / pages


def harness_ns(lib: ctypes.CDLL, method: str, pages: int) -> float:
    """ns per page as this script times it: one ctypes call of the C loop, timed from Python."""
    t0 = time.perf_counter_ns()
    lib.perpage_ns(method.encode(), ctypes.c_size_t(pages))
    return (time.perf_counter_ns() - t0) / pages


def measure(runs: int, heap_mib: int, munmap_mib: int, pages: int,
            progress: Callable[[str], None]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="uffdsim-compaction-") as tmp:
        exe, lib_path = build(Path(tmp))
        lib = ctypes.CDLL(str(lib_path))
        lib.perpage_ns.restype = ctypes.c_double
        lib.perpage_ns.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
        per: dict[str, list[float]] = {m: [] for m in ("move", "copy", "dontneed")}
        harness: dict[str, list[float]] = {"move": [], "copy": []}
        loop: dict[str, list[float]] = {"move": [], "copy": []}
        completion: dict[str, dict[str, dict[int, list[float]]]] = {
            m: {b: {n: [] for n in MUTATORS} for b in BATCHES} for m in METHODS}
        latency: dict[str, list[float]] = {"p50": [], "p99": []}
        lat_by: dict[str, dict[str, list[float]]] = {m: {"p50": [], "p99": []} for m in METHODS}
        faults: dict[str, list[int]] = {m: [] for m in METHODS}
        blocked: list[float] = []
        move_s: list[float] = []
        for r in range(runs):
            progress(f"run {r + 1}/{runs}: per-page calls")
            for m in per:                                  # interleaved, so drift hits all alike
                per[m].append(run_c(exe, "perpage", m, pages)["ns_per_page"])
            for m in harness:
                harness[m].append(harness_ns(lib, m, pages))
                loop[m].append(python_loop_ns(m, pages))
            progress(f"run {r + 1}/{runs}: compaction of {heap_mib} MiB")
            for b, nb in BATCHES.items():
                for n in MUTATORS:
                    for m in METHODS:
                        doc = run_c(exe, "compact", m, nb, heap_mib, n)
                        completion[m][b][n].append(doc["seconds"])
                        if n == 1 and b == "4k":
                            lat_by[m]["p50"].append(doc["fault_p50_us"])
                            lat_by[m]["p99"].append(doc["fault_p99_us"])
                            faults[m].append(doc["faults"])
            progress(f"run {r + 1}/{runs}: munmap during a {munmap_mib} MiB move")
            doc = run_c(exe, "munmap", munmap_mib)
            blocked.append(doc["munmap_worst_s"])
            move_s.append(doc["move_seconds"])
        del latency
    comp = {m: {b: {str(n): stat(v) for n, v in by_n.items()} for b, by_n in by_b.items()}
            for m, by_b in completion.items()}
    reduction = {str(n): {b: round(1 - comp["move"][b][str(n)]["median"] / comp["copy"][b][str(n)]["median"], 3)
                          for b in BATCHES} for n in MUTATORS}
    ratio = {m: round(statistics.median(harness[m]) / statistics.median(per[m]), 3) for m in harness}
    loop_ratio = {m: round(statistics.median(loop[m]) / statistics.median(per[m]), 3) for m in loop}
    return {
        "benchmark": "compaction",
        "kernel": platform.release(), "machine": platform.machine(), "cpus": os.cpu_count(),
        "note": (f"{os.cpu_count()} vCPUs: with 1 mutator, the compactor, the mutator and the fault "
                 "handler share them; numbers hold for this machine only"),
        "heap_mib": heap_mib, "runs": runs, "perpage_pages": pages,
        "batches_pages": BATCHES,
        "completion_s": comp,
        "reduction": reduction,
        "move_ns_per_page": stat(per["move"], 1),
        "copy_ns_per_page": stat(per["copy"], 1),
        "dontneed_ns_per_page": stat(per["dontneed"], 1),
        "fault_latency_us": {m: {"p50": stat(v["p50"], 3), "p99": stat(v["p99"], 3),
                                 "faults_per_run": stat([float(x) for x in faults[m]], 1)}
                             for m, v in lat_by.items()},
        "munmap_blocked_s": stat(blocked), "munmap_mib": munmap_mib, "long_move_s": stat(move_s),
        "c_harness_ratio": ratio,
        "python_loop_ratio": loop_ratio,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5, help="repeats of every configuration (1..50, default 5)")
    ap.add_argument("--heap-mib", type=int, default=64, help="heap size in MiB (1..1024, default 64)")
    ap.add_argument("--munmap-mib", type=int, default=1024, help="size of the long MOVE (1..4096 MiB, default 1024)")
    ap.add_argument("--pages", type=int, default=4096, help="pages of each per-page timing (16..65536, default 4096)")
    ap.add_argument("--quick", action="store_true", help="--runs 1 --heap-mib 8 --munmap-mib 64 --pages 256 (a smoke test)")
    ap.add_argument("--record", metavar="FILE", help="also write the JSON to FILE (its folder must exist)")
    try:
        args = ap.parse_args(argv)
    except SystemExit as e:
        return 2 if e.code else 0
    if args.quick:
        args.runs, args.heap_mib, args.munmap_mib, args.pages = 1, 8, 64, 256
    for name, lo, hi in (("runs", 1, 50), ("heap_mib", 1, 1024), ("munmap_mib", 1, 4096), ("pages", 16, 65536)):
        if not lo <= getattr(args, name) <= hi:
            print(f"error: --{name.replace('_', '-')} must be {lo}..{hi}", file=sys.stderr)
            return 2
    if args.record and not Path(args.record).resolve().parent.is_dir():
        print(f"error: --record {args.record}: no such folder", file=sys.stderr)
        return 2
    if not SOURCE.is_file():
        print(f"error: {SOURCE} is missing", file=sys.stderr)
        return 2
    try:
        doc = measure(args.runs, args.heap_mib, args.munmap_mib, args.pages,
                      lambda msg: print(f"compaction: {msg}", file=sys.stderr, flush=True))
    except SystemExit as e:
        print(e.code, file=sys.stderr)
        return 2
    text = json.dumps(doc, indent=1)
    print(text)
    if args.record:
        Path(args.record).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
