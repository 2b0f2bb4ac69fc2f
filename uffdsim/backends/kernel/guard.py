"""Change machine-wide settings (KSM, khugepaged, swap) safely, with a journal that outlives us.

Locks.  Every change happens under an exclusive ``flock`` named after the setting
(``/run/uffdsim/<name>.lock``), held from saving the old values until they are written back,
so two runs never save each other's temporary values (the race that left KSM running).

Journals.  ``/run/uffdsim/<name>.v2.journal`` (JSON, written atomically: temporary file, fsync,
rename) describes a change *before* it is made, and is removed only *after* the state it
describes is gone, never before:

* knobs (KSM tunables, khugepaged ``max_ptes_*``): ``{"pid", "knobs": {path: {"old": v,
  "ours": [values we may write]}}}``.  Undoing a knob (:func:`restore_knobs`) writes ``old``
  back only if the current value is still one of ``ours``; a value someone else set after us is
  left alone (and said so on stderr).  A value equal to ours that an administrator wrote
  meanwhile cannot be told apart from ours: that is the one case we overwrite.
* swap (:mod:`.swap`): ``{"pid", "kind": "zram"|"swapfile", "dev", "path", "tmp"}``; undoing
  is idempotent (swapoff if still active, zram reset and hot_remove if the device still exists,
  temporary folder removed) and reports whether everything is gone.

Setting up and undoing run with SIGINT/SIGTERM/SIGHUP blocked (:mod:`.signals`), so no signal
lands between a change and its journal.  A run that dies anyway (SIGKILL, power loss of
``/run`` aside) leaves its journal: the next run that takes the lock replays it first, and
``python -m uffdsim doctor --repair`` replays every journal whose lock is free
(:mod:`.leftovers`).  A journal in the old format (``<name>.lock.journal``, a flat
``{knob: old value}`` mapping or a swap record) is replayed the old way, unconditionally.
"""
from __future__ import annotations

import fcntl
import glob
import json
import os
import sys
import tempfile
import time
from contextlib import contextmanager
from typing import Any, Iterator

from . import signals

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


def existing_lock_dir() -> str | None:
    """The lock directory if a run has made one already (looking never creates it), else None."""
    for base in ("/run", tempfile.gettempdir()):
        path = os.path.join(base, "uffdsim")
        if os.path.isdir(path) and os.access(path, os.W_OK):
            return path
    return None


def journal_path(name: str) -> str:
    return os.path.join(lock_dir(), f"{name}.v2.journal")


def legacy_journal_path(name: str) -> str:
    return os.path.join(lock_dir(), f"{name}.lock.journal")


def say(message: str) -> None:
    print(f"uffdsim: {message}", file=sys.stderr, flush=True)


def write_journal(path: str, record: dict[str, Any]) -> None:
    """Atomically (re)write a journal: it is either the old or the new record, never half."""
    record = {"pid": os.getpid(), **record}
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(record, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_journal(path: str) -> dict[str, Any] | None:
    try:
        with open(path) as f:
            record = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def remove_journal(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def try_lock(name: str) -> int | None:
    """The lock's fd if it is free now (the caller closes it), else None."""
    fd = os.open(os.path.join(lock_dir(), f"{name}.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


@contextmanager
def machine_lock(name: str, timeout: float = LOCK_TIMEOUT, shared: bool = False) -> Iterator[str]:
    """Hold the machine-wide lock ``name`` (exclusive, or ``shared`` with other readers); yields the
    path of its journal file.

    A signal while waiting ends the wait (:func:`.signals.check`)."""
    path = os.path.join(lock_dir(), f"{name}.lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"another run holds {path} for more than {timeout:g} s") from None
                signals.check()
                time.sleep(0.01)
        yield journal_path(name)
    finally:
        os.close(fd)          # releases the lock


# -- knobs ------------------------------------------------------------------------------------------

def read_knob(path: str) -> str | None:
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None
    if "[" in text:                                   # "always [madvise] never"
        return text[text.index("[") + 1:text.index("]")]
    return text


def write_knob(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def restore_knobs(record: dict[str, Any]) -> bool:
    """Undo a knob journal: ``old`` back where the value is still ours.  True if nothing is left
    to undo (a knob someone else changed counts as done: it is theirs now)."""
    done = True
    knobs = record.get("knobs") or {}
    # KSM's "run" last: the other tunables first, then ksmd goes back to what it was doing
    for path in sorted(knobs, key=lambda p: p.endswith("/run")):
        entry = knobs[path]
        old, ours = entry.get("old"), entry.get("ours")
        cur = read_knob(path)
        if cur is None or old is None or cur == old:
            continue
        if ours is not None and cur not in ours:
            say(f"left {path} = {cur}: changed by someone else after uffdsim set it "
                f"(it was {old} before uffdsim)")
            continue
        try:
            write_knob(path, old)
        except OSError as err:
            say(f"cannot restore {path} to {old}: {err}")
            done = False
    return done


def legacy_knobs(name: str, record: dict[str, Any], directory: str) -> dict[str, Any]:
    """An old-format journal (``{knob: old}``) as a knob record that restores unconditionally."""
    return {"knobs": {f"{directory}/{k}": {"old": str(v), "ours": None} for k, v in record.items()
                      if k != "pid" and isinstance(v, (str, int))}}


@contextmanager
def journaled_knobs(name: str, ours: dict[str, list[str]], apply: dict[str, str] | None = None,
                    legacy_dir: str = "") -> Iterator[dict[str, str]]:
    """Under lock ``name``: replay a dead run's journal, journal the knobs (old value and the
    values we may write), write ``apply``, run the block, restore.  Yields ``{path: old}``.

    Use inside :func:`.signals.protected` (the kernel backend does)."""
    with machine_lock(name) as journal:
        replay_knobs(name, legacy_dir)
        old = {p: v for p in ours if (v := read_knob(p)) is not None}
        record = {"knobs": {p: {"old": old[p], "ours": list(ours[p])} for p in old}}
        write_journal(journal, record)
        try:
            for path, value in (apply or {}).items():
                if path in old:
                    try:
                        write_knob(path, value)
                    except OSError:
                        pass
            yield old
        finally:
            if restore_knobs(record):
                remove_journal(journal)


def stale_temporaries(name: str) -> list[str]:
    """Half-written journals (``<journal>.<pid>.tmp``) of runs killed while writing one."""
    return sorted(glob.glob(glob.escape(journal_path(name)) + ".*.tmp"))


def remove_stale_temporaries(name: str) -> None:
    """Caller holds lock ``name``: nobody is writing its journal, so a temporary copy is stale."""
    for path in stale_temporaries(name):
        remove_journal(path)


def replay_knobs(name: str, legacy_dir: str = "") -> bool:
    """Caller holds lock ``name``: undo what a journal left by an earlier run describes."""
    remove_stale_temporaries(name)
    done = True
    legacy = legacy_journal_path(name)
    rec = read_journal(legacy)
    if rec is not None:
        if restore_knobs(legacy_knobs(name, rec, legacy_dir)):
            remove_journal(legacy)
        else:
            done = False
    path = journal_path(name)
    rec = read_journal(path)
    if rec is not None:
        say(f"undoing what an interrupted run (pid {rec.get('pid', '?')}) left: {path}")
        if restore_knobs(rec):
            remove_journal(path)
        else:
            done = False
    return done
