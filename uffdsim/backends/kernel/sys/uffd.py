"""The userfaultfd file descriptor: UFFDIO_API, REGISTER, COPY, ZEROPAGE, MOVE, WAKE, WRITEPROTECT, messages."""
from __future__ import annotations

import ctypes
import errno as _errno
import fcntl
import os
import platform
import select
import signal
import struct
import threading
import time
from dataclasses import dataclass

from uffdsim.errors import UffdError

from .abi import (
    O_CLOEXEC,
    O_NONBLOCK,
    UFFDIO_API,
    UFFDIO_COPY,
    UFFDIO_MOVE,
    UFFDIO_REGISTER,
    UFFDIO_REGISTER_MODE_MISSING,
    UFFDIO_UNREGISTER,
    UFFDIO_WAKE,
    UFFDIO_WRITEPROTECT,
    UFFDIO_WRITEPROTECT_MODE_DONTWAKE,
    UFFDIO_WRITEPROTECT_MODE_WP,
    UFFDIO_ZEROPAGE,
    UFFD_API,
    UFFD_EVENT_FORK,
    UFFD_EVENT_PAGEFAULT,
    UFFD_EVENT_REMAP,
    UFFD_EVENT_REMOVE,
    UFFD_EVENT_UNMAP,
    UFFD_FEATURE_EVENT_FORK,
    UFFD_FEATURE_MOVE,
    UFFD_PAGEFAULT_FLAG_MINOR,
    UFFD_PAGEFAULT_FLAG_WP,
    UFFD_PAGEFAULT_FLAG_WRITE,
    UFFD_USER_MODE_ONLY,
    UNTOUCHED,
    USERFAULTFD_IOC_NEW,
    _API,
    _COPY,
    _MOVE,
    _MSG,
    _RANGE,
    _REGISTER,
    _WRITEPROTECT,
    _ZEROPAGE,
)
from .libc import _libc, ioctl, syscall, syscall_nr

#: how a userfaultfd was obtained (``Userfaultfd.via``), most capable first
VIA_SYSCALL = "userfaultfd(2)"
VIA_DEV = "/dev/userfaultfd"
VIA_USER_MODE_ONLY = "userfaultfd(2) with UFFD_USER_MODE_ONLY"


