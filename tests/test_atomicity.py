"""The atomicity model: COPY + DONTNEED can lose a concurrent write, UFFDIO_MOVE cannot.

The pinned numbers are exact counts of complete schedules of the program defined in
uffdsim/concurrency/program.py.  The 1-increment counts are small enough to check by hand
(see the comments); the explorer's path counting is also checked against a naive enumerator
that walks every schedule without deduplication.
"""
from __future__ import annotations

import json
from itertools import product

import pytest

from uffdsim.concurrency import STRATEGIES, Program, explore, explore_strategy, run
from uffdsim.concurrency.cli import main
from uffdsim.concurrency.state import SRC_PAGE_KINDS


def naive(program: Program) -> list[tuple[str, object]]:
    """Every complete schedule and its outcome, by brute force (no state deduplication)."""
    out: list[tuple[str, object]] = []

    def walk(s, sched: str) -> None:
        if program.finished(s):
            out.append((sched, program.outcome(s)))
            return
        ready = program.enabled(s)
        assert ready, f"deadlock after {sched}"
        for t in ready:
            walk(program.step(s, t)[0], sched + t)

    walk(program.initial(), "")
    return out


# -- the numbers: 1 page, a 3-increment writer ------------------------------------

# strategy: (interleavings, lost, src_nonempty, leaked, copied, ebusy)
PINNED_1x3 = {
    "move": (13, 0, 0, 0, 0, 0),
    "copy-dontneed": (336, 251, 0, 0, 336, 0),
    "move-fallback": (714, 486, 0, 0, 714, 714),
    "move-allow-copy": (13, 0, 0, 0, 13, 0),
    "move-zero-copy-only": (28, 0, 28, 0, 0, 28),
}


@pytest.mark.parametrize("name", list(PINNED_1x3))
def test_exact_counts_one_page_three_increments(name: str) -> None:
    r = explore_strategy(name, pages=1, increments=3)
    assert (r.interleavings, r.lost, r.src_nonempty, r.leaked, r.copied, r.ebusy) == \
        PINNED_1x3[name]
    assert r.deadlocks == 0


def test_move_loses_nothing_and_copy_dontneed_does() -> None:
    assert explore_strategy("move", 1, 3).lost == 0
    assert explore_strategy("copy-dontneed", 1, 3).lost > 0


def test_lost_histogram_of_copy_dontneed() -> None:
    # up to all three increments can vanish: B does them all between the copy and the zap
    assert explore_strategy("copy-dontneed", 1, 3).lost_histogram == {0: 85, 1: 143, 2: 89, 3: 19}


# -- one increment, checked by hand ---------------------------------------------------------

def test_one_increment_by_hand() -> None:
    # move: A = M(ove), F(lip); B = L(oad), S(tore).  LSMF; L M then the store faults before
    # or after F, then wake, reload, store (2); M, load faults, F, wake... (1); MFLS (1): 5.
    assert (explore_strategy("move", 1, 1).interleavings, explore_strategy("move", 1, 1).lost) \
        == (5, 0)
    # copy-dontneed: A = alloc, copy, install, zap, flip.  B's load in one of the 4 slots
    # before the zap and its store in a later-or-equal slot before the zap: 10 pairs, of which
    # 7 store after the copy (lost); each of the 4 loads can instead see its store fault after
    # the zap (before or after the flip): 8; a load that faults after the zap: 1; a load after
    # the flip: 1.  Total 20, lost 7.
    r = explore_strategy("copy-dontneed", 1, 1)
    assert (r.interleavings, r.lost) == (20, 7)
    # move-fallback on a pinned page: the same with a failing MOVE in front: 5 load slots,
    # 15 pairs (9 lost) + 10 faulting stores + 2 = 27.
    r = explore_strategy("move-fallback", 1, 1)
    assert (r.interleavings, r.lost, r.ebusy) == (27, 9, 27)
    # zero-copy-only on a pinned page: MOVE fails, nothing flips, B never faults:
    # 2 steps of A among 4 steps in all, C(4, 2) = 6.
    r = explore_strategy("move-zero-copy-only", 1, 1)
    assert (r.interleavings, r.lost, r.src_nonempty) == (6, 0, 6)


def test_no_increments_means_one_interleaving() -> None:
    for name in STRATEGIES:
        r = explore_strategy(name, 1, 0)
        assert r.interleavings == 1 and r.lost == 0


# -- the counting is exact --------------------------------------------------------------

@pytest.mark.parametrize("name,kind,pages,k", [
    (n, kind, p, k) for n, kind in product(STRATEGIES, SRC_PAGE_KINDS)
    for p, k in ((1, 1), (1, 3), (2, 2))])
def test_path_count_matches_brute_force(name: str, kind: str, pages: int, k: int) -> None:
    prog = Program.build(name, pages, k, kind)
    runs = naive(prog)
    r = explore(prog)
    assert r.interleavings == len(runs)
    assert r.lost == sum(o.lost for _, o in runs)
    assert r.src_nonempty == sum(o.src_nonempty for _, o in runs)
    assert r.copied == sum(o.copied for _, o in runs)
    assert r.deadlocks == 0


@pytest.mark.parametrize("kind", SRC_PAGE_KINDS)
@pytest.mark.parametrize("pages,k", [(1, 4), (2, 3), (3, 3)])
def test_move_never_loses_and_never_copies(kind: str, pages: int, k: int) -> None:
    r = explore_strategy("move", pages, k, kind)
    assert r.lost == 0 and r.copied == 0 and r.leaked == 0


