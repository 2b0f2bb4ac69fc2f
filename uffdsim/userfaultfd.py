"""The userfaultfd object (fs/userfaultfd.c): handshake, registration, messages, and the ioctls.

Each ioctl method validates its arguments in the kernel's order and raises :class:`UffdError`
with the errno the kernel returns; ``UffdError.out`` is what the kernel leaves in the struct's
output field (``None`` when it did not write it).
"""
from __future__ import annotations

from . import lerrno as E  # Linux's numbers, not the host's
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable

from .argcheck import ArgValueError, flag, names, ulong
from .errors import UffdError
from .mm.fault import check_access, handle_mm_fault
from .mm.folio import HPAGE_PMD_SIZE, PAGE_SIZE, TASK_SIZE
from .mm.huge_memory import split_huge_pmd
from .mm.mfill import mfill_atomic, mfill_atomic_pte_copy, mfill_atomic_pte_zeropage
from .mm.move import UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES, UFFDIO_MOVE_MODE_DONTWAKE, move_pages
from .mm.pagetable import MarkerPte, PresentPte

if TYPE_CHECKING:
    from .mm.process import Process


#: UFFD_FEATURE_* bits, by the names scenarios use
FEATURES: dict[str, int] = {
    "pagefault_flag_wp": 1 << 0, "event_fork": 1 << 1, "event_remap": 1 << 2,
    "event_remove": 1 << 3, "missing_hugetlbfs": 1 << 4, "missing_shmem": 1 << 5,
    "event_unmap": 1 << 6, "sigbus": 1 << 7, "thread_id": 1 << 8, "minor_hugetlbfs": 1 << 9,
    "minor_shmem": 1 << 10, "exact_address": 1 << 11, "wp_hugetlbfs_shmem": 1 << 12,
    "wp_unpopulated": 1 << 13, "poison": 1 << 14, "wp_async": 1 << 15, "move": 1 << 16,
}
#: features whose effects the model does not simulate (non-cooperative events, async WP)
UNMODELLED_FEATURES = ("event_fork", "event_remap", "event_unmap", "wp_async")
#: the UFFDIO_* ioctls reported for a registered range (UFFD_API_RANGE_IOCTLS)
RANGE_IOCTLS = ("wake", "copy", "zeropage", "move", "writeprotect", "continue", "poison")
REGISTER_MODES = ("missing", "wp", "minor")
MOVE_MODES = {"dontwake": UFFDIO_MOVE_MODE_DONTWAKE, "allow_src_holes": UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES}
COPY_MODES = {"dontwake": 1, "wp": 2}
ZEROPAGE_MODES = {"dontwake": 1}


@dataclass
class UffdMsg:
    """struct uffd_msg, decoded: a pagefault (or another event) at an address."""

    type: str
    addr: int
    write: bool = False
    wp: bool = False
    end: int = 0
    on_read: Callable[[], None] | None = field(default=None, repr=False, compare=False)


def mode_bits(mode: int | Iterable[str], table: dict[str, int]) -> int:
    """A mode given as names (``["dontwake"]``, or one name ``"dontwake"``) or as the raw integer."""
    mode = names(mode, "mode")
    if isinstance(mode, int):
        return mode
    bits = 0
    for name in mode:
        if name not in table:
            raise UffdError(E.EINVAL, f"unknown mode {name!r}")
        bits |= table[name]
    return bits


def validate_range(start: int, length: int) -> None:
    """validate_range(): page-aligned start, non-zero page-multiple length, inside TASK_SIZE."""
    if start & (PAGE_SIZE - 1):
        raise UffdError(E.EINVAL, f"address {start:#x} not page aligned")
    validate_unaligned_range(start, length)


def validate_unaligned_range(start: int, length: int) -> None:
    """validate_unaligned_range(): the length and address-space checks without the alignment one."""
    if length & (PAGE_SIZE - 1) or length == 0:
        raise UffdError(E.EINVAL, f"length {length} is not a non-zero multiple of the page size")
    if start >= TASK_SIZE or length > TASK_SIZE - start:
        raise UffdError(E.EINVAL, "range outside the user address space")


