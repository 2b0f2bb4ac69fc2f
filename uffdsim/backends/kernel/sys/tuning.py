"""Machine-wide facilities a scenario may switch on: KSM (/sys/kernel/mm/ksm) and a zram swap device."""
from __future__ import annotations

import errno as _errno
import os
import time
from typing import Callable

from uffdsim.errors import UffdError

from .pagemap import _read_choice

KSM_DIR = "/sys/kernel/mm/ksm"
KSM_TUNABLES = ("run", "pages_to_scan", "sleep_millisecs", "merge_across_nodes",
                "use_zero_pages", "max_page_sharing", "smart_scan", "advisor_mode")


def ksm_read(name: str) -> str:
    return _read_choice(f"{KSM_DIR}/{name}")


def ksm_write(name: str, value: str | int) -> None:
    with open(f"{KSM_DIR}/{name}", "w") as f:
        f.write(str(value))


def ksm_available() -> tuple[bool, str]:
    if not os.path.isdir(KSM_DIR):
        return False, "kernel without CONFIG_KSM (/sys/kernel/mm/ksm missing)"
    if not os.access(f"{KSM_DIR}/run", os.W_OK):
        return False, "cannot write /sys/kernel/mm/ksm/run (needs root)"
    return True, "KSM available"


def ksm_save() -> dict[str, str]:
    """The current KSM tunables (those this kernel has)."""
    return {n: ksm_read(n) for n in KSM_TUNABLES if os.path.exists(f"{KSM_DIR}/{n}")}


def ksm_restore(saved: dict[str, str]) -> None:
    """Write saved tunables back; 'run' last.  merge_across_nodes is only writable with no pages
    shared, so a failure to restore an unchanged value is ignored."""
    for name, value in saved.items():
        if name != "run" and ksm_read(name) != value:
            try:
                ksm_write(name, value)
            except OSError:
                pass
    ksm_write("run", saved.get("run", "0"))


def ksm_stats() -> dict[str, int]:
    names = ("full_scans", "pages_shared", "pages_sharing", "pages_unshared", "pages_volatile",
             "ksm_zero_pages")
    return {n: int(ksm_read(n)) for n in names if os.path.exists(f"{KSM_DIR}/{n}")}


def ksm_merge_until_stable(timeout: float = 30.0, scans: int = 2, pages_to_scan: int = 10000,
                           sleep_millisecs: int = 0,
                           alive: Callable[[], bool] | None = None) -> dict[str, int]:
    """Run ksmd fast until ``scans`` full scans have completed after enabling, then restore the
    saved settings (merged pages stay merged when run goes back to 0).  Returns ksm_stats().

    Only pages in MADV_MERGEABLE ranges are considered.  Raises ETIMEDOUT after ``timeout``, and
    ESRCH as soon as ``alive()`` (the runner that journaled the settings) turns false."""
    saved = ksm_save()
    try:
        if "smart_scan" in saved:
            ksm_write("smart_scan", 0)
        ksm_write("pages_to_scan", pages_to_scan)
        ksm_write("sleep_millisecs", sleep_millisecs)
        start = int(ksm_read("full_scans"))
        ksm_write("run", 1)
        deadline = time.monotonic() + timeout
        while int(ksm_read("full_scans")) < start + scans:
            if time.monotonic() > deadline:
                raise UffdError(_errno.ETIMEDOUT, f"KSM did not finish {scans} scans in {timeout}s")
            if alive is not None and not alive():
                raise UffdError(_errno.ESRCH, "the runner is gone: KSM settings restored, merge abandoned")
            time.sleep(0.01)
        return ksm_stats()
    finally:
        ksm_restore(saved)


def ksm_unmerge_all(saved: dict[str, str] | None = None) -> None:
    """Write 2 to run (unmerge every KSM page), then restore ``saved`` (default: run=0)."""
    ksm_write("run", 2)
    ksm_restore(saved or {"run": "0"})
# --------------------------------------------------------------------------------------------
# swap on a zram device (for MADV_PAGEOUT experiments); needs root and a zram0 device


def swaps_active() -> list[str]:
    """Active swap devices/files from /proc/swaps (none where the kernel has no swap support)."""
    try:
        with open("/proc/swaps") as f:
            return [line.split()[0] for line in f.readlines()[1:] if line.strip()]
    except OSError:
        return []

