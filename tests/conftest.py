"""Session-wide checks: the tests leave no files behind in /tmp or /var/tmp (issue 9).

Every temporary folder uffdsim makes is named ``uffdsim-<what>-<pid>-...``.  After the session,
a ``uffdsim-*`` entry that was not there before fails the run if the pid in its name is this
pytest process or one that has exited (a run of ours that left it).  An entry whose pid is
still running belongs to another run going on on this machine at the same time and is not ours
to judge; one without a pid in its name comes from code other than ours (every uffdsim folder
carries one) and fails the run only in CI (``CI`` set), where nothing else runs.
"""
from __future__ import annotations

import os
import re

import pytest

from uffdsim.backends.kernel.leftovers import pid_alive

BASES = ("/tmp", "/var/tmp")
PID = re.compile(r"^uffdsim-[a-z]+-(\d+)-")


def uffdsim_entries() -> set[str]:
    out: set[str] = set()
    for base in BASES:
        try:
            out |= {os.path.join(base, n) for n in os.listdir(base) if n.startswith("uffdsim")}
        except OSError:
            pass
    return out


def left_by_us(path: str) -> bool:
    m = PID.match(os.path.basename(path))
    if m is None:
        return bool(os.environ.get("CI"))
    pid = int(m.group(1))
    return pid == os.getpid() or not pid_alive(pid)


@pytest.fixture(autouse=True, scope="session")
def no_temporary_files_left():
    before = uffdsim_entries()
    yield
    left = sorted(p for p in uffdsim_entries() - before if os.path.exists(p) and left_by_us(p))
    if left:
        pytest.fail("the tests left temporary files behind: " + ", ".join(left), pytrace=False)
