"""Machine-wide facilities a scenario may switch on: KSM (/sys/kernel/mm/ksm) and a zram swap device."""
from __future__ import annotations

import ctypes
import errno as _errno
import os
import struct
import time
from typing import Any, Callable

from uffdsim.errors import UffdError

from .abi import PAGE_SIZE
from .libc import syscall, syscall_nr
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
    """Active swap devices/files from /proc/swaps."""
    with open("/proc/swaps") as f:
        return [line.split()[0] for line in f.readlines()[1:] if line.strip()]


class ZramSwap:
    """A small swap device on /dev/zram0 for the duration of a ``with`` block.

    Writes the swap header itself (like mkswap) and calls swapon(2)/swapoff(2); on exit the swap
    is switched off and the zram device reset.  Raises UffdError with the reason if impossible.
    Holds the machine-wide ``swap`` lock throughout, with a journal (kind ``zram-reset``) that the
    next run or ``doctor --repair`` replays if this process dies (:mod:`..guard`); set-up and
    undo run with SIGINT/SIGTERM/SIGHUP held back (:mod:`..signals`)."""

    def __init__(self, size_mb: int = 64, dev: str = "zram0") -> None:
        self.size_mb, self.dev, self.path, self.on = size_mb, dev, f"/dev/{dev}", False
        self._lock: Any = None
        self._journal = ""

    def __enter__(self) -> "ZramSwap":
        from ..guard import machine_lock, write_journal
        from ..signals import protected
        from ..swap import replay_swap
        with protected():
            lock = machine_lock("swap")
            self._journal = lock.__enter__()
            self._lock = lock
            try:
                replay_swap()
                self._setup(write_journal)
            except BaseException:
                self._lock, lock = None, self._lock
                lock.__exit__(None, None, None)
                raise
        return self

    def _setup(self, write_journal: Any) -> None:
        sysdir = f"/sys/block/{self.dev}"
        if not os.path.isdir(sysdir) or not os.path.exists(self.path):
            raise UffdError(_errno.ENODEV, f"no {self.path} (zram not built in / module not loaded)")
        if open(f"{sysdir}/disksize").read().strip() != "0" or self.path in swaps_active():
            raise UffdError(_errno.EBUSY, f"{self.path} already in use")
        write_journal(self._journal, {"kind": "zram-reset", "dev": self.dev.removeprefix("zram"),
                                      "path": self.path})
        try:
            with open(f"{sysdir}/disksize", "w") as f:
                f.write(f"{self.size_mb}M")
            npages = self.size_mb * 1024 * 1024 // PAGE_SIZE
            header = bytearray(PAGE_SIZE)
            struct.pack_into("=III", header, 1024, 1, npages - 1, 0)   # version, last_page, bad
            header[PAGE_SIZE - 10:] = b"SWAPSPACE2"
            fd = os.open(self.path, os.O_WRONLY)
            try:
                os.pwrite(fd, bytes(header), 0)
                os.fsync(fd)
            finally:
                os.close(fd)
            path = ctypes.create_string_buffer(self.path.encode())
            syscall(syscall_nr("swapon"), ctypes.addressof(path), 0)
            self.on = True
        except (OSError, UffdError) as e:
            self._undo()
            code = e.errno if isinstance(e.errno, int) else _errno.EIO
            raise UffdError(code, f"cannot set up swap on {self.path}: {e}") from None

    def _undo(self) -> None:
        from ..guard import read_journal, remove_journal
        from ..swap import undo_swap
        if undo_swap(read_journal(self._journal) or {}):
            remove_journal(self._journal)
        self.on = False

    def __exit__(self, *exc: object) -> None:
        from ..signals import protected
        if self._lock is None:
            return
        with protected():
            try:
                self._undo()
            finally:
                self._lock, lock = None, self._lock
                lock.__exit__(None, None, None)
