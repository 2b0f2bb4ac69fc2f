"""move-allow-copy on a pinned page is atomic for CPU threads only: the output must say so (issue 11)."""
from __future__ import annotations

from uffdsim.concurrency import explore_strategy, run_to_end
from uffdsim.concurrency.cli import format_result, format_table
from uffdsim.concurrency.program import PIN_CAVEAT, Program


def test_allow_copy_on_a_pinned_page_is_qualified() -> None:
    r = explore_strategy("move-allow-copy", src_page="pinned")
    assert r.atomic and r.detached_pin == r.interleavings
    assert r.caveat == PIN_CAVEAT and "device" in r.caveat
    assert r.atomic_text().startswith("yes, for CPU threads only")
    assert r.to_dict()["caveat"] == PIN_CAVEAT
    assert any("CPU threads only" in line for line in format_result(r, trace=False))
    table = format_table([r])
    assert "yes+" in table[2] and table[-1] == "+ " + PIN_CAVEAT


def test_trace_and_verdict_name_the_detached_frame() -> None:
    run = run_to_end(Program.build("move-allow-copy", 1, 1, "pinned"))
    assert any("device writing through the pin" in line for line in run.trace)
    assert PIN_CAVEAT in run.report()[-1]


def test_exclusive_move_has_no_caveat() -> None:
    for strategy, page in (("move", "exclusive"), ("move-allow-copy", "exclusive"),
                           ("move-zero-copy-only", "pinned")):
        r = explore_strategy(strategy, src_page=page)
        assert r.caveat == "" and r.atomic_text() == "yes", (strategy, page)


def test_pinned_ebusy_is_named_after_move_present_ptes() -> None:
    """On 6.18 the pin check lives in move_present_ptes(); PageAnonExclusive is checked in move_pages_ptes()."""
    pinned = run_to_end(Program.build("move", pages=1, increments=1, src_page="pinned"), "A")
    first = pinned.report()[0]
    assert "move_present_ptes: folio f0 is pinned" in first and "EBUSY" in first
    shared = run_to_end(Program.build("move", pages=1, increments=1, src_page="cow-shared"), "A")
    assert "move_pages_ptes: folio f0 is not PageAnonExclusive" in shared.report()[0]
