"""Who may call UFFDIO_MOVE on a userfaultfd: the address space that created it, not the process.

``userfaultfd_move()`` compares ``ctx->mm`` with ``current->mm`` (Linux 6.18).  A child made with
``clone(CLONE_VM)`` shares the mm and may move; the same process after ``execve()`` has a new mm and
gets EINVAL.  Chapter 5, chapter 7 (gap 5) and the proposed man page say so; this test shows both on
the running kernel with a small C program (``tests/data/uffd_move_same_mm.c``).
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from kernel_helpers import UFFD_COMPAT, compile_c

SOURCE = Path(__file__).resolve().parent / "data" / "uffd_move_same_mm.c"


@pytest.mark.kernel
def test_clone_vm_child_may_move_and_the_process_after_execve_may_not(tmp_path: Path) -> None:
    exe = compile_c(SOURCE, tmp_path / "same_mm", "-Wextra", "-include", str(UFFD_COMPAT))
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    if run.returncode == 77:
        pytest.skip(run.stdout.strip())
    assert (run.returncode, run.stdout) == (0, "clone_vm: ok\nexecve: EINVAL\n"), run.stderr
