"""Helpers shared by the tests that use the running kernel."""
from __future__ import annotations

import os
import select
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest


@contextmanager
def live_child() -> Iterator[int]:
    """fork(); the child idles until released (at most 30 s) and _exits; always reaped."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(w)
            select.select([r], [], [], 30)
        finally:
            os._exit(0)
    os.close(r)
    try:
        yield pid
    finally:
        os.close(w)
        os.waitpid(pid, 0)


#: uapi definitions of UFFDIO_MOVE for headers older than Linux 6.8 (passed with ``-include``)
UFFD_COMPAT = Path(__file__).resolve().parents[1] / "uffdsim" / "examples" / "manpage" / "uffdio_move_compat.h"


def compile_c(source: Path, exe: Path, *flags: str) -> Path:
    """Build ``source`` into ``exe`` with -O2 -Wall -Werror and ``flags``; skip when there is no C
    compiler, fail with the compiler's output when it does not build."""
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        pytest.skip("no C compiler (cc, gcc or clang) on PATH")
    build = subprocess.run([cc, "-O2", "-Wall", "-Werror", *flags, "-o", str(exe), str(source)],
                           capture_output=True, text=True, timeout=120)
    assert build.returncode == 0, f"{source.name} does not compile:\n{build.stderr}"
    return exe
