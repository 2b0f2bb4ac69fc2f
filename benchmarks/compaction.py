#!/usr/bin/env python3
"""What MOVE costs a running program: a heap-compaction emulation on the running kernel.

``benchmarks/compaction.c`` (compiled here with ``cc -O2 -pthread`` into a temporary folder that
is removed afterwards) does the work; this script runs it, repeats each configuration, and prints
one JSON object:

* ``completion_s``: method (``move``, ``copy`` = UFFDIO_COPY + MADV_DONTNEED) -> batch
  (``4k``, ``64k``, ``2m``) -> mutator threads (0, 1) -> the compacting thread's completion
  time in seconds (median of ``--runs``), with ``spread`` (min, max) beside it;
* ``reduction``: mutator count -> batch -> ``1 - move/copy`` of those medians (the 6.8 commit
  reports "over 40% reduction (on a Google pixel 6 device) in the compacting thread's
  completion time");
* ``move_ns_per_page``, ``copy_ns_per_page``, ``dontneed_ns_per_page``: one call per 4 KiB page,
  each timed on its own (in each run the median of ``REPS`` loops, each with its own set-up;
  then median and spread over the runs);
* ``fault_latency_us``: a mutator's access to a to-space page the compactor had not reached
  (it faults, a handler thread resolves it the same way), p50/p99 per method, one mutator;
* ``sigbus``: ART's variant (``UFFD_FEATURE_SIGBUS``, no handler thread: a mutator that faults
  moves or copies its page itself in its SIGBUS handler), 1 mutator, 4 KiB per call: completion
  times, ``reduction`` and fault latency;
* ``loadavg_before``/``loadavg_after``, ``date``, ``node``: how busy the machine was, and when;
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

Usage: python benchmarks/compaction.py [--runs N] [--heap-mib M] [--munmap-mib M] [--pages N] [--quick] [--record FILE]

Every run of the C program is bounded (its own 120 s alarm, a 150 s timeout here), no new repeat
starts after 20 minutes, and SIGINT/SIGTERM kill the running child and remove the temporary folder.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, NoReturn

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "compaction.c"
BATCHES = {"4k": 1, "64k": 16, "2m": 512}
METHODS = ("move", "copy")
MUTATORS = (0, 1)
RESOLVERS = ("thread", "sigbus")
RUN_TIMEOUT_S = 150          # one run of the C program (its own watchdog fires at 120 s)
REPS = 9                     # loops per per-page figure in one run (their median)
BUDGET_S = 1200              # no new repeat starts after 20 minutes


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
    try:
        done = subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise SystemExit(f"error: compaction {' '.join(map(str, args))}: no result within {RUN_TIMEOUT_S} s") from None
    try:
        doc = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        raise SystemExit(f"error: compaction {' '.join(map(str, args))}: no result ({done.stderr.strip()[:200]})")
    if "error" in doc:
        raise SystemExit(f"error: compaction {' '.join(map(str, args))}: {doc['error']}")
    return doc


def stat(values: list[float], digits: int = 6) -> dict[str, Any] | None:
    """Median and spread (min, max) of repeated measurements (None when there are none)."""
    if not values:
        return None
    return {"median": round(statistics.median(values), digits),
            "spread": [round(min(values), digits), round(max(values), digits)], "runs": len(values)}


def open_lib(path: Path) -> ctypes.CDLL:
    """The C program's per-page timing as a shared library: set-up, loop, tear-down."""
    lib = ctypes.CDLL(str(path))
    lib.perpage_setup.restype = ctypes.c_int
    lib.perpage_setup.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
    lib.perpage_loop.restype = ctypes.c_int
    lib.perpage_loop.argtypes = []
    lib.perpage_teardown.restype = None
    lib.perpage_error.restype = ctypes.c_char_p
    for name in ("perpage_from", "perpage_to"):
        getattr(lib, name).restype = ctypes.c_ulong
    lib.perpage_uffd.restype = ctypes.c_int
    return lib


def _setup(lib: ctypes.CDLL, method: str, pages: int) -> None:
    if lib.perpage_setup(method.encode(), ctypes.c_size_t(pages)):
        lib.perpage_teardown()
        raise SystemExit(f"error: compaction: perpage {method}: {lib.perpage_error().decode()}")


def harness_ns(lib: ctypes.CDLL, method: str, pages: int, reps: int = REPS) -> float:
    """The median over ``reps`` loops of :func:`harness_once` (as the C program's ``perpage`` mode)."""
    return statistics.median(harness_once(lib, method, pages) for _ in range(reps))


