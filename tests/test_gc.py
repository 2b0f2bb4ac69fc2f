"""The compacting collector of chapter 8 (uffdsim.gc): what a GC author would want to be true."""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from uffdsim import PAGE_SIZE
from uffdsim.gc import (CostModel, GcError, Heap, check_conservation, compact, load_cost_model,
                        make_heap, page_value, plan_compaction)

FIXED = CostModel(move_page=0.125, zap_page=0.25, source="test")


def run(pages: int = 48, live: float = 0.6, method: str = "move", seed: int = 3,
        accesses: int = 0, fork: bool = False):
    heap = Heap(make_heap(pages, live, seed=seed))
    if fork:
        heap.fork()
    return compact(heap, method, accesses=accesses, cost=FIXED)


# -- conservation -----------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["move", "copy"])
@pytest.mark.parametrize("accesses", [0, 20])
def test_every_live_object_reaches_to_space(method: str, accesses: int) -> None:
    result = run(method=method, accesses=accesses)
    assert check_conservation(result) == []
    assert sorted(result.order) == list(range(len(result.heap.plan)))


@settings(max_examples=25, deadline=None)
@given(pages=st.integers(1, 24), live=st.floats(0.0, 1.0), seed=st.integers(0, 10_000),
       method=st.sampled_from(["move", "copy"]), accesses=st.integers(0, 12))
def test_conservation_for_any_heap(pages: int, live: float, seed: int, method: str,
                                   accesses: int) -> None:
    heap = Heap(make_heap(pages, live, seed=seed))
    result = compact(heap, method, accesses=accesses, cost=FIXED)
    assert check_conservation(result) == []
    # every mutator that blocked was woken and finished its read
    assert all(t.done and not t.blocked for t in heap.proc.threads.values())
    assert len(result.pauses) + result.hits == (accesses if heap.plan else 0)


def test_plan_places_each_live_object_once_and_never_splits_a_donor() -> None:
    layout = make_heap(64, 0.5, seed=7)
    plan = plan_compaction(layout)
    placed = [o for tp in plan for o in tp.slots if o in layout.live]
    assert sorted(placed) == sorted(layout.live)
    sources = [tp.head for tp in plan] + [d for tp in plan for d in tp.donors]
    assert len(sources) == len(set(sources))                    # a page is used once
    for tp in plan:
        for d in tp.donors:                                     # a donor's objects all land here
            assert set(layout.live_in(d)) <= set(tp.slots)
        if tp.kind == "dense":
            assert tp.donors == () and len(layout.live_in(tp.head)) == layout.slots
    assert len(plan) < layout.pages                             # it does compact


# -- MOVE is zero-copy; footprint ----------------------------------------------------------------

def test_move_keeps_the_frames_of_relocated_pages() -> None:
    heap = Heap(make_heap(32, 0.8, seed=1))
    before = {tp.index: heap.proc.observe(heap.from_addr(tp.head), PAGE_SIZE)[0].pfn for tp in heap.plan}
    result = compact(heap, "move", cost=FIXED)
    after = {tp.index: heap.proc.observe(heap.to_addr(tp.index), PAGE_SIZE)[0].pfn for tp in heap.plan}
    assert after == before
    assert result.tally["pages_copied"] == 0 and result.tally["pages_moved"] == len(heap.plan)


def test_move_never_increases_the_footprint_copy_does_transiently() -> None:
    move, copy = run(method="move"), run(method="copy")
    fp = move.footprint
    assert all(b <= a for a, b in zip(fp, fp[1:])), "a MOVE step allocated a frame"
    assert max(copy.footprint) > copy.footprint[0], "COPY never needed an extra frame"
    assert [s.op for s in copy.steps if s.footprint > copy.footprint[0]] == ["copy"]
    assert move.footprint[0] == copy.footprint[0] and move.footprint[-1] == copy.footprint[-1]
    assert move.footprint[-1] == len(move.heap.plan)            # one frame per to-space page


def test_move_is_cheaper_in_work_and_pauses() -> None:
    move, copy = run(method="move", accesses=30), run(method="copy", accesses=30)
    assert move.total_work < copy.total_work
    assert [(p.thread, p.page) for p in move.pauses] == [(p.thread, p.page) for p in copy.pauses]
    assert move.pauses, "the schedule should make some mutators fault"
    assert all(m.length < c.length for m, c in zip(move.pauses, copy.pauses))


def test_a_faulting_mutator_gets_its_page_first() -> None:
    result = run(method="move", accesses=30)
    for p in result.pauses:
        # between the fault and the install, the collector worked only on faulted pages
        faulted = {q.page for q in result.pauses if q.start == p.start}
        between = [s for s in result.steps if p.start < s.clock <= p.end]
        assert between and {s.page for s in between} <= faulted
        installed = next(s for s in result.steps if s.page == p.page and s.op in ("move", "copy"))
        assert installed.clock == pytest.approx(p.end)


# -- EBUSY: a heap shared with a forked child ----------------------------------------------------

