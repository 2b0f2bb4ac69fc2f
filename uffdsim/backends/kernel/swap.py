"""A temporary swap device for scenarios that ``require: [swap]`` (root only), removed afterwards.

First choice: a new zram device (``/sys/class/zram-control/hot_add``, 64 MiB, its own block
device node in a temporary directory, since no udev may be running); else a swap file on the
temporary directory's filesystem.  The swap header is written here (no ``mkswap`` needed) and
``swapon(2)``/``swapoff(2)`` are called through libc.  :func:`temporary_swap` undoes everything:
swapoff, zram reset and hot_remove (or unlink), even when the scenario fails or a signal comes (set-up and undo run with signals blocked,
:mod:`.signals`).  A journal under the machine-wide ``swap`` lock (:mod:`.guard`) names the device
before it is switched on and is removed only once the device and the folder are gone, so the next
run, or ``doctor --repair``, removes a device whose creator died.
"""
from __future__ import annotations

import ctypes
import errno as _errno
import os
import shutil
import stat
import struct
import tempfile
import time
import uuid
from contextlib import contextmanager
from typing import Any, Iterator

from ...errors import UffdError
from .sys import PAGE_SIZE, syscall, syscall_nr
from .caps import active_swaps
from .guard import (journal_path, legacy_journal_path, machine_lock, read_journal, remove_journal,
                    remove_stale_temporaries, say, write_journal)

SIZE = 64 << 20
PAGE = os.sysconf("SC_PAGE_SIZE")
ZRAM_CONTROL = "/sys/class/zram-control"
_libc = ctypes.CDLL(None, use_errno=True)
_libc.swapon.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.swapoff.argtypes = [ctypes.c_char_p]


def swap_header(size: int) -> bytes:
    """Page 0 of a version-1 swap area (include/linux/swap.h: union swap_header)."""
    page = bytearray(PAGE)
    struct.pack_into("=III16s16s", page, 1024, 1, size // PAGE - 1, 0, uuid.uuid4().bytes,
                     b"uffdsim".ljust(16, b"\0"))
    page[PAGE - 10:] = b"SWAPSPACE2"
    return bytes(page)


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def _swapon(path: str) -> None:
    if _libc.swapon(path.encode(), 0) != 0:
        err = ctypes.get_errno()
        raise UffdError(err, f"swapon {path}: {os.strerror(err)}")


def _swapoff(path: str) -> None:
    if _libc.swapoff(path.encode()) != 0:
        err = ctypes.get_errno()
        raise UffdError(err, f"swapoff {path}: {os.strerror(err)}")


def zram_exists(dev: str) -> bool:
    return os.path.isdir(f"/sys/block/zram{dev}")


@contextmanager
def _zram(tmp: str, journal: str) -> Iterator[str]:
    with open(f"{ZRAM_CONTROL}/hot_add") as f:
        dev = str(int(f.read().strip()))
    sysdir = f"/sys/block/zram{dev}"
    node = os.path.join(tmp, f"zram{dev}")
    record = {"kind": "zram", "dev": dev, "path": node, "tmp": tmp}
    write_journal(journal, record)
    try:
        _write(f"{sysdir}/disksize", str(SIZE))
        major, minor = (int(x) for x in open(f"{sysdir}/dev").read().split(":"))
        os.mknod(node, stat.S_IFBLK | 0o600, os.makedev(major, minor))
        fd = os.open(node, os.O_WRONLY)
        try:
            os.pwrite(fd, swap_header(SIZE), 0)
            os.fsync(fd)
        finally:
            os.close(fd)
        _swapon(node)
        yield f"zram{dev}"
    finally:
        if not undo_swap(record):
            raise UffdError(_errno.EBUSY, f"could not remove zram{dev} (journal {journal} kept)")


@contextmanager
def _swapfile(tmp: str, journal: str) -> Iterator[str]:
    path = os.path.join(tmp, "swapfile")
    record = {"kind": "swapfile", "path": path, "tmp": tmp}
    write_journal(journal, record)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, swap_header(SIZE))
        zeros = bytes(1 << 20)
        left = SIZE - PAGE
        while left > 0:
            left -= os.write(fd, zeros[:min(left, len(zeros))])
        os.fsync(fd)
        os.close(fd)
        fd = -1
        _swapon(path)
        yield path
    finally:
        if fd >= 0:
            os.close(fd)
        if not undo_swap(record):
            raise UffdError(_errno.EBUSY, f"could not remove swap file {path} (journal {journal} kept)")


def _swapoff_if_active(path: str) -> bool:
    """swapoff(2) ``path`` if it is active swap; False (with a message) when that fails."""
    if path in active_swaps():
        try:
            _swapoff(path)
        except UffdError as err:
            say(f"cannot switch off swap {path}: {err.message}")
            return False
    return True


