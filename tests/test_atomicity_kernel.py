"""The atomicity race on the running kernel: a C writer on one CPU, the real ioctls on another.

Skipped, with the reason, without userfaultfd / UFFDIO_MOVE / UFFD_FEATURE_SIGBUS, without a C
compiler, or with fewer than two CPUs (one CPU cannot race).  Every wait is bounded in the
helper (writer start 1 s, fault wait 2 s, stop 5 s).  The full 1,000-trial numbers come from
benchmarks/atomicity_kernel.py; here a few dozen trials per strategy suffice.
"""
from __future__ import annotations

import pytest

from uffdsim.concurrency import kernel_race

AVAILABLE, REASON = kernel_race.availability()
pytestmark = [pytest.mark.kernel, pytest.mark.skipif(not AVAILABLE, reason=REASON)]


@pytest.fixture(scope="module")
def report() -> kernel_race.RaceReport:
    return kernel_race.race(kernel_race.KERNEL_STRATEGIES, trials=40, pages=1, seed=1)


def by_name(rep: kernel_race.RaceReport) -> dict[str, kernel_race.StrategyRace]:
    return {r.strategy: r for r in rep.results}


def test_the_race_ran(report: kernel_race.RaceReport) -> None:
    assert report.status == "ok", report.reason
    assert report.mover_cpu != report.writer_cpu
    for r in report.results:
        if r.skipped:
            continue
        assert r.trials == 40 and r.errors == {} and r.timeouts == 0
        assert r.increments > 0


def test_move_loses_nothing(report: kernel_race.RaceReport) -> None:
    r = by_name(report)["move"]
    assert r.lost_trials == 0 and r.lost_increments == 0
    assert r.src_nonempty == 0
    assert r.writer_faults > 0          # the writer did hit the emptied source mid-race


def test_copy_dontneed_loses_writes(report: kernel_race.RaceReport) -> None:
    r = by_name(report)["copy-dontneed"]
    assert r.lost_trials > 0 and r.lost_increments > 0


def test_move_fallback_takes_the_fallback_and_inherits_the_race(
        report: kernel_race.RaceReport) -> None:
    r = by_name(report)["move-fallback"]
    if r.skipped:
        pytest.skip(r.skipped)
    assert r.ebusy == r.trials == r.fallbacks      # the pinned page cannot be moved
    assert r.lost_trials > 0


def test_hypothetical_strategies_are_refused() -> None:
    with pytest.raises(ValueError, match="cannot run on the kernel"):
        kernel_race.race(["move-allow-copy"], trials=1)
