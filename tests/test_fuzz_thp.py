"""The THP fuzzer draws valid scenarios on 2 MiB-aligned regions that the simulator runs."""
from __future__ import annotations

from hypothesis import HealthCheck, given, settings

from uffdsim.backends.sim import SimBackend
from uffdsim.fuzz import THP_PAGES, scenario_of, thp_steps_strategy
from uffdsim.runner import finish


@settings(max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(thp_steps_strategy())
def test_thp_sequences_are_valid_and_run(steps: list) -> None:
    s = scenario_of(steps)
    assert "thp" in s.requires
    mmaps = [st for st in s.steps if st.op == "mmap"]
    assert [m.args["pages"] for m in mmaps] == [THP_PAGES, THP_PAGES]
    assert all(m.raw["mmap"]["align"] == "2M" for m in mmaps)
    r = finish(s, "sim", SimBackend(kernel="6.12").run(s))
    assert r.status in ("passed", "failed") and not any(st.get("hung") for st in r.steps)
