"""The process tree of one scenario, seen from the runner: fork, talk by name, exit, reap, kill.

The runner forks ``main`` (a fresh address space) into a new process group; ``fork`` steps add
children that inherit the group.  While a tree is alive the runner is a *child subreaper*
(``PR_SET_CHILD_SUBREAPER``), so a process whose parent exited is re-parented to the runner and
can still be reaped.  :meth:`ProcTree.close` kills the whole group with SIGKILL and reaps every
process it knows, parents before children (a parent's children are re-parented to the runner
before the parent becomes reapable), so nothing is left behind, also after a hung step or an
exception.  An ``atexit`` hook does the same for trees still open when the interpreter exits.
"""
from __future__ import annotations

import atexit
import ctypes
import os
import signal
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from . import wire
from .signals import child_after_fork

PR_SET_CHILD_SUBREAPER = 36
PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)
_OPEN: set["ProcTree"] = set()
REPLY_MARGIN = 10.0        #: s the runner waits beyond the step timeout before declaring the process stuck


def set_subreaper(on: bool) -> None:
    _libc.prctl(PR_SET_CHILD_SUBREAPER, ctypes.c_ulong(1 if on else 0), 0, 0, 0)


def pin_to_one_cpu() -> None:
    """Run the scenario's processes (and all their threads) on one CPU.

    New pages wait in per-CPU LRU batches before they reach the LRU lists, and MADV_PAGEOUT /
    MADV_FREE drain only the calling CPU's batch: a page faulted in on another CPU is skipped by
    reclaim.  On one CPU every step sees the same, reproducible result."""
    try:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    except OSError:
        pass


@dataclass
class Proc:
    name: str
    pid: int
    sock: socket.socket | None
    parent: str | None                  #: the parent's name; None = the runner
    alive: bool = True
    reaped: bool = False
    status: int | None = None
    threads: set[str] = field(default_factory=set)


class ProcessDied(Exception):
    """A scenario process went away while it was executing a step."""


class ProcTree:
    """The scenario processes by name.  Use as a context manager."""

    def __init__(self) -> None:
        self.procs: dict[str, Proc] = {}
        self.pgid = 0

    # -- lifecycle ---------------------------------------------------------------------------------
    def __enter__(self) -> "ProcTree":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Fork ``main``: a new process group running the command server."""
        from .server import ProcState, serve
        set_subreaper(True)
        _OPEN.add(self)
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        runner = os.getpid()
        pid = os.fork()
        if pid == 0:
            try:
                # dies with the runner (even a SIGKILLed one), so it cannot go on changing KSM
                # settings that the runner's journal is about to undo
                _libc.prctl(PR_SET_PDEATHSIG, ctypes.c_ulong(signal.SIGKILL), 0, 0, 0)
                if os.getppid() != runner:
                    os._exit(0)
                os.setpgid(0, 0)
                child_after_fork()
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                pin_to_one_cpu()
                mine.close()
                serve(ProcState("main", theirs))
            finally:
                os._exit(0)
        theirs.close()
        try:
            os.setpgid(pid, pid)
        except OSError:
            pass                      # the child did it first
        self.pgid = pid
        self.procs["main"] = Proc("main", pid, mine, None)

    def close(self) -> None:
        """SIGKILL the process group, reap everything, stop being a subreaper."""
        try:
            if self.pgid:
                try:
                    os.killpg(self.pgid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            for p in self.procs.values():
                if p.sock is not None:
                    p.sock.close()
                    p.sock = None
            self._reap_all()
        finally:
            _OPEN.discard(self)
            if not _OPEN:
                set_subreaper(False)

    def _reap_all(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        pending = {p.pid: p for p in self.procs.values() if not p.reaped}
        while pending and time.monotonic() < deadline:
            for pid, p in list(pending.items()):
                try:
                    got, status = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    # not ours: reaped already (by us, or by its parent before that parent died:
                    # a dead parent's children are re-parented to us before it can be reaped),
                    # or its parent is still alive and we must reap the parent first
                    parent = self.procs.get(p.parent) if p.parent else None
                    if parent is None or parent.reaped:
                        p.reaped, p.alive = True, False
                        del pending[pid]
                    continue
                if got == pid:
                    p.reaped, p.alive, p.status = True, False, status
                    del pending[pid]
            if pending:
                time.sleep(0.001)
        # the rest of the group: an accessor (a user access's task, .access) whose scenario
        # process died before it was re-parented to us
        while self.pgid and time.monotonic() < deadline:
            try:
                got, _ = os.waitpid(-self.pgid, os.WNOHANG)
            except ChildProcessError:
                break
            if got == 0:
                time.sleep(0.001)

    # -- talking -----------------------------------------------------------------------------------
    def call(self, name: str, cmd: dict[str, Any], timeout: float) -> tuple[dict[str, Any], list[int]]:
        """Send a command to a process and wait for its answer (TimeoutError, ProcessDied)."""
        p = self.procs[name]
        assert p.sock is not None
        try:
            wire.send(p.sock, cmd)
            return wire.recv(p.sock, timeout + REPLY_MARGIN)
        except (wire.ChannelClosed, BrokenPipeError, ConnectionResetError):
            self._lost(p)
            raise ProcessDied(self.describe_death(p)) from None

    def _lost(self, p: Proc) -> None:
        p.alive = False
        if p.sock is not None:
            p.sock.close()
            p.sock = None
        if p.parent is None:
            self._wait(p, 2.0)

    def _wait(self, p: Proc, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                got, status = os.waitpid(p.pid, os.WNOHANG)
            except ChildProcessError:
                return
            if got == p.pid:
                p.reaped, p.status = True, status
                return
            time.sleep(0.001)

    def describe_death(self, p: Proc) -> str:
        if p.status is not None and os.WIFSIGNALED(p.status):
            sig = os.WTERMSIG(p.status)
            return f"process {p.name} was killed by {signal.Signals(sig).name}"
        if p.status is not None:
            return f"process {p.name} exited with status {os.WEXITSTATUS(p.status)}"
        return f"process {p.name} died"

    def adopt(self, child: str, parent: str, pid: int, fd: int) -> None:
        """Register a child forked by ``parent`` (its end of the channel came with the answer)."""
        self.procs[child] = Proc(child, pid, socket.socket(fileno=fd), parent)

    def exit(self, name: str, timeout: float = 10.0) -> None:
        """End a process (as exit(2) would) and wait until it is gone (reaped by its parent)."""
        p = self.procs[name]
        assert p.sock is not None
        try:
            wire.send(p.sock, {"op": "exit"})
            wire.recv(p.sock, timeout)
        except (wire.ChannelClosed, BrokenPipeError, ConnectionResetError):
            pass
        p.sock.close()
        p.sock = None
        p.alive = False
        parent = self.procs.get(p.parent) if p.parent else None
        if parent is not None and parent.alive and parent.sock is not None:
            reply, _ = self.call(parent.name, {"op": "_reap", "pid": p.pid}, timeout)
            p.reaped = bool(reply.get("reaped"))
        else:
            self._wait(p, timeout)
        for q in self.procs.values():
            if q.parent == name and q.alive:
                q.parent = None      # re-parented to the subreaper: the runner


@atexit.register
def _close_open_trees() -> None:
    for tree in list(_OPEN):
        tree.close()