@dataclass
class Userfaultfd:
    """One userfaultfd file descriptor and the ioctls on it (fs/userfaultfd.c's user ABI)."""

    fd: int
    via: str = VIA_SYSCALL        #: one of VIA_SYSCALL, VIA_DEV, VIA_USER_MODE_ONLY
    features: int = 0
    ioctls: int = 0

    @property
    def user_mode_only(self) -> bool:
        """Faults raised inside the kernel (a syscall touching a registered range) get EFAULT."""
        return self.via == VIA_USER_MODE_ONLY

    @classmethod
    def open(cls, flags: int = O_CLOEXEC | O_NONBLOCK, user_mode_only: bool = False,
             fallback_user_mode_only: bool = True) -> "Userfaultfd":
        """The way this process is allowed to: userfaultfd(2), /dev/userfaultfd, then UMO.

        userfaultfd(2) first (new_userfaultfd(): root, CAP_SYS_PTRACE or
        vm.unprivileged_userfaultfd = 1); on EPERM/ENOSYS /dev/userfaultfd's USERFAULTFD_IOC_NEW
        (Linux 6.1+, whoever may open the node; a full userfaultfd); then, unless
        ``fallback_user_mode_only`` is False, userfaultfd(2) with UFFD_USER_MODE_ONLY (Linux
        5.11+, always allowed: only faults raised by user-space accesses are delivered).
        ``user_mode_only`` asks for UFFD_USER_MODE_ONLY from the start."""
        if user_mode_only:
            flags |= UFFD_USER_MODE_ONLY
        first: UffdError | None = None
        try:
            return cls(syscall(syscall_nr("userfaultfd"), flags),
                       VIA_USER_MODE_ONLY if user_mode_only else VIA_SYSCALL)
        except UffdError as e:
            if e.errno not in (_errno.EPERM, _errno.ENOSYS):
                raise
            first = e
        try:
            dev = os.open("/dev/userfaultfd", os.O_RDWR | os.O_CLOEXEC)
        except OSError as e:
            dev_err = f"/dev/userfaultfd: {e.strerror}"
        else:
            try:
                return cls(ioctl(dev, USERFAULTFD_IOC_NEW, flags),
                           VIA_USER_MODE_ONLY if user_mode_only else VIA_DEV)
            except UffdError as e:
                dev_err = f"/dev/userfaultfd: {e.message}"
            finally:
                os.close(dev)
        if not user_mode_only and fallback_user_mode_only and first.errno == _errno.EPERM:
            try:
                return cls(syscall(syscall_nr("userfaultfd"), flags | UFFD_USER_MODE_ONLY),
                           VIA_USER_MODE_ONLY)
            except UffdError:
                pass
        raise UffdError(first.errno, f"userfaultfd(2): {first.message}; {dev_err}") from None

    def fileno(self) -> int:
        return self.fd

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> "Userfaultfd":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def api(self, features: int = 0) -> tuple[int, int]:
        """UFFDIO_API handshake; returns (features, ioctls) as reported by the kernel."""
        buf = bytearray(_API.pack(UFFD_API, features, 0))
        ioctl(self.fd, UFFDIO_API, buf)
        _, self.features, self.ioctls = _API.unpack(buf)
        return self.features, self.ioctls

    def register(self, addr: int, length: int, mode: int = UFFDIO_REGISTER_MODE_MISSING) -> int:
        """UFFDIO_REGISTER; returns the ioctls mask usable on the range."""
        buf = bytearray(_REGISTER.pack(addr, length, mode, 0))
        ioctl(self.fd, UFFDIO_REGISTER, buf)
        return _REGISTER.unpack(buf)[3]

    def unregister(self, addr: int, length: int) -> None:
        ioctl(self.fd, UFFDIO_UNREGISTER, bytearray(_RANGE.pack(addr, length)))

    def wake(self, addr: int, length: int) -> None:
        ioctl(self.fd, UFFDIO_WAKE, bytearray(_RANGE.pack(addr, length)))

    def _range_op(self, name: str, request: int, layout: struct.Struct, fields: tuple) -> int:
        buf = bytearray(layout.pack(*fields, UNTOUCHED))
        try:
            ioctl(self.fd, request, buf)
        except UffdError as e:
            out = layout.unpack(buf)[-1]
            raise UffdError(e.errno, f"UFFDIO_{name}: {os.strerror(e.errno)}",
                            out=None if out == UNTOUCHED else out) from None
        return layout.unpack(buf)[-1]

    def copy(self, dst: int, src: int, length: int, mode: int = 0) -> int:
        """UFFDIO_COPY; returns bytes copied. UffdError.out = the ``copy`` field (None: unwritten)."""
        return self._range_op("COPY", UFFDIO_COPY, _COPY, (dst, src, length, mode))

    def zeropage(self, addr: int, length: int, mode: int = 0) -> int:
        """UFFDIO_ZEROPAGE; returns bytes mapped. UffdError.out = the ``zeropage`` field."""
        return self._range_op("ZEROPAGE", UFFDIO_ZEROPAGE, _ZEROPAGE, (addr, length, mode))

    def move(self, dst: int, src: int, length: int, mode: int = 0) -> int:
        """UFFDIO_MOVE; returns bytes moved. UffdError.out = the ``move`` field (None: unwritten)."""
        return self._range_op("MOVE", UFFDIO_MOVE, _MOVE, (dst, src, length, mode))

    def writeprotect(self, addr: int, length: int, wp: bool, dontwake: bool = False) -> None:
        mode = (UFFDIO_WRITEPROTECT_MODE_WP if wp else 0) | \
               (UFFDIO_WRITEPROTECT_MODE_DONTWAKE if dontwake else 0)
        ioctl(self.fd, UFFDIO_WRITEPROTECT, bytearray(_WRITEPROTECT.pack(addr, length, mode)))

    def read_msgs(self, timeout_ms: int = 0) -> list[dict]:
        """Wait up to timeout_ms for the fd to become readable, then read every queued uffd_msg."""
        msgs: list[dict] = []
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        wait = timeout_ms
        while poller.poll(wait):
            try:
                data = os.read(self.fd, _MSG.size * 16)
            except BlockingIOError:
                break
            msgs += [decode_msg(data[i:i + _MSG.size]) for i in range(0, len(data), _MSG.size)]
            wait = 0
        return msgs


