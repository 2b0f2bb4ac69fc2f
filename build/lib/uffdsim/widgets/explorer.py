"""The scenario explorer: toggles that build a scenario, its MOVE's outcome, trail and diagram.

:func:`scenario_text` writes the scenario the toggles describe (in the public YAML format, so a
reader can copy it into a file and run it on the kernel too); :func:`explorer_outcome` runs it
on the simulator and returns what the MOVE did.  :class:`ScenarioExplorer` is the widget: a
checkbox per option, the outcome, the trail and the before/after diagram of the MOVE.
"""
from __future__ import annotations

import html
import json
from dataclasses import asdict, dataclass, fields, replace
from functools import lru_cache
from typing import Any

import ipywidgets as widgets

from ..scenario import Scenario, loads_scenario
from ..snapshot import StepList, StepSnapshots, scenario_steps
from ..trail import Trail
from ..viz.decision import draw_decision_path
from ..viz.steps import step_figure
from .base import FigureBox, badge, image_widget, pre, set_figure


@dataclass(frozen=True)
class ExplorerOptions:
    """What happens to the source before one MOVE of its first page (all off: a plain, successful move)."""

    fork: bool = False                #: fork a child after writing the source
    child_exited: bool = False        #: ... and the child exits again (needs ``fork``)
    parent_wrote_again: bool = False  #: the parent writes the source again (breaks COW)
    dontfork: bool = False            #: MADV_DONTFORK on the source before the fork
    ksm: bool = False                 #: MADV_MERGEABLE and a KSM pass (the source pages are identical)
    pin: bool = False                 #: a long-term pin of the moved page (io_uring fixed buffer)
    thp: bool = False                 #: 2 MiB-aligned regions, MADV_HUGEPAGE: the source is a THP
    swapped_out: bool = False         #: MADV_PAGEOUT of the source
    source_hole: bool = False         #: the moved page is never written (a hole)
    dst_populated: bool = False       #: the destination page is already populated
    allow_src_holes: bool = False     #: UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES
    dontwake: bool = False            #: UFFDIO_MOVE_MODE_DONTWAKE

    def on(self) -> list[str]:
        return [f.name for f in fields(self) if getattr(self, f.name)]


#: checkbox captions, in display order
CAPTIONS: dict[str, str] = {
    "fork": "fork a child", "child_exited": "child exited", "parent_wrote_again": "parent wrote again",
    "dontfork": "MADV_DONTFORK", "ksm": "KSM merge", "pin": "pin (FOLL_LONGTERM)",
    "thp": "THP source", "swapped_out": "swapped out", "source_hole": "source hole",
    "dst_populated": "destination populated", "allow_src_holes": "ALLOW_SRC_HOLES mode",
    "dontwake": "DONTWAKE mode",
}


@dataclass
class ExplorerOutcome:
    """What the MOVE did: errno (``None`` on success), the ``move`` field, the trail, the machine."""

    options: ExplorerOptions
    text: str                          #: the scenario, as YAML
    scenario: Scenario
    steps: StepList
    move_step: StepSnapshots

    @property
    def errno(self) -> str | None:
        return self.move_step.record.get("errno")

    @property
    def move_field(self) -> int | None:
        return self.move_step.record.get("move")

    @property
    def trail(self) -> Trail:
        return self.move_step.trail

    @property
    def machine(self) -> Any:
        return self.steps.machine

    def headline(self) -> str:
        """``EBUSY, move = -16`` / ``ok, move = 4096``."""
        field = "unwritten" if self.move_field is None else self.move_field
        return f"{self.errno or 'ok'}, move = {field}"


def scenario_text(opts: ExplorerOptions) -> str:
    """The scenario the options describe, in the scenario format."""
    pages = 512 if opts.thp else 2
    length = 512 if opts.thp else 1
    align = ", align: 2M" if opts.thp else ""
    requires = [cap for cap, on in (("fork", opts.fork), ("ksm", opts.ksm), ("pin", opts.pin),
                                    ("thp", opts.thp), ("swap", opts.swapped_out)) if on]
    src = "src+1" if opts.source_hole else "src"
    written = pages - 1 if opts.source_hole else pages
    steps = [f"mmap: {{name: src, pages: {pages}{align}}}", f"mmap: {{name: dst, pages: {pages}{align}}}"]
    if opts.thp:
        steps.append(f"madvise: {{at: src, pages: {pages}, advice: hugepage}}")
    if opts.dontfork:
        steps.append(f"madvise: {{at: src, pages: {pages}, advice: dontfork}}")
    if opts.ksm:
        steps.append(f"madvise: {{at: src, pages: {pages}, advice: mergeable}}")
    steps.append(f"write: {{at: {src}, pages: {written}, value: 0x41}}")
    if opts.dst_populated:
        steps.append("write: {at: dst, pages: 1, value: 0x99}")
    steps += ["uffd: {features: [move]}", f"register: {{at: dst, pages: {pages}, mode: [missing]}}"]
    if opts.fork:
        steps.append("fork: {child: c}")
        if opts.child_exited:
            steps.append("exit: {proc: c}")
    if opts.parent_wrote_again:
        steps.append(f"write: {{at: {src}, pages: {written}, value: 0x42}}")
    if opts.ksm:
        steps.append("ksm_merge: {}")
    if opts.pin:
        steps.append("pin: {at: src, pages: 1, name: buf}")
    if opts.swapped_out:
        steps.append(f"madvise: {{at: src, pages: {pages}, advice: pageout}}")
    modes = [m for m, on in (("allow_src_holes", opts.allow_src_holes), ("dontwake", opts.dontwake)) if on]
    mode = f", mode: [{', '.join(modes)}]" if modes else ""
    steps.append(f"move: {{dst: dst, src: src, pages: {length}{mode}}}")
    about = "Built by the scenario explorer: " + (", ".join(CAPTIONS[o] for o in opts.on()) or "a plain move")
    lines = ["name: explorer", f"about: {json.dumps(about)}"]
    if requires:
        lines.append(f"requires: [{', '.join(requires)}]")
    lines.append("steps:")
    lines += [f"  - {s}" for s in steps]
    return "\n".join(lines) + "\n"


