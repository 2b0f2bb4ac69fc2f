"""Session-wide checks: the tests leave no files behind in /tmp or /var/tmp (issue 9).

Every temporary folder uffdsim makes is named ``uffdsim-<what>-<pid>-...``.  After the session,
a ``uffdsim-*`` entry that was not there before fails the run if the pid in its name is this
pytest process or one that has exited (a run of ours that left it).  An entry whose pid is
still running belongs to another run going on on this machine at the same time and is not ours
to judge; one without a pid in its name comes from code other than ours (every uffdsim folder
carries one) and fails the run only in CI (``CI`` set), where nothing else runs.

It also loads the derandomized Hypothesis profile every property test runs under (issue 18).
"""
from __future__ import annotations

import os
import re

import pytest
from hypothesis import HealthCheck, settings

from uffdsim.backends.kernel.leftovers import pid_alive

# Property tests in `make test` are derandomized (issue 18): the same examples on every run, no
# example database carried between runs, no deadline on a loaded machine.  A test's own
# settings(...) (max_examples and the like) build on this profile.  Open-ended exploration with
# random seeds is benchmarks/explore_invariants.py.
settings.register_profile("uffdsim-ci", derandomize=True, database=None, deadline=None,
                          max_examples=100, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("uffdsim-ci")

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
