"""Keep khugepaged from collapsing a scenario's memory behind its back (restored afterwards).

khugepaged wakes every ``scan_sleep_millisecs`` (10 s by default) and collapses PTE-mapped
ranges of MADV_HUGEPAGE areas into fresh huge pages, filling up to ``max_ptes_none`` holes with
zeroes.  A scenario that splits a THP (MADV_DONTNEED of one page, a short MOVE) would then see,
at random, its holes filled and its frames replaced.  The simulator has no khugepaged, so while a
THP scenario runs, :func:`quiet_khugepaged` sets ``max_ptes_none``, ``max_ptes_swap`` and
``max_ptes_shared`` to 0 (no collapse over holes, swap entries or shared pages; writing these
does not wake khugepaged) and writes the saved values back afterwards, under a machine-wide lock
(:mod:`.guard`), journaled so that a run killed meanwhile is undone by the next run or by
``doctor --repair``; a value someone else set meanwhile is kept.  Root only; elsewhere it does nothing.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

from ...scenario import Scenario
from .guard import journaled_knobs

KHUGEPAGED = "/sys/kernel/mm/transparent_hugepage/khugepaged"
KNOBS = ("max_ptes_none", "max_ptes_swap", "max_ptes_shared")


def uses_thp(scenario: Scenario) -> bool:
    """Does the scenario ask for huge pages (requires thp, MADV_HUGEPAGE/COLLAPSE, 2M alignment)?"""
    if "thp" in scenario.requires or "huge_zero_page" in scenario.requires:
        return True
    return any((s.op == "madvise" and s.args.get("advice") in ("hugepage", "collapse")) or s.op == "mthp"
               or (s.op == "mmap" and s.args.get("align", 0) >= 2 << 20) for s in scenario.steps)


@contextmanager
def quiet_khugepaged() -> Iterator[dict[str, str]]:
    """khugepaged collapses nothing with holes, swap or sharing in it for the block's duration.

    Under the machine-wide ``khugepaged`` lock (:mod:`.guard`), so concurrent runs take turns."""
    if os.geteuid() != 0 or not os.path.isdir(KHUGEPAGED):
        yield {}
        return
    ours = {f"{KHUGEPAGED}/{name}": ["0"] for name in KNOBS if os.path.exists(f"{KHUGEPAGED}/{name}")}
    with journaled_knobs("khugepaged", ours, {p: "0" for p in ours}, legacy_dir=KHUGEPAGED) as saved:
        yield {os.path.basename(p): v for p, v in saved.items()}
