"""The scenario ops, as one scenario process executes them on the running kernel.

Each op is ``fn(state, args, rec)``: ``args`` are the step's fields with addresses resolved to
integers and lengths in bytes; the op raises :class:`UffdError` with the kernel's errno, stores
extra result fields in ``rec`` and returns the ioctl output field (move/copy/zeropage).
"""
from __future__ import annotations

import errno as E
import os
import socket
import tempfile
import threading
import time
from typing import Any, Callable

from ...errors import UffdError
from . import sys as k
from . import owned, probe
from .access import Mapping, mappings, page_range, user_access
from .observe import observe
from . import procstate
from .procstate import EVENT_GRACE, THREAD_MAX, AsyncThread, ProcState, all_threads_settled, wait_blocked_or_done

PAGE = k.PAGE_SIZE
GAP = PAGE                       #: the unmapped gap kept around every region (CONTRACT.md)

PROTS = {"rw": k.PROT_READ | k.PROT_WRITE, "r": k.PROT_READ,
         "rwx": k.PROT_READ | k.PROT_WRITE | k.PROT_EXEC, "none": k.PROT_NONE}
ADVICES = {"dontneed": k.MADV_DONTNEED, "free": k.MADV_FREE, "dontfork": k.MADV_DONTFORK,
           "dofork": k.MADV_DOFORK, "wipeonfork": k.MADV_WIPEONFORK,
           "keeponfork": k.MADV_KEEPONFORK, "mergeable": k.MADV_MERGEABLE,
           "unmergeable": k.MADV_UNMERGEABLE, "hugepage": k.MADV_HUGEPAGE,
           "nohugepage": k.MADV_NOHUGEPAGE, "pageout": k.MADV_PAGEOUT,
           "collapse": k.MADV_COLLAPSE, "guard_install": k.MADV_GUARD_INSTALL,
           "guard_remove": k.MADV_GUARD_REMOVE, "populate_write": k.MADV_POPULATE_WRITE}
REGISTER_MODES = {"missing": k.UFFDIO_REGISTER_MODE_MISSING, "wp": k.UFFDIO_REGISTER_MODE_WP,
                  "minor": k.UFFDIO_REGISTER_MODE_MINOR}
MODE_BITS = {"copy": {"dontwake": k.UFFDIO_COPY_MODE_DONTWAKE, "wp": k.UFFDIO_COPY_MODE_WP},
             "zeropage": {"dontwake": k.UFFDIO_ZEROPAGE_MODE_DONTWAKE},
             "move": {"dontwake": k.UFFDIO_MOVE_MODE_DONTWAKE,
                      "allow_src_holes": k.UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES}}


def _free(maps: list[Mapping], lo: int, hi: int) -> bool:
    return not any(m.start < hi and lo < m.end for m in maps)


def op_mmap(state: ProcState, a: dict[str, Any], rec: dict[str, Any]) -> None:
    length = a["pages"] * PAGE
    align = max(a.get("align", PAGE), PAGE)
    prot = PROTS[a.get("prot", "rw")]
    file = a.get("file", "none")
    fd = -1
    if file in ("private", "shared"):
        try:                        # O_TMPFILE: a file without a name, nothing to leave behind
            fd = os.open(tempfile.gettempdir(), os.O_TMPFILE | os.O_RDWR, 0o600)
        except (OSError, AttributeError):
            fd, path = tempfile.mkstemp(prefix=f"uffdsim-file-{os.getpid()}-")
            os.unlink(path)
        os.ftruncate(fd, length)
        flags = k.MAP_SHARED if file == "shared" else k.MAP_PRIVATE
    else:
        flags = (k.MAP_SHARED if a.get("shared") else k.MAP_PRIVATE) | k.MAP_ANONYMOUS
    cursor = a["cursor"]
    try:
        if length + 2 * GAP > cursor:
            # no room below the previous regions: the kernel places it (or says ENOMEM) by itself
            got = k.mmap(length, prot, flags, fd, 0)
            rec["addr"] = got
            owned.own(got, got + length)
            return
        for _ in range(64):
            start = (cursor - GAP - length) & ~(align - 1)
            if _free(mappings(), start - GAP, start + length + GAP):
                try:
                    got = k.mmap(length, prot, flags | k.MAP_FIXED_NOREPLACE, fd, 0, addr=start)
                except UffdError as err:
                    if err.errno != E.EEXIST:
                        raise
                else:
                    if got == start:
                        rec["addr"] = start
                        owned.own(start, start + length)
                        return
                    k.munmap(got, length)
            cursor = start - (1 << 30)
        raise UffdError(E.ENOMEM, "no free place for the region")
    finally:
        if fd >= 0:
            os.close(fd)