@lru_cache(maxsize=64)
def explorer_outcome(opts: ExplorerOptions) -> ExplorerOutcome:
    """Build the scenario of ``opts``, run it on the simulator, and return the MOVE's outcome."""
    text = scenario_text(opts)
    scenario = loads_scenario(text, "<explorer>")
    steps = scenario_steps(scenario)
    move = steps[-1]
    assert move.step.op == "move", "the explorer's scenario ends with its MOVE"
    return ExplorerOutcome(opts, text, scenario, steps, move)


def options_from(**kw: bool) -> ExplorerOptions:
    """ExplorerOptions from keyword flags; TypeError (one line) on an unknown name."""
    known = {f.name for f in fields(ExplorerOptions)}
    bad = sorted(set(kw) - known)
    if bad:
        raise TypeError(f"unknown explorer option(s) {', '.join(bad)}; known: {', '.join(sorted(known))}")
    return ExplorerOptions(**{k: bool(v) for k, v in kw.items()})


class ScenarioExplorer(FigureBox):
    """Checkboxes -> scenario -> simulator -> outcome, trail and before/after diagram of the MOVE."""

    def __init__(self, options: ExplorerOptions | None = None) -> None:
        self.boxes = {name: widgets.Checkbox(value=False, description=cap, indent=False,
                                             layout=widgets.Layout(width="205px"))
                      for name, cap in CAPTIONS.items()}
        self.outcome_html = widgets.HTML()
        self.scenario_html = widgets.HTML()
        self.pair = image_widget()
        self.path = image_widget()
        grid = widgets.GridBox(list(self.boxes.values()),
                               layout=widgets.Layout(grid_template_columns="repeat(auto-fill, minmax(210px, 1fr))"))
        super().__init__([widgets.HTML("<b>What happens to the source before the MOVE?</b>"), grid,
                          self.outcome_html, self.pair, self.path, self.scenario_html])
        self._quiet = False
        self._png = b""
        self.outcome: ExplorerOutcome
        self.set_options(options or ExplorerOptions())
        for box in self.boxes.values():
            box.observe(self._changed, names="value")

    # -- controls ------------------------------------------------------------------------
    @property
    def options(self) -> ExplorerOptions:
        return ExplorerOptions(**{name: bool(box.value) for name, box in self.boxes.items()})

    def set_options(self, options: ExplorerOptions | None = None, **kw: bool) -> ExplorerOutcome:
        """Set the checkboxes (all of ``options``, then the named ones) and update once."""
        opts = options or self.options
        if kw:
            options_from(**kw)          # one-line TypeError on an unknown name
            opts = replace(opts, **{k: bool(v) for k, v in kw.items()})
        self._quiet = True
        try:
            for name, value in asdict(opts).items():
                self.boxes[name].value = value
        finally:
            self._quiet = False
        return self.update()

    def _changed(self, _change: Any) -> None:
        if not self._quiet:
            self.update()

    # -- view ----------------------------------------------------------------------------
    def update(self) -> ExplorerOutcome:
        """Run the scenario of the current options and show its outcome."""
        out = explorer_outcome(self.options)
        self.outcome = out
        ok = out.errno is None
        trail = html.escape(str(out.trail))
        self.outcome_html.value = (f"<div style='margin:6px 0'>UFFDIO_MOVE: {badge(out.headline(), ok)}"
                                   f"<br><span style='font-family:monospace;font-size:85%;overflow-wrap:anywhere'>"
                                   f"{trail}</span></div>")
        self.scenario_html.value = "<details><summary>the scenario</summary>" + pre(out.text) + "</details>"
        self._png = set_figure(self.pair, step_figure(out.move_step, "The MOVE, before and after"))
        set_figure(self.path, draw_decision_path(out.trail, "Why: the decision path of the MOVE",
                                                 outcome=out.move_step.outcome(), errno=out.errno))
        return out

    def summary(self) -> str:
        on = ", ".join(CAPTIONS[o] for o in self.options.on()) or "no toggles"
        return f"{on} -> {self.outcome.headline()}"

    def static_png(self) -> bytes:
        return self._png
