"""Recipes: the retry loop a careful UFFDIO_MOVE caller writes, as a tested helper.

:func:`move_range` issues UFFDIO_MOVE over a range and handles every outcome the way the kernel's
documentation (the ``move_pages()`` kernel-doc, the man page) asks callers to:

=====================================  ===================================================
what the kernel says                   what :func:`move_range` does
=====================================  ===================================================
success                                the whole remaining range is ``moved``
EAGAIN, ``move`` > 0                   that much is ``moved``; continue at +``move``
EAGAIN, ``move`` == -EAGAIN (or unset) a non-cooperative event is pending: read the uffd
                                       events (``read_events``), then retry
ENOENT (a source hole)                 ``holes="allow"``: retry that page with
                                       ALLOW_SRC_HOLES (wakes waiters); ``"skip"``: the
                                       same with DONTWAKE; ``"raise"``: raise.  Reported
                                       as ``skipped-hole``
EEXIST (destination already mapped)    someone else resolved that page: skip it, wake it
                                       (unless ``dontwake``), report ``skipped-exists``
EBUSY (page not exclusive, or pinned)  by default raise :class:`MoveRangeError` (with the
                                       report): EBUSY does not say whether the page is
                                       pinned, and copying a pinned page detaches it from
                                       the device or io_uring that keeps writing to it.
                                       With a ``fallback`` (e.g. :func:`copy_then_dontneed`
                                       for a range the caller knows holds no pin, or
                                       :func:`copy_unless_pinned`) that one page takes it,
                                       reported ``copied`` with the reason; then MOVE goes on
any other errno (EINVAL, EFAULT,       with a ``fallback``: the reasons MOVE may fail can
ENOMEM, ESRCH, ...)                    change between kernel versions, so none aborts: MOVE
                                       is narrowed to the first page, and if that page fails
                                       too it takes the ``fallback`` like EBUSY, its errno
                                       kept as the reason; only a fallback that fails as
                                       well raises :class:`MoveRangeError` (with the
                                       report).  Without one, it is raised at once
=====================================  ===================================================

The caller must know its pins: the kernel's EBUSY is the same for a page shared after ``fork()``,
merged by KSM or pinned (6.18), and only the caller knows which of its pages it registered with
io_uring, RDMA or a device.  Copy-and-zap is safe for the first two and wrong for the third.

``report.fallback_reasons()`` says which pages fell back and after which errno.

It works on anything with the tiny :class:`MoveIoctls` protocol: the simulator's
``uffdsim.userfaultfd.UserfaultfdCtx`` and the kernel's
``uffdsim.backends.kernel.sys.Userfaultfd`` (both raise :class:`uffdsim.errors.UffdError`
carrying ``.out``, the value the kernel left in ``uffdio_move.move``).
"""
from __future__ import annotations

from . import lerrno as E  # Linux's numbers, not the host's
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from .argcheck import ArgValueError, ulong
from .errors import UffdError
from .userfaultfd import validate_range

PAGE_SIZE = 4096
MODE_DONTWAKE = 1 << 0            #: UFFDIO_MOVE_MODE_DONTWAKE (also UFFDIO_COPY_MODE_DONTWAKE)
MODE_ALLOW_SRC_HOLES = 1 << 1     #: UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES
KINDS = ("moved", "copied", "skipped-hole", "skipped-exists")


class MoveIoctls(Protocol):
    """What :func:`move_range` needs from a userfaultfd object (simulated or real)."""

    def move(self, dst: int, src: int, length: int, mode: int = 0, /) -> int: ...
    def copy(self, dst: int, src: int, length: int, mode: int = 0, /) -> int: ...
    def wake(self, start: int, length: int, /) -> None: ...
    def read_msgs(self) -> list[Any]: ...


#: fallback(uffd, dst_page, src_page, page_size, dontwake) -> "copied" (the page is resolved)
#: or "retry" (the source was made movable: issue MOVE again); raises UffdError on failure
Fallback = Callable[[Any, int, int, int, bool], str]


@dataclass
class Piece:
    """A run of pages that were handled the same way (offsets in bytes from the range start)."""

    kind: str
    offset: int
    length: int
    why: str = ""           #: for a fallback: the errno MOVE failed with (``EBUSY``, ``EINVAL``...)


