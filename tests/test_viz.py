"""The pictures (uffdsim.viz): every figure kind drawn from a real simulator state, checked by structure.

No pixel comparisons: the tests look up artists by the gids the drawing functions give them
(``entry:PROC:LABEL``, ``frame:PFN``, ``highlight:...``), their colours, hatches and texts.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.colors import to_hex

from uffdsim import PAGE_SIZE, Machine, UffdError
from uffdsim.concurrency import STRATEGIES, Program, explore_strategy
from uffdsim.scenario import load_scenario, loads_scenario
from uffdsim.snapshot import diff, scenario_steps, snapshot
from uffdsim.viz import (TimelineStep, describe_source, draw_address_space, draw_before_after,
                         draw_decision_path, draw_performance, draw_step, draw_timeline, gids, highlighted, load_records,
                         parse_trace, png_bytes, replay, replay_result, save_png, state_snapshot)
from uffdsim.viz import style as S
from uffdsim.viz.perf import extract_records

ROOT = Path(__file__).resolve().parent.parent
P = PAGE_SIZE


def patch(fig, gid):
    found = [a for ax in fig.axes for a in ax.patches if a.get_gid() == gid]
    assert found, f"no artist with gid {gid!r}; have {gids(fig)}"
    return found[0]


def panel(fig, side):
    return next(ax for ax in fig.axes if ax.get_gid() == f"panel:{side}")


def texts(fig):
    out = [t.get_text() for t in fig.texts]
    for ax in fig.axes:
        out += [t.get_text() for t in ax.texts] + [ax.get_title(), ax.get_title("left"), ax.get_xlabel(),
                                                   ax.get_ylabel()]
        out += [t.get_text() for t in ax.get_yticklabels()] + [t.get_text() for t in ax.get_xticklabels()]
        if ax.get_legend():
            out += [t.get_text() for t in ax.get_legend().get_texts()]
    for leg in fig.legends:
        out += [t.get_text() for t in leg.get_texts()]
    return out


def face(p) -> str:
    return to_hex(p.get_facecolor())


def two_regions(pages: int = 4):
    m = Machine()
    p = m.spawn("main")
    src, dst = p.mmap(pages), p.mmap(pages)
    p.write(src, pages * P, 0x41)
    uffd = p.userfaultfd(features=["move"])
    uffd.register(dst, pages * P, ["missing"])
    return m, p, uffd, {"src": (src, pages), "dst": (dst, pages)}


# ------------------------------------------------------------------------------ address-space diagram

def test_fork_diagram_shows_both_processes_sharing_frames_with_mapcount_two() -> None:
    m, p, _, regions = two_regions()
    p.fork("child")
    snap = snapshot(m, regions, caption="after fork")
    fig = draw_address_space(snap, "after fork")
    assert fig._suptitle.get_text() == "after fork"
    for proc in ("main", "child"):
        for k in range(4):
            patch(fig, f"entry:{proc}:src+{k}")
            patch(fig, f"arrow:{proc}:src+{k}")       # every present entry points at its frame
        patch(fig, f"vma:{proc}:src")
    frame = snap.entry("main", "src+0").pfn
    assert snap.entry("child", "src+0").pfn == frame
    assert face(patch(fig, f"frame:{frame:#x}")) == S.FOLIO_COLOURS["shared"].lower()
    assert any(t.endswith("map 2") for t in texts(fig) if t.startswith(f"pfn {frame:#x}"))
    assert "dst+0..3" in texts(fig)                # the empty destination folded into one row
    legend = texts(fig)
    for name in ("anon-exclusive", "COW-shared (not exclusive)", "KSM page", "zero page",
                 "pinned (FOLL_LONGTERM)", "in the swap cache", "swap slot"):
        assert name in legend
    assert not highlighted(fig)


def test_every_entry_and_frame_state_is_drawn() -> None:
    """Zero page, THP, KSM, pinned, swapped out, swap cache, guard marker: each has its look."""
    m = Machine()
    p = m.spawn("main")
    a, b, z, t, k = p.mmap(4), p.mmap(4), p.mmap(2), p.mmap(512, align=2 << 20), p.mmap(3)
    p.write(a, 4 * P, 0x41)
    p.read(z, 2 * P)
    p.madvise(t, 512 * P, "hugepage")
    p.write(t, P, 0x07)
    p.madvise(k, 3 * P, "mergeable")
    p.write(k, 3 * P, 0x55)
    p.ksm_merge()
    p.pin(a, P, "io")
    p.madvise(a + 2 * P, 2 * P, "pageout")
    p.madvise(b, P, "guard_install")
    p.fork("c")
    p.read(a + 3 * P, P)                             # swap-in of a shared slot: stays in the swap cache
    regions = {"a": (a, 4), "b": (b, 4), "z": (z, 2), "thp": (t, 512), "k": (k, 3)}
    snap = snapshot(m, regions)
    fig = draw_address_space(snap)
    words = texts(fig)
    kinds = {f.kind for f in snap.folios}
    assert {"exclusive", "shared", "ksm", "zero"} <= kinds
    # zero page
    assert "zero page ×2" in words
    assert face(patch(fig, "frame:0x0")) == S.FOLIO_COLOURS["zero"].lower()
    # THP: one row for the 512 PMD-mapped pages, hatched, its folio drawn once with PMD mapcount
    thp_entry = patch(fig, "entry:main:thp+0..511")
    assert thp_entry.get_hatch() == S.HATCH_THP
    thp = next(f for f in snap.folios if f.thp)
    assert any(w.startswith(f"THP pfn {thp.pfn:#x} ×512") and "PMD map 2" in w for w in words)
    # folio_mapcount() of a THP PMD-mapped by parent and child: 2, as /proc/kpagecount says (not 1024)
    assert thp.entire_mapcount == 2 and thp.total_mapcount == 2
    # KSM: one folio mapped three times by each process, purple
    ksm = next(f for f in snap.folios if f.kind == "ksm")
    assert face(patch(fig, f"frame:{ksm.pfn:#x}")) == S.FOLIO_COLOURS["ksm"].lower()
    assert ksm.total_mapcount == 6
    # pinned: hatched
    pinned = next(f for f in snap.folios if f.pinned)
    assert S.HATCH_PINNED in patch(fig, f"frame:{pinned.pfn:#x}").get_hatch()
    # swap: the entry points at a yellow swap slot
    slot = snap.entry("main", "a+2").swap
    assert snap.entry("main", "a+2").state == "swap"
    assert face(patch(fig, f"swap:{slot}")) == S.SWAP_COLOUR.lower()
    patch(fig, "arrow:main:a+2")
    # swap cache: the swapped-in page is still in the cache, hatched
    cached = next(f for f in snap.folios if f.swapcache is not None)
    assert S.HATCH_SWAPCACHE in patch(fig, f"frame:{cached.pfn:#x}").get_hatch()
    # guard marker
    assert "guard marker" in words


def test_big_regions_are_folded_not_drawn_page_by_page() -> None:
    m = Machine()
    p = m.spawn("main")
    a = p.mmap(64)
    for k in range(0, 64, 2):
        p.write(a + k * P, P, k)
    fig = draw_address_space(snapshot(m, {"a": (a, 64)}))
    rows = gids(fig, "entry:main:")
    assert len(rows) == 10 and "entry:main:a+9..." in rows   # 9 rows, then "... 55 more pages"
    assert "... 55 more pages" in texts(fig)


# ------------------------------------------------------------------------------ before / after

def test_move_pair_highlights_the_two_entries_and_keeps_the_frame() -> None:
    m, p, uffd, regions = two_regions()
    before = snapshot(m, regions, "before")
    uffd.move(regions["dst"][0], regions["src"][0], P)
    after = snapshot(m, regions, "after")
    frame = before.entry("main", "src+0").pfn
    assert after.entry("main", "dst+0").pfn == frame          # zero copy: the same frame
    assert after.entry("main", "src+0").state == "none"
    fig = draw_before_after(before, after, "UFFDIO_MOVE")
    hl = highlighted(fig)
    assert "highlight:entry:main:src+0" in hl and "highlight:entry:main:dst+0" in hl
    assert not [h for h in hl if h.startswith("highlight:frame")]    # the frame itself did not change
    assert "changed by the step" in texts(fig)
    after_arrows = [a.get_gid() for a in panel(fig, "after").patches if (a.get_gid() or "").startswith("arrow:")]
    assert "arrow:main:dst+0" in after_arrows and "arrow:main:src+0" not in after_arrows
    assert to_hex(patch(fig, "highlight:entry:main:dst+0").get_edgecolor()) == S.HIGHLIGHT.lower()


def test_copy_then_dontneed_pairs_show_a_new_frame_then_the_old_one_freed() -> None:
    m, p, uffd, regions = two_regions(1)
    src, dst = regions["src"][0], regions["dst"][0]
    s0 = snapshot(m, regions, "before COPY")
    uffd.copy(dst, src, P)
    s1 = snapshot(m, regions, "after COPY")
    p.madvise(src, P, "dontneed")
    s2 = snapshot(m, regions, "after DONTNEED")
    old, new = s0.entry("main", "src+0").pfn, s1.entry("main", "dst+0").pfn
    assert old != new
    copy_fig = draw_before_after(s0, s1, "UFFDIO_COPY")
    assert f"highlight:frame:{new:#x}" in highlighted(copy_fig)
    assert "highlight:entry:main:dst+0" in highlighted(copy_fig)
    zap_fig = draw_before_after(s1, s2, "MADV_DONTNEED")
    assert f"highlight:frame:{old:#x}" in highlighted(zap_fig)
    assert f"pfn {old:#x}: freed" in texts(zap_fig)


def test_fork_and_ksm_pairs_highlight_what_they_change() -> None:
    m, p, _, regions = two_regions(2)
    s0 = snapshot(m, regions)
    p.fork("c")
    s1 = snapshot(m, regions)
    fig = draw_before_after(s0, s1, "fork")
    assert "c" in diff(s0, s1).processes
    assert "highlight:entry:c:src+0" in highlighted(fig)
    assert all(f"highlight:frame:{f.pfn:#x}" in highlighted(fig) for f in s1.folios if f.kind == "shared")

    m = Machine()
    q = m.spawn("main")
    a = q.mmap(2)
    q.madvise(a, 2 * P, "mergeable")
    q.write(a, 2 * P, 0x33)
    k0 = snapshot(m, {"a": (a, 2)})
    q.ksm_merge()
    k1 = snapshot(m, {"a": (a, 2)})
    fig = draw_before_after(k0, k1, "KSM merge")
    ksm = [f for f in k1.folios if f.kind == "ksm"]
    assert len(ksm) == 1 and ksm[0].total_mapcount == 2
    gone = {f.pfn for f in k0.folios} - {f.pfn for f in k1.folios}
    assert gone and all(f"highlight:frame:{g:#x}" in highlighted(fig) for g in gone)


def test_draw_step_of_a_scenario_marks_operands_and_outcome() -> None:
    sc = load_scenario(ROOT / "scenarios" / "move-after-fork.yaml")
    fig = draw_step(sc, 6)
    words = texts(fig)
    assert any("EBUSY (move = -16)" in w for w in words)
    assert any("nothing changed" in w for w in words)
    assert not highlighted(fig)
    patch(fig, "focus:entry:main:src+0")
    patch(fig, "focus:entry:main:dst+0")
    with pytest.raises(ValueError, match="no step 99"):
        draw_step(sc, 99)


# ------------------------------------------------------------------------------ decision path

def test_decision_path_marks_the_ebusy_check_in_red() -> None:
    m, p, uffd, regions = two_regions()
    p.fork("c")
    with pytest.raises(UffdError) as err:
        uffd.move(regions["dst"][0], regions["src"][0], P)
    trail = err.value.trail
    fig = draw_decision_path(trail)
    ended = [g for g in gids(fig, "trail:ended:")]
    assert ended == ["trail:ended:move_pages_ptes"]
    decision = patch(fig, "trail:decision")
    assert face(decision) == S.TEXT_ON_ERROR.lower()      # white text on it: AA contrast
    assert "folio not anon-exclusive -> EBUSY" in texts(fig)
    drawn = {g.split(":")[-1] for g in gids(fig, "trail:func:") + gids(fig, "trail:ended:")}
    assert drawn == set(trail.path)
    assert fig._suptitle.get_text() == "Decision path of UFFDIO_MOVE"


def test_decision_path_of_a_success_is_green_and_accepts_a_trail_dict() -> None:
    m, p, uffd, regions = two_regions()
    uffd.move(regions["dst"][0], regions["src"][0], P)
    fig = draw_decision_path(m.trail.to_dict(), outcome="move -> ok (move = 4096)", errno=None)
    assert face(patch(fig, "trail:decision")) == S.TEXT_ON_SUCCESS.lower()
    assert to_hex(patch(fig, "trail:outcome").get_edgecolor()) == S.TEXT_ON_SUCCESS.lower()
    assert "moved 1 page(s)" in texts(fig)


# ------------------------------------------------------------------------------ interleaving timeline

def test_timeline_of_the_copy_dontneed_counterexample_shows_the_window_and_the_lost_store() -> None:
    result = explore_strategy("copy-dontneed")
    rp = replay_result(result)
    assert rp.schedule == result.counterexample_schedule
    lost = [i for i, s in enumerate(rp.steps, 1) if "lost" in s.flags]
    assert lost == [5] and rp.steps[4].label == "store src[0] = 1"
    fig = rp.timeline()
    patch(fig, "lost:5")
    window = [a for a in fig.axes[0].patches if a.get_gid() == "window:0"]
    assert window, "the COPY..DONTNEED window is shaded"
    span = window[0]                          # time flows down: rows 2 (copy_from_user) .. 6 (DONTNEED)
    assert (span.get_y(), span.get_y() + span.get_height()) == (1.5, 6.5)
    assert "LOST 1 increment(s)" in " ".join(texts(fig))
    assert len([w for w in texts(fig) if w.startswith("◀ LOST")]) == 1
    assert {"A: mover (GC thread)", "B: mutator (counter++)"} <= set(texts(fig))
    assert fig.axes[0].get_ylabel() == "schedule order (one atomic step per row)"


def test_timeline_of_move_has_no_window_and_no_loss() -> None:
    rp = replay("move", "BAB")          # B loads, A moves the page away, B faults
    assert rp.finished and not any("window" in s.flags or "lost" in s.flags for s in rp.steps)
    fig = rp.timeline(current=3)
    patch(fig, "current:3")
    assert not gids(fig, "lost:") and not gids(fig, "window:")


def test_timeline_takes_hand_made_steps_and_text_traces() -> None:
    steps = [TimelineStep("A", "COPY", frozenset({"copy", "window"})),
             TimelineStep("B", "store src", frozenset({"store", "window", "lost"})),
             TimelineStep("A", "DONTNEED", frozenset({"zap", "window"})),
             TimelineStep("C", "observer", frozenset())]
    fig = draw_timeline(steps, "hand made", verdict="LOST 1")
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["thread A", "thread B", "thread C"]
    assert gids(fig, "lost:") == ["lost:2"] and gids(fig, "step:") == ["step:1", "step:2", "step:3", "step:4"]
    parsed = parse_trace(["  1. A  UFFDIO_COPY src[0]->dst[0]: ...", "  2. B  load src[0] (f0) = 0",
                          "page 0: B completed 3 -> no increment lost"])
    assert [(s.thread, s.detail) for s in parsed] == [("A", "UFFDIO_COPY src[0]->dst[0]: ..."),
                                                     ("B", "load src[0] (f0) = 0")]


@settings(max_examples=60, deadline=None)
@given(strategy=st.sampled_from(sorted(STRATEGIES)), src=st.sampled_from(["exclusive", "pinned", "cow-shared"]),
       pages=st.integers(1, 2), choices=st.lists(st.booleans(), min_size=40, max_size=40))
def test_lost_flags_count_exactly_the_increments_the_explorer_says_are_lost(strategy, src, pages, choices) -> None:
    prog = Program.build(strategy, pages, 3, src)
    s, ids = prog.initial(), ""
    for pick_b in choices:
        ready = prog.enabled(s)
        if not ready:
            break
        tid = "B" if pick_b and "B" in ready else ready[0]
        s, _ = prog.step(s, tid)
        ids += tid
    rp = replay(strategy, ids, pages, 3, src)            # completed preferring A
    assert rp.finished
    lost = sum("lost" in x.flags for x in rp.steps)
    assert lost == prog.outcome(rp.states[-1]).lost_increments


def test_model_state_is_drawn_as_an_address_space() -> None:
    rp = replay_result(explore_strategy("copy-dontneed"))
    snap = state_snapshot(rp.program, rp.states[3], "after the COPY")
    fig = draw_address_space(snap)
    patch(fig, "arrow:gc:src+0")
    patch(fig, "arrow:gc:dst+0")
    assert {f.label for f in snap.folios} == {"f0", "f1"}


# ------------------------------------------------------------------------------ performance

RECORDS = [{"method": m, "size_mb": s, "ns_per_page": ns, "gib_s": 4096 / ns}
           for m, base in (("move", 150.0), ("copy+dontneed", 900.0), ("memcpy", 400.0))
           for s, ns in ((1, base * 3), (16, base * 1.2), (256, base), (1024, base))]


def test_performance_plot_has_a_line_per_method_and_labelled_axes() -> None:
    fig = draw_performance(RECORDS, source="recorded on a test machine")
    left, right = fig.axes[:2]
    assert sorted(l.get_gid() for l in left.lines) == sorted(f"series:ns_per_page:{m}"
                                                             for m in ("move", "copy+dontneed", "memcpy"))
    assert len(right.lines) == 3
    assert left.get_xscale() == "log" and left.get_yscale() == "linear"   # 150..2700 ns: under 20x
    assert left.get_ylabel().startswith("time per page (ns")
    assert right.get_ylabel().startswith("throughput (GiB/s")
    assert left.get_xlabel() == "range size"
    assert "1 GiB" in [t.get_text() for t in left.get_xticklabels()]
    assert fig._suptitle.get_text()
    wide = RECORDS + [{"method": "slow", "size_mb": 1, "ns_per_page": 200000.0, "gib_s": 0.02}]
    assert draw_performance(wide).axes[0].get_yscale() == "log"


def test_performance_input_shapes(tmp_path) -> None:
    path = tmp_path / "bench.json"
    path.write_text(json.dumps({"kernel": "x", "records": RECORDS + [{"method": "bad"}]}))
    assert len(load_records(path)) == len(RECORDS)
    # the shape `python -m uffdsim bench kernel --json` writes
    doc = {"kernel": "6.18.44", "machine": "x86_64", "cpus": 2, "date": "2026-11-27T19:00:00+00:00",
           "helper": "C", "results": [{"method": r["method"], "size_mib": int(r["size_mb"]),
                                       "ns_per_page": r["ns_per_page"], "gib_per_s": r["gib_s"],
                                       "runs_ns": [1, 2], "thp": None} for r in RECORDS]}
    path.write_text(json.dumps(doc))
    assert load_records(path) == extract_records(RECORDS)
    assert describe_source(path) == "recorded on Linux 6.18.44, x86_64, 2 CPUs, 2026-11-27 (C)"
    assert extract_records({"results": RECORDS[:2]}) == extract_records(RECORDS[:2])
    with pytest.raises(ValueError, match="no benchmark records"):
        draw_performance([{"method": "x"}])


def test_performance_plot_never_joins_points_of_different_thp_share() -> None:
    # the recorded move-thp run: a 1 MiB range is never THP-backed, 16 and 256 MiB are
    recs = RECORDS + [{"method": "move-thp", "size_mb": s, "ns_per_page": ns, "gib_s": 4096 / ns, "thp": t}
                      for s, ns, t in ((1, 115.0, 0.0), (16, 6.9, 1.0), (256, 6.3, 1.0))]
    left = draw_performance(recs).axes[0]
    thp_lines = [l for l in left.lines if l.get_gid().startswith("series:ns_per_page:move-thp")]
    assert sorted(list(l.get_xdata()) for l in thp_lines) == [[1.0], [16.0, 256.0]]
    assert sorted(l.get_label() for l in thp_lines) == ["move-thp (0% THP)", "move-thp (100% THP)"]


def test_recorded_kernel_benchmark_plots_if_present() -> None:
    path = ROOT / "data" / "kernel_bench.json"
    if not path.exists():
        pytest.skip("data/kernel_bench.json not recorded yet")
    records = load_records(path)
    assert records, "the recorded benchmark has records with method, size_mb, ns_per_page, gib_s"
    fig = draw_performance(records)
    assert fig.axes[0].lines


# ------------------------------------------------------------------------------ output and hygiene

def test_png_output_is_deterministic_and_png_only(tmp_path) -> None:
    m, p, uffd, regions = two_regions()
    snap = snapshot(m, regions)
    a, b = png_bytes(draw_address_space(snap)), png_bytes(draw_address_space(snap))
    assert a == b and a.startswith(b"\x89PNG\r\n\x1a\n")
    assert b"Software" not in a and b"matplotlib" not in a.lower()
    fig = draw_address_space(snap)
    assert (fig.get_figwidth(), fig.get_dpi()) == (9.0, S.DPI)
    save_png(fig, tmp_path / "x.png")
    assert (tmp_path / "x.png").read_bytes() == a
    with pytest.raises(ValueError, match="PNG only"):
        save_png(fig, tmp_path / "x.svg")


def test_importing_and_drawing_leave_global_matplotlib_settings_alone() -> None:
    # (reading rcParams["backend"] would itself resolve the backend and import pyplot: skip that key)
    code = (
        "import matplotlib\n"
        "def settings(): return {k: matplotlib.rcParams[k] for k in matplotlib.rcParams if k != 'backend'}\n"
        "before = settings()\n"
        "import uffdsim.viz, uffdsim.widgets\n"
        "from uffdsim.viz import draw_timeline, TimelineStep, png_bytes\n"
        "png_bytes(draw_timeline([TimelineStep('A', 'x')]))\n"
        "after = settings()\n"
        "assert before == after, {k: (before[k], after[k]) for k in before if before[k] != after[k]}\n"
        "import sys; assert 'matplotlib.pyplot' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_cli_draw_writes_a_png_and_rejects_bad_input(tmp_path) -> None:
    scenario = ROOT / "scenarios" / "move-after-fork.yaml"
    out = tmp_path / "step.png"

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "uffdsim", "draw", *args], capture_output=True,
                              text=True, timeout=120, cwd=ROOT)

    ok = run(str(scenario), "--step", "9", "-o", str(out))
    assert ok.returncode == 0, ok.stderr
    assert out.read_bytes().startswith(b"\x89PNG")
    trail = run(str(scenario), "--step", "6", "--kind", "trail", "-o", str(tmp_path / "t.png"))
    assert trail.returncode == 0 and (tmp_path / "t.png").exists()
    for args, msg in (((str(scenario), "--step", "42", "-o", str(out)), "no step 42"),
                      (("missing.yaml", "--step", "1", "-o", str(out)), "missing.yaml"),
                      ((str(scenario), "--step", "1", "-o", str(tmp_path / "a.svg")), "must be a .png")):
        bad = run(*args)
        assert bad.returncode == 2 and msg in bad.stderr
        assert "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_snapshots_of_a_scenario_run_follow_its_steps() -> None:
    sc = loads_scenario("""
name: tiny
about: one page moved
steps:
  - mmap: {name: src, pages: 1}
  - mmap: {name: dst, pages: 1}
  - write: {at: src, pages: 1, value: 0x41}
  - uffd: {features: [move]}
  - register: {at: dst, pages: 1, mode: [missing]}
  - move: {dst: dst, src: src, pages: 1}
""")
    steps = scenario_steps(sc)
    assert [s.step.op for s in steps] == ["mmap", "mmap", "write", "uffd", "register", "move"]
    move = steps[-1]
    assert move.outcome() == "move -> ok (move = 4096)"
    assert str(move.trail).endswith("moved 1 page(s)")
    assert move.before.entry("main", "src+0").state == "present"
    assert move.after.entry("main", "dst+0").pfn == move.before.entry("main", "src+0").pfn
    assert any(line.startswith("main:src+0: present 0x41") for line in move.changes.lines)
    assert steps.machine.processes["main"].alive
