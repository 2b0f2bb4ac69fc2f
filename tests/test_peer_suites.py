"""The ported peer suites (scenarios/peer-*.yaml) and the script that runs their originals.

No test here needs the network or a Go toolchain: benchmarks/peer_tests.py's suites are replaced
by stand-ins where its JSON is checked.
"""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from uffdsim.resources import corpus_dir
from uffdsim.runner import run_scenario
from uffdsim.scenario import MAX_FILE_BYTES, loads_scenario

ROOT = Path(__file__).resolve().parent.parent


def _module(rel: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(Path(rel).stem, ROOT / rel)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


GEN = _module("scripts/peer_scenarios.py")
PEER = _module("benchmarks/peer_tests.py")


# -- the kernel-selftest ports ---------------------------------------------------------------------

@pytest.mark.parametrize("case", list(GEN.CASES))
def test_the_corpus_holds_what_the_generator_writes(case: str) -> None:
    path = corpus_dir() / f"peer-kselftest-{case}.yaml"
    assert path.read_text() == GEN.scenario(case, GEN.SELFTEST_PAGES), \
        "re-run python scripts/peer_scenarios.py"


def test_the_move_port_has_the_selftests_size() -> None:
    """8192 one-page moves, as uffd_move_test() makes on 32 MiB (the port was 64 before)."""
    text = (corpus_dir() / "peer-kselftest-move.yaml").read_text()
    moves = [ln for ln in text.splitlines() if ln.startswith("  - move: ")]
    assert len(moves) == GEN.SELFTEST_PAGES == 8192
    assert moves[-1].startswith("  - move: {dst: dst+8191, src: src+8191, pages: 1,")
    assert "Scaled" not in text and len(text.encode()) < MAX_FILE_BYTES


def test_every_chunk_keeps_its_expectations_through_the_aliases() -> None:
    sc = loads_scenario(GEN.scenario("move", 3), "small.yaml")
    per_chunk = [[(s.op, s.expect) for s in sc.steps[8 + 8 * c:16 + 8 * c]] for c in range(3)]
    assert len(sc.steps) == 8 + 3 * 8
    first = per_chunk[0]
    for chunk in per_chunk[1:]:                 # the same expectations, but the event's address
        assert [(op, e) for op, e in chunk if op != "read_events"] == \
               [(op, e) for op, e in first if op != "read_events"]
    assert sum(1 for op, e in first if e) == 7
    assert run_scenario(sc, "sim").status == "passed"


# -- benchmarks/peer_tests.py ---------------------------------------------------------------------

def test_the_go_commit_is_the_one_the_scenario_names() -> None:
    assert PEER.go_commit() == "1a6cc49fdd7c"


def test_go_mod_is_adapted_to_debians_go_and_x_sys() -> None:
    text = "module github.com/x/y\n\ngo 1.25.0\n\ntoolchain go1.25.1\n\nrequire golang.org/x/sys v0.37.0\n"
    out, notes = PEER.adapt_go_mod(text, "1.19", Path("/usr/share/gocode/src/golang.org/x/sys"))
    assert "\ngo 1.19\n" in out and "toolchain" not in out
    assert out.rstrip().endswith("replace golang.org/x/sys => /usr/share/gocode/src/golang.org/x/sys")
    assert notes == ["go.mod: go 1.25.0 -> go 1.19", "golang.org/x/sys -> Debian's /usr/share/gocode/src/golang.org/x/sys"]
    same, none = PEER.adapt_go_mod("module m\n\ngo 1.18\n", "1.19", Path("/x"))
    assert same == "module m\n\ngo 1.18\n" and none == []
    assert PEER.go_version_line("go1.19.8") == "1.19"


@pytest.mark.parametrize("stdout, verdict", [
    ("=== RUN   TestMove\n--- PASS: TestMove (0.00s)\nPASS\n", "pass"),
    ("=== RUN   TestMove\n    userfaultfd_test.go:269: UFFDIO_MOVE not available\n--- SKIP: TestMove (0.00s)\n", "skip"),
    ("=== RUN   TestMove\n--- FAIL: TestMove (0.00s)\nFAIL\n", "fail"),
    ("# github.com/ricardobranco777/go-userfaultfd\n./const.go:41: undefined\n", "fail"),
])
def test_go_tests_verdict(stdout: str, verdict: str) -> None:
    assert PEER.go_verdict(stdout) == verdict


def test_the_json_has_every_suite_and_the_totals(monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    def not_here(*_args: object) -> dict:
        raise PEER.Skip("no network in this test")

    def passing(*_args: object) -> dict:
        return {"source": "stand-in", "cases": {"TestMove": {"result": "pass"}}}

    monkeypatch.setattr(PEER, "kernel_selftests", not_here)
    monkeypatch.setattr(PEER, "ltp", not_here)
    monkeypatch.setattr(PEER, "go_userfaultfd", passing)
    monkeypatch.setattr(sys, "argv", ["peer_tests.py"])
    assert PEER.main() == 0
    out = json.loads(capsys.readouterr().out)
    assert out["benchmark"] == "peer-tests" and set(out["suites"]) == {"kernel-selftests", "ltp", "go-userfaultfd"}
    assert out["suites"]["ltp"]["result"] == "not run" and "no network" in out["suites"]["ltp"]["reason"]
    assert all("total_seconds" in s for s in out["suites"].values())
    assert out["totals"] == {"pass": 1, "fail": 0, "skip": 0, "not run": 2}     # a suite not run counts


# -- the kernel backend's waits, which the 8192-fault port repeats ---------------------------------

def test_read_events_waits_only_while_a_thread_runs_outside_a_userfault() -> None:
    import socket
    import threading

    from uffdsim.backends.kernel.procstate import AsyncThread, ProcState, all_threads_settled
    a, b = socket.socketpair()
    try:
        state = ProcState("main", a)
        done = threading.Thread(target=lambda: None)
        done.start()
        done.join()
        state.threads["finished"] = AsyncThread("finished", done, tid=1)
        assert all_threads_settled(state)                     # nothing can raise an event
        stop = threading.Event()
        tids: list[int] = []
        busy = threading.Thread(target=lambda: (tids.append(threading.get_native_id()), stop.wait(10)))
        busy.start()
        while not tids:
            stop.wait(0.001)
        state.threads["sleeper"] = AsyncThread("sleeper", busy, tid=tids[0])
        try:
            assert not all_threads_settled(state)             # asleep, but not in a userfault
        finally:
            stop.set()
            busy.join()
    finally:
        a.close()
        b.close()


def test_the_lab_guest_runs_with_the_timings_of_an_emulated_machine(monkeypatch) -> None:
    """Under qemu TCG the native 10 ms settle and the skipped grace hung the ported PMD selftests
    part-way in the 6.12 lab (they passed there before): the guest switches to the slow timings,
    and ops reads them at each call."""
    from uffdsim.backends.kernel import procstate
    monkeypatch.setattr(procstate, "THREAD_SETTLE", procstate.THREAD_SETTLE)
    monkeypatch.setattr(procstate, "ALWAYS_GRACE", procstate.ALWAYS_GRACE)
    assert (procstate.THREAD_SETTLE, procstate.ALWAYS_GRACE) == (0.01, False)
    procstate.slow_machine()
    assert (procstate.THREAD_SETTLE, procstate.ALWAYS_GRACE) == (0.05, True)
    import inspect

    from uffdsim.lab import guest
    assert "procstate.slow_machine()" in inspect.getsource(guest.main)
