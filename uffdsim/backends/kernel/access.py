"""Would a user access fault with a signal?  Checked before touching memory, so a step that
would kill the process with SIGSEGV or SIGBUS is reported as EFAULT instead (as the simulator does)."""
from __future__ import annotations

import errno as E

from ...errors import UffdError
from . import owned
from . import sys as k
from .procstate import ProcState
from .sys.pagemap import Mapping, mappings  # noqa: F401 - ops and observe take them from here

PAGE = k.PAGE_SIZE



def vm_flags(addr: int) -> set[str]:
    """The VmFlags of the VMA containing addr, from /proc/self/smaps."""
    for line in k.smaps_lines(addr):
        if line.startswith("VmFlags:"):
            return set(line.split()[1:])
    return set()


def segv(addr: int, why: str) -> UffdError:
    return UffdError(E.EFAULT, f"{why} at {addr:#x}")


def check_access(state: ProcState, pages: list[int], write: bool) -> list[UffdError | None]:
    """For each page: the signal a user access would raise (as an EFAULT error), or None."""
    maps = mappings()
    entries = {e.addr: e for p in pages for e in k.pagemap(p, 1)} if pages else {}
    sigbus = any(f & k.UFFD_FEATURE_SIGBUS for f in state.features.values())
    out: list[UffdError | None] = []
    for page in pages:
        m = next((m for m in maps if m.start <= page < m.end), None)
        if m is None or not owned.covered(page, page + PAGE):
            out.append(segv(page, "SIGSEGV: no mapping"))
        elif write and "w" not in m.perms:
            out.append(segv(page, "SIGSEGV: write to a mapping without PROT_WRITE"))
        elif not write and "r" not in m.perms:
            out.append(segv(page, "SIGSEGV: read from a mapping without PROT_READ"))
        elif entries[page].guard:
            out.append(segv(page, "SIGSEGV: guard region"))
        elif sigbus and not entries[page].present and not entries[page].swapped \
                and "um" in vm_flags(page):
            out.append(segv(page, "SIGBUS: missing page in a range of a UFFD_FEATURE_SIGBUS uffd"))
        else:
            out.append(None)
    return out


def page_range(addr: int, length: int) -> list[int]:
    """The pages an access of [addr, addr+length) touches, up to the first one outside the scenario's
    memory (the access stops there with a fault): bounded by the region, whatever the length."""
    first = addr & ~(PAGE - 1)
    stop = min(addr + length, max(owned.owned_end(first), first) + PAGE)
    return list(range(first, stop, PAGE))


