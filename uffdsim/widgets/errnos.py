"""The errno explorer: pick an errno, see the smallest scenario of the corpus that produces it, run it.

:func:`corpus_index` scans ``scenarios/*.yaml`` for steps whose ``expect`` names an errno;
:func:`smallest_scenario` picks, for one errno, the scenario with the fewest steps (ties: by
name), so the explorer grows with the corpus.  :func:`run_hit` runs it on the simulator.
:class:`ErrnoExplorer` is the widget.
"""
from __future__ import annotations

import html
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import ipywidgets as widgets

from ..errors import ERRNO_VALUES
from ..results import BackendRun
from ..runner import ScenarioResult, finish
from ..resources import corpus_dir
from ..scenario import Scenario, ScenarioError, load_scenario
from ..snapshot import StepSnapshots, scenario_steps
from ..viz.decision import draw_decision_path
from ..viz.steps import step_figure
from .base import FigureBox, badge, image_widget, pre, row, set_figure

#: the corpus shipped in the package
DEFAULT_CORPUS = corpus_dir()


@dataclass(frozen=True)
class Hit:
    """A scenario step that expects an errno."""

    errno: str
    path: str
    name: str
    steps: int          #: the scenario's length, what "smallest" means
    step: int           #: index of the step expecting the errno
    op: str


@dataclass
class ErrnoIndex:
    by_errno: dict[str, list[Hit]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)    #: files that did not load, one line each

    def errnos(self, op: str | None = None) -> list[str]:
        """Errnos with at least one scenario (whose errno step is ``op``, if given), in errno-number order."""
        found = {e for e, hits in self.by_errno.items() if op is None or any(h.op == op for h in hits)}
        return sorted(found, key=lambda e: (ERRNO_VALUES.get(e, 999), e))

    def ops(self) -> list[str]:
        """The operations whose steps expect some errno."""
        return sorted({h.op for hits in self.by_errno.values() for h in hits})

    def smallest(self, errno: str, op: str | None = None) -> Hit:
        """The hit with the fewest scenario steps (ties: scenario name, then step); KeyError if none."""
        hits = [h for h in self.by_errno.get(errno, []) if op is None or h.op == op]
        if not hits:
            raise KeyError(f"no scenario in the corpus expects {errno}" + (f" from {op}" if op else ""))
        return min(hits, key=lambda h: (h.steps, h.name, h.step))


def corpus_index(directory: str | Path = DEFAULT_CORPUS) -> ErrnoIndex:
    """Every step of every scenario in ``directory`` whose ``expect`` has an ``errno``.

    Parsing the corpus takes a while, so the index is cached until a file is added, removed or changed.
    """
    root = Path(directory).resolve()
    if not root.is_dir():
        return ErrnoIndex(problems=[f"{root}: no such directory (the scenario corpus comes with a source checkout)"])
    stamp = tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(root.glob("*.yaml")))
    cached = _build_index(str(root), stamp)
    return ErrnoIndex({e: list(h) for e, h in cached.by_errno.items()}, list(cached.problems))


@lru_cache(maxsize=8)
def _build_index(root: str, stamp: tuple[tuple[str, int, int], ...]) -> ErrnoIndex:
    index = ErrnoIndex()
    for path in (Path(root) / name for name, _, _ in stamp):
        try:
            sc = load_scenario(path)
        except (ScenarioError, OSError) as err:
            index.problems.append(str(err))
            continue
        for step in sc.steps:
            errno = (step.expect or {}).get("errno")
            if errno:
                index.by_errno.setdefault(errno, []).append(
                    Hit(errno, str(path), sc.name, len(sc.steps), step.i, step.op))
    return index


def smallest_scenario(errno: str, op: str | None = None, directory: str | Path = DEFAULT_CORPUS) -> Hit:
    """The scenario with the fewest steps that expects ``errno`` (from an ``op`` step, if given)."""
    return corpus_index(directory).smallest(errno, op)


@dataclass
class ErrnoRun:
    hit: Hit
    scenario: Scenario
    result: ScenarioResult
    step: StepSnapshots          #: the step that expects the errno, with its pictures

    @property
    def errno(self) -> str | None:
        return self.step.record.get("errno")

    def table(self) -> str:
        """The run as ``python -m uffdsim run`` prints it."""
        import io

        from ..report import print_table
        buf = io.StringIO()
        print_table(self.result, self.scenario, buf)
        return buf.getvalue()


def run_hit(hit: Hit) -> ErrnoRun:
    """Run the hit's scenario on the simulator; keep its errno step's snapshots and trail."""
    scenario = load_scenario(hit.path)
    steps = scenario_steps(scenario)
    result = finish(scenario, "sim", BackendRun([s.record for s in steps]))
    step = next((s for s in steps if s.step.i == hit.step), steps[-1])
    return ErrnoRun(hit, scenario, result, step)


