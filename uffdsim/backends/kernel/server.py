"""The command server inside every scenario process: execute one step on the real kernel, answer.

The runner (:mod:`.proctree`) sends ``{"i", "op", "args"}`` with addresses already resolved to
integers; the server runs the op in a fresh worker thread and waits for it.  A worker that sleeps
in ``handle_userfault`` (or waits for a non-cooperative uffd event to be read) for
:data:`HANG_SETTLE` seconds, or does not finish within the step timeout, is reported
``{"hung": True}``: in a sequential scenario nobody is left to resolve that fault.  The server
stays responsive, and the runner ends the whole process tree afterwards.

``fork`` forks in the worker thread; the child continues in that thread as the command server of
a new socket pair whose other end travels to the runner with the answer (SCM_RIGHTS).  ``exit``
ends the process at once (``os._exit``), threads blocked in userfaults included.

The ops themselves are in :mod:`.ops`; user accesses are made by an accessor task that shares
the process's mm (:mod:`.access`), so a SIGSEGV or SIGBUS the kernel sends ends the accessor, never
the server.  What a process keeps between steps
and how a blocked thread is recognised: :mod:`.procstate`.
"""
from __future__ import annotations

import errno as E
import os
import socket
import threading
import time
from typing import Any

from ...errors import UffdError, errno_name
from . import wire
from .ops import OPS as _OPS, OUT_FIELD_OPS
from .procstate import HANG_SETTLE, POLL, ProcState, wait_blocked_or_done

__all__ = ["ProcState", "execute", "serve"]


def op_fork(state: ProcState, a: dict[str, Any], rec: dict[str, Any]) -> None:
    """fork(): the child becomes a command server on a new socket pair (see :func:`serve`)."""
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    pid = os.fork()
    if pid == 0:
        try:
            mine.close()
            state.sock.close()
            state.after_fork(a["child"], theirs)
            serve(state)
        finally:
            os._exit(0)
    theirs.close()
    rec["pid"] = pid
    rec["_fds"] = [mine.detach()]


#: every op: those of :mod:`.ops`, and ``fork``, which needs :func:`serve` (kept here: no import cycle)
OPS = {**_OPS, "fork": op_fork}


def execute(state: ProcState, cmd: dict[str, Any]) -> dict[str, Any]:
    """Run one op in a worker thread; the raw record (``hung`` if it sleeps in a userfault)."""
    op, args = cmd["op"], cmd["args"]
    rec: dict[str, Any] = {"ret": 0, "errno": None}
    if op in OUT_FIELD_OPS:
        rec[op] = None
    box: dict[str, Any] = {}

    def work() -> None:
        box["tid"] = threading.get_native_id()
        try:
            box["result"] = OPS[op](state, args, rec)
        except UffdError as err:
            box["error"] = err
        except OSError as err:
            box["error"] = UffdError(err.errno or E.EIO, str(err))
        except Exception as err:   # noqa: BLE001 - a bug here must not kill the process
            box["bug"] = f"{type(err).__name__}: {err}"

    worker = threading.Thread(target=work, name=f"step:{op}", daemon=True)
    worker.start()
    hung, why = wait_blocked_or_done(worker, lambda: box.get("tid", 0), HANG_SETTLE,
                                     cmd.get("timeout", 5.0))
    if hung:
        return {"ret": None, "errno": None, "hung": True, "why": f"{op} {why}"}
    if "error" in box:
        err: UffdError = box["error"]
        rec.update(ret=-1, errno=errno_name(err.errno))
        if op in OUT_FIELD_OPS:
            rec[op] = err.out
        if err.message:
            rec["why"] = err.message
    elif "bug" in box:
        rec.update(ret=-1, errno="EBACKEND", why=f"kernel backend error: {box['bug']}")
    elif op in OUT_FIELD_OPS:
        rec[op] = box.get("result")
    return rec


def reap(pid: int, timeout: float = 10.0) -> dict[str, Any]:
    """waitpid() for a child that was told to exit."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            got, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return {"reaped": False, "why": "not a child"}
        if got == pid:
            return {"reaped": True, "status": status}
        if time.monotonic() > deadline:
            return {"reaped": False, "why": "did not exit in time"}
        time.sleep(POLL)


def serve(state: ProcState) -> None:
    """The command loop: never returns (exits the process when told to or when the runner is gone)."""
    while True:
        try:
            cmd, _ = wire.recv(state.sock)
        except (wire.ChannelClosed, OSError):
            os._exit(0)
        op = cmd["op"]
        if op == "exit":
            os._exit(0)
        if op == "_reap":
            wire.send(state.sock, reap(cmd["pid"]))
            continue
        rec = execute(state, cmd)
        fds = rec.pop("_fds", [])
        try:
            wire.send(state.sock, rec, fds)
        finally:
            for fd in fds:
                os.close(fd)
