"""KSM for scenarios: keep concurrent runs apart and always put the settings back.

``ksm_merge`` runs ksmd machine-wide, so it would also merge the MADV_MERGEABLE pages of another
run's scenario.  Every scenario that uses KSM (a ``ksm_merge`` step, ``madvise: mergeable``, or
``requires: [ksm]``) therefore runs under the machine-wide ``ksm`` lock, with the KSM settings
saved to a journal first, with the values a ``ksm_merge`` step writes (:data:`OURS`), and
written back afterwards where they are still ours (:mod:`.guard`), also when the scenario
process that ran ksmd died, or by the next run / ``doctor --repair`` when the runner died.  The step itself (:func:`.ops.op_ksm_merge`) runs ksmd fast for a
few full scans and restores the settings it changed.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

from ...scenario import Scenario
from . import sys as k
from .guard import journaled_knobs

#: what :func:`.sys.tuning.ksm_merge_until_stable` / ``ksm_unmerge_all`` may write
OURS = {"run": ["1", "2"], "pages_to_scan": ["10000"], "sleep_millisecs": ["0"], "smart_scan": ["0"]}


def ksm_ours() -> dict[str, list[str]]:
    """{path: values we may write} for the KSM tunables this kernel has."""
    return {f"{k.KSM_DIR}/{n}": v for n, v in OURS.items() if os.path.exists(f"{k.KSM_DIR}/{n}")}


def uses_ksm(scenario: Scenario) -> bool:
    return "ksm" in scenario.requires or any(
        s.op == "ksm_merge" or (s.op == "madvise" and s.args.get("advice") == "mergeable")
        for s in scenario.steps)


@contextmanager
def ksm_guard() -> Iterator[dict[str, str]]:
    """Hold the ``ksm`` lock; on exit the KSM settings are what they were on entry."""
    if not os.path.isdir(k.KSM_DIR) or not os.access(f"{k.KSM_DIR}/run", os.W_OK):
        yield {}
        return
    with journaled_knobs("ksm", ksm_ours(), legacy_dir=k.KSM_DIR) as saved:
        yield {os.path.basename(p): v for p, v in saved.items()}
