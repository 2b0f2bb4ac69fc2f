"""Issue 19, the fuzz run: the generators for claims pages and live cells, and what they found.

The bugs the run found are kept here as fixed inputs (each test named after what it shows failed
before its fix); the generators themselves get a derandomized smoke run of a few cases each.
"""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from uffdsim import inputfuzz
from uffdsim.live import MAX_OUTPUT, run_cell, run_cell_json

ROOT = Path(__file__).resolve().parent.parent


# -- what the live-cell generator found ------------------------------------------------------------

@pytest.mark.parametrize("source, named", [
    ("class E(Exception):\n    def __str__(self):\n        raise RuntimeError('str failed')\nraise E()", "E"),
    ("class E(Exception):\n    def __str__(self):\n        raise SystemExit(4)\nraise E()", "E"),
    ("class X(SystemExit):\n    @property\n    def code(self):\n        raise ValueError('code')\nraise X()", "X"),
    ("class E(BaseException):\n    def __str__(self):\n        return 5\nraise E()", "E"),
])
def test_an_exception_whose_message_raises_is_one_error_line(source: str, named: str) -> None:
    """Failed before: the cell's own ``__str__`` (or ``code``) raised again while its error line was
    written, and the page showed "internal error ... please report this cell"."""
    doc = json.loads(run_cell_json("python", source))
    assert doc["ok"] is False
    assert "internal error" not in doc["text"]
    assert doc["text"].splitlines() == [f"error: {named} (its message raised an exception)"]


def test_a_cell_that_replaces_builtins_changes_no_later_cell() -> None:
    """Failed before: ``exec`` shares the interpreter's builtins, so a cell that set
    ``__builtins__['print'] = None`` broke ``print`` for every later cell (and for uffdsim)."""
    import builtins
    real_print = builtins.print
    try:
        assert run_cell("python", "__builtins__['print'] = None")["ok"]
        assert builtins.print is real_print
        assert run_cell("python", "print('still here')")["text"] == "still here\n"
    finally:
        builtins.print = real_print


@pytest.mark.parametrize("source", ["__builtins__['print'] = None\n1 / 0",
                                    "import builtins\nbuiltins.isinstance = None\nbuiltins.len = None\nraise ValueError('x')"])
def test_a_cell_that_breaks_builtins_then_fails_gets_its_one_error_line(source: str) -> None:
    """Failed before: the error line was written with the cell's broken ``print`` (an internal error)."""
    import builtins
    saved = dict(vars(builtins))
    try:
        doc = json.loads(run_cell_json("python", source))
    finally:
        vars(builtins).update(saved)
    assert doc["ok"] is False
    assert len(doc["text"].splitlines()) == 1 and doc["text"].startswith("error: ")
    assert "internal error" not in doc["text"]


