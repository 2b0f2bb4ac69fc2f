"""What interrupted kernel runs left on this machine, and undoing it (``doctor`` / ``doctor --repair``).

Leftovers are: journals in the lock folder (:mod:`.guard`) whose lock nobody holds (a run that
holds the lock is still working: it is reported as busy and never touched); swap areas under a
``uffdsim-swap-*`` folder with no run holding the ``swap`` lock; and the temporary folders of
the kernel backend, race and bench (:data:`PREFIXES`) in /tmp and /var/tmp whose creator (the pid
in the name) is gone, or, for names without a pid (older versions), untouched for 10 minutes.  :func:`repair` replays each
journal under its lock exactly as the next run would (a knob is restored only if it still holds
a value uffdsim wrote), then removes stray swap areas and folders.
"""
from __future__ import annotations

import os
import re
import shutil
import time
from dataclasses import dataclass, field

from . import guard
from .caps import active_swaps

LOCKS = ("swap", "khugepaged", "ksm", "mthp")
TEMP_BASES = ("/tmp", "/var/tmp")
#: a temporary folder without a pid in its name counts as left over after this many seconds
STALE_AFTER = 600.0
_PID = re.compile(r"^uffdsim-[a-z]+-(\d+)-")
#: the temporary folders the kernel backend, the kernel race and the kernel bench make
PREFIXES = ("uffdsim-swap-", "uffdsim-race-", "uffdsim-bench-", "uffdsim-file-")


@dataclass
class Report:
    found: list[str] = field(default_factory=list)      #: leftovers (one line each)
    busy: list[str] = field(default_factory=list)       #: in use by a running run: not leftovers
    repaired: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def pid_alive(pid: int) -> bool:
    """Is process ``pid`` still running (a process we may not signal counts as running)?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def temp_folders() -> list[str]:
    out = []
    for base in TEMP_BASES:
        try:
            names = os.listdir(base)
        except OSError:
            continue
        out += [os.path.join(base, n) for n in sorted(names) if n.startswith(PREFIXES)]
    return out


def stale_folder(path: str, now: float | None = None) -> bool:
    """Is this uffdsim-* folder's creator gone (pid in its name), or (no pid) is it old?"""
    m = _PID.match(os.path.basename(path))
    if m:
        return not pid_alive(int(m.group(1)))
    try:
        age = (now or time.time()) - os.lstat(path).st_mtime
    except OSError:
        return False
    return age > STALE_AFTER


def _journals(name: str) -> list[str]:
    if guard.existing_lock_dir() is None:       # nothing journaled here; do not create the folder
        return []
    return ([p for p in (guard.legacy_journal_path(name), guard.journal_path(name)) if os.path.exists(p)]
            + guard.stale_temporaries(name))


def _replay(name: str) -> bool:
    if name == "swap":
        from .swap import replay_swap
        return replay_swap()
    legacy = {"ksm": "/sys/kernel/mm/ksm",
              "khugepaged": "/sys/kernel/mm/transparent_hugepage/khugepaged"}.get(name, "")
    return guard.replay_knobs(name, legacy)


def scan(repair: bool = False) -> Report:
    """Find (and with ``repair`` undo) what interrupted runs left behind."""
    rep = Report()
    swap_free = True
    # No lock folder: no run ever journaled anything here (an unprivileged reader's `doctor`
    # must not leave one in /tmp).
    for name in (LOCKS if guard.existing_lock_dir() else ()):   # looking must not create the folder
        journals = _journals(name)
        fd = guard.try_lock(name)
        if fd is None:
            swap_free = swap_free and name != "swap"
            rep.busy += [f"{j}: a running uffdsim run holds {name}.lock" for j in journals]
            continue
        try:
            if not journals:
                continue
            for j in journals:
                rec = {} if j.endswith(".tmp") else guard.read_journal(j) or {}
                rep.found.append(f"journal {j} (left by pid {rec.get('pid', '?')}): {_describe(rec)}")
            if repair:
                ok = _replay(name)
                (rep.repaired if ok else rep.failed).append(f"{name}: journal replayed" if ok
                                                            else f"{name}: journal kept, see the messages above")
        finally:
            os.close(fd)
    held_swap = {j for j in _journals("swap")}
    for path in active_swaps():
        if "/uffdsim-swap-" not in path:
            continue
        if not swap_free:
            rep.busy.append(f"swap {path}: a running uffdsim run holds swap.lock")
            continue
        rep.found.append(f"swap {path} is active with no journal")
        if repair and not held_swap:
            from .swap import undo_swap
            dev = re.search(r"/zram(\d+)$", path)
            rec = {"kind": "zram" if dev else "swapfile", "dev": dev.group(1) if dev else "",
                   "path": path, "tmp": os.path.dirname(path)}
            (rep.repaired if undo_swap(rec) else rep.failed).append(f"swap {path} removed")
    now = time.time()
    for path in temp_folders():
        if not os.path.exists(path):
            continue
        if not stale_folder(path, now) or (path.startswith("/var/tmp/uffdsim-swap-") and not swap_free):
            continue                              # its run is still going
        if any(s.startswith(path + "/") for s in active_swaps()):
            continue                              # reported (and handled) as a swap above
        rep.found.append(f"folder {path}")
        if repair:
            shutil.rmtree(path, ignore_errors=True)
            (rep.failed if os.path.exists(path) else rep.repaired).append(f"folder {path} removed")
    return rep


def _describe(rec: dict) -> str:
    if not rec:
        return "half written (the run was killed while writing it): removed by --repair"
    if "knobs" in rec:
        return ", ".join(f"{os.path.basename(p)} was {e.get('old')}" for p, e in rec["knobs"].items())
    if rec.get("kind") in ("zram", "swapfile"):
        return f"{rec['kind']} swap {rec.get('path')}" + (f" (zram{rec['dev']})" if rec.get("dev") else "")
    if rec.get("kind") == "tmp":
        return f"folder {rec.get('tmp')}"
    return ", ".join(f"{k} was {v}" for k, v in rec.items() if k != "pid") or "unreadable"


def report_text(rep: Report, repair: bool) -> str:
    lines = []
    if rep.found:
        lines.append(f"leftovers of interrupted runs: {len(rep.found)}")
        lines += [f"  {x}" for x in rep.found]
    else:
        lines.append("leftovers of interrupted runs: none")
    lines += [f"  busy: {x}" for x in rep.busy]
    if repair:
        lines += [f"  repaired: {x}" for x in rep.repaired] + [f"  NOT repaired: {x}" for x in rep.failed]
    elif rep.found:
        lines.append("  undo them with: python -m uffdsim doctor --repair")
    return "\n".join(lines)
