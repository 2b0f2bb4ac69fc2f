"""A process as user space sees it: system calls on its address space (mmap, madvise, fork, ...)."""
from __future__ import annotations

from .. import lerrno as E  # Linux's numbers, not the host's
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..argcheck import ArgTypeError, ArgValueError, byte, choice, flag, ulong
from ..errors import UffdError
from .fault import handle_mm_fault
from .folio import HPAGE_PMD_SIZE, PAGE_SIZE, TASK_SIZE, Folio
from .fork import dup_mmap
from .huge_memory import split_huge_pmd
from .ksm import ksm_scan
from .madvise import ADVICES, FLAG_ADVICE, flags_unchanged, madvise_populate, madvise_vma, zap_page_range
from .machine import MM, FaultBlocked, Segv, Thread
from .pagetable import HugePmd, MarkerPte, PresentPte, SwapPte, pmd_subpage
from .vma import VMA, MappedFile

if TYPE_CHECKING:
    from .machine import Machine

PROTS = ("rw", "r", "rwx", "none")   #: the protections of the scenario format (and the kernel backend)
GAP = PAGE_SIZE  #: unmapped gap left between regions so that neighbours never merge


@dataclass
class PageView:
    """What /proc/self/pagemap (and /proc/kpageflags) would tell about one page, without faulting it."""

    state: str                 #: none, zero, present, swap, marker
    value: int | None = None
    pfn: int | None = None
    thp: bool = False
    anon_exclusive: bool = False
    mapcount: int = 0
    order: int = 0             #: folio order: log2 of the folio's pages
    ksm: bool = False
    pinned: bool = False
    marker: str | None = None
    write: bool = False
    order: int | None = None   #: folio_order() of a present page's folio (the zero page: 0; huge zero page: 9)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


def page_range(addr: int, length: int) -> range:
    """The page addresses touched by ``[addr, addr + length)``."""
    first = addr & ~(PAGE_SIZE - 1)
    return range(first, addr + length, PAGE_SIZE)


MMAP_MIN_ADDR = 0x10000           #: vm.mmap_min_addr's default
ULONG = (1 << 64) - 1
OBSERVE_MAX_PAGES = 1 << 20       #: observe() returns one PageView per page: a bound on its memory


def page_align(length: int) -> int:
    """PAGE_ALIGN() in unsigned long arithmetic (wraps to 0 near 2**64)."""
    return (length + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1) & ULONG


def check_munmap(addr: int, length: int) -> int:
    """do_vmi_munmap()'s checks (Linux 6.x): aligned start, inside TASK_SIZE, non-zero; returns end."""
    if addr & (PAGE_SIZE - 1) or addr > TASK_SIZE or length > TASK_SIZE - addr:
        raise UffdError(E.EINVAL, "munmap range not page aligned or outside TASK_SIZE")
    end = addr + page_align(length)
    if end == addr:
        raise UffdError(E.EINVAL, "munmap of zero bytes")
    return end


def check_mprotect(addr: int, length: int) -> int | None:
    """do_mprotect_pkey()'s checks: aligned start (EINVAL), 0 bytes is a no-op, wrap-around ENOMEM."""
    if addr & (PAGE_SIZE - 1):
        raise UffdError(E.EINVAL, f"address {addr:#x} is not page aligned")
    if not length:
        return None
    end = addr + page_align(length)
    if end & ULONG <= addr:
        raise UffdError(E.ENOMEM, "range wraps around the address space")
    return end


def check_mlock(addr: int, length: int) -> tuple[int, int] | None:
    """do_mlock()/apply_vma_lock_flags(): start rounded down, wrap-around EINVAL, 0 bytes a no-op."""
    length = page_align(length + (addr & (PAGE_SIZE - 1)))
    addr &= ~(PAGE_SIZE - 1)
    end = addr + length
    if end > ULONG:
        raise UffdError(E.EINVAL, "range wraps around the address space")
    return None if end == addr else (addr, end)


def check_madvise(addr: int, length: int) -> int | None:
    """do_madvise(): aligned start, PAGE_ALIGN not wrapping, no wrap-around (EINVAL); 0 bytes a no-op."""
    if addr & (PAGE_SIZE - 1):
        raise UffdError(E.EINVAL, f"address {addr:#x} is not page aligned")
    aligned = page_align(length)
    if length and not aligned:
        raise UffdError(E.EINVAL, "length wraps around when page aligned")
    end = addr + aligned
    if end > ULONG:
        raise UffdError(E.EINVAL, "range wraps around the address space")
    return None if end == addr else end


