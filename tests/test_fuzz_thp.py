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


def test_the_lab_fuzzer_says_why_it_skipped() -> None:
    """A skipped sequence is counted under its reason (the 6.12 run skips guard advice), not only counted."""
    import importlib.util
    from pathlib import Path
    from uffdsim.runner import ScenarioResult
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "fuzz_conformance.py"
    spec = importlib.util.spec_from_file_location("fuzz_conformance", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    reasons: dict[str, int] = {}
    ran = ScenarioResult("a", "kernel", "passed", [])
    for version in ("6.12", "6.1"):
        mod.count_skip(reasons, ScenarioResult("a", "sim", "skipped", [], f"guard: needs Linux 6.13+ (profile {version})"), ran)
    assert reasons == {"sim: guard: needs Linux N.N+ (profile N.N)": 2}
