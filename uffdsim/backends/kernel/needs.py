"""What a scenario needs beyond a userfaultfd, inferred from its ops (or declared in ``requires``).

Three needs decide whether an unprivileged run can check a scenario (Linux 6.18 rules):

* ``root``: setup only root may do: KSM (``ksm_merge`` writes /sys/kernel/mm/ksm), setting up swap
  (``requires: [swap]``; with swap already active, the lock that keeps a concurrent run from
  removing it mid-scenario lives in root's /run/uffdsim, so unprivileged runs skip these too), khugepaged tuning (THP scenarios:
  :mod:`.khugepaged` sets ``max_ptes_*`` to 0 so khugepaged cannot collapse the memory mid-run;
  knobs found at 0 do not count, as a concurrent root run may have set them only for a while).
  UFFD_FEATURE_EVENT_FORK needs CAP_SYS_PTRACE (userfaultfd_api() returns EPERM without it).
  Long-term pins need no root: io_uring fixed buffers are open to every user (unless
  ``kernel.io_uring_disabled``), charged to RLIMIT_MEMLOCK.
* ``kernel_faults``: a step makes the *kernel* touch a missing-registered region: a pin or
  populating ``mlock`` (get_user_pages()), UFFDIO_COPY from a registered source
  (copy_from_user()).  A userfaultfd opened with UFFD_USER_MODE_ONLY (all an unprivileged user gets
  when vm.unprivileged_userfaultfd = 0) does not handle those: handle_userfault() returns
  VM_FAULT_SIGBUS and the syscall fails with EFAULT, where the simulator's full userfaultfd would
  have raised a fault.
* ``frames``: an ``observe`` step.  Only root sees PFNs in /proc/self/pagemap (and reads
  /proc/kpageflags), so without it frames of present pages are reported as not observable and
  not compared (see :mod:`.observe`): the scenario runs with partial observation, not skipped.

:func:`unmet` turns the needs and the :class:`~.caps.Capabilities` into a skip reason.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from ...scenario import Addr, Scenario
from .khugepaged import uses_thp

ROOT, KERNEL_FAULTS, FRAMES = "root", "kernel_faults", "frames"
#: the needs a scenario may declare in ``requires`` (on top of what is inferred)
NEEDS = (ROOT, KERNEL_FAULTS, FRAMES)


@dataclass(frozen=True)
class Need:
    """One need and the step (or declaration) it comes from."""

    what: str            #: ROOT, KERNEL_FAULTS or FRAMES
    why: str


def _region(a: object) -> str | None:
    return a.region if isinstance(a, Addr) else None


def scenario_needs(scenario: Scenario, swap_active: bool = False) -> list[Need]:
    """Every need of the scenario, with the step that causes it (declared needs first)."""
    needs = [Need(r, "declared in requires") for r in scenario.requires if r in NEEDS]
    if "ksm" in scenario.requires:
        needs.append(Need(ROOT, "KSM: its /sys/kernel/mm/ksm knobs are root-only"))
    if "swap" in scenario.requires:
        needs.append(Need(ROOT, "swap: none is active, and setting one up is root-only" if not swap_active
                          else "swap: the machine-wide swap lock (kept in /run/uffdsim, root's) is "
                               "what stops a concurrent run from removing the swap mid-scenario"))
    if uses_thp(scenario):
        needs.append(Need(ROOT, "THP: keeping khugepaged from collapsing the scenario's memory "
                                "means tuning its root-only max_ptes_* knobs"))
    registered: set[str] = set()       # regions registered in MISSING mode so far
    for s in scenario.steps:
        a = s.args
        if s.op == "register":
            mode = a.get("mode", ["missing"])
            if (isinstance(mode, list) and "missing" in mode) or (isinstance(mode, int) and mode & 1):
                if _region(a.get("at")):
                    registered.add(_region(a["at"]))
        elif s.op in ("uffd", "api") and "event_fork" in (a.get("features") or []):
            needs.append(Need(ROOT, f"step {s.i} ({s.op}): UFFD_FEATURE_EVENT_FORK needs CAP_SYS_PTRACE"))
        elif s.op == "ksm_merge":
            needs.append(Need(ROOT, f"step {s.i} (ksm_merge): KSM's sysfs knobs are root-only"))
        elif s.op == "mthp":
            needs.append(Need(ROOT, f"step {s.i} (mthp): the mTHP sysfs knobs are root-only"))
        elif s.op == "observe" and not any(n.what == FRAMES for n in needs):
            needs.append(Need(FRAMES, f"step {s.i} (observe): frames are told apart by PFN"))
        touched = None
        if s.op in ("pin", "ref") or (s.op == "mlock" and not a.get("onfault")):
            touched = _region(a.get("at"))
        elif s.op == "copy":
            touched = _region(a.get("src"))
        if touched in registered:
            needs.append(Need(KERNEL_FAULTS, f"step {s.i} ({s.op}) makes the kernel touch "
                                             f"registered region {touched!r}"))
    return needs


def unmet(scenario: Scenario, caps: "object") -> str | None:
    """Why this scenario cannot run with what this process has (None: it can, maybe partially)."""
    from .caps import active_swaps
    needs = scenario_needs(scenario, swap_active=bool(active_swaps()))
    if os.geteuid() != 0:
        root = [n.why for n in needs if n.what == ROOT]
        if root:
            return f"needs root: {root[0]}"
    if getattr(caps, "user_mode_only", False):
        kf = [n.why for n in needs if n.what == KERNEL_FAULTS]
        if kf:
            return (f"needs kernel-mode faults: {kf[0]}, and the userfaultfd here is "
                    "UFFD_USER_MODE_ONLY (EFAULT instead of a fault); root or "
                    "vm.unprivileged_userfaultfd = 1 lifts that")
    return None
