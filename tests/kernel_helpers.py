"""Helpers shared by the tests that use the running kernel."""
from __future__ import annotations

import os
import select
from contextlib import contextmanager
from typing import Iterator


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