class Process:
    """A process: its mm, its userfaultfds, its extra threads and its long-term pins."""

    def __init__(self, machine: "Machine", name: str, pid: int, mm: MM) -> None:
        self.machine = machine
        self.name = name
        self.pid = pid
        self.mm = mm
        self.alive = True
        self.uffds: list[Any] = []
        self.threads: dict[str, Thread] = {}
        #: the threads not yet done, in the order they were made (what wake_userfault() looks at)
        self.undone: dict[str, Thread] = {}
        self.pins: dict[str, list[Folio]] = {}
        #: ordinary references by name (a pipe holding pages after vmsplice()): the folios referenced
        self.refs: dict[str, list[Folio]] = {}

    def __repr__(self) -> str:
        return f"Process({self.name!r}, pid={self.pid})"

    # -- helpers ---------------------------------------------------------------------------
    def _begin(self, op: str) -> None:
        if not self.alive:
            raise UffdError(E.ESRCH, f"process {self.name} has exited")
        self.machine.begin(op)

    def _until_hole(self, start: int, end: int) -> tuple[list[VMA], bool]:
        """The VMAs of ``[start, end)`` up to its first hole, split at the range's ends; and is there a hole?

        mprotect(), mlock() and munlock() change the VMAs in order and stop with ENOMEM at the
        first hole: what came before it stays changed (6.18 do_mprotect_pkey(),
        apply_vma_lock_flags()); a hole at ``start`` changes nothing.
        """
        at = start
        for v in self.mm.vmas.overlapping(start, end):
            if v.start > at:
                break
            at = min(v.end, end)
        return (self.mm.vmas.isolate(start, at) if at > start else []), at < end

    # -- mmap and friends ------------------------------------------------------------------
    def mmap(self, pages: int, prot: str = "rw", shared: bool = False, file: str | None = None,
             align: int = PAGE_SIZE) -> int:
        """mmap(): a new mapping below the previous ones, with an unmapped gap around it."""
        if isinstance(pages, bool) or not isinstance(pages, int):
            raise ArgTypeError(f"pages: expected an integer, got {type(pages).__name__} {pages!r:.60}")
        choice(prot, PROTS, "prot")
        flag(shared, "shared")
        if file is not None:
            choice(file, ("none", "private", "shared"), "file")
        if isinstance(align, bool) or not isinstance(align, int) or align < PAGE_SIZE or align & (align - 1):
            raise ArgValueError(f"align: expected a power of two of at least {PAGE_SIZE}, got {align!r:.60}")
        self._begin("mmap")
        if pages <= 0:
            raise UffdError(E.EINVAL, "mmap of zero pages")
        prot = "" if prot == "none" else prot
        length = pages * PAGE_SIZE
        if length > TASK_SIZE:
            raise UffdError(E.ENOMEM, "longer than the user address space (get_unmapped_area)")
        start = (self.mm.mmap_cursor - GAP - length) & ~(align - 1)
        if start < MMAP_MIN_ADDR + align:
            raise UffdError(E.ENOMEM, "no free range of that size below the previous mappings")
        self.mm.mmap_cursor = start
        mapped: MappedFile | None = None
        if file in ("private", "shared"):
            mapped = MappedFile(name=f"file{start:x}")
            shared = file == "shared"
        elif shared:
            mapped = MappedFile(name=f"shmem{start:x}", shmem=True)
        self.mm.vmas.insert(VMA(start, start + length, prot, shared, mapped))
        return start

    def munmap(self, addr: int, length: int) -> None:
        """munmap(): zap and remove the VMAs of the range and free its page tables."""
        addr, length = ulong(addr, "addr"), ulong(length, "length")
        self._begin("munmap")
        end = check_munmap(addr, length)
        for vma in self.mm.vmas.isolate(addr, end):
            zap_page_range(self.machine, self.mm, vma, vma.start, vma.end, drop_markers=True)
            self.mm.vmas.remove(vma)
        self.mm.pt.free_pgtables(addr, end)

    def mprotect(self, addr: int, length: int, prot: str) -> None:
        """mprotect(): change the protection; removing write access write-protects the PTEs."""
        addr, length = ulong(addr, "addr"), ulong(length, "length")
        choice(prot, PROTS, "prot")
        self._begin("mprotect")
        end_or_none = check_mprotect(addr, length)
        if end_or_none is None:
            return
        end = end_or_none
        prot = "" if prot == "none" else prot
        vmas, hole = self._until_hole(addr, end)
        for vma in vmas:
            vma.prot = prot
            if "w" not in prot:
                for _, pte in self.mm.pt.entries_in(vma.start, vma.end):
                    if isinstance(pte, PresentPte):
                        pte.write = False
                for _, pmd in self.mm.pt.huge_pmds_in(vma.start, vma.end):
                    pmd.write = False
        self.mm.vmas.merge_around(addr, end)
        if hole:
            raise UffdError(E.ENOMEM, "part of the range is not mapped (the VMAs before the hole are changed)")

    def mlock(self, addr: int, length: int, onfault: bool = False) -> None:
        """mlock(): VM_LOCKED, and populate the range (write faults on private writable memory).

        ``onfault`` is mlock2(MLOCK_ONFAULT): the range is locked but not populated.
        """
        addr, length = ulong(addr, "addr"), ulong(length, "length")
        flag(onfault, "onfault")
        self._begin("mlock")
        rng = check_mlock(addr, length)
        if rng is None:
            return
        addr, end = rng
        vmas, hole = self._until_hole(addr, end)
        for vma in vmas:
            vma.flags = vma.flags | {"locked"}
        self.mm.vmas.merge_around(addr, end)
        if hole:    # do_mlock(): apply_vma_lock_flags() failed, nothing is populated
            raise UffdError(E.ENOMEM, "part of the range is not mapped (the VMAs before the hole are locked)")
        try:
            for vma in [] if onfault else self.mm.vmas.overlapping(addr, end):
                write = vma.writable() and not vma.shared
                for page in range(max(vma.start, addr), min(vma.end, end), PAGE_SIZE):
                    handle_mm_fault(self.machine, self.mm, page, write)
        except Segv as err:
            # __mm_populate() failed with EFAULT; __mlock_posix_error_return() turns it into ENOMEM
            raise UffdError(E.ENOMEM, f"mlock could not populate the range ({err.message})") from None

    def munlock(self, addr: int, length: int) -> None:
        """munlock(): clear VM_LOCKED."""
        addr, length = ulong(addr, "addr"), ulong(length, "length")
        self._begin("munlock")
        rng = check_mlock(addr, length)
        if rng is None:
            return
        addr, end = rng
        vmas, hole = self._until_hole(addr, end)
        for vma in vmas:
            vma.flags = vma.flags - {"locked"}
        self.mm.vmas.merge_around(addr, end)
        if hole:
            raise UffdError(E.ENOMEM, "part of the range is not mapped (the VMAs before the hole are unlocked)")

    def madvise(self, addr: int, length: int, advice: str) -> None:
        """madvise(): apply ``advice`` to each VMA of the range (ENOMEM if part of it is unmapped)."""
        addr, length = ulong(addr, "addr"), ulong(length, "length")
        if not isinstance(advice, str):
            raise ArgTypeError(f"advice: expected a name like 'dontneed', got {advice!r:.60}")
        self._begin(f"madvise({advice})")
        if advice not in ADVICES:
            raise UffdError(E.EINVAL, f"unknown advice {advice!r}")
        end_or_none = check_madvise(addr, length)
        if end_or_none is None:
            return
        end = end_or_none
        if advice == "populate_write":
            madvise_populate(self.machine, self.mm, addr, end)
            return
        if self.remove_event_ctxs(addr, end, advice):
            self.machine.trail.enter("userfaultfd_remove")
            raise FaultBlocked(addr, False)
        hole = False
        if advice in FLAG_ADVICE and advice != "wipeonfork" and flags_unchanged(self.mm.vmas.overlapping(addr, end), advice):
            # madvise_update_vma(): the flags are already what the advice asks: no VMA split (and so
            # no THP split at the boundary); found by the THP fuzzer (hugepage on part of a hugepage VMA)
            vmas = self.mm.vmas.overlapping(addr, end)
            covered = sum(min(v.end, end) - max(v.start, addr) for v in vmas)
            if covered != end - addr:
                raise UffdError(E.ENOMEM, "part of the range is not mapped")
            return
        vmas = self.mm.vmas.isolate(addr, end)
        if sum(v.end - v.start for v in vmas) != end - addr:
            hole = True
        for vma in vmas:
            madvise_vma(self.machine, self, vma, vma.start, vma.end, advice)
        self.mm.vmas.merge_around(addr, end)
        if hole:
            raise UffdError(E.ENOMEM, "part of the range is not mapped")

    def remove_event_ctxs(self, start: int, end: int, advice: str) -> list[Any]:
        """The userfaultfds that get a REMOVE event (UFFD_FEATURE_EVENT_REMOVE) for this advice."""
        if advice not in ("dontneed", "free"):
            return []
        ctxs = []
        for vma in self.mm.vmas.overlapping(start, end):
            ctx = vma.uffd_ctx
            if ctx is not None and ctx.has_feature("event_remove") and ctx not in ctxs:
                ctxs.append(ctx)
        return ctxs

    def madvise_async(self, thread: str, addr: int, length: int, advice: str) -> Thread:
        """madvise() from a new thread: it waits while a monitor has a REMOVE event to read."""
        addr, length = ulong(addr, "addr"), ulong(length, "length")
        self._begin(f"madvise({advice})")
        if thread in self.threads:
            raise UffdError(E.EINVAL, f"thread {thread!r} exists already")
        t = Thread(thread, self, addr)
        self.threads[thread] = self.undone[thread] = t
        end = addr + length
        ctxs = self.remove_event_ctxs(addr, end, advice)
        if not ctxs:
            self.madvise(addr, length, advice)
            t.done = True
            del self.undone[thread]
            return t
        waiting = [len(ctxs)]

        def resume() -> None:
            waiting[0] -= 1
            if waiting[0] == 0:
                t.blocked = False
                for vma in self.mm.vmas.isolate(addr, end):
                    madvise_vma(self.machine, self, vma, vma.start, vma.end, advice)
                self.mm.vmas.merge_around(addr, end)
                t.done = True
                self.undone.pop(t.name, None)

        t.blocked = True
        for ctx in ctxs:
            ctx.userfaultfd_remove(addr, end, resume)
        return t

    # -- memory access ---------------------------------------------------------------------
    def touch(self, addr: int, write: bool, value: int = 0) -> None:
        """A user access to one page: fault it in as needed, then load or store ``value``."""
        handle_mm_fault(self.machine, self.mm, addr, write)
        if write:
            self._store(addr, value)

    def _store(self, addr: int, value: int) -> None:
        pmd = self.mm.pt.pmd(addr)
        if isinstance(pmd, HugePmd):
            pmd.folio.data[pmd_subpage(addr)] = value
            pmd.folio.lazyfree = False
            return
        pte = self.mm.pt.get_pte(addr)
        assert isinstance(pte, PresentPte) and pte.write, f"store to {addr:#x} without a writable PTE"
        pte.folio.data[pte.idx] = value
        pte.folio.lazyfree = False
        pte.folio.dirty = pte.dirty = True

    def write(self, addr: int, length: int, value: int) -> None:
        """Store ``value`` in every byte of each page of the range (faulting pages in for writing)."""
        addr, length, value = ulong(addr, "addr"), ulong(length, "length"), byte(value)
        self._begin("write")
        for page in page_range(addr, length):
            self.touch(page, True, value)

    def read(self, addr: int, length: int) -> list[int]:
        """Load each page of the range (read faults: the zero page where nothing was written)."""
        addr, length = ulong(addr, "addr"), ulong(length, "length")
        self._begin("read")
        values = []
        for page in page_range(addr, length):
            self.touch(page, False)
            values.append(self.peek(page))
        return values

    def peek(self, addr: int) -> int:
        """The byte value of a mapped page, with no fault (0 for anything not present)."""
        view = self.observe(addr, PAGE_SIZE)[0]
        return view.value if view.value is not None else 0

    # -- processes -------------------------------------------------------------------------
    def fork(self, child: str) -> "Process":
        """fork(): a child with a copy-on-write copy of the address space and the same file descriptors."""
        self._begin("fork")
        proc = self.machine.spawn(child)
        dup_mmap(self.machine, self.mm, proc.mm)
        proc.uffds = list(self.uffds)
        return proc

    def exit(self) -> None:
        """exit(): release the pins, tear down the address space, wake nothing."""
        self._begin("exit")
        for folios in self.pins.values():
            for folio in folios:
                folio.pincount -= 1
        self.pins.clear()
        for folios in self.refs.values():      # the pipes close with the process
            for folio in folios:
                folio.refs -= 1
                self.machine.release_folio(folio)
        self.refs.clear()
        for vma in list(self.mm.vmas):
            zap_page_range(self.machine, self.mm, vma, vma.start, vma.end, drop_markers=True)
            self.mm.vmas.remove(vma)
        self.mm.users = 0
        self.alive = False
        for t in self.threads.values():
            t.blocked = False

    def _get_user_pages(self, addr: int, length: int, write: bool, pin: bool) -> list[Folio]:
        """__get_user_pages(): fault each page in (a write fault with FOLL_WRITE) and take a pin
        (FOLL_PIN) or a reference on its folio; the shared zero page takes neither.  On a failure
        what was taken is dropped again: the call fails whole."""
        folios: list[Folio] = []
        try:
            for page in page_range(addr, length):
                self.machine.trail.enter("follow_page")
                handle_mm_fault(self.machine, self.mm, page, write)
                pmd = self.mm.pt.pmd(page)
                folio = pmd.folio if isinstance(pmd, HugePmd) else self.mm.pt.get_pte(page).folio  # type: ignore[union-attr]
                if folio.special:
                    continue
                if pin:
                    folio.pincount += 1
                else:
                    folio.refs += 1
                folios.append(folio)
        except (UffdError, FaultBlocked):
            for folio in folios:
                if pin:
                    folio.pincount -= 1
                else:
                    folio.refs -= 1
            raise
        return folios

    # -- pins and KSM ----------------------------------------------------------------------
    def pin(self, addr: int, length: int, name: str) -> None:
        """pin_user_pages(FOLL_WRITE | FOLL_LONGTERM), as io_uring's fixed buffers do."""
        addr, length = ulong(addr, "addr"), ulong(length, "length")
        self._begin("pin")
        if name in self.pins:
            raise UffdError(E.EBUSY, f"pin {name!r} exists already")
        self.pins[name] = self._get_user_pages(addr, length, write=True, pin=True)

    def unpin(self, name: str) -> None:
        """unpin_user_pages()."""
        self._begin("unpin")
        if name not in self.pins:
            raise UffdError(E.EINVAL, f"no pin named {name!r}")
        for folio in self.pins.pop(name):
            folio.pincount -= 1
            self.machine.release_folio(folio)

    def ref(self, addr: int, length: int, name: str) -> None:
        """get_user_pages_fast() without FOLL_PIN, as vmsplice() into a pipe does: each page's folio
        gets an ordinary reference (a read fault first where nothing is mapped); the pipe ``name`` holds them."""
        addr, length = ulong(addr, "addr"), ulong(length, "length")
        self._begin("ref")
        if name in self.refs or name in self.pins:
            raise UffdError(E.EBUSY, f"reference {name!r} exists already")
        self.refs[name] = self._get_user_pages(addr, length, write=False, pin=False)

    def unref(self, name: str) -> None:
        """close() of the pipe: folio_put() of every reference it held."""
        self._begin("unref")
        if name not in self.refs:
            raise UffdError(E.EINVAL, f"no reference named {name!r}")
        for folio in self.refs.pop(name):
            folio.refs -= 1
            self.machine.release_folio(folio)

    # -- observation -----------------------------------------------------------------------
    def observe(self, addr: int, length: int) -> list[PageView]:
        """pagemap_read(): what each page is, without faulting anything in."""
        addr, length = ulong(addr, "addr"), ulong(length, "length")
        if length > OBSERVE_MAX_PAGES * PAGE_SIZE:
            raise ArgValueError(f"length: observe looks at most at {OBSERVE_MAX_PAGES} pages at a time, got {length} bytes")
        views = []
        for page in page_range(addr, length):
            views.append(self._view(page))
        return views

    def _view(self, addr: int) -> PageView:
        pmd = self.mm.pt.pmd(addr)
        if isinstance(pmd, HugePmd):
            folio, i = pmd.folio, pmd_subpage(addr)
            if folio.huge_zero:     # PAGEMAP_SCAN: PAGE_IS_HUGE | PAGE_IS_PFNZERO for the huge zero PMD
                return PageView("zero", 0, folio.pfn + i, thp=True, order=folio.order)
            return PageView("present", folio.data[i], folio.pfn + i, thp=True,
                            anon_exclusive=self._kpf_anon_exclusive(folio, i, pmd_mapped=True),
                            mapcount=folio.page_mapcount(i), order=folio.order,
                            ksm=folio.ksm, pinned=folio.maybe_dma_pinned(), write=pmd.write)
        pte = self.mm.pt.get_pte(addr)
        if pte is None:
            return PageView("none")
        if isinstance(pte, SwapPte):
            return PageView("swap", anon_exclusive=pte.exclusive)
        if isinstance(pte, MarkerPte):
            return PageView("marker", marker=pte.kind)
        folio = pte.folio
        if folio.zero:
            return PageView("zero", 0, folio.pfn, order=0)
        return PageView("present", folio.data[pte.idx], pte.pfn, thp=False,
                        anon_exclusive=self._kpf_anon_exclusive(folio, pte.idx),
                        mapcount=folio.page_mapcount(pte.idx), order=folio.order,
                        ksm=folio.ksm, pinned=folio.maybe_dma_pinned(), write=pte.write)

    def _kpf_anon_exclusive(self, folio: Folio, i: int, pmd_mapped: bool = False) -> bool:
        """stable_page_flags()'s KPF_OWNER_2 for page ``i``: PG_anon_exclusive of an anonymous page.

        Since 6.10 the flags are the folio's, so every page of a large folio shows its head
        page's flag; before, each page showed its own (and a PMD-mapped THP keeps the flag on its
        head page only, __folio_add_anon_rmap(): its tail pages show 0)."""
        if not folio.anon or folio.special:
            return False
        if folio.large and self.machine.kernel.has("kpageflags_folio"):
            return folio.exclusive[0]
        if pmd_mapped and i:
            return False
        return folio.exclusive[i]

    # -- userfaultfd -------------------------------------------------------------------------
    def userfaultfd(self, name: str | None = None, features: Any = (), user_mode_only: bool = False,
                    api: bool = True) -> Any:
        """userfaultfd(2), then (unless ``api`` is false) the UFFDIO_API handshake."""
        from ..userfaultfd import UserfaultfdCtx
        self._begin("userfaultfd")
        ctx = UserfaultfdCtx(self, name or f"uffd{len(self.uffds)}", user_mode_only)
        self.uffds.append(ctx)
        if api:
            ctx.api(features)
        return ctx

    # -- threads ---------------------------------------------------------------------------
    def fault_async(self, thread: str, addr: int, write: bool, value: int = 0) -> Thread:
        """A new thread touches ``addr``; it stays blocked while the fault waits for user space."""
        addr, value = ulong(addr, "addr"), byte(value)
        flag(write, "write")
        self._begin("fault_async")
        if thread in self.threads:
            raise UffdError(E.EINVAL, f"thread {thread!r} exists already")
        t = Thread(thread, self, addr, write, value)
        self.threads[thread] = self.undone[thread] = t
        self.retry_thread(t)
        return t

    def retry_thread(self, t: Thread) -> None:
        """The thread (re)tries its access: done, or blocked again with a new userfault message."""
        try:
            self.touch(t.addr, t.write, t.value)
        except FaultBlocked as blocked:
            t.blocked, t.wp = True, blocked.wp
            return
        except UffdError:
            t.blocked = False
            t.done = True
            self.undone.pop(t.name, None)
            raise
        t.blocked, t.done = False, True
        self.undone.pop(t.name, None)

    def ksm_merge(self) -> int:
        """Let ksmd scan until nothing more merges (the machine-wide KSM daemon)."""
        self._begin("ksm_merge")
        total = 0
        while True:
            merged = ksm_scan(self.machine)
            total += merged
            if not merged:
                return total


__all__ = ["Process", "PageView", "HPAGE_PMD_SIZE", "split_huge_pmd"]
