"""SIGINT, SIGTERM and SIGHUP while the machine is changed: never between a change and its journal.

A kernel run changes machine-wide state (swap, zram, KSM, khugepaged) in a *protected* block:
:func:`protected` blocks the three signals (``pthread_sigmask``) and routes them to a handler of
its own.  Setting up, and undoing, happen with the signals blocked, so a signal can never land
between ``swapoff`` and ``hot_remove`` or between an undo and the removal of its journal (nor
make ``swapoff(2)`` fail with EINTR).  Only the scenario's steps run in an :func:`interruptible`
window, where a signal raises :class:`Interrupted`; the exception unwinds through the ``finally``
blocks that undo the changes (signals blocked again).  A signal that arrives outside the window
is remembered.  When the outermost protected block ends, the previous handlers and signal mask
come back and the signal is raised again, so the process then reacts as it would have without
us (KeyboardInterrupt for SIGINT, death by the signal for a default SIGTERM/SIGHUP), only later.
Waiting for a machine-wide lock calls :func:`check` so a signal is not held up for minutes.
Only in the main thread (elsewhere Python cannot install handlers; the blocks do nothing); a
signal the process ignores stays ignored.
"""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Any, Iterator

CAUGHT = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(BaseException):
    """A caught signal ended the protected block (re-raised as the signal itself afterwards)."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum


_depth = 0
_window = False
_pending: list[int] = []
_handled: tuple[int, ...] = ()


def _handler(signum: int, frame: Any) -> None:
    if signum not in _pending:
        _pending.append(signum)
    if _window:
        raise Interrupted(signum)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def protected() -> Iterator[None]:
    """Signals blocked for the block (nestable); a signal that came is re-raised at the end."""
    global _depth, _handled
    if not _main_thread():
        yield
        return
    if _depth:
        _depth += 1
        try:
            yield
        finally:
            _depth -= 1
        return
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, CAUGHT)
    # a signal the process ignores (e.g. SIGINT in a background job) stays ignored
    old_handlers = {s: signal.signal(s, _handler) for s in CAUGHT
                    if signal.getsignal(s) is not signal.SIG_IGN}
    _handled = tuple(old_handlers)
    _pending.clear()
    _depth = 1
    interrupted = False
    try:
        yield
    except Interrupted:
        interrupted = True
    finally:
        _depth, _handled = 0, ()
        for s, h in old_handlers.items():
            signal.signal(s, signal.SIG_DFL if h is None else h)
        pending, _pending[:] = list(_pending), []
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)    # delivers what the kernel held
        for s in pending:
            signal.raise_signal(s)
    if interrupted:          # the previous handler ignored it: still, the run did not finish
        raise KeyboardInterrupt


@contextmanager
def interruptible() -> Iterator[None]:
    """Inside :func:`protected`: let the signals in (they raise :class:`Interrupted`)."""
    global _window
    if not _depth or not _main_thread():
        yield
        return
    if _pending:
        raise Interrupted(_pending[0])
    _window = True
    signal.pthread_sigmask(signal.SIG_UNBLOCK, CAUGHT)
    try:
        yield
    finally:
        _window = False
        signal.pthread_sigmask(signal.SIG_BLOCK, CAUGHT)


def check() -> None:
    """Inside :func:`protected`: raise :class:`Interrupted` if a signal is waiting (consumes it)."""
    if not _depth or not _main_thread():
        return
    if _handled and signal.sigpending() & set(_handled):
        info = signal.sigtimedwait(_handled, 0)
        if info is not None and info.si_signo not in _pending:
            _pending.append(info.si_signo)
    if _pending:
        raise Interrupted(_pending[0])


def child_after_fork() -> None:
    """In a process forked inside a protected block: default handlers, nothing blocked."""
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
