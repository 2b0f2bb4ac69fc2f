"""A temporary swap device for scenarios that ``require: [swap]`` (root only), removed afterwards.

First choice: a new zram device (``/sys/class/zram-control/hot_add``, 64 MiB, its own block
device node in a temporary directory, since no udev may be running); else a swap file on the
temporary directory's filesystem.  The swap header is written here (no ``mkswap`` needed) and
``swapon(2)``/``swapoff(2)`` are called through libc.  :func:`temporary_swap` undoes everything:
swapoff, zram reset and hot_remove (or unlink), even when the scenario fails; a journal under the
machine-wide ``swap`` lock lets the next run remove a device whose creator died.
"""
from __future__ import annotations

import ctypes
import json
import os
import shutil
import stat
import struct
import tempfile
import uuid
from contextlib import contextmanager
from typing import Iterator

from ...errors import UffdError
from .caps import active_swaps
from .guard import machine_lock

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


def _journal(path: str, record: dict[str, str]) -> None:
    with open(path, "w") as f:
        json.dump(record, f)


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


@contextmanager
def _zram(tmp: str, journal: str) -> Iterator[str]:
    with open(f"{ZRAM_CONTROL}/hot_add") as f:
        dev = int(f.read().strip())
    sysdir = f"/sys/block/zram{dev}"
    node = os.path.join(tmp, f"zram{dev}")
    _journal(journal, {"kind": "zram", "dev": str(dev), "path": node, "tmp": tmp})
    swapped = False
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
        swapped = True
        yield f"zram{dev}"
    finally:
        if swapped:
            _swapoff(node)
        if os.path.exists(node):
            os.unlink(node)
        try:
            _write(f"{sysdir}/reset", "1")
        except OSError:
            pass
        _write(f"{ZRAM_CONTROL}/hot_remove", str(dev))


@contextmanager
def _swapfile(tmp: str, journal: str) -> Iterator[str]:
    path = os.path.join(tmp, "swapfile")
    _journal(journal, {"kind": "swapfile", "path": path, "tmp": tmp})
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    swapped = False
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
        swapped = True
        yield path
    finally:
        if fd >= 0:
            os.close(fd)
        if swapped:
            _swapoff(path)
        os.unlink(path)


def _undo(record: dict[str, str]) -> None:
    """Remove a swap device a dead run left behind (from its journal)."""
    path = record.get("path", "")
    try:
        _swapoff(path)
    except UffdError:
        pass
    if record.get("kind") == "zram":
        dev = record["dev"]
        try:
            _write(f"/sys/block/zram{dev}/reset", "1")
            _write(f"{ZRAM_CONTROL}/hot_remove", dev)
        except OSError:
            pass
    if path and os.path.exists(path):
        os.unlink(path)
    shutil.rmtree(record.get("tmp", ""), ignore_errors=True)


@contextmanager
def temporary_swap() -> Iterator[str]:
    """Swap for the duration of the block: the existing swap if any, else a temporary device.

    Holds the machine-wide ``swap`` lock (:mod:`.guard`) throughout, so a concurrent run never
    takes our device for "existing swap" that then disappears under it.  Yields a description;
    raises UffdError (with the reason) when no swap can be set up."""
    if os.geteuid() != 0 and not active_swaps():
        raise UffdError(1, "no swap, and setting one up needs root")
    with machine_lock("swap") as journal:
        if os.path.exists(journal):
            with open(journal) as f:
                _undo(json.load(f))
            os.unlink(journal)
        active = active_swaps()
        if active:
            yield f"existing swap {', '.join(active)}"
            return
        tmp = tempfile.mkdtemp(prefix="uffdsim-swap-", dir="/var/tmp" if os.path.isdir("/var/tmp") else None)
        try:
            errors = []
            setups = ((_zram,) if os.path.exists(f"{ZRAM_CONTROL}/hot_add") else ()) + (_swapfile,)
            for setup in setups:
                try:
                    cm = setup(tmp, journal)
                    what = cm.__enter__()
                except (OSError, UffdError) as err:
                    errors.append(f"{setup.__name__.strip('_')}: {err}")
                    continue
                try:
                    yield what
                finally:
                    cm.__exit__(None, None, None)
                return
            raise UffdError(1, "cannot set up swap (" + "; ".join(errors) + ")")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            if os.path.exists(journal):
                os.unlink(journal)