def op_write(state: ProcState, a: dict[str, Any], rec: dict[str, Any]) -> None:
    """The value stored in every byte of each page, by user writes made for real (:mod:`.access`);
    with ``value_step``, page k gets ``value + k * value_step`` (mod 256), one write per page."""
    pages = page_range(a["at"], a["length"])
    step = a.get("value_step", 0)
    runs = [(pages, a["value"])] if not step else \
        [([page], (a["value"] + n * step) & 255) for n, page in enumerate(pages)]
    for run, value in runs:
        err = user_access(run, True, value)
        if err:
            raise err


def op_read(state: ProcState, a: dict[str, Any], rec: dict[str, Any]) -> None:
    """Every byte of each page read by user loads made for real (:mod:`.access`)."""
    err = user_access(page_range(a["at"], a["length"]), False)
    if err:
        raise err


def op_uffd(state: ProcState, a: dict[str, Any], rec: dict[str, Any]) -> None:
    u = k.Userfaultfd.open(user_mode_only=a.get("user_mode_only", False))
    state.uffds.append(u)
    state.uffd_names[a.get("name") or f"uffd{len(state.uffds) - 1}"] = u
    if a.get("api", True):
        _api(state, u, a.get("features", []))


def _api(state: ProcState, u: k.Userfaultfd, features: list[str]) -> None:
    mask = 0
    for name in features:
        mask |= k.UFFD_FEATURES[name]
    u.api(mask)
    state.features[u.fd] = mask


def _modes(op: str, names: list[str] | int) -> int:
    if isinstance(names, int):          # a raw mode value, for bad-argument scenarios
        return names
    bits = 0
    for n in names:
        bits |= MODE_BITS[op][n]
    return bits


def op_register(state: ProcState, a: dict[str, Any], rec: dict[str, Any]) -> None:
    names = a.get("mode", ["missing"])
    mode = names if isinstance(names, int) else 0
    for n in [] if isinstance(names, int) else names:
        mode |= REGISTER_MODES[n]
    u = state.ctx(a)
    start, length = a["at"], a["length"]
    lo, hi = owned.reach(start, length)
    foreign = owned.interpreter_parts(lo, hi)
    if not foreign:
        u.register(start, length, mode)
        return
    # never register this Python process's own memory (owned.py's rule): the kernel judges the
    # arguments in a probe process, then gets the parts of the range outside the interpreter's memory
    errno = probe.register(u, start, length, mode)
    if errno is not None:
        raise UffdError(errno, "UFFDIO_REGISTER: the kernel refused the arguments (asked in a probe process)")
    parts = [(s, e) for s, e in owned.between(start, hi, foreign) if owned.pieces(s, e)]
    if not parts:
        raise UffdError(E.ENOMEM, "no VMA of the scenario in the range (the rest is the interpreter's memory)")
    for s, e in parts:
        u.register(s, e - s, mode)


def start_async(state: ProcState, name: str, body: Callable[[], None], rec: dict[str, Any]) -> None:
    """Run ``body`` in a new named thread of this process; ``rec["blocked"]`` once it settled.

    An error the body raised before blocking is the step's error (as in the simulator)."""
    if name in state.threads:
        raise UffdError(E.EINVAL, f"thread {name!r} exists already")
    t = AsyncThread(name)
    state.threads[name] = t

    def run() -> None:
        t.tid = threading.get_native_id()
        try:
            body()
        except UffdError as err:
            t.error = err

    t.thread = threading.Thread(target=run, name=f"async:{name}", daemon=True)
    t.thread.start()
    rec["blocked"], why = wait_blocked_or_done(t.thread, lambda: t.tid, procstate.THREAD_SETTLE, THREAD_MAX)
    if rec["blocked"]:
        rec["why"] = why
    elif t.error is not None:
        raise t.error


