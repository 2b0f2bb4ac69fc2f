"""UFFDIO_MOVE through an argument struct that can be read but not written.

``userfaultfd_move()`` (fs/userfaultfd.c, Linux 6.18) reads the struct, lets ``move_pages()`` work,
then stores the result in ``.move`` with ``put_user()``; if that store fails the call returns EFAULT
whatever happened before, and wakes nobody.  So EFAULT here may come after the page moved or after
nothing moved (EBUSY, a VMA-rule EINVAL, a pending event), and only argument errors, which never
write ``.move``, keep their own errno.  Chapter 7's proposed man page says so (ERRORS, EFAULT); this
test shows it on the running kernel with a small C program (``tests/data/uffd_move_unwritable_arg.c``).
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from kernel_helpers import UFFD_COMPAT, compile_c

SOURCE = Path(__file__).resolve().parent / "data" / "uffd_move_unwritable_arg.c"


@pytest.mark.kernel
def test_unwritable_move_field_turns_every_written_result_into_efault(tmp_path: Path) -> None:
    exe = compile_c(SOURCE, tmp_path / "unwritable_arg", "-Wextra", "-pthread", "-include", str(UFFD_COMPAT))
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    if run.returncode == 77:
        pytest.skip(run.stdout.strip())
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [
        "exclusive: EFAULT, move unwritten, src empty",          # the page moved
        "shared: EFAULT, move unwritten, src mapped",            # EBUSY inside: nothing moved
        "unregistered dst: EFAULT, move unwritten, src mapped",  # EINVAL inside: nothing moved
        "unaligned dst: EINVAL, move unwritten, src mapped",     # argument error: its own errno
        "pending event: EFAULT, move unwritten, src mapped",     # -EAGAIN could not be stored
    ]
