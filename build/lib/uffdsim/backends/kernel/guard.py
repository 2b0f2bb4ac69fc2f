"""Change machine-wide settings (KSM, khugepaged, swap) safely when several runs share the machine.

Every change happens under an exclusive ``flock`` named after the setting, held from saving the
old values until they are written back, so two runs never save each other's temporary values
(the race that left KSM running).  While the lock is held, a journal file keeps what must be
undone; a run that finds a journal left by a holder that died restores from it first.
"""
from __future__ import annotations

import fcntl
import json
import os
import tempfile
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

LOCK_TIMEOUT = 300.0


def lock_dir() -> str:
    for base in ("/run", tempfile.gettempdir()):
        path = os.path.join(base, "uffdsim")
        try:
            os.makedirs(path, mode=0o700, exist_ok=True)
        except OSError:
            continue
        if os.access(path, os.W_OK):
            return path
    raise OSError("no writable directory for uffdsim's locks")


@contextmanager
def machine_lock(name: str, timeout: float = LOCK_TIMEOUT) -> Iterator[str]:
    """Hold the machine-wide lock ``name``; yields the path of its journal file."""
    path = os.path.join(lock_dir(), f"{name}.lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"another run holds {path} for more than {timeout:g} s") from None
                time.sleep(0.01)
        yield path + ".journal"
    finally:
        os.close(fd)          # releases the lock


@contextmanager
def journaled(name: str, save: Callable[[], Any], restore: Callable[[Any], None]) -> Iterator[Any]:
    """Under lock ``name``: undo a dead holder's changes, save the current state (also to the
    journal), run the block, restore.  Yields what ``save`` returned."""
    with machine_lock(name) as journal:
        if os.path.exists(journal):
            with open(journal) as f:
                restore(json.load(f))
            os.unlink(journal)
        saved = save()
        with open(journal, "w") as f:
            json.dump(saved, f)
        try:
            yield saved
        finally:
            restore(saved)
            os.unlink(journal)