def fork_with_events(uffds: list[Userfaultfd], timeout: float = 5.0) -> tuple[int, list[dict]]:
    """os.fork() that survives UFFD_FEATURE_EVENT_FORK; returns (pid, messages read meanwhile).

    With EVENT_FORK, fork() blocks until the FORK event is read, but os.fork() holds the GIL, so
    a Python thread polling the uffd can never read it (deadlock).  Here a thread sits in a raw
    blocking read(2) (ctypes drops the GIL) on each uffd that asked for EVENT_FORK before the
    fork; readers left without an event are interrupted with a signal afterwards.  Messages that
    were already queued come back too.  In the child, pid is 0 and the list is empty."""
    watch = [u for u in uffds if u.features & UFFD_FEATURE_EVENT_FORK]
    if not watch:
        return os.fork(), []
    msgs = [m for u in watch for m in u.read_msgs(0)]
    got: list[bytes] = []
    old = signal.signal(signal.SIGUSR2, lambda *_: None)
    saved = {u.fd: fcntl.fcntl(u.fd, fcntl.F_GETFL) for u in watch}

    def reader(fd: int) -> None:
        buf = ctypes.create_string_buffer(_MSG.size * 16)
        n = _libc.read(fd, buf, len(buf))
        if n > 0:
            got.append(buf.raw[:n])

    threads = []
    for u in watch:
        fcntl.fcntl(u.fd, fcntl.F_SETFL, saved[u.fd] & ~os.O_NONBLOCK)
        threads.append(threading.Thread(target=reader, args=(u.fd,), daemon=True))
        threads[-1].start()
    time.sleep(0.05)                       # let every reader enter read(2)
    pid = os.fork()
    if pid == 0:
        return 0, []
    try:
        deadline = time.monotonic() + timeout
        for t in threads:
            while t.is_alive() and time.monotonic() < deadline:
                t.join(0.05)
                if t.is_alive() and t.ident is not None:
                    signal.pthread_kill(t.ident, signal.SIGUSR2)
    finally:
        for fd, fl in saved.items():
            fcntl.fcntl(fd, fcntl.F_SETFL, fl)
        signal.signal(signal.SIGUSR2, old)
    for raw in got:
        msgs += [decode_msg(raw[i:i + _MSG.size]) for i in range(0, len(raw), _MSG.size)]
    return pid, msgs


def decode_msg(raw: bytes) -> dict:
    """struct uffd_msg -> {'type': 'pagefault'|'fork'|'remap'|'remove'|'unmap'|'unknown', ...}."""
    event, _, _, _, arg = _MSG.unpack(raw)
    if event == UFFD_EVENT_PAGEFAULT:
        flags, address, ptid = struct.unpack("=QQI4x", arg)
        return {"type": "pagefault", "address": address, "flags": flags, "ptid": ptid,
                "write": bool(flags & UFFD_PAGEFAULT_FLAG_WRITE),
                "wp": bool(flags & UFFD_PAGEFAULT_FLAG_WP),
                "minor": bool(flags & UFFD_PAGEFAULT_FLAG_MINOR)}
    if event == UFFD_EVENT_FORK:
        return {"type": "fork", "ufd": struct.unpack_from("=I", arg)[0]}
    if event == UFFD_EVENT_REMAP:
        frm, to, length = struct.unpack("=QQQ", arg)
        return {"type": "remap", "from": frm, "to": to, "len": length}
    if event in (UFFD_EVENT_REMOVE, UFFD_EVENT_UNMAP):
        start, end = struct.unpack_from("=QQ", arg)
        return {"type": "remove" if event == UFFD_EVENT_REMOVE else "unmap",
                "start": start, "end": end}
    return {"type": "unknown", "event": event, "raw": raw}


def userfaultfd_available(need_move: bool = True) -> tuple[bool, str]:
    """Can this process use userfaultfd (and UFFDIO_MOVE)?  (ok, reason when not)."""
    try:
        uffd = Userfaultfd.open()
    except UffdError as e:
        if e.errno in (_errno.EPERM, _errno.EACCES):
            return False, ("userfaultfd not permitted (EPERM): set vm.unprivileged_userfaultfd=1, "
                           "use UFFD_USER_MODE_ONLY, grant CAP_SYS_PTRACE, or give read/write "
                           f"access to /dev/userfaultfd ({e.message})")
        if e.errno == _errno.ENOSYS:
            return False, ("userfaultfd(2) returns ENOSYS: blocked by a seccomp filter (Docker's "
                           "default profile, Binder and similar containers) or a kernel without "
                           f"CONFIG_USERFAULTFD ({e.message})")
        return False, f"userfaultfd unavailable: {e}"
    try:
        features, _ = uffd.api(0)
    except UffdError as e:
        return False, f"UFFDIO_API failed: {e}"
    finally:
        uffd.close()
    if need_move and not features & UFFD_FEATURE_MOVE:
        return False, (f"kernel {platform.release()} does not offer UFFD_FEATURE_MOVE "
                       "(UFFDIO_MOVE needs Linux 6.8 or later)")
    return True, f"userfaultfd available via {uffd.via}, features {features:#x}"