def test_a_snippets_machine_is_snapshotted_only_as_far_as_it_is_drawn(monkeypatch: pytest.MonkeyPatch) -> None:
    """Failed before: a 0.4 s loop of 3,000 mmaps took 29 s and 900 MB to snapshot for its picture,
    since every page of every VMA was listed though the picture draws 8 VMAs per process."""
    import uffdsim.snapshot as S
    from uffdsim.viz.layout import MAX_VMAS
    calls = []
    real = S.entry_snap
    monkeypatch.setattr(S, "entry_snap", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    pages, vmas = 64, 300
    res = run_cell("python", "machine = uffdsim.Machine()\np = machine.spawn('main')\n"
                             f"for i in range({vmas}):\n    a = p.mmap({pages})\n    p.write(a, 4096, i % 256)\n")
    assert res["ok"] and res["svg"] is not None
    assert 0 < len(calls) <= MAX_VMAS * pages < vmas * pages


def test_the_bounded_snapshot_draws_the_same_picture() -> None:
    """The bounded snapshot changes the cost, not the picture: more processes and VMAs than drawn."""
    import uffdsim
    from uffdsim.live import machine_snapshot
    from uffdsim.snapshot import snapshot
    from uffdsim.viz.svg import address_space_svg
    m = uffdsim.Machine()
    p = m.spawn("main")
    for i in range(12):
        a = p.mmap(3)
        p.write(a, 3 * 4096, i)
    child = p.fork("c")
    child.exit()
    for i in range(8):
        p.fork(f"k{i}")
    assert address_space_svg(machine_snapshot(m), title="t") == address_space_svg(snapshot(m), title="t")


def test_a_live_case_past_its_budget_is_a_hang_though_the_cell_catches_everything() -> None:
    """Failed before: run_cell_json catches BaseException, so the fuzzer's timer was swallowed and a
    runaway cell came back as a one-line error ("rejected"), not as a hang."""
    assert inputfuzz.run_live("python", "while True:\n    pass", 0.3).kind == "hang"
    assert inputfuzz.run_live("python", "print(1)", 5).kind == "accepted"


def test_the_live_classifier_holds_the_page_to_its_promises(monkeypatch: pytest.MonkeyPatch) -> None:
    import uffdsim.live as L
    assert inputfuzz.run_live("python", "raise SystemExit(3)", 5).kind == "rejected"
    assert inputfuzz.run_live("yaml", "steps: [", 5).kind == "rejected"
    assert inputfuzz.run_live("python", "print('x' * 10**6)", 5).kind == "accepted"
    monkeypatch.setattr(L, "run_cell", lambda kind, source: {"ok": True, "text": "y" * (2 * MAX_OUTPUT), "svg": None})
    assert inputfuzz.run_live("python", "", 5).kind == "bad-exit"                   # output not capped
    monkeypatch.setattr(L, "run_cell", lambda kind, source: {"ok": False, "text": "oops\n", "svg": None})
    assert inputfuzz.run_live("python", "", 5).kind == "bad-exit"                   # failed without an error line
    monkeypatch.undo()

    def leaky(kind: str, source: str) -> dict:
        import uffdsim.scenario
        uffdsim.scenario.MAX_STEPS = 10**9                                          # type: ignore[misc]
        return {"ok": True, "text": "", "svg": None}
    import uffdsim.scenario
    limit = uffdsim.scenario.MAX_STEPS
    monkeypatch.setattr(L, "run_cell", leaky)
    assert inputfuzz.run_live("python", "", 5).kind == "bad-exit"                   # a limit left changed
    assert uffdsim.scenario.MAX_STEPS == limit                                      # and put back


# -- the generators, derandomized and short --------------------------------------------------------

def test_the_generators_are_deterministic_for_a_seed() -> None:
    names = ["move-after-fork"]
    texts = inputfuzz.corpus_texts()[:3]
    for seed in range(5):
        a, b = random.Random(seed), random.Random(seed)
        assert inputfuzz.claims_page(a, names) == inputfuzz.claims_page(b, names)
        assert inputfuzz.live_cell(a, texts) == inputfuzz.live_cell(b, texts)


@pytest.mark.parametrize("odd", ["dir", "/dev/zero", "fifo", "loop"])
def test_claims_of_an_odd_file_is_one_error_line(tmp_path: Path, odd: str) -> None:
    inputfuzz.claims_fixtures(str(tmp_path))
    target = {"dir": str(tmp_path), "fifo": str(tmp_path / "fifo"), "loop": str(tmp_path / "loop")}.get(odd, odd)
    assert inputfuzz.run_cli(["claims", target], 20).kind == "rejected"


@pytest.mark.parametrize("share, generators", [
    ("claims_share=1.0", {"claims-page"}),
    ("live_share=1.0", {"live-python", "live-yaml", "live-kind"}),
])
def test_a_short_seeded_run_of_each_new_generator_has_no_failure(share: str, generators: set[str]) -> None:
    code = ("import json, resource; resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))\n"
            "from uffdsim.inputfuzz import fuzz\n"
            f"s = fuzz(30, seed=19, budget=30, mem_cap_mb=1024, seconds=90, semantic_share=0.0, {share})\n"
            "print(json.dumps(s.to_json()))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env=dict(os.environ, MPLBACKEND="Agg"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(proc.stdout.strip().splitlines()[-1])
    assert doc["cases"] >= 10 and set(doc["generators"]) <= generators
    assert sum(g["cases"] for g in doc["generators"].values()) == doc["cases"]
    assert doc["accepted"] > 0 and doc["rejected"] > 0
    assert (doc["tracebacks"], doc["hangs"], doc["memory"], doc["bad_exits"], doc["unescaped"]) == (0, 0, 0, 0, 0), \
        doc["failures"]


def test_chunks_merge_into_one_count_per_generator() -> None:
    import importlib.util
    spec = importlib.util.spec_from_file_location("fuzz_inputs", ROOT / "benchmarks" / "fuzz_inputs.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    base = {k: 0 for k in mod.COUNTS}
    a = dict(base, cases=3, accepted=2, rejected=1, live=3, seed=1, seconds=5.0, slowest=1.0, peak_rss_mb=90.0,
             failures=[], generators={"live-python": {"cases": 3, "ok": 2, "rejected": 1}})
    b = dict(base, cases=2, accepted=2, claims=2, seed=2, seconds=7.0, slowest=2.0, peak_rss_mb=80.0, failures=[],
             generators={"live-python": {"cases": 1, "ok": 1}, "claims-page": {"cases": 1, "expectation-failed": 1}})
    doc = mod.merge([a, b], 7.0)
    assert (doc["cases"], doc["live"], doc["claims"], doc["slowest"], doc["peak_rss_mb"]) == (5, 3, 2, 2.0, 90.0)
    assert doc["generators"] == {"claims-page": {"cases": 1, "expectation-failed": 1},
                                 "live-python": {"cases": 4, "ok": 3, "rejected": 1}}


def test_a_generated_page_stays_small_enough_for_the_fuzzer_itself() -> None:
    """Found by the run: seed 1900's case 12,130 generated a 104 MB page; ``claims`` refused it after
    16 MiB, but building it took the fuzzer past its 1 GiB cap (every later case then counted as memory)."""
    rng = random.Random(0)
    rng.random = lambda: 0.75                                       # type: ignore[method-assign]  (the huge part)
    rng.choice = lambda seq: seq[-1]                                 # type: ignore[method-assign]  (the most repeats)
    rng.randint = lambda a, b: b                                     # type: ignore[method-assign]
    page = inputfuzz.markdown_page(rng, ["a" * 5000])
    assert len(page) <= 2 * inputfuzz.PAGE_PART_MAX + 1000          # what is past the cap, capped once more


def test_only_the_case_that_raised_the_peak_past_the_cap_counts_as_memory() -> None:
    """The peak RSS only grows: once one case took it past the cap, every later case used to count
    as a memory runaway too.  Now a case is blamed only when it raised the peak above the cap."""
    assert inputfuzz.memory_verdict(300.0, 1100.0, 1024.0)            # this case crossed the cap
    assert inputfuzz.memory_verdict(1100.0, 1200.0, 1024.0)           # over it, and higher still
    assert inputfuzz.memory_verdict(1100.0, 1100.0, 1024.0) is None   # an earlier case's peak
    assert inputfuzz.memory_verdict(300.0, 900.0, 1024.0) is None     # grew, under the cap
