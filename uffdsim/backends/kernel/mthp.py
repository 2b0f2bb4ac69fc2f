"""The ``mthp`` step on the running kernel: one anonymous mTHP size's policy, set for a scenario
and restored after it.

``mthp: {size: 64K, enabled: always}`` writes ``always`` to
``/sys/kernel/mm/transparent_hugepage/hugepages-64kB/enabled`` (root; Linux 6.8+).  Before the
first step runs, :func:`mthp_guard` journals every knob the scenario's ``mthp`` steps name, under
the machine-wide ``mthp`` lock (:mod:`.guard`), with the values the scenario may write; when the
scenario ends (or a signal ends it) each knob gets its old value back if it still holds one of
ours, and a run killed meanwhile is undone by the next one or ``doctor --repair``.

A scenario without ``mthp`` steps holds the same lock *shared* (root only): the policy cannot
change under it, while any number of such runs go on together.
"""
from __future__ import annotations

import errno as E
import os
from contextlib import contextmanager
from typing import Iterator

from ...errors import UffdError
from ...scenario import Scenario
from . import guard

THP_DIR = "/sys/kernel/mm/transparent_hugepage"


def knob(size_kb: int) -> str:
    """The sysfs file of one anonymous mTHP size."""
    return f"{THP_DIR}/hugepages-{size_kb}kB/enabled"


def mthp_steps(scenario: Scenario) -> dict[str, list[str]]:
    """knob path -> the policies the scenario writes there."""
    ours: dict[str, list[str]] = {}
    for s in scenario.steps:
        if s.op == "mthp":
            values = ours.setdefault(knob(s.args["size"]), [])
            if s.args["enabled"] not in values:
                values.append(s.args["enabled"])
    return ours


def missing_knob(scenario: Scenario) -> str | None:
    """Why the scenario's mthp steps cannot run here (a size this kernel lacks), else None."""
    for path in mthp_steps(scenario):
        if not os.path.exists(path):
            return f"no {path} (anonymous mTHP needs Linux 6.8+, and that size)"
    return None


def set_mthp(size_kb: int, policy: str) -> None:
    """The step itself: write the policy (the runner journaled the knob before the scenario began)."""
    path = knob(size_kb)
    try:
        guard.write_knob(path, policy)
    except OSError as err:
        raise UffdError(err.errno or E.EINVAL, f"{path}: {err.strerror}") from None


@contextmanager
def mthp_guard(scenario: Scenario) -> Iterator[dict[str, str]]:
    """Journal and later restore the knobs the scenario sets (exclusive lock), or hold the lock
    shared so that no concurrent run changes a policy under this one.  Yields ``{path: old}``."""
    ours = mthp_steps(scenario)
    if ours:
        with guard.journaled_knobs("mthp", ours) as old:
            yield old
    elif os.geteuid() == 0 and os.path.isdir(THP_DIR):
        with guard.machine_lock("mthp", shared=True):
            yield {}
    else:
        yield {}