@dataclass
class MoveReport:
    """What :func:`move_range` did: per page range, and the ioctls it issued."""

    dst: int
    src: int
    length: int
    page_size: int = PAGE_SIZE
    pieces: list[Piece] = field(default_factory=list)
    log: list[str] = field(default_factory=list)       #: one line per call, in order
    ioctls: int = 0                                     #: MOVE and WAKE ioctls move_range issued
    fallbacks: int = 0                                  #: calls of the fallback (EBUSY or another errno)
    events: list[Any] = field(default_factory=list)     #: uffd messages read on the way

    def add(self, kind: str, offset: int, length: int, why: str = "") -> None:
        """Record ``length`` bytes at ``offset`` as ``kind`` (merged with the previous run)."""
        last = self.pieces[-1] if self.pieces else None
        if last and last.kind == kind and last.why == why and last.offset + last.length == offset:
            last.length += length
        else:
            self.pieces.append(Piece(kind, offset, length, why))

    def fallback_reasons(self) -> dict[int, str]:
        """Page index -> the errno after which that page took the fallback."""
        return {i: p.why for p in self.pieces if p.why
                for i in range(p.offset // self.page_size, (p.offset + p.length) // self.page_size)}

    def counts(self) -> dict[str, int]:
        """Pages per kind, every kind of :data:`KINDS` listed (0 when none), then any other."""
        out = dict.fromkeys(KINDS, 0)
        for p in self.pieces:
            out[p.kind] = out.get(p.kind, 0) + p.length // self.page_size
        return out

    def pages(self, kind: str) -> list[int]:
        """The page indexes (from the range start) handled as ``kind``."""
        return [i for p in self.pieces if p.kind == kind
                for i in range(p.offset // self.page_size, (p.offset + p.length) // self.page_size)]

    @property
    def done(self) -> int:
        """Bytes handled so far (equals ``length`` when move_range returned)."""
        return sum(p.length for p in self.pieces)

    def __str__(self) -> str:
        counts = ", ".join(f"{k} {n}" for k, n in self.counts().items() if n)
        extra = f" + {self.fallbacks} fallback(s)" if self.fallbacks else ""
        lines = [f"{self.done // self.page_size} of {self.length // self.page_size} pages handled "
                 f"with {self.ioctls} ioctls{extra} ({counts or 'nothing'})"]
        for p in self.pieces:
            first, n = p.offset // self.page_size, p.length // self.page_size
            where = f"page  {first}" if n == 1 else f"pages {first}-{first + n - 1}"
            lines.append(f"  {where:<12} {p.kind}" + (f" (MOVE failed: {p.why})" if p.why else ""))
        return "\n".join(lines)


@dataclass
class MoveRangeError(UffdError):
    """UFFDIO_MOVE failed in a way a retry cannot fix; ``report`` says what was done before."""

    report: MoveReport | None = field(default=None, repr=False, compare=False)
    offset: int = 0                                     #: where in the range it failed


def default_dontneed(uffd: Any) -> Callable[[int, int], None]:
    """MADV_DONTNEED in the process that owns ``uffd``: the simulator's Process, or the real one."""
    owner = getattr(uffd, "owner", None)
    if owner is not None and hasattr(owner, "madvise"):
        return lambda addr, length: owner.madvise(addr, length, "dontneed")
    from .backends.kernel import sys as ksys
    return lambda addr, length: ksys.madvise(addr, length, ksys.MADV_DONTNEED)


def copy_then_dontneed(uffd: Any, dst: int, src: int, page_size: int, dontwake: bool) -> str:
    """The copy fallback (opt-in): UFFDIO_COPY the page to ``dst``, then MADV_DONTNEED ``src``.

    NOT atomic (see chapter 3, "Atomicity"): a store to the source page between the copy and the
    zap is lost, and a reader of the source may see it disappear.  If the page is pinned (EBUSY
    because of an io_uring buffer or other long-term pin), the pinning user keeps the old frame
    and its later writes never reach ``dst``.  If the source range is registered with a uffd that
    asked for UFFD_FEATURE_EVENT_REMOVE, the MADV_DONTNEED waits until that event is read: do not
    call this from the thread that reads the events.
    """
    uffd.copy(dst, src, page_size, MODE_DONTWAKE if dontwake else 0)
    default_dontneed(uffd)(src, page_size)
    return "copied"


def copy_unless_pinned(pinned: Callable[[int, int], bool]) -> Fallback:
    """A fallback that copies like :func:`copy_then_dontneed`, except where ``pinned(src, size)``.

    ``pinned`` is the caller's own record of the source pages it pinned (io_uring fixed
    buffers, RDMA regions, vfio DMA): the kernel does not tell a pinned page's EBUSY from a
    shared one's.  For a pinned page the fallback raises EBUSY, so :func:`move_range` stops
    with the report instead of detaching the frame the device keeps writing to.
    """
    def fallback(uffd: Any, dst: int, src: int, page_size: int, dontwake: bool) -> str:
        if pinned(src, page_size):
            raise UffdError(E.EBUSY, "the caller pinned this source page: not copied", -E.EBUSY)
        return copy_then_dontneed(uffd, dst, src, page_size, dontwake)
    return fallback


def move_range(uffd: MoveIoctls, dst: int, src: int, length: int, *,
               fallback: Fallback | None = None,
               read_events: Callable[[], Any] | None = None,
               holes: str = "allow", dontwake: bool = False, allow_src_holes: bool = False,
               page_size: int = PAGE_SIZE, max_retries: int = 64) -> MoveReport:
    """Move ``[src, src+length)`` to ``[dst, dst+length)`` with UFFDIO_MOVE, handling every outcome.

    ``fallback`` handles a page that is not movable (EBUSY): by default (``None``) EBUSY is raised,
    because the kernel's EBUSY does not say whether the page is pinned; pass
    :func:`copy_then_dontneed` (copy it and drop the source page; not atomic) only for a range
    the caller knows holds no pinned page, or :func:`copy_unless_pinned` with its pin record.
    A fallback returning ``"retry"`` made the source movable (e.g. by writing to it): MOVE is
    issued again.
    ``read_events`` is called when a non-cooperative event is pending (EAGAIN with ``move`` =
    -EAGAIN); by default the uffd's messages are read and kept in ``report.events`` so nothing the
    caller needs is lost.  ``holes``: ``"allow"``, ``"skip"`` or ``"raise"`` (see the module doc).
    ENOENT alone cannot tell a hole from a missing VMA; the one-page retry with ALLOW_SRC_HOLES
    can (a missing VMA stays ENOENT and is raised).  If the source page was filled in between the
    two calls, that retry moves it (it is still reported as a hole).
    With ``allow_src_holes`` every call carries ALLOW_SRC_HOLES: holes are then counted as moved
    by the kernel and reported as ``moved``.  ``max_retries`` bounds the rounds in a row that make
    no progress (pending events that do not clear).  Raises :class:`MoveRangeError` otherwise.
    """
    if holes not in ("allow", "skip", "raise"):
        raise ValueError(f"holes must be 'allow', 'skip' or 'raise', got {holes!r}")
    dst, src, length = ulong(dst, "dst"), ulong(src, "src"), ulong(length, "length")
    if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size <= 0 or page_size % PAGE_SIZE:
        raise ArgValueError(f"page_size: expected a positive multiple of {PAGE_SIZE}, got {page_size!r:.40}")
    report = MoveReport(dst, src, length, page_size)
    if length:              # the kernel's validate_range() rejects the whole call: no page to fall back for
        try:
            validate_range(dst, length)
            validate_range(src, length)
        except UffdError as err:
            report.log.append(f"rejected before any ioctl: {err.message}")
            raise MoveRangeError(err.errno, err.message, None, None, report=report, offset=0) from None
    base = (MODE_DONTWAKE if dontwake else 0) | (MODE_ALLOW_SRC_HOLES if allow_src_holes else 0)
    off = 0
    stalls = 0              # consecutive rounds without progress (events, retries)
    retried_at = -1         # where a fallback last asked for a retry
    narrow_at = -1          # where MOVE is asked for one page only (after an unexpected errno)

    def fail(err: UffdError) -> MoveRangeError:
        report.log.append(f"give up at +{off // page_size}: {err.name}")
        return MoveRangeError(err.errno, err.message, err.out, err.trail, report=report, offset=off)

    def call(name: str, fn: Callable[..., Any], *args: Any) -> Any:
        report.ioctls += 1
        try:
            ret = fn(*args)
        except UffdError as err:
            report.log.append(f"{name} at +{off // page_size}: {err.name}, out={err.out}")
            raise
        report.log.append(f"{name} at +{off // page_size}" + ("" if ret is None else f": ok, {ret} bytes"))
        return ret

    def settle(err: UffdError) -> None:
        """A non-cooperative event is pending: read it (bounded), so that the retry can pass."""
        nonlocal stalls
        stalls += 1
        if stalls > max_retries:
            raise fail(err)
        msgs = read_events() if read_events is not None else uffd.read_msgs()
        report.log.append("read events")
        if isinstance(msgs, list):
            report.events.extend(msgs)

    def advance(kind: str, nbytes: int, reason: str = "") -> None:
        nonlocal off, stalls
        report.add(kind, off, nbytes, reason)
        off += nbytes
        stalls = 0

    def fall_back(why: UffdError) -> None:
        """The page at ``off`` cannot be moved (``why``): hand it to the fallback."""
        nonlocal retried_at
        if retried_at == off:                           # the fallback's fix did not help
            raise fail(why)
        report.fallbacks += 1
        try:
            kind = fallback(uffd, dst + off, src + off, page_size, dontwake)
        except UffdError as ferr:
            report.log.append(f"fallback at +{off // page_size}: {ferr.name}, out={ferr.out}")
            if ferr.errno == E.EEXIST:                  # someone resolved dst meanwhile
                advance("skipped-exists", page_size)
            elif ferr.errno == E.EAGAIN and (ferr.out is None or ferr.out < 0):
                settle(ferr)
            else:
                raise fail(ferr) from None
            return
        report.log.append(f"fallback at +{off // page_size}: {kind} (MOVE failed: {why.name})")
        if kind == "retry":
            retried_at = off
        else:
            advance(kind, page_size, why.name)

    while off < length:
        d, s = dst + off, src + off
        n = page_size if narrow_at == off else length - off
        try:
            advance("moved", call(f"MOVE {n // page_size}p", uffd.move, d, s, n, base))
            continue
        except UffdError as err:
            why = err
        if why.errno == E.EAGAIN and why.out is not None and why.out > 0:
            advance("moved", why.out)                   # partial progress: go on from there
        elif why.errno == E.EAGAIN:                     # -EAGAIN (unwritten on kernels < 6.15)
            settle(why)
        elif why.errno == E.ENOENT and holes != "raise" and not allow_src_holes:
            mode = base | MODE_ALLOW_SRC_HOLES | (MODE_DONTWAKE if holes == "skip" else 0)
            try:
                call("MOVE 1p +holes", uffd.move, d, s, page_size, mode)
            except UffdError as again:
                if again.errno == E.ENOENT:             # ENOENT even so: no VMA, not a hole
                    raise fail(again) from None
                stalls += 1                             # something changed: ask MOVE again
                if stalls > max_retries:
                    raise fail(again) from None
                continue
            advance("skipped-hole", page_size)
        elif why.errno == E.EEXIST:
            if not dontwake:
                call("WAKE", uffd.wake, d, page_size)
            advance("skipped-exists", page_size)
        elif why.errno == E.EBUSY and fallback is not None:
            fall_back(why)
        elif fallback is None or (why.errno == E.ENOENT and holes == "raise"):
            raise fail(why)
        elif n > page_size:                             # it may concern a later page or the
            narrow_at = off                             # range (e.g. a VMA boundary): ask for
            report.log.append(f"narrow to one page after {why.name}")   # the first page alone
        else:                                           # any other errno: never abort, because
            fall_back(why)                              # why MOVE fails may change (issue 11)
    return report


__all__ = ["move_range", "MoveReport", "MoveRangeError", "Piece", "MoveIoctls", "Fallback",
           "copy_then_dontneed", "copy_unless_pinned", "default_dontneed", "KINDS"]