def op_fault_async(state: ProcState, a: dict[str, Any], rec: dict[str, Any]) -> None:
    addr, write, value = a["at"], a.get("write", False), a.get("value", 0)
    page = addr & ~(PAGE - 1)

    def touch() -> None:
        # made for real by an accessor; blocks as the thread would.  The byte asked for first (the
        # fault, and its message with UFFD_FEATURE_EXACT_ADDRESS, is at that address), then its page.
        err = (user_access([page], write, value, first=addr) if addr != page else None) or user_access([page], write, value)
        if err:
            raise err

    start_async(state, a["thread"], touch, rec)


def op_madvise(state: ProcState, a: dict[str, Any], rec: dict[str, Any]) -> None:
    """madvise(); with ``thread``, from a new thread (it waits while a REMOVE event is unread)."""
    def advise() -> None:
        advice = ADVICES[a["advice"]]
        spread = owned.populate if a["advice"] == "populate_write" else owned.madvise
        spread(a["at"], a["length"], lambda s, n: k.madvise(s, n, advice), advice)

    if "thread" in a:
        start_async(state, a["thread"], advise, rec)
    else:
        advise()


def op_thread(state: ProcState, a: dict[str, Any], rec: dict[str, Any]) -> None:
    t = state.threads.get(a["thread"])
    if t is None:
        raise UffdError(E.EINVAL, f"no thread named {a['thread']!r} in process {state.name}")
    if t.thread is None:
        rec["blocked"] = False
        return
    rec["blocked"], why = wait_blocked_or_done(t.thread, lambda: t.tid, procstate.THREAD_SETTLE, THREAD_MAX)
    if rec["blocked"]:
        rec["why"] = why


def op_read_events(state: ProcState, a: dict[str, Any], rec: dict[str, Any]) -> None:
    """Read every queued message; first give running threads ``EVENT_GRACE`` s to raise theirs.

    A thread asleep in a userfault queued its message before it slept, and a finished one raises
    none, so when every thread of the process is one or the other there is nothing to wait for
    (a ported selftest reads 8192 faults, one at a time)."""
    u = state.ctx(a)
    if procstate.ALWAYS_GRACE or not all_threads_settled(state):
        time.sleep(EVENT_GRACE)
    events = []
    for m in u.read_msgs(0):
        addr = m.get("address", m.get("start", m.get("from", 0)))
        events.append({"type": m["type"], "addr": addr, "write": bool(m.get("write", False))})
    rec["events"] = events


def op_pin(state: ProcState, a: dict[str, Any], rec: dict[str, Any]) -> None:
    if a["name"] in state.pins:
        raise UffdError(E.EBUSY, f"pin {a['name']!r} exists already")
    state.pins[a["name"]] = k.Pin(a["at"], a["length"])


def op_unpin(state: ProcState, a: dict[str, Any], rec: dict[str, Any]) -> None:
    pin = state.pins.pop(a["name"], None)
    if pin is None:
        raise UffdError(E.EINVAL, f"no pin named {a['name']!r}")
    pin.release()


def op_ref(state: ProcState, a: dict[str, Any], rec: dict[str, Any]) -> None:
    if a["name"] in state.refs or a["name"] in state.pins:
        raise UffdError(E.EBUSY, f"reference {a['name']!r} exists already")
    if owned.interpreter_parts(*owned.reach(a["at"], a["length"])):   # owned.py's rule
        raise UffdError(E.EFAULT, "ref: the range reaches memory the scenario did not map")
    state.refs[a["name"]] = k.PageRef(a["at"], a["length"])


def op_unref(state: ProcState, a: dict[str, Any], rec: dict[str, Any]) -> None:
    ref = state.refs.pop(a["name"], None)
    if ref is None:
        raise UffdError(E.EINVAL, f"no reference named {a['name']!r}")
    ref.release()