def test_shared_heap_falls_back_to_copy_and_still_conserves() -> None:
    result = run(method="move", fork=True, accesses=10)
    assert check_conservation(result) == []
    assert result.fallbacks, "pages shared with the child must not be movable"
    plan = result.heap.plan
    # a packed head was written by the collector (COW: a new exclusive frame), so MOVE took it
    assert all(plan[j].kind == "dense" or not plan[j].donors for j in result.fallbacks)
    assert result.tally["pages_moved"] == sum(1 for tp in plan if tp.donors)
    assert max(result.footprint) > result.footprint[0]


# -- determinism and arguments -------------------------------------------------------------------

def test_same_seed_same_run() -> None:
    a, b = run(accesses=25, seed=11), run(accesses=25, seed=11)
    assert a.steps == b.steps and a.pauses == b.pauses and a.summary() == b.summary()
    assert make_heap(40, 0.5, seed=1) != make_heap(40, 0.5, seed=2)


def test_page_value_is_a_byte_that_depends_on_order() -> None:
    assert 1 <= page_value((1, 2, 3)) <= 255
    assert page_value((1, 2, 3)) != page_value((3, 2, 1))


@pytest.mark.parametrize("kwargs, message", [
    ({"pages": 0, "live_fraction": 0.5}, "pages must be a positive integer"),
    ({"pages": 4, "live_fraction": 1.5}, "live_fraction must be a number from 0 to 1"),
    ({"pages": 4, "live_fraction": 0.5, "slots": 0}, "slots must be an integer from 1 to 64"),
    ({"pages": 4, "live_fraction": 0.5, "seed": "x"}, "seed must be an integer"),
])
def test_bad_heap_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(GcError, match=message) as info:
        make_heap(**kwargs)
    assert "\n" not in str(info.value)


def test_bad_compaction_arguments() -> None:
    heap = Heap(make_heap(4, 0.5))
    with pytest.raises(GcError, match="method must be one of move, copy"):
        compact(heap, "memcpy")
    with pytest.raises(GcError, match="accesses must be an integer >= 0"):
        compact(heap, "move", accesses=-1)
    with pytest.raises(GcError, match="heap must be a Heap"):
        compact("heap")  # type: ignore[arg-type]
    with pytest.raises(GcError, match="layout must be a HeapLayout"):
        Heap(42)  # type: ignore[arg-type]
    with pytest.raises(GcError, match="move_page must be a number >= 0"):
        CostModel(move_page=-1)
    compact(heap, "move", cost=FIXED)
    with pytest.raises(GcError, match="compacted already"):
        compact(heap, "move")


# -- the cost model ------------------------------------------------------------------------------

def test_cost_model_from_a_benchmark_file(tmp_path) -> None:
    # the format `python -m uffdsim bench kernel --record` writes; per-page methods are used
    bench = tmp_path / "kernel_bench.json"
    bench.write_text(json.dumps({"kernel": "6.18", "results": [
        {"method": "move-4k", "size_mib": 16, "ns_per_page": 250.0, "gib_per_s": 1},
        {"method": "copy-dontneed-4k", "size_mib": 16, "ns_per_page": 2500.0, "gib_per_s": 1},
        {"method": "move-2m", "size_mib": 16, "ns_per_page": 50.0, "gib_per_s": 1},
        {"method": "move-4k", "size_mib": 1, "ns_per_page": 900.0, "gib_per_s": 1},
        {"method": "memcpy", "size_mib": 16, "ns_per_page": 90.0, "gib_per_s": 1}]}))
    model = load_cost_model(bench)
    # the model's MOVE / (COPY + DONTNEED) reproduces the measured ratio
    assert model.move_page / (model.copy_page + model.zap_page) == pytest.approx(0.1, abs=1e-3)
    assert model.zap_page == CostModel().zap_page
    assert "16 MiB" in model.source
    # packing is priced from the measured memcpy, in the same unit: 90 ns / (2500 ns / 1.25)
    assert model.memcpy_page == pytest.approx(0.045, abs=1e-3)
    assert model.object_copy(4) == pytest.approx(0.045 / 4, abs=1e-3)


def test_cost_model_with_a_pure_copy_measurement(tmp_path) -> None:
    bench = tmp_path / "kernel_bench.json"
    bench.write_text(json.dumps([
        {"method": "move", "size_mb": 4, "ns_per_page": 100.0},
        {"method": "copy", "size_mb": 4, "ns_per_page": 1000.0},
        {"method": "copy+dontneed", "size_mb": 4, "ns_per_page": 1300.0}]))
    model = load_cost_model(bench)
    assert (model.move_page, model.zap_page, model.copy_page) == (0.1, 0.3, 1.0)


def test_cost_model_defaults_and_bad_files(tmp_path) -> None:
    assert load_cost_model(tmp_path / "missing.json").source.startswith("default")
    (tmp_path / "empty.json").write_text("[]")
    assert load_cost_model(tmp_path / "empty.json").move_page == CostModel().move_page
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(GcError, match="not a readable JSON file"):
        load_cost_model(tmp_path / "bad.json")
