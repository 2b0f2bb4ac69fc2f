"""What a scenario process keeps between steps, and how it tells a blocked thread from a busy one.

A thread counts as *blocked* when ``/proc/self/task/TID/wchan`` (or, while it waits for the
accessor that makes a user access for it, the accessor's wchan) shows it sleeping where only user
space can wake it: in ``handle_userfault`` (a userfault nobody has resolved) or in
``userfaultfd_event_wait_completion`` (a non-cooperative event nobody has read).
"""
from __future__ import annotations

import errno as E
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from ...errors import UffdError
from . import sys as k

BLOCKING_WCHANS = ("handle_userfault", "userfaultfd_event_wait_completion")
HANG_SETTLE = 0.2                #: s a step must sleep in a userfault before it counts as hung
THREAD_SETTLE = 0.01             #: s a fault_async thread must sleep in a userfault to be "blocked" (only user
#: space wakes a thread there, and a scenario has one controlling thread: the wait guards a misread wchan)
THREAD_MAX = 2.0                 #: s to wait for a fault_async thread to finish or block
EVENT_GRACE = 0.02               #: s read_events waits for messages of threads still running
#: read_events waits EVENT_GRACE even when every thread has settled (set by :func:`slow_machine`)
ALWAYS_GRACE = False


def slow_machine() -> None:
    """The timings of an emulated machine (the lab's qemu TCG guest, tens of times slower): a
    thread must sleep in its userfault for 50 ms to count as blocked, and read_events always
    gives running threads their grace.  With the native timings the 6.12 lab hung the ported
    PMD selftests part-way (a read of events found none), which it had run before."""
    global THREAD_SETTLE, ALWAYS_GRACE
    THREAD_SETTLE, ALWAYS_GRACE = 0.05, True
POLL = 0.002

#: worker thread id -> pid of the accessor task making a user access for it (:mod:`.access`)
ACCESSORS: dict[int, int] = {}


@dataclass
class AsyncThread:
    """A ``fault_async`` thread: a real thread of this process touching one address."""

    name: str
    thread: threading.Thread | None = None
    tid: int = 0
    error: UffdError | None = None


@dataclass
class ProcState:
    """What one scenario process knows: its channel, its userfaultfds, threads and pins."""

    name: str
    sock: socket.socket
    uffds: list[k.Userfaultfd] = field(default_factory=list)
    uffd_names: dict[str, k.Userfaultfd] = field(default_factory=dict)
    features: dict[int, int] = field(default_factory=dict)     #: fd -> features asked in UFFDIO_API
    threads: dict[str, AsyncThread] = field(default_factory=dict)
    pins: dict[str, k.Pin] = field(default_factory=dict)
    refs: dict[str, k.PageRef] = field(default_factory=dict)

    def ctx(self, args: dict[str, Any]) -> k.Userfaultfd:
        name = args.get("uffd")
        if name is not None:
            if name not in self.uffd_names:
                raise UffdError(E.EBADF, f"no userfaultfd {name!r} in process {self.name}")
            return self.uffd_names[name]
        if not self.uffds:
            raise UffdError(E.EBADF, f"no userfaultfd open in process {self.name}")
        return self.uffds[-1]

    def after_fork(self, child: str, sock: socket.socket) -> None:
        """The child's view: new name and channel; no threads; the parent's pins stay the parent's
        (the inherited io_uring fds are closed without unregistering anything)."""
        self.name, self.sock = child, sock
        self.threads = {}
        for pin in self.pins.values():
            if pin.ring >= 0:
                os.close(pin.ring)
                pin.ring = -1
        self.pins = {}
        for ref in self.refs.values():      # the parent's pipes: the child's copies are closed
            ref.release()
        self.refs = {}


def wchan(tid: int) -> str:
    """Where the thread sleeps in the kernel ('0' when running or unknown, '' when gone).

    While the thread waits for an accessor (a user access made for it), the accessor's sleep is its."""
    accessor = ACCESSORS.get(tid)
    try:
        with open(f"/proc/{accessor}/wchan" if accessor else f"/proc/self/task/{tid}/wchan") as f:
            return f.read().strip()
    except OSError:
        return ""


def in_userfault(tid: int) -> str | None:
    """The wait the thread sleeps in, if it is one only user space can end; else None."""
    where = wchan(tid)
    return where if where in BLOCKING_WCHANS else None


def all_threads_settled(state: ProcState) -> bool:
    """True when every async thread of the process has finished or sleeps in a userfault now."""
    for t in state.threads.values():
        if t.thread is None or not t.thread.is_alive():
            continue
        if not t.tid or in_userfault(t.tid) is None:
            return False
    return True


def wait_blocked_or_done(thread: threading.Thread, tid: Callable[[], int], settle: float,
                         limit: float) -> tuple[bool, str]:
    """Wait until the thread finishes (False) or has slept in a userfault for ``settle`` s (True).

    After ``limit`` s: True if it is still alive (the reason says it timed out)."""
    start = time.monotonic()
    since: float | None = None
    while True:
        thread.join(POLL)
        if not thread.is_alive():
            return False, "finished"
        now = time.monotonic()
        where = in_userfault(tid()) if tid() else None
        if where:
            since = since if since is not None else now
            if now - since >= settle:
                return True, f"sleeps in {where}"
        else:
            since = None
        if now - start >= limit:
            return True, f"did not finish within {limit:g} s"