def undo_swap(record: dict[str, str]) -> bool:
    """Remove the swap a journal describes, as far as it still exists (idempotent).

    True once nothing of it is left (its journal may go); False (with a message) otherwise."""
    path = record.get("path", "")
    kind = record.get("kind")
    tmp = record.get("tmp", "")
    if kind == "zram-reset":              # a zram device that existed before: reset, never removed
        if not _swapoff_if_active(path):
            return False
        try:
            _write(f"/sys/block/zram{record.get('dev', '')}/reset", "1")
        except OSError:
            pass
        return path not in active_swaps()
    if kind not in ("zram", "swapfile") or not path:
        if tmp and os.path.basename(tmp).startswith("uffdsim-swap-"):
            shutil.rmtree(tmp, ignore_errors=True)
        return True
    if not _swapoff_if_active(path):
        return False
    if kind == "zram":
        dev = record.get("dev", "")
        if dev and zram_exists(dev):
            if f"/dev/zram{dev}" in active_swaps():
                say(f"zram{dev} is swap under another name now: not ours any more, left alone")
            else:
                try:
                    _write(f"/sys/block/zram{dev}/reset", "1")
                except OSError:
                    pass
                for attempt in range(200):         # EBUSY while the last opener lets go
                    try:
                        _write(f"{ZRAM_CONTROL}/hot_remove", dev)
                        break
                    except OSError as err:
                        if err.errno != _errno.EBUSY or attempt == 199:
                            say(f"cannot remove zram{dev}: {err}")
                            return False
                        time.sleep(0.01)
    if os.path.lexists(path):
        try:
            os.unlink(path)
        except OSError:
            pass
    if tmp and os.path.basename(tmp).startswith("uffdsim-swap-"):
        shutil.rmtree(tmp, ignore_errors=True)
    return not (kind == "zram" and record.get("dev") and zram_exists(record["dev"]) and
                f"/dev/zram{record['dev']}" not in active_swaps())


def replay_swap() -> bool:
    """Caller holds the ``swap`` lock: remove swap an interrupted run left (journal-driven)."""
    remove_stale_temporaries("swap")
    done = True
    for journal in (legacy_journal_path("swap"), journal_path("swap")):
        record = read_journal(journal)
        if record is None:
            continue
        say(f"removing the swap an interrupted run (pid {record.get('pid', '?')}) left: {journal}")
        if undo_swap(record):
            remove_journal(journal)
        else:
            done = False
    return done


@contextmanager
def temporary_swap() -> Iterator[str]:
    """Swap for the duration of the block: the existing swap if any, else a temporary device.

    Holds the machine-wide ``swap`` lock (:mod:`.guard`) throughout, so a concurrent run never
    takes our device for "existing swap" that then disappears under it.  Yields a description;
    raises UffdError (with the reason) when no swap can be set up.  Use inside
    :func:`.signals.protected` (the kernel backend does)."""
    if os.geteuid() != 0 and not active_swaps():
        raise UffdError(1, "no swap, and setting one up needs root")
    with machine_lock("swap") as journal:
        replay_swap()
        active = active_swaps()
        if active:
            yield f"existing swap {', '.join(active)}"
            return
        base = "/var/tmp" if os.path.isdir("/var/tmp") else None
        tmp = tempfile.mkdtemp(prefix=f"uffdsim-swap-{os.getpid()}-", dir=base)
        write_journal(journal, {"kind": "tmp", "tmp": tmp})
        errors = []
        setups = ((_zram,) if os.path.exists(f"{ZRAM_CONTROL}/hot_add") else ()) + (_swapfile,)
        for setup in setups:
            try:
                cm = setup(tmp, journal)
                what = cm.__enter__()
            except (OSError, UffdError) as err:
                errors.append(f"{setup.__name__.strip('_')}: {err}")
                left = read_journal(journal) or {}
                if not undo_swap(left):
                    raise UffdError(_errno.EBUSY, f"could not undo a failed swap set-up (journal {journal} kept)")
                os.makedirs(tmp, exist_ok=True)
                write_journal(journal, {"kind": "tmp", "tmp": tmp})
                continue
            try:
                yield what
            finally:
                cm.__exit__(None, None, None)          # raises if it could not undo (journal kept)
                shutil.rmtree(tmp, ignore_errors=True)
                remove_journal(journal)
            return
        shutil.rmtree(tmp, ignore_errors=True)
        remove_journal(journal)
        raise UffdError(1, "cannot set up swap (" + "; ".join(errors) + ")")


class ZramSwap:
    """A small swap device on /dev/zram0 for the duration of a ``with`` block.

    Writes the swap header itself (like mkswap) and calls swapon(2)/swapoff(2); on exit the swap
    is switched off and the zram device reset.  Raises UffdError with the reason if impossible.
    Holds the machine-wide ``swap`` lock throughout, with a journal (kind ``zram-reset``) that the
    next run or ``doctor --repair`` replays if this process dies (:mod:`.guard`); set-up and
    undo run with SIGINT/SIGTERM/SIGHUP held back (:mod:`.signals`)."""

    def __init__(self, size_mb: int = 64, dev: str = "zram0") -> None:
        self.size_mb, self.dev, self.path, self.on = size_mb, dev, f"/dev/{dev}", False
        self._lock: Any = None
        self._journal = ""

    def __enter__(self) -> "ZramSwap":
        from .guard import machine_lock, write_journal
        from .signals import protected
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
        if open(f"{sysdir}/disksize").read().strip() != "0" or self.path in active_swaps():
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
        if undo_swap(read_journal(self._journal) or {}):
            remove_journal(self._journal)
        self.on = False

    def __exit__(self, *exc: object) -> None:
        from .signals import protected
        if self._lock is None:
            return
        with protected():
            try:
                self._undo()
            finally:
                self._lock, lock = None, self._lock
                lock.__exit__(None, None, None)