class ErrnoExplorer(FigureBox):
    """An errno picker, the smallest scenario producing it, a Run button, and what the run shows."""

    def __init__(self, errno: str | None = None, op: str | None = "move",
                 directory: str | Path = DEFAULT_CORPUS) -> None:
        self.index = corpus_index(directory)
        ops = self.index.ops()
        op = op if op in ops else None
        self.op_picker = widgets.Dropdown(options=[("any operation", "")] + [(o, o) for o in ops],
                                          value=op or "", description="from")
        choices = self.index.errnos(op)
        self.picker = widgets.Dropdown(options=choices, value=errno if errno in choices else
                                       ("EBUSY" if "EBUSY" in choices else (choices[0] if choices else None)),
                                       description="errno")
        self.run_button = widgets.Button(description="run it", button_style="primary")
        self.scenario_html = widgets.HTML()
        self.result_html = widgets.HTML()
        self.pair = image_widget()
        self.path = image_widget()
        self.problems_html = widgets.HTML()
        if self.index.problems:
            self.problems_html.value = (f"<details><summary>{len(self.index.problems)} scenario file(s) did not "
                                        f"load</summary>{pre(chr(10).join(self.index.problems))}</details>")
        super().__init__([row(self.picker, self.op_picker, self.run_button), self.scenario_html,
                          self.result_html, self.path, self.pair, self.problems_html])
        self.run: ErrnoRun | None = None
        self._png = b""
        self._quiet = False
        self.show(self.picker.value)
        if self.picker.value:
            self.run_it()
        self.picker.observe(lambda ch: None if self._quiet else self.show(ch["new"]), names="value")
        self.op_picker.observe(self._op_changed, names="value")
        self.run_button.on_click(lambda _b: self.run_it())

    @property
    def op(self) -> str | None:
        return self.op_picker.value or None

    @property
    def hit(self) -> Hit | None:
        return self.index.smallest(self.picker.value, self.op) if self.picker.value else None

    def _op_changed(self, _change: Any) -> None:
        choices = self.index.errnos(self.op)
        keep = self.picker.value if self.picker.value in choices else (choices[0] if choices else None)
        self._quiet = True
        try:
            self.picker.options = choices
            self.picker.value = keep
        finally:
            self._quiet = False
        self.show(keep)

    def pick(self, errno: str, op: str | None = None) -> Hit:
        """Select ``errno`` (from ``op`` steps, or any) and show its scenario; KeyError if none."""
        hit = self.index.smallest(errno, op)
        self.op_picker.value = op or ""
        self.picker.value = errno
        self.show(errno)
        return hit

    def show(self, errno: str | None) -> None:
        """Show the smallest scenario for ``errno``; the previous run's result is cleared."""
        if not errno:
            self.scenario_html.value = "<i>the corpus has no scenario that expects an errno</i>"
            return
        hit = self.index.smallest(errno, self.op)
        text = Path(hit.path).read_text()
        others = len(self.index.by_errno[errno]) - 1
        self.scenario_html.value = (f"<div><b>{html.escape(hit.name)}</b>: {hit.steps} steps; step {hit.step} "
                                    f"({hit.op}) expects {errno}"
                                    f"{f' ({others} more step(s) in the corpus expect it)' if others else ''}"
                                    f"</div>{pre(text)}")
        self.result_html.value = "<i>press “run it”</i>"
        self.pair.value = b""
        self.path.value = b""
        self.run = None

    def run_it(self) -> ErrnoRun | None:
        """Run the selected scenario on the simulator and show the errno step."""
        hit = self.hit
        if hit is None:
            return None
        run = run_hit(hit)
        self.run = run
        expected = "as the scenario expects" if run.errno == hit.errno else f"the scenario expects {hit.errno}"
        status = badge(f"step {hit.step}: {run.step.outcome()}", run.errno is None) + f" ({expected})"
        self.result_html.value = f"<div style='margin:6px 0'>{status}</div>" + pre(run.table())
        set_figure(self.path, draw_decision_path(run.step.trail, f"{hit.name}: why {run.errno or 'no errno'}",
                                                 outcome=run.step.outcome(), errno=run.errno))
        self._png = set_figure(self.pair, step_figure(run.step, f"{hit.name}, step {hit.step}"))
        return run

    def summary(self) -> str:
        hit = self.hit
        if hit is None:
            return "no scenario expects an errno"
        got = f" -> ran: {self.run.step.outcome()}" if self.run else ""
        return f"{hit.errno}: smallest scenario {hit.name} ({hit.steps} steps), step {hit.step} {hit.op}{got}"

    def static_png(self) -> bytes:
        return self._png
