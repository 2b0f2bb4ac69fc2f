"""Interrupt kernel runs at many points and compare the machine before and after (issue 9).

Each run is ``python -m uffdsim run FILES --backend kernel`` in a subprocess, sent SIGINT,
SIGTERM or SIGHUP after a delay (sometimes a second signal shortly after the first, so that it
lands while the first one's undoing is under way).  :func:`machine_state` is taken under the
``swap``, ``khugepaged`` and ``ksm`` locks (:mod:`.guard`), in the order the kernel backend takes
them, so a concurrent run on the same machine is never caught half-way; temporary folders count
only when their name carries the pid of one of our runs.  Used by tests/test_interrupts.py and
benchmarks/interrupts.py.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from typing import Any, Callable, Sequence

from . import guard
from .caps import active_swaps
from .leftovers import temp_folders

KSM = "/sys/kernel/mm/ksm"
THP = "/sys/kernel/mm/transparent_hugepage"
KNOB_FILES = ([f"{KSM}/{n}" for n in ("run", "pages_to_scan", "sleep_millisecs", "smart_scan",
                                      "merge_across_nodes", "use_zero_pages", "max_page_sharing",
                                      "advisor_mode")]
              + [f"{THP}/khugepaged/{n}" for n in ("max_ptes_none", "max_ptes_swap", "max_ptes_shared",
                                                   "pages_to_scan", "scan_sleep_millisecs", "defrag")]
              + [f"{THP}/{n}" for n in ("enabled", "defrag", "use_zero_page", "shmem_enabled")])


def zram_devices() -> list[str]:
    try:
        return sorted(d for d in os.listdir("/sys/block") if d.startswith("zram"))
    except OSError:
        return []


def journals() -> list[str]:
    return sorted(n for n in os.listdir(guard.lock_dir()) if "journal" in n)


def machine_state() -> dict[str, Any]:
    """Swap areas, zram devices, KSM/khugepaged/THP settings, journals and uffdsim temp folders,
    read while no other uffdsim run is changing them."""
    with ExitStack() as stack:
        for name in ("swap", "khugepaged", "ksm"):
            stack.enter_context(guard.machine_lock(name))
        return {"swaps": active_swaps(), "zram": zram_devices(),
                "knobs": {p: guard.read_knob(p) for p in KNOB_FILES if os.path.exists(p)},
                "journals": journals(), "temp": temp_folders()}


def differences(before: dict[str, Any], after: dict[str, Any], pids: set[int]) -> list[str]:
    """What ``after`` has that ``before`` had not (temporary folders: only those of ``pids``)."""
    out = []
    for key in ("swaps", "zram", "journals"):
        out += [f"{key}: {x} left" for x in after[key] if x not in before[key]]
    for path, value in after["knobs"].items():
        if before["knobs"].get(path) != value:
            out.append(f"{path}: {before['knobs'].get(path)} -> {value}")
    for path in after["temp"]:
        if path not in before["temp"] and any(f"-{pid}-" in os.path.basename(path) for pid in pids):
            out.append(f"folder {path} left")
    return out


def interrupted_run(files: Sequence[str], delay: float, signals: Sequence[int], gap: float = 0.05,
                    timeout: float = 120.0) -> tuple[int, int | None, bool, bool]:
    """Start a kernel run of ``files``, send ``signals`` (``gap`` apart) after ``delay`` s, wait.

    Returns (pid, exit status, whether it was still running when the first signal went, whether
    it printed a traceback: a SIGINT while the interpreter is still importing gives one)."""
    proc = subprocess.Popen([sys.executable, "-m", "uffdsim", "run", *files, "--backend", "kernel"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        time.sleep(delay)
        running = proc.poll() is None
        for i, sig in enumerate(signals):
            if i:
                time.sleep(gap)
            if proc.poll() is None:
                proc.send_signal(sig)
        _, err = proc.communicate(timeout=timeout)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return proc.pid, proc.returncode, running, b"Traceback" in err


SIGNAL_PLAN = ((signal.SIGINT,), (signal.SIGTERM,), (signal.SIGHUP,), (signal.SIGTERM,),
               (signal.SIGINT, signal.SIGTERM), (signal.SIGINT,), (signal.SIGTERM, signal.SIGTERM))


def campaign(groups: Sequence[Sequence[str]], runs: int, delays: Sequence[float],
             progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """``runs`` interrupted runs, cycling through ``groups`` of files, ``delays`` and signals;
    machine state compared before the first and after the last (and after every 10th run)."""
    t0 = time.monotonic()
    before = machine_state()
    pids: set[int] = set()
    interrupted = tracebacks = 0
    statuses: dict[str, int] = {}
    sent: dict[str, int] = {}
    leftovers: list[str] = []
    for i in range(runs):
        files = groups[i % len(groups)]
        delay = delays[(i // len(groups)) % len(delays)]
        sigs = SIGNAL_PLAN[i % len(SIGNAL_PLAN)]
        pid, rc, running, traceback = interrupted_run(files, delay, sigs)
        tracebacks += traceback
        pids.add(pid)
        interrupted += running
        statuses[str(rc)] = statuses.get(str(rc), 0) + 1
        for s in sigs:
            sent[signal.Signals(s).name] = sent.get(signal.Signals(s).name, 0) + 1
        if progress:
            progress(f"run {i + 1}/{runs}: {'+'.join(signal.Signals(s).name for s in sigs)} "
                     f"after {delay:.2f} s, exit {rc}")
        if (i + 1) % 10 == 0 or i + 1 == runs:
            found = differences(before, machine_state(), pids)
            leftovers += [f"after run {i + 1}: {x}" for x in found]
            if found:
                break
    return {"runs": len(pids), "interrupted": interrupted, "leftovers": len(leftovers),
            "leftover_details": leftovers, "signals": sent, "exit_status": statuses,
            "tracebacks_while_starting": tracebacks,
            "seconds": round(time.monotonic() - t0, 1)}
