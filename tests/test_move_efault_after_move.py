"""EFAULT after the work was done: a readable but unwritable ``struct uffdio_move`` (Linux 6.18).

``userfaultfd_move()`` reads the argument, moves the pages, then writes the result back with
``put_user()``.  If that write faults, the ioctl returns EFAULT although the pages have moved, the
``move`` field stays as it was, and no waiting thread is woken.  The book (chapter 5, and the
proposed man page of chapter 7) says so; this test shows it on the running kernel.
"""
from __future__ import annotations

import errno

import pytest

from uffdsim.errors import UffdError


@pytest.mark.kernel
def test_an_unwritable_argument_gives_efault_after_the_pages_moved() -> None:
    from uffdsim.backends.kernel import sys as k
    from uffdsim.backends.kernel.sys.abi import _MOVE, UFFDIO_MOVE
    ok, why = k.userfaultfd_available()
    if not ok:
        pytest.skip(why)
    kp = k.PAGE_SIZE
    src, dst, arg = k.mmap(2 * kp), k.mmap(2 * kp), k.mmap(kp)
    uffd = k.Userfaultfd.open()
    try:
        uffd.api(k.UFFD_FEATURE_MOVE)
        uffd.register(dst, 2 * kp)
        k.fill(src, 2 * kp, 0x5A)
        k.poke(arg, _MOVE.pack(dst, src, 2 * kp, 0, 12345))    # move = 12345: see if it is written
        k.mprotect(arg, kp, k.PROT_READ)                         # readable, not writable
        with pytest.raises(UffdError) as info:
            k.ioctl(uffd.fd, UFFDIO_MOVE, arg)
        assert info.value.errno == errno.EFAULT
        assert _MOVE.unpack(k.peek(arg, _MOVE.size))[4] == 12345   # the field was not written
        assert [e.present for e in k.pagemap(dst, 2)] == [True, True]  # ... but the pages moved
        assert not any(e.present for e in k.pagemap(src, 2))
        assert k.peek(dst, 1) == b"\x5a"
    finally:
        uffd.close()
        for addr, n in ((src, 2), (dst, 2), (arg, 1)):
            k.munmap(addr, n * kp)