def ksm_registered(pids: list[int]) -> bool:
    """Has any of these processes memory that KSM scans (an MADV_MERGEABLE area)?

    ksmd only runs while some mm is registered; with none, full_scans never advances."""
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps") as f:
                if any(line.startswith("VmFlags:") and " mg" in line for line in f):
                    return True
        except OSError:
            continue
    return False


def op_ksm_merge(state: ProcState, a: dict[str, Any], rec: dict[str, Any]) -> None:
    """Run ksmd fast for a few full scans, then restore its settings (merged pages stay merged).

    The runner holds the machine-wide ``ksm`` lock around the whole scenario (:mod:`.ksm`).

    Nothing to do when no scenario process has a mergeable area (ksmd would not even scan)."""
    if not ksm_registered(a.get("pids", [os.getpid()])):
        rec["ksm"] = "no MADV_MERGEABLE memory in the scenario: nothing to scan"
        return
    runner = a.get("runner")
    rec["ksm"] = k.ksm_merge_until_stable(timeout=a.get("ksm_timeout", 30.0), scans=3,
                                          alive=(lambda: os.path.exists(f"/proc/{runner}")) if runner else None)


def op_move(state: ProcState, a: dict[str, Any], rec: dict[str, Any]) -> Any:
    """UFFDIO_MOVE as written, unless the source reaches the interpreter's memory (owned.py's rule).

    Then the kernel judges the arguments in a probe process; if it accepts them, the source is a
    hole for the scenario and this process's own pages are never moved: ENOENT, written to .move,
    as move_pages() answers for a source without a VMA."""
    u = state.ctx(a)
    mode = _modes("move", a.get("mode", []))
    dst, src, length = a["dst"], a["src"], a["length"]
    if owned.interpreter_parts(*owned.reach(src, length)):
        errno = probe.move(u, dst, src, length, mode)
        if errno is not None:
            raise UffdError(errno, "UFFDIO_MOVE: the kernel refused the arguments (asked in a probe process)")
        raise UffdError(E.ENOENT, "the source reaches the interpreter's memory (a hole for the scenario)", out=-E.ENOENT)
    return u.move(dst, src, length, mode)


Op = Callable[[ProcState, dict[str, Any], dict[str, Any]], Any]
OPS: dict[str, Op] = {
    "mmap": op_mmap,
    "munmap": lambda s, a, r: owned.munmap(a["at"], a["length"], k.munmap),
    "mprotect": lambda s, a, r: owned.mprotect(a["at"], a["length"], lambda x, n: k.mprotect(x, n, PROTS[a["prot"]]),
                                               PROTS[a["prot"]]),
    "mlock": lambda s, a, r: owned.mlock(a["at"], a["length"], lambda x, n: k.mlock(x, n, onfault=a.get("onfault", False)),
                                         k.MLOCK_ONFAULT if a.get("onfault") else 0),
    "munlock": lambda s, a, r: owned.mlock(a["at"], a["length"], k.munlock, name="munlock"),
    "madvise": op_madvise,
    "write": op_write,
    "read": op_read,
    "uffd": op_uffd,
    "api": lambda s, a, r: _api(s, s.ctx(a), a.get("features", [])),
    "register": op_register,
    "unregister": lambda s, a, r: s.ctx(a).unregister(a["at"], a["length"]),
    "copy": lambda s, a, r: s.ctx(a).copy(a["dst"], a["src"], a["length"], _modes("copy", a.get("mode", []))),
    "zeropage": lambda s, a, r: s.ctx(a).zeropage(a["at"], a["length"], _modes("zeropage", a.get("mode", []))),
    "move": op_move,
    "wake": lambda s, a, r: s.ctx(a).wake(a["at"], a["length"]),
    "writeprotect": lambda s, a, r: s.ctx(a).writeprotect(a["at"], a["length"], a["wp"]),
    "ksm_merge": op_ksm_merge,
    "pin": op_pin,
    "unpin": op_unpin,
    "ref": op_ref,
    "unref": op_unref,
    "observe": lambda s, a, r: r.update(pages=observe(a["at"], a["length"])),
    "fault_async": op_fault_async,
    "thread": op_thread,
    "read_events": op_read_events,
}
OUT_FIELD_OPS = ("move", "copy", "zeropage")


