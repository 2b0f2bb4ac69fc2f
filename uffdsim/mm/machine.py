"""The machine: physical memory, the swap device, KSM, and the processes with their address spaces."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import UffdError
from ..kernels import KernelProfile, get_profile
from ..trail import Trail
from .folio import Folio, PhysicalMemory, SwapDevice
from .pagetable import PageTables
from .vma import VmaTree

from .. import lerrno as E  # Linux's numbers, not the host's


@dataclass
class MM:
    """struct mm_struct: the VMAs and page tables of one address space."""

    vmas: VmaTree = field(default_factory=VmaTree)
    pt: PageTables = field(default_factory=PageTables)
    users: int = 1                     #: mm_users: 0 once the process has exited
    mmap_cursor: int = 0x7F00_0000_0000


@dataclass
class Thread:
    """A thread of a process; ``blocked`` while it waits in handle_userfault()."""

    name: str
    proc: "Any"
    addr: int = 0
    write: bool = False
    value: int = 0
    blocked: bool = False
    done: bool = False
    wp: bool = False
    #: the trail of the thread's last retry after a wake-up (its own, not the waker's)
    trail: Trail | None = None


class FaultBlocked(Exception):
    """The faulting thread went to sleep in handle_userfault(): nobody resolves the fault."""

    def __init__(self, addr: int, write: bool, wp: bool = False) -> None:
        super().__init__(f"thread blocked on a userfault at {addr:#x}")
        self.addr, self.write, self.wp = addr, write, wp


class Segv(UffdError):
    """An access the hardware refuses: the kernel sends SIGSEGV (reported as EFAULT)."""

    def __init__(self, addr: int, why: str) -> None:
        super().__init__(E.EFAULT, f"SIGSEGV at {addr:#x}: {why}")


#: the anonymous mTHP sizes of x86-64 (KiB), each with /sys/kernel/mm/transparent_hugepage/hugepages-<size>kB/enabled
MTHP_SIZES_KB = (16, 32, 64, 128, 256, 512, 1024, 2048)
MTHP_POLICIES = ("always", "inherit", "madvise", "never")


def default_mthp() -> dict[int, str]:
    """The boot defaults: every size ``never`` except the PMD size, which ``inherit``s the top-level setting."""
    return {kb: "inherit" if kb == 2048 else "never" for kb in MTHP_SIZES_KB}


@dataclass
class MachineConfig:
    """The sysfs knobs the model honours."""

    thp: str = "madvise"               #: /sys/kernel/mm/transparent_hugepage/enabled
    #: size in KiB -> .../transparent_hugepage/hugepages-<size>kB/enabled (anonymous mTHP, Linux 6.8+)
    mthp: dict[int, str] = field(default_factory=default_mthp)
    thp_use_zero_page: bool = True     #: .../transparent_hugepage/use_zero_page
    ksm_use_zero_pages: bool = False   #: /sys/kernel/mm/ksm/use_zero_pages
    swap: bool = True                  #: a swap device is configured

    def __post_init__(self) -> None:
        """Refuse what the sysfs files would refuse (one line naming the knob)."""
        from ..argcheck import choice, flag
        choice(self.thp, ("always", "madvise", "never"), "thp")
        for knob in ("thp_use_zero_page", "ksm_use_zero_pages", "swap"):
            flag(getattr(self, knob), knob)


class Machine:
    """Everything below user space: memory, swap, and the live processes."""

    def __init__(self, config: MachineConfig | None = None, kernel: "str | KernelProfile | None" = None) -> None:
        if config is not None and not isinstance(config, MachineConfig):
            from ..argcheck import ArgTypeError
            raise ArgTypeError(f"config: expected a MachineConfig or None, got {type(config).__name__} {config!r:.60}")
        self.config = config or MachineConfig()
        self.config.mthp = {**default_mthp(), **self.config.mthp}     # our own copy: set_mthp() changes it
        #: which kernel the model answers as (:mod:`uffdsim.kernels`; default 6.18)
        self.kernel: KernelProfile = get_profile(kernel)
        self.phys = PhysicalMemory()
        self.swap = SwapDevice()
        self.processes: dict[str, Any] = {}
        self.next_pid = 1000
        self.trail = Trail()
        self.ksm_stable: dict[int, Folio] = {}

    def set_mthp(self, size_kb: int, policy: str) -> None:
        """Write ``policy`` to /sys/kernel/mm/transparent_hugepage/hugepages-<size_kb>kB/enabled (root)."""
        if size_kb != 2048 and not self.kernel.has("mthp"):
            raise UffdError(E.ENOENT, f"no hugepages-{size_kb}kB knob before Linux 6.8 (profile {self.kernel.name})")
        if size_kb not in MTHP_SIZES_KB:
            raise UffdError(E.EINVAL, f"no anonymous mTHP size {size_kb} KiB here (sizes: {', '.join(map(str, MTHP_SIZES_KB))})")
        if policy not in MTHP_POLICIES:
            raise UffdError(E.EINVAL, f"unknown mTHP policy {policy!r} ({', '.join(MTHP_POLICIES)})")
        self.config.mthp[size_kb] = policy

    # -- bookkeeping -----------------------------------------------------------------------
    def begin(self, op: str) -> Trail:
        """Start the explanation trail of a new operation."""
        self.trail = Trail(op=op)
        return self.trail

    def in_own_trail(self, op: str, work: Any) -> Trail:
        """Run ``work()`` (another thread's, after a wake-up) in a trail of its own.

        The current operation's trail gets it in ``woken``, never in its own path.
        """
        waker, sub = self.trail, Trail(op=op)
        self.trail = sub
        try:
            work()
        finally:
            self.trail = waker
            waker.woken.append(sub)
        return sub

    def release_folio(self, folio: Folio) -> None:
        """folio_put() after a mapping went away: free it when nothing else holds it."""
        if self.phys.maybe_free(folio) and folio.ksm:
            for value, kf in list(self.ksm_stable.items()):
                if kf is folio:
                    del self.ksm_stable[value]

    def swap_free(self, entry: int) -> None:
        """swap_free(): a swap PTE went away; drop the swap-cache folio with the last one."""
        slot = self.swap.slots.get(entry)
        if slot is None:
            return
        slot.count -= 1
        if slot.count <= 0:
            if slot.cache is not None:
                slot.cache.swap_entry = None
                self.release_folio(slot.cache)
                slot.cache = None
            del self.swap.slots[entry]

    def live_processes(self) -> list[Any]:
        return [p for p in self.processes.values() if p.alive]

    def spawn(self, name: str = "main") -> Any:
        """A new process with an empty address space."""
        from .process import Process
        if not isinstance(name, str) or not name:
            from ..argcheck import ArgTypeError
            raise ArgTypeError(f"name: expected a process name (a non-empty string), got {name!r:.60}")
        if name in self.processes:
            raise ValueError(f"process {name!r} exists already")
        from .huge_memory import split_huge_pmd_address
        mm = MM()
        mm.vmas.on_split = lambda addr: split_huge_pmd_address(self, mm, addr)
        proc = Process(self, name, self.next_pid, mm)
        self.next_pid += 1
        self.processes[name] = proc
        return proc