def harness_once(lib: ctypes.CDLL, method: str, pages: int) -> float:
    """ns per page as this script times it: the same loop as the C program's ``perpage`` mode,
    one ctypes call of it timed from Python (set-up and tear-down are outside the timing)."""
    _setup(lib, method, pages)
    try:
        t0 = time.perf_counter_ns()
        failed = lib.perpage_loop()
        t1 = time.perf_counter_ns()
    finally:
        lib.perpage_teardown()
    if failed:
        raise SystemExit(f"error: compaction: perpage {method}: loop failed")
    return (t1 - t0) / pages


UFFDIO_MOVE, UFFDIO_COPY = 0xC028AA05, 0xC028AA03


def python_loop_ns(lib: ctypes.CDLL, method: str, pages: int, reps: int = REPS) -> float:
    """The median over ``reps`` loops of :func:`python_loop_once`."""
    return statistics.median(python_loop_once(lib, method, pages) for _ in range(reps))


def python_loop_once(lib: ctypes.CDLL, method: str, pages: int) -> float:
    """ns per page of the same per-page loop written in Python (one ctypes ioctl per page)."""
    libc = ctypes.CDLL(None, use_errno=True)
    ioctl = libc.ioctl
    _setup(lib, method, pages)
    try:
        fd, src, dst = lib.perpage_uffd(), lib.perpage_from(), lib.perpage_to()
        arg = (ctypes.c_uint64 * 5)()
        request = UFFDIO_MOVE if method == "move" else UFFDIO_COPY
        bad = 0
        t0 = time.perf_counter_ns()
        for i in range(pages):
            arg[0], arg[1], arg[2], arg[3] = dst + i * 4096, src + i * 4096, 4096, 0
            bad |= ioctl(fd, request, arg)
        t1 = time.perf_counter_ns()
    finally:
        lib.perpage_teardown()
    if bad:
        raise SystemExit(f"error: compaction: python loop {method}: {os.strerror(ctypes.get_errno())}")
    return (t1 - t0) / pages


def record_faults(into: dict[str, list[float]], doc: dict[str, Any]) -> None:
    """A run's fault count, and its latency percentiles when some access faulted."""
    into["faults"].append(float(doc["faults"]))
    if doc["fault_samples"]:
        into["p50"].append(doc["fault_p50_us"])
        into["p99"].append(doc["fault_p99_us"])


