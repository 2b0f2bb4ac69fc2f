"""The interleaving stepper: one schedule of the atomicity model, stepped forward and back.

:class:`StepperModel` is the logic (no widgets): a strategy, a schedule (by default the
explorer's shortest counterexample, or the schedule that runs the mover first when there is
none), and a position.  :class:`InterleavingStepper` is the widget: strategy and source-page
pickers, a schedule box, back/forward buttons and a slider, the timeline with the current step
outlined, the address-space diagram of the model at that point, and the counters.
"""
from __future__ import annotations

import html
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import ipywidgets as widgets

from ..concurrency import STRATEGIES, AtomicityResult, explore_strategy
from ..concurrency.state import SRC_PAGE_KINDS
from ..viz.concurrency import Replay, replay, state_snapshot
from ..viz.space import draw_address_space
from .base import FigureBox, badge, image_widget, row, set_figure

COUNTEREXAMPLE = ""   #: the schedule value meaning "the explorer's counterexample"


@lru_cache(maxsize=32)
def _explored(strategy: str, pages: int, increments: int, src_page: str | None) -> AtomicityResult:
    return explore_strategy(strategy, pages, increments, src_page)


@dataclass
class StepperModel:
    """A replayed schedule and where the reader is in it (``position`` = steps taken, 0..len)."""

    strategy: str = "copy-dontneed"
    schedule: str = COUNTEREXAMPLE
    pages: int = 1
    increments: int = 3
    src_page: str | None = None
    position: int = 0
    replay: Replay = field(init=False)
    result: AtomicityResult = field(init=False)

    def __post_init__(self) -> None:
        self.load()

    def load(self) -> None:
        """(Re)build the replay; ValueError (one line) on a bad strategy or schedule."""
        self.result = _explored(self.strategy, self.pages, self.increments, self.src_page)
        sched = self.schedule.strip().upper() or self.result.counterexample_schedule
        self.replay = replay(self.strategy, sched, self.pages, self.increments, self.src_page)
        self.position = max(0, min(self.position, len(self.replay.steps)))

    @property
    def length(self) -> int:
        return len(self.replay.steps)

    def first_lost(self) -> int | None:
        """Position just after the first lost store (1-based step number), if any."""
        return next((i for i, s in enumerate(self.replay.steps, 1) if "lost" in s.flags), None)

    def forward(self) -> int:
        self.position = min(self.length, self.position + 1)
        return self.position

    def back(self) -> int:
        self.position = max(0, self.position - 1)
        return self.position

    def goto(self, k: int) -> int:
        self.position = max(0, min(self.length, int(k)))
        return self.position

    def counters(self) -> dict[str, Any]:
        return self.replay.counters(self.position)

    def step_text(self) -> str:
        """What the step just taken did, in the explorer's words."""
        if self.position == 0:
            return "initial state: the source holds the counter (0), the destination is empty"
        s = self.replay.steps[self.position - 1]
        return f"step {self.position}, thread {s.thread}: {s.detail}"

    def timeline_figure(self) -> Any:
        return self.replay.timeline(current=self.position or None)

    def diagram_figure(self) -> Any:
        caption = f"after step {self.position}" if self.position else "initial state"
        snap = state_snapshot(self.replay.program, self.replay.states[self.position], caption)
        return draw_address_space(snap, f"{self.strategy}: the machine {caption}")

    def summary(self) -> str:
        c = self.counters()
        return (f"{self.strategy} schedule {self.replay.schedule} at step {self.position}/{self.length}: "
                f"{c['increments_done']} of {c['increments']} increments done, lost so far {c['lost_so_far']}")


class InterleavingStepper(FigureBox):
    """Pick a strategy and a schedule (or the counterexample), then step through it."""

    def __init__(self, strategy: str = "copy-dontneed", schedule: str = COUNTEREXAMPLE,
                 position: int | None = None, src_page: str | None = None) -> None:
        self.model = StepperModel(strategy, schedule, src_page=src_page)
        self.model.goto((self.model.first_lost() or self.model.length) if position is None else position)
        self.strategy = widgets.Dropdown(options=list(STRATEGIES), value=strategy, description="strategy")
        self.src_page = widgets.Dropdown(options=[("strategy default", "")] + [(k, k) for k in SRC_PAGE_KINDS],
                                         value=src_page or "", description="source page")
        self.schedule = widgets.Text(value=schedule, placeholder="counterexample (or e.g. AABBA...)",
                                     description="schedule")
        self.use_counterexample = widgets.Button(description="counterexample")
        self.back_button = widgets.Button(description="◀ back")
        self.forward_button = widgets.Button(description="forward ▶")
        self.slider = widgets.IntSlider(min=0, max=self.model.length, value=self.model.position,
                                        description="step")
        self.status = widgets.HTML()
        self.timeline = image_widget()
        self.diagram = image_widget()
        super().__init__([row(self.strategy, self.src_page), row(self.schedule, self.use_counterexample),
                          row(self.back_button, self.forward_button, self.slider),
                          self.status, self.timeline, self.diagram])
        self._png = b""
        self._quiet = False
        self.render()
        self.strategy.observe(self._reload, names="value")
        self.src_page.observe(self._reload, names="value")
        self.schedule.observe(self._reload, names="value")
        self.slider.observe(self._moved, names="value")
        self.use_counterexample.on_click(lambda _b: self.set_schedule(COUNTEREXAMPLE))
        self.back_button.on_click(lambda _b: self.back())
        self.forward_button.on_click(lambda _b: self.forward())

    # -- driving it (also from code) -------------------------------------------------------
    def forward(self) -> int:
        self.model.forward()
        return self.render()

    def back(self) -> int:
        self.model.back()
        return self.render()

    def goto(self, k: int) -> int:
        self.model.goto(k)
        return self.render()

    def set_schedule(self, schedule: str) -> None:
        self.schedule.value = schedule       # triggers _reload
        if schedule == self.model.schedule:
            self._reload(None)

    def _reload(self, _change: Any) -> None:
        if self._quiet:
            return
        old = (self.model.strategy, self.model.schedule, self.model.src_page)
        self.model.strategy = self.strategy.value
        self.model.schedule = self.schedule.value
        self.model.src_page = self.src_page.value or None
        try:
            self.model.load()
        except ValueError as err:
            self.model.strategy, self.model.schedule, self.model.src_page = old
            self.model.load()
            self.status.value = badge(f"schedule not replayable: {err}", False)
            return
        self.model.goto(self.model.first_lost() or self.model.length)
        self.render()

    def _moved(self, change: Any) -> None:
        if not self._quiet and change["new"] != self.model.position:
            self.model.goto(change["new"])
            self.render()

    def render(self) -> int:
        """Show the model's current position."""
        m = self.model
        self._quiet = True
        try:
            self.slider.max = m.length
            self.slider.value = m.position
        finally:
            self._quiet = False
        c = m.counters()
        homes = ", ".join(f"{k} = {v}" for k, v in c["home_values"].items())
        lost = c["lost_so_far"]
        verdict = badge(f"lost so far: {lost}", lost == 0)
        self.status.value = (f"<div>{html.escape(m.step_text())}</div>"
                             f"<div style='margin-top:4px'>B finished {c['increments_done']} of "
                             f"{c['increments']} increments · counter at its home: {html.escape(homes)} · "
                             f"{verdict}</div>")
        self._png = set_figure(self.timeline, m.timeline_figure())
        set_figure(self.diagram, m.diagram_figure())
        return m.position

    def summary(self) -> str:
        return self.model.summary()

    def static_png(self) -> bytes:
        return self._png
