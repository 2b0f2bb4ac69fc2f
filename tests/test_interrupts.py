"""Interrupted kernel runs leave the machine as they found it (issue 9).

``python -m uffdsim run ... --backend kernel`` over swap, THP and KSM scenarios is sent SIGINT,
SIGTERM or SIGHUP (sometimes a second signal while the first one's undoing runs) after delays from
20 ms (still starting) to 2.1 s (mid-scenario), 32 times; then swap areas, zram devices, KSM,
khugepaged and THP settings, journals and temporary folders must be as before
(:mod:`uffdsim.backends.kernel.interrupts`).  A SIGKILLed run leaves its journal: ``doctor``
reports it and ``doctor --repair`` undoes it.  benchmarks/interrupts.py is the longer run.

Skipped, with the reason, without root, a usable kernel backend or zram.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from uffdsim.backends.kernel import guard, interrupts
from uffdsim.backends.kernel.caps import capabilities

HERE = Path(__file__).resolve().parent
CORPUS = HERE.parent / "scenarios"


def why_not() -> str | None:
    why = capabilities().missing(["swap", "thp", "ksm"])
    if why:
        return why
    if os.geteuid() != 0:
        return "needs root (swap, KSM and khugepaged are machine-wide)"
    if not os.path.exists("/sys/class/zram-control/hot_add"):
        return "no zram (the temporary swap device these runs set up)"
    return None


WHY = why_not()
pytestmark = [pytest.mark.kernel, pytest.mark.skipif(WHY is not None, reason=f"interrupt test: {WHY}")]


def groups() -> list[list[str]]:
    """Runs long enough (seconds) that most signals land mid-run, between or inside scenarios."""
    c = lambda name: str(CORPUS / f"{name}.yaml")  # noqa: E731
    return [[c("swap-entry-moves-without-swapin")] * 40,
            [c("thp-pageout-moves-swap-entries"), c("thp-collapse-then-move"),
             c("thp-split-leaves-small-pages")] * 10,
            [c("ksm-merged-ebusy"), c("ksm-write-breaks-sharing")] * 10,
            [str(HERE / "data" / "interrupt-swap-thp-ksm.yaml")] * 10]


DELAYS = (0.02, 0.25, 0.45, 0.6, 0.8, 1.0, 1.3, 1.7, 2.1)


def test_interrupted_runs_leave_nothing_behind() -> None:
    result = interrupts.campaign(groups(), runs=32, delays=DELAYS)
    assert result["runs"] == 32
    assert result["leftover_details"] == []
    assert result["interrupted"] >= 24, result            # most signals found the run still going
    assert set(result["signals"]) == {"SIGINT", "SIGTERM", "SIGHUP"}


def _stat(pid: str) -> list[str]:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except OSError:
        return []


def scenario_groups(runner: int) -> set[int]:
    """Process groups of the runner's children (each scenario's processes are one group)."""
    return {int(st[2]) for d in os.listdir("/proc") if d.isdigit()
            if (st := _stat(d)) and int(st[1]) == runner}


def scenario_groups_alive(groups_: set[int]) -> list[int]:
    return [int(d) for d in os.listdir("/proc") if d.isdigit()
            if (st := _stat(d)) and int(st[2]) in groups_ and st[0] != "Z"]


def test_a_killed_run_is_reported_and_repaired_by_doctor() -> None:
    before = interrupts.machine_state()
    scenario = str(HERE / "data" / "interrupt-swap-thp-ksm.yaml")
    proc = subprocess.Popen([sys.executable, "-m", "uffdsim", "run", *[scenario] * 20, "--backend", "kernel"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # wait until the run has changed the machine (a journal of its own), then SIGKILL it
        deadline = time.monotonic() + 60
        mine = []
        while time.monotonic() < deadline and len(mine) < 2 and proc.poll() is None:
            mine = [j for j in os.listdir(guard.lock_dir()) if j.endswith(".v2.journal")
                    and (guard.read_journal(os.path.join(guard.lock_dir(), j)) or {}).get("pid") == proc.pid]
            time.sleep(0.005)
        groups_ = scenario_groups(proc.pid)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert mine, "the run never journaled a change"
    # its scenario processes die with it (PR_SET_PDEATHSIG; fork children at their next step)
    deadline = time.monotonic() + 60
    while any(scenario_groups_alive(groups_)) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not any(scenario_groups_alive(groups_))
    assert interrupts.differences(before, interrupts.machine_state(), {proc.pid}) != []
    doctor = [sys.executable, "-m", "uffdsim", "doctor"]
    out = subprocess.run(doctor, capture_output=True, text=True, timeout=120).stdout
    assert f"(left by pid {proc.pid})" in out, out
    for _ in range(60):           # another run on this machine may hold a lock for a moment
        rep = subprocess.run(doctor + ["--repair"], capture_output=True, text=True, timeout=120)
        if not any(line.startswith("  busy: /run") or ".lock" in line for line in rep.stdout.splitlines()
                   if line.startswith("  busy:")):
            break
        time.sleep(0.5)
    assert rep.returncode == 0 and "repaired:" in rep.stdout, rep.stdout + rep.stderr
    assert interrupts.differences(before, interrupts.machine_state(), {proc.pid}) == []
    out = subprocess.run(doctor, capture_output=True, text=True, timeout=120).stdout
    assert f"pid {proc.pid}" not in out