def measure(runs: int, heap_mib: int, munmap_mib: int, pages: int,
            progress: Callable[[str], None], sigbus: bool = True) -> dict[str, Any]:
    load_before = os.getloadavg()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="uffdsim-compaction-") as tmp:
        exe, lib_path = build(Path(tmp))
        lib = open_lib(lib_path)
        per: dict[str, list[float]] = {m: [] for m in ("move", "copy", "dontneed")}
        harness: dict[str, list[float]] = {"move": [], "copy": []}
        loop: dict[str, list[float]] = {"move": [], "copy": []}
        pair_ratio: dict[str, list[float]] = {"move": [], "copy": []}
        completion: dict[str, dict[str, dict[int, list[float]]]] = {
            m: {b: {n: [] for n in MUTATORS} for b in BATCHES} for m in METHODS}
        resolvers = RESOLVERS if sigbus else RESOLVERS[:1]
        lat_by: dict[str, dict[str, dict[str, list[float]]]] = {
            r: {m: {"p50": [], "p99": [], "faults": []} for m in METHODS} for r in resolvers}
        sig_completion: dict[str, list[float]] = {m: [] for m in METHODS}
        blocked: list[float] = []
        move_s: list[float] = []
        for r in range(runs):
            progress(f"run {r + 1}/{runs}: per-page calls")
            for m in per:                                  # interleaved, so drift hits all alike
                c_ns = run_c(exe, "perpage", m, pages, REPS)["ns_per_page"]
                per[m].append(c_ns)
                if m in harness:
                    h_ns = harness_ns(lib, m, pages)
                    harness[m].append(h_ns)
                    pair_ratio[m].append(h_ns / c_ns)
                    loop[m].append(python_loop_ns(lib, m, pages))
            progress(f"run {r + 1}/{runs}: compaction of {heap_mib} MiB")
            for b, nb in BATCHES.items():
                for n in MUTATORS:
                    for m in METHODS:
                        doc = run_c(exe, "compact", m, nb, heap_mib, n, "thread")
                        completion[m][b][n].append(doc["seconds"])
                        if n == 1 and b == "4k":
                            record_faults(lat_by["thread"][m], doc)
            if sigbus:
                for m in METHODS:
                    doc = run_c(exe, "compact", m, 1, heap_mib, 1, "sigbus")
                    sig_completion[m].append(doc["seconds"])
                    record_faults(lat_by["sigbus"][m], doc)
            progress(f"run {r + 1}/{runs}: munmap during a {munmap_mib} MiB move")
            doc = run_c(exe, "munmap", munmap_mib)
            blocked.append(doc["munmap_worst_s"])
            move_s.append(doc["move_seconds"])
            if time.monotonic() - started > BUDGET_S:
                progress(f"stopping after {r + 1} runs: over the {BUDGET_S} s budget")
                runs = r + 1
                break
    comp = {m: {b: {str(n): stat(v) for n, v in by_n.items()} for b, by_n in by_b.items()}
            for m, by_b in completion.items()}
    reduction = {str(n): {b: round(1 - comp["move"][b][str(n)]["median"] / comp["copy"][b][str(n)]["median"], 3)
                          for b in BATCHES} for n in MUTATORS}
    ratio = {m: round(statistics.median(harness[m]) / statistics.median(per[m]), 3) for m in harness}
    loop_ratio = {m: round(statistics.median(loop[m]) / statistics.median(per[m]), 3) for m in loop}
    doc: dict[str, Any] = {
        "benchmark": "compaction",
        "kernel": platform.release(), "machine": platform.machine(), "cpus": os.cpu_count(),
        "node": platform.node(), "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "note": (f"{os.cpu_count()} vCPUs, shared with other work (see loadavg): with 1 mutator, the "
                 "compactor, the mutator and the fault handler share them; numbers hold for this machine only"),
        "heap_mib": heap_mib, "runs": runs, "perpage_pages": pages, "perpage_reps": REPS,
        "batches_pages": BATCHES,
        "completion_s": comp,
        "reduction": reduction,
        "move_ns_per_page": stat(per["move"], 1),
        "copy_ns_per_page": stat(per["copy"], 1),
        "dontneed_ns_per_page": stat(per["dontneed"], 1),
        "fault_latency_us": {m: {"p50": stat(v["p50"], 3), "p99": stat(v["p99"], 3),
                                 "faults_per_run": stat(v["faults"], 1)}
                             for m, v in lat_by["thread"].items()},
        "munmap_blocked_s": stat(blocked), "munmap_mib": munmap_mib, "long_move_s": stat(move_s),
        "c_harness_ratio": ratio,
        "c_harness_ratio_spread": {m: stat(v, 3)["spread"] for m, v in pair_ratio.items()},
        "python_loop_ratio": loop_ratio,
    }
    if sigbus:
        doc["sigbus"] = {
            "note": ("ART's way: UFFD_FEATURE_SIGBUS, no handler thread; a mutator that touches a to-space "
                     "page not moved yet moves it itself in its SIGBUS handler (1 mutator, 4 KiB batches)"),
            "completion_s": {m: stat(v) for m, v in sig_completion.items()},
            "reduction": round(1 - statistics.median(sig_completion["move"]) / statistics.median(sig_completion["copy"]), 3),
            "fault_latency_us": {m: {"p50": stat(v["p50"], 3), "p99": stat(v["p99"], 3),
                                     "faults_per_run": stat(v["faults"], 1)}
                                 for m, v in lat_by["sigbus"].items()},
        }
    return doc


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad option is one ``error:`` line (no usage block)."""

    def error(self, message: str) -> NoReturn:
        print(f"error: compaction: {message}", file=sys.stderr)
        raise SystemExit(2)


def _terminate(signum: int, frame: Any) -> None:
    """SIGTERM (and SIGHUP) unwind like Ctrl-C: the running child is killed, the temporary folder removed."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    ap = _Parser(description=__doc__.splitlines()[0])
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
            print(f"error: compaction: --{name.replace('_', '-')} must be {lo}..{hi}", file=sys.stderr)
            return 2
    if args.record and not Path(args.record).resolve().parent.is_dir():
        print(f"error: compaction: --record {args.record}: no such folder", file=sys.stderr)
        return 2
    if not SOURCE.is_file():
        print(f"error: compaction: {SOURCE} is missing", file=sys.stderr)
        return 2
    old = {s: signal.signal(s, _terminate) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        doc = measure(args.runs, args.heap_mib, args.munmap_mib, args.pages,
                      lambda msg: print(f"compaction: {msg}", file=sys.stderr, flush=True))
    except SystemExit as e:
        print(e.code, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: compaction: interrupted (nothing recorded)", file=sys.stderr)
        return 130
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    text = json.dumps(doc, indent=1)
    print(text)
    if args.record:
        Path(args.record).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
