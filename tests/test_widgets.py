"""The explorers (uffdsim.widgets): constructed and driven from code, no browser.

Each widget is set the way a reader would set it (checkbox values, dropdowns, buttons) and the
test asserts what it then shows: the outcome text, the figure bytes, the one-line summary.
"""
from __future__ import annotations

import base64
from dataclasses import fields
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pytest

from uffdsim.runner import run_scenario
from uffdsim.scenario import loads_scenario
from uffdsim.widgets import (ErrnoExplorer, ExplorerOptions, InterleavingStepper, ScenarioExplorer,
                             StepperModel, corpus_index, explorer_outcome, options_from, run_hit,
                             scenario_text, smallest_scenario)

ROOT = Path(__file__).resolve().parent.parent
PNG = b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------------------ scenario explorer (logic)

@pytest.mark.parametrize("flags, errno, move, decision", [
    ({}, None, 4096, "moved 1 page(s)"),
    ({"fork": True}, "EBUSY", -16, "folio not anon-exclusive -> EBUSY"),
    ({"fork": True, "child_exited": True}, "EBUSY", -16, "folio not anon-exclusive -> EBUSY"),
    ({"fork": True, "child_exited": True, "parent_wrote_again": True}, None, 4096, "moved 1 page(s)"),
    ({"fork": True, "parent_wrote_again": True}, None, 4096, "moved 1 page(s)"),
    ({"fork": True, "dontfork": True}, None, 4096, "moved 1 page(s)"),
    ({"ksm": True}, "EBUSY", -16, "folio not anon-exclusive -> EBUSY"),
    ({"pin": True}, "EBUSY", -16, "folio maybe DMA-pinned -> EBUSY"),
    ({"swapped_out": True}, None, 4096, "moved 1 page(s)"),
    ({"swapped_out": True, "fork": True}, "EBUSY", -16, "folio not anon-exclusive -> EBUSY"),
    ({"source_hole": True}, "ENOENT", -2, "source PTE is empty (a hole) -> ENOENT"),
    ({"source_hole": True, "allow_src_holes": True}, None, 4096, "moved 1 page(s)"),
    ({"dst_populated": True}, "EEXIST", -17, "destination PTE is not empty -> EEXIST"),
    ({"dontwake": True}, None, 4096, "moved 1 page(s)"),
    ({"thp": True}, None, 2 << 20, "moved 512 page(s)"),
    ({"thp": True, "fork": True}, "EBUSY", -16, "THP not anon-exclusive -> EBUSY"),
])
def test_explorer_outcome(flags, errno, move, decision) -> None:
    out = explorer_outcome(options_from(**flags))
    assert (out.errno, out.move_field) == (errno, move)
    assert out.trail.decision == decision
    assert out.trail.op == "UFFDIO_MOVE"
    assert out.machine.processes["main"].alive


def test_explorer_scenarios_are_valid_scenario_files_that_the_runner_passes() -> None:
    """The text a reader copies out of the explorer is the public format and runs as shown."""
    for f in fields(ExplorerOptions):
        opts = options_from(**{f.name: True})
        text = scenario_text(opts)
        sc = loads_scenario(text)
        assert sc.steps[-1].op == "move"
        assert run_scenario(sc).status == "passed"
    assert "requires: [fork, pin]" in scenario_text(options_from(fork=True, pin=True))
    with pytest.raises(TypeError, match="unknown explorer option"):
        options_from(forks=True)


def test_the_moved_frame_is_the_source_frame() -> None:
    out = explorer_outcome(ExplorerOptions())
    mv = out.move_step
    assert mv.after.entry("main", "dst+0").pfn == mv.before.entry("main", "src+0").pfn


# ------------------------------------------------------------------------------ scenario explorer (widget)

def test_scenario_explorer_widget_follows_its_checkboxes() -> None:
    w = ScenarioExplorer()
    assert repr(w) == "ScenarioExplorer: no toggles -> ok, move = 4096"
    assert "ok, move = 4096" in w.outcome_html.value
    first = bytes(w.pair.value)
    assert first.startswith(PNG) and bytes(w.path.value).startswith(PNG)

    w.boxes["fork"].value = True                      # what a click does
    assert w.outcome.errno == "EBUSY"
    assert "EBUSY, move = -16" in w.outcome_html.value
    assert "folio not anon-exclusive -&gt; EBUSY" in w.outcome_html.value
    assert bytes(w.pair.value) != first
    assert "fork: {child: c}" in w.scenario_html.value

    w.boxes["child_exited"].value = True
    assert w.outcome.errno == "EBUSY"                 # exiting alone does not make it exclusive again
    w.boxes["parent_wrote_again"].value = True
    assert w.outcome.errno is None and w.outcome.move_field == 4096
    assert repr(w) == "ScenarioExplorer: fork a child, child exited, parent wrote again -> ok, move = 4096"

    w.set_options(ExplorerOptions(), ksm=True)
    assert [n for n, b in w.boxes.items() if b.value] == ["ksm"]
    assert "folio not anon-exclusive -&gt; EBUSY" in w.outcome_html.value


def test_widgets_display_a_static_png_and_a_stable_text() -> None:
    w = ScenarioExplorer(options_from(pin=True))
    bundle = w._repr_mimebundle_()
    assert bundle["text/plain"] == "ScenarioExplorer: pin (FOLL_LONGTERM) -> EBUSY, move = -16"
    assert base64.b64decode(bundle["image/png"]) == bytes(w.pair.value)
    assert "application/vnd.jupyter.widget-view+json" in bundle


# ------------------------------------------------------------------------------ interleaving stepper

