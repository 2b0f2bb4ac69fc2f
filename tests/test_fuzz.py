"""Differential fuzzing: random step sequences agree on the simulator and the kernel."""
from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from uffdsim.fuzz import differential, fix_up, save_divergence, scenario_of, steps_strategy
from uffdsim.runner import finish, get_backend

ROOT = Path(__file__).resolve().parent.parent
#: files saved by this run; while Hypothesis shrinks, each smaller failure replaces the previous one
SAVED: list[Path] = []


def kernel_reason() -> str | None:
    from uffdsim.backends.kernel import KernelBackend
    ok, why = KernelBackend().available()
    return None if ok else why


def test_fix_up_keeps_one_child_and_valid_names() -> None:
    steps = fix_up([{"exit": {}}, {"fork": {}}, {"fork": {}}, {"write": {"at": "src", "pages": 1, "value": 1, "proc": "child"}},
                    {"exit": {}}, {"write": {"at": "src", "pages": 1, "value": 1, "proc": "child"}}, {"unpin": {"name": "buf"}}])
    ops = [next(iter(s)) for s in steps[4:-2]]
    assert ops == ["fork", "write", "exit"]
    assert steps[5]["write"]["proc"] == "c1" and steps[6]["exit"]["proc"] == "c1"
    assert scenario_of(steps).requires == ["fork"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps_strategy())
def test_generated_sequences_are_valid_and_run_on_the_simulator(steps: list) -> None:
    sc = scenario_of(steps)
    result = finish(sc, "sim", get_backend("sim").run(sc))
    assert result.status == "passed"                 # no expectations, and nothing may hang
    assert len(result.steps) == len(steps)


def test_a_divergence_is_saved_as_a_scenario_expecting_the_kernel(tmp_path: Path) -> None:
    steps = fix_up([{"write": {"at": "src", "pages": 1, "value": 7}},
                    {"move": {"dst": "dst", "src": "src", "pages": 1}}])
    sc = scenario_of(steps)
    sim = finish(sc, "sim", get_backend("sim").run(sc))
    kernel = finish(sc, "sim", get_backend("sim").run(sc))
    kernel.steps[5] = dict(kernel.steps[5], errno="EBUSY", move=-16)      # pretend the kernel refused
    path = save_divergence(steps, kernel, [{"i": 5, "field": "errno"}], tmp_path)
    from uffdsim.scenario import load_scenario
    saved = load_scenario(path)
    assert saved.steps[5].expect == {"errno": "EBUSY", "move": -16}
    assert finish(saved, "sim", get_backend("sim").run(saved)).status == "failed"
    assert sim.status == "passed"


@pytest.mark.kernel
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps_strategy())
def test_random_sequences_agree_with_the_kernel(steps: list) -> None:
    reason = kernel_reason()
    if reason:
        pytest.skip(f"kernel backend unavailable: {reason}")
    diffs, sim, kern = differential(steps)
    if diffs:
        while SAVED:
            SAVED.pop().unlink(missing_ok=True)
        path = save_divergence(steps, kern, diffs, ROOT / "scenarios")
        SAVED.append(path)
        pytest.fail(f"simulator and kernel differ ({len(diffs)} fields); saved as {path.name}: {diffs[:3]}")
