"""uffdsim: a deterministic simulator of Linux anonymous memory and userfaultfd, UFFDIO_MOVE first.

Quick tour::

    from uffdsim import Machine
    m = Machine()
    p = m.spawn("main")
    src, dst = p.mmap(4), p.mmap(4)
    p.write(src, 4 * 4096, 0x41)
    uffd = p.userfaultfd(features=["move"])
    uffd.register(dst, 4 * 4096, ["missing"])
    uffd.move(dst, src, 4096)          # 4096: one page moved, no copy
    m.trail                            # how the kernel got there
"""
from .argcheck import ArgTypeError, ArgValueError
from .errors import UffdError, errno_name, errno_value
from .kernels import CHANGES, PROFILES, UNMODELLED, KernelProfile, get_profile
from .mm.folio import HPAGE_PMD_NR, HPAGE_PMD_SIZE, PAGE_SIZE, Folio
from .mm.machine import FaultBlocked, Machine, MachineConfig, Segv, Thread
from .mm.process import PageView, Process
from .recipes import MoveRangeError, MoveReport, copy_then_dontneed, copy_unless_pinned, move_range
from .trail import Trail
from .userfaultfd import FEATURES, UffdMsg, UserfaultfdCtx

__version__ = "0.1.0"

__all__ = [
    "Machine", "MachineConfig", "Process", "PageView", "Folio", "Thread", "Trail",
    "UffdError", "UserfaultfdCtx", "UffdMsg", "FaultBlocked", "Segv", "FEATURES",
    "errno_name", "errno_value", "PAGE_SIZE", "HPAGE_PMD_SIZE", "HPAGE_PMD_NR",
    "move_range", "MoveReport", "MoveRangeError", "copy_then_dontneed", "copy_unless_pinned",
    "ArgTypeError", "ArgValueError",
    "KernelProfile", "PROFILES", "CHANGES", "UNMODELLED", "get_profile",
]