def test_stepper_model_steps_forward_and_back() -> None:
    m = StepperModel("copy-dontneed")
    assert m.replay.schedule == "AAABBAABBBB"          # the explorer's shortest counterexample
    assert m.first_lost() == 5
    assert m.goto(4) == 4 and m.counters()["lost_so_far"] == 0
    assert m.forward() == 5 and m.counters()["lost_so_far"] == 1
    assert "store src[0] (f0) = 1" in m.step_text()
    assert m.back() == 4
    assert m.goto(99) == m.length == 11
    assert m.counters()["home_values"] == {"dst[0]": 2} and m.counters()["increments_done"] == 3
    assert m.goto(-3) == 0 and m.step_text().startswith("initial state")


def test_interleaving_stepper_widget() -> None:
    w = InterleavingStepper()
    assert w.model.position == 5 and w.slider.value == 5          # opens on the lost store
    assert "lost so far: 1" in w.status.value
    assert bytes(w.timeline.value).startswith(PNG) and bytes(w.diagram.value).startswith(PNG)
    w.back_button.click()
    assert w.model.position == 4 and w.slider.value == 4 and "lost so far: 0" in w.status.value
    w.forward_button.click()
    w.forward_button.click()
    assert w.model.position == 6
    w.slider.value = 11                                            # dragging the slider
    assert w.model.position == 11 and "B finished 3 of 3" in w.status.value
    assert repr(w) == ("InterleavingStepper: copy-dontneed schedule AAABBAABBBB at step 11/11: "
                       "3 of 3 increments done, lost so far 1")

    w.strategy.value = "move"                                      # no counterexample: runs A first
    assert w.model.replay.schedule == "AABBBBBB" and "lost so far: 0" in w.status.value
    w.schedule.value = "BAB"
    assert w.model.replay.schedule == "BABAABBBBBB" and w.model.position == w.model.length
    before = w.model.replay.schedule
    w.schedule.value = "BBBBBBB"                                   # B has finished after six steps
    assert "schedule not replayable" in w.status.value and w.model.replay.schedule == before
    w.strategy.value = "copy-dontneed"
    w.schedule.value = "AB"
    w.use_counterexample.click()
    assert w.schedule.value == "" and w.model.replay.schedule == "AAABBAABBBB"


def test_stepper_src_page_choice() -> None:
    w = InterleavingStepper("move", src_page="pinned")
    assert "MOVE [0] -> EBUSY" in [s.label for s in w.model.replay.steps]
    w.src_page.value = "exclusive"
    assert "MOVE [0]" in [s.label for s in w.model.replay.steps]


# ------------------------------------------------------------------------------ errno explorer

def _write(dirpath: Path, name: str, body: str) -> None:
    (dirpath / f"{name}.yaml").write_text(f"name: {name}\nabout: test\nsteps:\n{body}")


def test_errno_index_picks_the_smallest_scenario(tmp_path) -> None:
    _write(tmp_path, "long-enoent", "  - mmap: {name: dst, pages: 1}\n  - mmap: {name: src, pages: 1}\n"
                                    "  - uffd: {features: [move]}\n  - register: {at: dst, pages: 1}\n"
                                    "  - move: {dst: dst, src: src, pages: 1}\n    expect: {errno: ENOENT}\n")
    _write(tmp_path, "short-enoent", "  - mmap: {name: dst, pages: 1}\n  - uffd: {features: [move]}\n"
                                     "  - register: {at: dst, pages: 1}\n"
                                     "  - move: {dst: dst, src: 0x1000, pages: 1}\n    expect: {errno: ENOENT}\n")
    _write(tmp_path, "broken", "  - fly: {}\n")
    index = corpus_index(tmp_path)
    assert index.errnos() == ["ENOENT"] and len(index.problems) == 1 and "broken" in index.problems[0]
    hit = index.smallest("ENOENT")
    assert (hit.name, hit.steps, hit.step, hit.op) == ("short-enoent", 4, 3, "move")
    run = run_hit(hit)
    assert run.errno == "ENOENT" and run.result.status == "passed"
    assert "ENOENT" in run.table()
    with pytest.raises(KeyError):
        index.smallest("EBUSY")

    w = ErrnoExplorer(directory=tmp_path)
    assert w.picker.options == ("ENOENT",)
    assert repr(w) == ("ErrnoExplorer: ENOENT: smallest scenario short-enoent (4 steps), step 3 move "
                       "-> ran: move -> ENOENT (move = -2)")
    assert bytes(w.pair.value).startswith(PNG) and bytes(w.path.value).startswith(PNG)
    assert "short-enoent" in w.scenario_html.value
    assert "1 scenario file(s) did not load" in w.problems_html.value


def test_errno_explorer_on_the_corpus() -> None:
    index = corpus_index(ROOT / "scenarios")
    if not index.by_errno:
        pytest.skip("the scenario corpus has no errno expectations yet")
    # (files that do not load are listed in index.problems and shown by the widget; the corpus's own
    # tests report them, so they do not fail this one)
    for errno in index.errnos():                     # what the explorer offers, it reproduces
        hit = smallest_scenario(errno)
        assert run_hit(hit).errno == errno, f"{hit.name} step {hit.step} did not produce {errno}"
    w = ErrnoExplorer()
    assert w.op_picker.value == "move" and w.run is not None and w.run.errno == w.hit.errno
    errno = index.errnos("move")[0]
    hit = w.pick(errno, "move")
    assert hit == smallest_scenario(errno, "move") and hit.op == "move"
    assert "press" in w.result_html.value                          # picking shows, running is a click
    w.run_button.click()
    assert w.run.errno == errno and errno in w.result_html.value
    w.op_picker.value = ""
    assert set(w.picker.options) == set(index.errnos())