def test_move_keeps_the_frame() -> None:
    """Zero copy: in every finished run of a successful move, dst maps the original frame."""
    prog = Program.build("move", 1, 3)
    seen = 0
    for sched, _ in naive(prog):
        s = run(prog, sched).final
        assert s.dst[0] is not None and s.dst[0].frame == 0 and s.src[0] is None
        seen += 1
    assert seen == 13


def test_allow_copy_is_atomic_but_copies() -> None:
    r = explore_strategy("move-allow-copy", 1, 3)
    assert r.promises() == {"atomicity": True, "zero_copy": False, "empty_source": True,
                            "no_leak": True}


def test_zero_copy_only_keeps_its_promise_by_failing() -> None:
    r = explore_strategy("move-zero-copy-only", 1, 3)
    assert r.promises() == {"atomicity": True, "zero_copy": True, "empty_source": False,
                            "no_leak": True}


def test_cow_shared_page_moves_once_the_writer_broke_cow() -> None:
    # a store by B before the MOVE copies the page (do_wp_page) into an exclusive one,
    # which MOVE then moves: 3 of the 10 one-increment runs succeed
    r = explore_strategy("move", 1, 1, "cow-shared")
    assert (r.interleavings, r.ebusy, r.src_nonempty, r.lost) == (10, 7, 7, 0)


# -- the counterexample -----------------------------------------------------------------

@pytest.mark.parametrize("name", ["copy-dontneed", "move-fallback"])
def test_counterexample_replays_to_a_loss_and_is_shortest(name: str) -> None:
    prog = Program.build(name, 1, 3)
    r = explore(prog)
    replay = run(prog, r.counterexample_schedule)
    assert replay.complete and prog.outcome(replay.final).lost
    assert replay.report() == r.counterexample
    shortest = min(len(s) for s, o in naive(prog) if o.lost)
    assert len(r.counterexample_schedule) == shortest


def test_counterexample_shows_the_write_between_copy_and_zap() -> None:
    text = "\n".join(explore_strategy("copy-dontneed", 1, 1).counterexample)
    copy, store, zap = (text.index("copy_from_user"), text.index("B  store src[0]"),
                        text.index("zap_pte_range"))
    assert copy < store < zap
    assert "LOST 1 increment" in text


def test_no_counterexample_without_loss() -> None:
    r = explore_strategy("move", 1, 3)
    assert r.counterexample == [] and r.counterexample_schedule == ""


def test_scheduler_refuses_a_thread_that_cannot_run() -> None:
    prog = Program.build("move", 1, 1)
    with pytest.raises(ValueError, match="thread B cannot run"):
        run(prog, "ABB")           # after the move B's load faults: B sleeps, cannot run
    with pytest.raises(ValueError, match="unknown thread"):
        run(prog, "AC")


# -- determinism and the report -----------------------------------------------------------

def test_two_runs_are_equal() -> None:
    for name in STRATEGIES:
        assert explore_strategy(name, 2, 2).to_dict() == explore_strategy(name, 2, 2).to_dict()


def test_json_fields() -> None:
    d = json.loads(explore_strategy("copy-dontneed", 1, 3).to_json())
    for key in ("strategy", "interleavings", "lost", "src_nonempty", "leaked", "zero_copy",
                "counterexample", "hypothetical", "label", "pages", "increments", "states"):
        assert key in d
    assert d["strategy"] == "copy-dontneed" and d["hypothetical"] is False
    assert isinstance(d["counterexample"], list) and d["counterexample"]


@pytest.mark.parametrize("name", ["move-allow-copy", "move-zero-copy-only"])
def test_hypothetical_strategies_are_labelled(name: str) -> None:
    d = explore_strategy(name, 1, 1).to_dict()
    assert d["hypothetical"] is True and "not Linux" in d["label"]


def test_cli_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["atomicity", "--strategy", "move", "--pages", "1", "--increments", "3",
                 "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert (d["strategy"], d["interleavings"], d["lost"], d["src_nonempty"]) == ("move", 13, 0, 0)


def test_cli_table_lists_every_strategy(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    out = capsys.readouterr().out
    for name in STRATEGIES:
        assert name in out
    assert "not Linux" in out


@pytest.mark.parametrize("argv,msg", [
    (["--strategy", "teleport"], "unknown strategy 'teleport'"),
    (["--pages", "0"], "pages must be"),
    (["--increments", "-1"], "increments must be"),
    (["--trials", "5"], "only apply with --kernel"),
    (["--kernel", "--strategy", "move-allow-copy"], "hypothetical"),
])
def test_cli_bad_arguments(argv: list[str], msg: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and msg in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_cli_replays_a_schedule(capsys: pytest.CaptureFixture[str]) -> None:
    # B loads, A moves, B's store faults on the emptied source, A flips and releases B (the
    # model's redirect), which redoes the increment at dst: the value travelled with the frame
    assert main(["--strategy", "move", "--schedule", "BABAA"]) == 0
    out = capsys.readouterr().out
    assert "handle_userfault" in out and "A releases B" in out
    assert "dst[0] holds 3 -> no increment lost" in out


def test_cli_refuses_a_schedule_naming_a_sleeping_thread(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--strategy", "move", "--schedule", "ABB"]) == 2
    assert "cannot run now (asleep in handle_userfault)" in capsys.readouterr().err


def test_program_build_rejects_unknown_src_page() -> None:
    with pytest.raises(ValueError, match="unknown source page kind"):
        Program.build("move", 1, 1, "shared")
