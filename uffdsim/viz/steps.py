"""Figures of one scenario step: the before/after pair and the decision path, from the scenario itself."""
from __future__ import annotations

from typing import Any

from matplotlib.figure import Figure

from ..snapshot import SNAPSHOT_MAX_PAGES, StepSnapshots, scenario_steps, step_title
from .decision import draw_decision_path
from .space import draw_before_after


def step_snapshots(scenario: Any, n: int) -> StepSnapshots:
    """Run ``scenario`` on the simulator up to step ``n`` (0-based, as in ``run``'s table) and keep that step.

    ValueError (one line) when the scenario has no step ``n`` or stops before it.
    """
    if not 0 <= n < len(scenario.steps):
        raise ValueError(f"{scenario.name}: no step {n} (steps are numbered 0 to {len(scenario.steps) - 1})")
    done = scenario_steps(scenario, upto=n, only_last=True)
    if not done or done[-1].step.i != n:
        raise ValueError(f"{scenario.name}: step {n} was not run (an earlier step hung)")
    return done[-1]


def operands(step: Any, sizes: dict[str, int] | None = None) -> set[tuple[str, str]]:
    """The (process, entry label) pairs a step names: ``dst``/``src`` of a MOVE or COPY, ``at`` of the others.

    Only pages a picture can show: at most the region's pages (``sizes``, region -> pages) and at
    most :data:`~uffdsim.snapshot.SNAPSHOT_MAX_PAGES` per operand, whatever the step's length.
    Plain-integer addresses (deliberately bad arguments) name no entry.
    """
    out: set[tuple[str, str]] = set()
    pages = max(1, -(-int(step.args.get("length", 4096)) // 4096))
    for key in ("dst", "src", "at"):
        addr = step.args.get(key)
        region = getattr(addr, "region", None)
        if region is None:
            continue
        n = min(pages, SNAPSHOT_MAX_PAGES)
        if sizes is not None and region in sizes:
            n = min(n, max(0, sizes[region] - addr.page))
        out |= {(step.proc, f"{region}+{addr.page + k}") for k in range(n)}
    return out


def step_figure(step: StepSnapshots, title: str | None = None, sizes: dict[str, int] | None = None) -> Figure:
    """The before/after pair of an executed step, with its outcome under the title and its operands outlined."""
    notes = [step.outcome()]
    if step.trail.decision:
        notes.append(f"kernel: {step.trail.decision}")
    failed = bool(step.record.get("errno") or step.record.get("hung"))
    return draw_before_after(step.before, step.after, title or f"Step {step_title(step.step)}", notes=notes,
                             focus=operands(step.step, sizes), failed=failed)


def draw_step(scenario: Any, n: int, title: str | None = None) -> Figure:
    """Before/after diagram of step ``n`` of ``scenario`` (what ``python -m uffdsim draw`` writes)."""
    step = step_snapshots(scenario, n)
    return step_figure(step, title or f"{scenario.name}, step {step_title(step.step)}", scenario.region_pages())


def draw_step_trail(scenario: Any, n: int, title: str | None = None) -> Figure:
    """Decision path of step ``n`` of ``scenario``."""
    step = step_snapshots(scenario, n)
    return draw_decision_path(step.trail, title or f"{scenario.name}, step {step_title(step.step)}",
                              outcome=step.outcome(), errno=step.record.get("errno"))