class UserfaultfdCtx:
    """struct userfaultfd_ctx: owned by the mm that opened it."""

    def __init__(self, owner: "Process", name: str, user_mode_only: bool = False) -> None:
        self.owner = owner
        self.machine = owner.machine
        self.mm = owner.mm
        self.name = name
        self.user_mode_only = user_mode_only
        self.initialized = False
        self.features = 0
        self.mmap_changing = 0
        self.msgs: list[UffdMsg] = []
        self.waiters: list[Any] = []

    def __repr__(self) -> str:
        return f"UserfaultfdCtx({self.name!r}, owner={self.owner.name!r})"

    # -- plumbing ----------------------------------------------------------------------------
    def _ioctl(self, op: str) -> None:
        self.machine.begin(op)
        self.machine.trail.enter("userfaultfd_ioctl")
        if not self.initialized:
            self._fail(E.EINVAL, "UFFDIO_API handshake not done", None)

    def _fail(self, errno: int, why: str, out: int | None) -> None:
        self.machine.trail.end(f"{why} -> {E.errorcode[errno]}")
        raise UffdError(errno, why, out=out, trail=self.machine.trail)

    def _mmget(self) -> None:
        """mmget_not_zero(): the address space must still be alive."""
        if self.mm.users == 0:
            self._fail(E.ESRCH, "the address space has exited (mmget_not_zero)", None)

    def queue_pagefault(self, addr: int, write: bool, wp: bool) -> None:
        """handle_userfault(): queue the message the monitor will read."""
        self.msgs.append(UffdMsg("pagefault", addr, write, wp))

    def read_msgs(self) -> list[UffdMsg]:
        """read(2) on the userfaultfd: every pending message; reading an event completes it."""
        msgs, self.msgs = self.msgs, []
        for msg in msgs:
            if msg.on_read is not None:        # the waiting thread resumes: its own trail
                self.machine.in_own_trail(f"{msg.type} event read: the waiting thread resumes", msg.on_read)
        return msgs

    def userfaultfd_remove(self, start: int, end: int, resume: Callable[[], None]) -> None:
        """userfaultfd_remove(): raise mmap_changing and queue a REMOVE event; ``resume`` runs once it is read."""
        self.mmap_changing += 1
        self.machine.trail.enter("userfaultfd_remove")

        def complete() -> None:
            self.mmap_changing -= 1       # userfaultfd_event_complete()
            resume()

        self.msgs.append(UffdMsg("remove", start, end=end, on_read=complete))

    def wake_userfault(self, start: int, length: int) -> int:
        """wake_userfault(): blocked threads in the range retry their fault; returns how many woke."""
        woken = 0
        for proc in self.machine.live_processes():
            for t in list(proc.undone.values()):        # a done thread never waits again
                if t.blocked and proc.mm is self.mm and start <= t.addr < start + length:
                    woken += 1
                    t.trail = self.machine.in_own_trail(
                        f"thread {t.name} retries its fault", lambda: proc.retry_thread(t))
        if woken:
            self.machine.trail.note(f"woke {woken} blocked thread(s)")
        return woken

    # -- handshake and registration ------------------------------------------------------------
    def api(self, features: int | Iterable[str] = 0) -> tuple[int, list[str]]:
        """UFFDIO_API: returns (every feature the kernel offers, the ioctls of the fd)."""
        self.machine.begin("UFFDIO_API")
        bits = mode_bits(features, FEATURES)
        offered = self.machine.kernel.features
        if bits & ~offered:
            raise UffdError(E.EINVAL, "unknown feature bits" + ("" if self.machine.kernel.has("move") else
                                                                 " (this kernel has no UFFD_FEATURE_MOVE: 6.8+)"))
        if self.initialized:
            raise UffdError(E.EINVAL, "UFFDIO_API already done")
        self.features = bits
        self.initialized = True
        return offered, ["api", "register", "unregister"]

    def has_feature(self, name: str) -> bool:
        """Was the UFFD_FEATURE_* called ``name`` asked for in UFFDIO_API?"""
        if not isinstance(name, str) or name not in FEATURES:
            raise ArgValueError(f"name: unknown feature {name!r:.60} (features: {', '.join(FEATURES)})")
        return bool(self.features & FEATURES[name])

    def register(self, start: int, length: int, modes: Iterable[str] = ("missing",)) -> list[str]:
        """UFFDIO_REGISTER: attach the VMAs of the range to this userfaultfd in the given modes."""
        start, length = ulong(start, "start"), ulong(length, "length")
        self._ioctl("UFFDIO_REGISTER")
        bits = mode_bits(modes, {m: 1 << i for i, m in enumerate(REGISTER_MODES)})
        wanted = frozenset(m for i, m in enumerate(REGISTER_MODES) if bits & (1 << i))
        if not wanted or bits >> len(REGISTER_MODES):
            self._fail(E.EINVAL, "no valid registration mode", None)
        validate_range(start, length)
        self._mmget()
        end = start + length
        vmas = self.mm.vmas.overlapping(start, end)
        if not vmas:
            self._fail(E.ENOMEM if not self.mm.vmas.find(start) else E.EINVAL, "no VMA in the range", None)
        for vma in vmas:
            if "minor" in wanted and not vma.is_shmem():
                self._fail(E.EINVAL, "MINOR mode needs shmem or hugetlbfs", None)
            if not vma.is_anonymous() and not vma.is_shmem():
                self._fail(E.EINVAL, "vma_can_userfault(): not anonymous or shmem", None)
            if vma.uffd_ctx is not None and vma.uffd_ctx is not self:
                self._fail(E.EBUSY, "VMA registered with another userfaultfd", None)
        for vma in self.mm.vmas.isolate(start, end):
            vma.uffd_ctx = self
            vma.uffd_modes = wanted
        self.mm.vmas.merge_around(start, end)
        ioctls = [i for i in RANGE_IOCTLS if not (i == "move" and not self.machine.kernel.has("move"))
                  if not (i == "writeprotect" and "wp" not in wanted)
                  and not (i == "continue" and "minor" not in wanted)]
        return ioctls

    def unregister(self, start: int, length: int) -> None:
        """UFFDIO_UNREGISTER: detach the VMAs of the range, waking anything blocked there."""
        start, length = ulong(start, "start"), ulong(length, "length")
        self._ioctl("UFFDIO_UNREGISTER")
        validate_range(start, length)
        end = start + length
        wake: list[tuple[int, int]] = []
        for vma in self.mm.vmas.isolate(start, end):
            if vma.uffd_ctx is not None and vma.uffd_ctx is not self:
                self._fail(E.EBUSY, "VMA registered with another userfaultfd", None)
            if "missing" in vma.uffd_modes:
                # only a MISSING registration wakes its waiters, so that they do not hang
                wake.append((vma.start, vma.end - vma.start))
            if "wp" in vma.uffd_modes:
                self._clear_wp(vma.start, vma.end)          # userfaultfd_clear_vma()
            vma.uffd_ctx = None
            vma.uffd_modes = frozenset()
        self.mm.vmas.merge_around(start, end)
        for range_start, range_len in wake:       # the woken threads fault again once it is done
            self.wake_userfault(range_start, range_len)

    def _clear_wp(self, start: int, end: int) -> None:
        """uffd_wp_range(..., false): drop the uffd-wp bits and markers of the range."""
        pt = self.mm.pt
        for addr, pte in pt.entries_in(start, end):
            if isinstance(pte, PresentPte):
                pte.uffd_wp = False
            elif isinstance(pte, MarkerPte) and pte.kind == "uffd_wp":
                pt.set_pte(addr, None)

    # -- the range ioctls --------------------------------------------------------------------
    def _early_eagain_out(self) -> int | None:
        """The output field on the entry EAGAIN: -EAGAIN since 95567729173e (6.15, in 6.12.y), else unwritten."""
        return -E.EAGAIN if self.machine.kernel.has("eagain_out") else None

    def move(self, dst: int, src: int, length: int, mode: int | Iterable[str] = (),
             caller: "Process | None" = None) -> int:
        """UFFDIO_MOVE (userfaultfd_move()): returns the bytes moved; raises UffdError otherwise."""
        dst, src, length = ulong(dst, "dst"), ulong(src, "src"), ulong(length, "length")
        self._ioctl("UFFDIO_MOVE")
        trail = self.machine.trail
        if not self.machine.kernel.has("move"):
            self._fail(E.EINVAL, "no UFFDIO_MOVE before Linux 6.8: unknown ioctl", None)
        trail.enter("userfaultfd_move")
        if self.mmap_changing:
            self._fail(E.EAGAIN, "mmap_changing on entry", self._early_eagain_out())
        caller = caller or self.owner
        if caller.mm is not self.mm:
            self._fail(E.EINVAL, "the caller's mm is not the userfaultfd's (no cross-mm moves)", None)
        try:
            validate_range(dst, length)
            validate_range(src, length)
            bits = mode_bits(mode, MOVE_MODES)
        except UffdError as err:
            self._fail(E.EINVAL, err.message, None)
        if bits & ~(UFFDIO_MOVE_MODE_DONTWAKE | UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES):
            self._fail(E.EINVAL, f"unknown mode bits {bits:#x}", None)
        self._mmget()
        ret = move_pages(self.machine, self, self.mm, dst, src, length, bits)
        return self._finish(ret, dst, length, bits & UFFDIO_MOVE_MODE_DONTWAKE)

    def _finish(self, ret: int, dst: int, length: int, dontwake: int) -> int:
        """The common tail of COPY/ZEROPAGE/MOVE: write the output field, wake, EAGAIN if partial."""
        if ret < 0:
            raise UffdError(-ret, self.machine.trail.decision, out=ret, trail=self.machine.trail)
        if not dontwake:
            self.wake_userfault(dst, ret)
        if ret != length:
            trail = self.machine.trail
            trail.decision = f"{trail.decision}; {ret} of {length} bytes were done -> EAGAIN"
            raise UffdError(E.EAGAIN, f"only {ret} of {length} bytes done", out=ret,
                            trail=self.machine.trail)
        return ret

    def copy(self, dst: int, src: int, length: int, mode: int | Iterable[str] = (),
             caller: "Process | None" = None) -> int:
        """UFFDIO_COPY: copy the caller's bytes at ``src`` into new pages at ``dst`` (in the uffd's mm)."""
        dst, src, length = ulong(dst, "dst"), ulong(src, "src"), ulong(length, "length")
        self._ioctl("UFFDIO_COPY")
        self.machine.trail.enter("userfaultfd_copy")
        if self.mmap_changing:
            self._fail(E.EAGAIN, "mmap_changing on entry", self._early_eagain_out())
        try:
            validate_unaligned_range(src, length)
            validate_range(dst, length)
            bits = mode_bits(mode, COPY_MODES)
        except UffdError as err:
            self._fail(E.EINVAL, err.message, None)
        if bits & ~3:
            self._fail(E.EINVAL, f"unknown mode bits {bits:#x}", None)
        self._mmget()
        reader = caller or self.owner
        wp = bool(bits & 2)

        copied: list[int] = []

        def fetch(done: int) -> None:
            copied.append(read_user_byte(reader, src + done))

        def fill(vma: Any, dst_page: int, done: int) -> None:
            mfill_atomic_pte_copy(self.machine, self.mm, vma, dst_page, copied[-1], wp)

        ret = mfill_atomic(self.machine, self, self.mm, dst, length, wp, fill, "mfill_atomic_pte_copy", fetch)
        return self._finish(ret, dst, length, bits & 1)

    def zeropage(self, start: int, length: int, mode: int | Iterable[str] = ()) -> int:
        """UFFDIO_ZEROPAGE: map the zero page over an empty range."""
        start, length = ulong(start, "start"), ulong(length, "length")
        self._ioctl("UFFDIO_ZEROPAGE")
        self.machine.trail.enter("userfaultfd_zeropage")
        if self.mmap_changing:
            self._fail(E.EAGAIN, "mmap_changing on entry", self._early_eagain_out())
        try:
            validate_range(start, length)
            bits = mode_bits(mode, ZEROPAGE_MODES)
        except UffdError as err:
            self._fail(E.EINVAL, err.message, None)
        if bits & ~1:
            self._fail(E.EINVAL, f"unknown mode bits {bits:#x}", None)
        self._mmget()
        ret = mfill_atomic(self.machine, self, self.mm, start, length, False,
                           lambda vma, page, done: mfill_atomic_pte_zeropage(self.machine, self.mm, vma, page),
                           "mfill_atomic_pte_zeropage")
        return self._finish(ret, start, length, bits & 1)

    def wake(self, start: int, length: int) -> None:
        """UFFDIO_WAKE: wake the threads blocked in the range (they retry their faults)."""
        start, length = ulong(start, "start"), ulong(length, "length")
        self._ioctl("UFFDIO_WAKE")
        try:
            validate_range(start, length)
        except UffdError as err:
            self._fail(E.EINVAL, err.message, None)
        self.wake_userfault(start, length)

    def writeprotect(self, start: int, length: int, wp: bool, dontwake: bool = False) -> None:
        """UFFDIO_WRITEPROTECT: set or clear uffd-wp on the range (mwriteprotect_range())."""
        start, length = ulong(start, "start"), ulong(length, "length")
        flag(wp, "wp")
        self._ioctl("UFFDIO_WRITEPROTECT")
        try:
            validate_range(start, length)
        except UffdError as err:
            self._fail(E.EINVAL, err.message, None)
        self._mmget()
        end = start + length
        vmas = self.mm.vmas.overlapping(start, end)
        if not vmas or any("wp" not in v.uffd_modes or v.uffd_ctx is not self for v in vmas):
            self._fail(E.ENOENT, "range not registered for write-protect with this userfaultfd", None)
        pt = self.mm.pt
        for addr, _pmd in pt.huge_pmds_in(start, end):
            # change_pmd_range(): a huge PMD the range covers only in part (or any, when markers are
            # used) is split first; found by the THP fuzzer (the kernel then maps it with PTEs)
            whole = start <= addr and addr + HPAGE_PMD_SIZE <= end
            if not whole or (wp and self.has_feature("wp_unpopulated")):
                split_huge_pmd(self.machine, self.mm, self.mm.vmas.find(addr), addr)
        pages = (p for v in vmas for p in range(max(v.start, start), min(v.end, end), PAGE_SIZE))
        for page in pages:
            pte = pt.get_pte(page)
            if isinstance(pte, PresentPte):
                pte.uffd_wp = wp
                if wp:
                    pte.write = False
                elif pte.folio.anon and pte.folio.exclusive[pte.idx]:
                    pte.write = True
            elif wp and pte is None and self.has_feature("wp_unpopulated"):
                pt.set_pte(page, MarkerPte("uffd_wp"))
            elif not wp and isinstance(pte, MarkerPte) and pte.kind == "uffd_wp":
                pt.set_pte(page, None)
        if not wp and not dontwake:
            self.wake_userfault(start, length)


def read_user_byte(proc: "Process", addr: int) -> int:
    """copy_from_user() of one page's worth: faults the source page in for reading."""
    check_access(proc.mm.vmas.find(addr), addr, False)
    handle_mm_fault(proc.machine, proc.mm, addr & ~(PAGE_SIZE - 1), False)
    return proc.peek(addr & ~(PAGE_SIZE - 1))


__all__ = ["UserfaultfdCtx", "UffdMsg", "FEATURES", "validate_range"]
