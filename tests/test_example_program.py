"""The book's C example (book/examples/uffd_move_example.c) compiles, runs and reports success.

It is built with the system C compiler into a temporary directory and run on the running kernel.
The test skips (never fails) where there is no C compiler, or where the program itself reports
that userfaultfd or UFFDIO_MOVE is unavailable (exit status 77 and a "SKIP:" line).  A second
test checks that the simulator predicts every UFFDIO_MOVE call the program makes: the scenario
scenarios/docs-example-walk.yaml replays the same walk.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from kernel_helpers import compile_c
from uffdsim.runner import run_scenario
from uffdsim.scenario import load_scenario

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "book" / "examples" / "uffd_move_example.c"
SCENARIO = ROOT / "scenarios" / "docs-example-walk.yaml"
EXIT_SKIP = 77
CALL_RE = re.compile(r"^\s+move pages \d+\.\.\d+: (?P<errno>\w+), move = (?P<move>-?\d+)", re.M)


@pytest.fixture(scope="module")
def program(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example, compiled once; skip when there is no C compiler."""
    return compile_c(SOURCE, tmp_path_factory.mktemp("example") / "uffd_move_example", "-pthread")


@pytest.fixture(scope="module")
def program_output(program: Path) -> str:
    """Run the example once; skip with the reason when that is not possible here."""
    return run_program(program)


def run_program(exe: Path, *args: str) -> str:
    try:
        run = subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("the example program did not finish within 60 s")
    if run.returncode == EXIT_SKIP:
        reason = next((line for line in run.stdout.splitlines() if line.startswith("SKIP:")),
                      "SKIP: (no reason printed)")
        pytest.skip(f"example program skipped itself: {reason}")
    assert run.returncode == 0, f"exit status {run.returncode}\n{run.stdout}\n{run.stderr}"
    return run.stdout


def test_example_reports_success(program_output: str) -> None:
    """The program moved, copied and zero-filled its way through and its own checks passed."""
    assert "RESULT: SUCCESS" in program_output
    assert "data check: dst holds the source data" in program_output
    assert "every source page is empty" in program_output or "pagemap unreadable" in program_output


def small_mthp_enabled() -> str | None:
    """An anonymous mTHP size below the PMD's that a first write may allocate here, if any."""
    import glob
    top = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    top_on = top.exists() and "[always]" in top.read_text()
    for knob in sorted(glob.glob("/sys/kernel/mm/transparent_hugepage/hugepages-*kB/enabled")):
        size = int(knob.split("hugepages-")[1].split("kB")[0])
        text = Path(knob).read_text()
        if size < 2048 and ("[always]" in text or ("[inherit]" in text and top_on)):
            return f"{size}kB"
    return None


def test_simulator_predicts_every_call(program_output: str) -> None:
    """Each UFFDIO_MOVE the program makes returns what the simulator predicts for the same walk
    (the walk's scenario assumes the default: no anonymous mTHP size below 2 MiB enabled)."""
    size = small_mthp_enabled()
    if size:
        pytest.skip(f"anonymous mTHP {size} is enabled here: a first write may fill the program's holes with a large folio")
    kernel_calls = [(m["errno"], int(m["move"])) for m in CALL_RE.finditer(program_output)]
    result = run_scenario(load_scenario(SCENARIO), "sim")
    assert result.status == "passed", result.unmet()
    sim_calls = [(s["errno"] or "ok", s["move"]) for s in result.steps if s["op"] == "move"]
    assert kernel_calls == sim_calls


def test_an_errno_without_a_case_falls_back_instead_of_aborting(program: Path) -> None:
    """With a read-only source page MOVE fails with EINVAL, which the loop has no case for:
    it asks for the page alone, then copies it, and says so (issue 11: backup paths for real)."""
    out = run_program(program, "--readonly-page")
    assert "RESULT: SUCCESS" in out
    assert "move pages 6..6: EINVAL, move = -22 -> page 6: UFFDIO_COPY + MADV_DONTNEED instead" in out
    assert "fell back to UFFDIO_COPY + MADV_DONTNEED: page 5 (EBUSY) page 6 (EINVAL)" in out


def test_a_pending_event_is_read_before_the_retry(program: Path) -> None:
    """A REMOVE event pending on the uffd: MOVE says EAGAIN with nothing moved until the event is
    read.  The loop must read it (issue 21, item 20: retrying without reading never succeeds)."""
    out = run_program(program, "--pending-event")
    assert re.search(r"move pages 0\.\.7: EAGAIN, move = -11 -> read 1 event\(s\), retry", out), out
    assert "RESULT: SUCCESS" in out
