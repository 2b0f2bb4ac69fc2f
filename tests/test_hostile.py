"""Issue 19 (hostile input, round three): every command bounded, no internal error, honest exit codes.

Each test names the item of the issue it closes; each failed before its fix.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from uffdsim.scenario import loads_scenario

ROOT = Path(__file__).resolve().parent.parent
HEAD = "name: t\nabout: x\nsteps:\n"

from test_hardening import cli, one_error_line  # noqa: E402  (the same in-process runner)


def capped(code: str, gib: float = 1.5, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``code`` in a child Python whose address space is capped (a runaway dies of MemoryError)."""
    cap = int(gib * (1 << 30))
    prog = f"import resource; resource.setrlimit(resource.RLIMIT_AS, ({cap}, {cap}))\n" + code
    return subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env=dict(os.environ, MPLBACKEND="Agg"))


# -- item 2: draw costs what it draws ------------------------------------------------------------

def test_draw_of_a_huge_range_step_labels_only_drawn_pages(tmp_path: Path) -> None:
    """Item 2: ``draw`` of two bundled steps with a 64 TiB / 2^64-4096 length used 1.6 GB and died."""
    code = ("import sys; from uffdsim.cli import main\n"
            f"a = main(['draw', 'args-huge-range-syscalls', '--step', '2', '-o', {str(tmp_path / 'a.png')!r}])\n"
            f"b = main(['draw', 'scenarios/args-move-negative-len.yaml', '--step', '5', '-o', {str(tmp_path / 'b.png')!r}])\n"
            "sys.exit(a or b)\n")
    proc = capped(code)
    assert proc.returncode == 0, proc.stderr[-1000:]
    assert (tmp_path / "a.png").stat().st_size > 0 and (tmp_path / "b.png").stat().st_size > 0


def test_operands_are_bounded_by_what_a_picture_can_show() -> None:
    from uffdsim.snapshot import SNAPSHOT_MAX_PAGES
    from uffdsim.viz.steps import operands
    sc = loads_scenario(HEAD + "  - mmap: {name: a, pages: 2}\n  - mlock: {at: a+1, pages: 17179869184}\n")
    assert operands(sc.steps[1], sc.region_pages()) == {("main", "a+1")}
    assert len(operands(sc.steps[1])) == SNAPSHOT_MAX_PAGES


def many_forks(regions: int, forks: int, written: int = 10) -> str:
    lines = [f"  - mmap: {{name: r{i}, pages: 1}}\n" for i in range(regions)]
    lines += [f"  - write: {{at: r{i}, pages: 1, value: 1}}\n" for i in range(min(written, regions))]
    return HEAD + "".join(lines) + "".join(f"  - fork: {{child: c{i}}}\n" for i in range(forks))


def test_a_step_picture_keeps_and_draws_a_bounded_number_of_processes_and_vmas() -> None:
    """Item 2: 300 regions x 690 forks ran out of memory in ``draw``: every process and VMA was drawn."""
    from uffdsim.snapshot import SNAPSHOT_MAX_PROCS
    from uffdsim.viz import layout as L
    from uffdsim.viz.steps import step_snapshots
    sc = loads_scenario(many_forks(20, 12))
    step = step_snapshots(sc, len(sc.steps) - 1)
    assert len(step.after.processes) == SNAPSHOT_MAX_PROCS and step.after.omitted == 13 - SNAPSHOT_MAX_PROCS
    assert step.step.args["child"] in [p.name for p in step.after.processes]      # the step's own are kept
    lay = L.layout(step.after, L.frame_order(step.after), [], step.changes)
    kinds = [k for k, _, _ in lay.rows]
    assert kinds.count("proc") <= L.MAX_PROCS and kinds.count("vma") <= L.MAX_PROCS * L.MAX_VMAS
    more = [p for k, _, p in lay.rows if k == "more"]
    assert "... 12 more VMA(s) of main not drawn" in more and more[-1] == "... 7 more process(es) not drawn"


def test_draw_of_300_regions_and_hundreds_of_forks_is_bounded(tmp_path: Path) -> None:
    """Item 2: 300 regions x 690 forks is past the work limit now (item 3); 420 forks are within it."""
    path = tmp_path / "forks.yaml"
    path.write_text(many_forks(300, 690, written=0))
    status, _, err = cli("draw", str(path), "--step", "989", "-o", str(tmp_path / "f.png"))
    assert status == 2 and "touch at most" in one_error_line(err)
    path.write_text(many_forks(300, 420, written=0))
    code = ("import sys; from uffdsim.cli import main\n"
            f"sys.exit(main(['draw', {str(path)!r}, '--step', '719', '-o', {str(tmp_path / 'f.png')!r}]))\n")
    proc = capped(code, gib=1.5, timeout=300)
    assert proc.returncode == 0, proc.stderr[-1000:]


# -- item 3: the work limit counts what fork, exit and ksm_merge really walk ---------------------------

def ksm_many(regions: int, forks: int, merges: int, values: int = 7) -> str:
    lines = [f"  - mmap: {{name: r{i}, pages: 1}}\n" for i in range(regions)]
    lines += [f"  - madvise: {{at: r{i}, pages: 1, advice: mergeable}}\n" for i in range(regions)]
    lines += [f"  - write: {{at: r{i}, pages: 1, value: {i % values}}}\n" for i in range(regions)]
    lines += [f"  - fork: {{child: c{i}}}\n" for i in range(forks)]
    return HEAD + "".join(lines) + "  - ksm_merge: {}\n" * merges


def test_ksm_merge_of_many_processes_counts_every_process_it_scans() -> None:
    """Item 3: 1,000 steps over 180 pages passed 60 s: each ksm_merge counted 180 pages, not 401 processes' worth."""
    from uffdsim.scenario import ScenarioError
    with pytest.raises(ScenarioError, match=r"step \d+ \((ksm_merge|fork)\): the steps of one scenario touch at most"):
        loads_scenario(ksm_many(180, 400, 60))
    with pytest.raises(ScenarioError, match=r"step 640 \(ksm_merge\)"):
        loads_scenario(ksm_many(180, 100, 1))
    from uffdsim.runner import run_scenario
    assert run_scenario(loads_scenario(ksm_many(20, 10, 2))).status == "passed"


def test_step_work_grows_with_the_processes_a_merge_scans() -> None:
    from uffdsim.scenario import step_work
    merge = loads_scenario(HEAD + "  - mmap: {name: a, pages: 1}\n  - ksm_merge: {}\n").steps[1]
    one, many = step_work(merge, 100, 10, 4, 1), step_work(merge, 100, 10, 4, 50)
    assert many >= 50 * (one - 1)
    fork = loads_scenario(HEAD + "  - fork: {child: c}\n").steps[0]
    assert step_work(fork, 100, 300, 4, 1) > step_work(fork, 100, 1, 4, 1)     # dup_mmap walks every VMA


# -- item 7: a child whose fork failed ----------------------------------------------------------------

FAILED_FORK = HEAD + """\
  - mmap: {name: a, pages: 1}
  - fork: {child: b}
  - exit: {proc: b}
  - fork: {child: c, proc: b}
    expect: {errno: ESRCH}
  - exit: {proc: c}
    expect: {errno: ESRCH}
  - fork: {child: d, proc: c}
    expect: {errno: ESRCH}
  - write: {at: a, pages: 1, value: 1, proc: c}
    expect: {errno: ESRCH}
  - thread: {thread: t, proc: c}
    expect: {errno: ESRCH}
"""


def test_a_child_whose_fork_failed_is_esrch_in_run_and_draw(tmp_path: Path) -> None:
    """Item 7: ``exit`` or ``fork`` of a child whose fork failed was "internal error (KeyError 'c')"."""
    path = tmp_path / "failed-fork.yaml"
    path.write_text(FAILED_FORK)
    status, out, err = cli("run", str(path))
    assert (status, err) == (0, ""), err
    for n in (4, 5, 6):
        status, _, err = cli("draw", str(path), "--step", str(n), "-o", str(tmp_path / "x.png"))
        assert (status, err) == (0, ""), err


# -- item 8: a field called len, a file name too long, an ASCII terminal ---------------------------

def test_a_step_field_called_len_is_one_error_line(tmp_path: Path) -> None:
    path = tmp_path / "len.yaml"
    path.write_text(HEAD + "  - mmap: {name: a, pages: 1}\n  - write: {at: a, len: 1, value: 1}\n")
    status, _, err = cli("run", str(path))
    assert status == 2 and "step 1 (write): field 'len': not a field of write" in one_error_line(err)


@pytest.mark.parametrize("cmd", [("run",), ("draw", "--step", "0", "-o", "/tmp/x.png"), ("conform", "-q")])
def test_a_file_name_longer_than_the_system_allows_is_one_error_line(cmd: tuple[str, ...]) -> None:
    name = "x" * 300 + ".yaml"
    status, _, err = cli(cmd[0], name, *cmd[1:])
    assert status == 2 and "internal error" not in one_error_line(err), err


@pytest.mark.parametrize("encoding", ["ascii", "latin-1"])
def test_a_failing_table_prints_on_an_ascii_or_latin1_terminal(tmp_path: Path, encoding: str) -> None:
    path = tmp_path / "fail.yaml"
    path.write_text(HEAD + "  - mmap: {name: a, pages: 1}\n  - write: {at: a, pages: 1, value: 1}\n"
                    "    expect: {errno: EBUSY}\n")
    proc = subprocess.run([sys.executable, "-m", "uffdsim", "run", str(path)], capture_output=True, cwd=ROOT,
                          env=dict(os.environ, PYTHONIOENCODING=encoding), timeout=120)
    assert proc.returncode == 1 and proc.stderr == b"", proc.stderr
    assert b"unmet: errno: expected EBUSY, got success" in proc.stdout


# -- item 9: exit codes: 0 ok, 1 an expectation failed, 2 bad input, 70 internal error -------------------

MET = HEAD + "  - mmap: {name: a, pages: 1}\n  - write: {at: a, pages: 1, value: 1}\n    expect: {ok: true}\n"
UNMET = MET.replace("{ok: true}", "{errno: EBUSY}")


def test_run_exits_2_for_bad_input_and_1_only_for_a_failed_expectation(tmp_path: Path) -> None:
    """Item 9: ``run`` exited 1 for a rejected file, the status that also means "an expectation failed"."""
    for name, text in (("met", MET), ("unmet", UNMET), ("bad", "name: t\n")):
        (tmp_path / f"{name}.yaml").write_text(text)
    assert cli("run", str(tmp_path / "met.yaml"))[0] == 0
    assert cli("run", str(tmp_path / "unmet.yaml"))[0] == 1
    assert cli("run", str(tmp_path / "bad.yaml"))[0] == 2
    assert cli("run", str(tmp_path / "missing.yaml"))[0] == 2
    assert cli("run", str(tmp_path / "unmet.yaml"), str(tmp_path / "bad.yaml"))[0] == 2
    assert cli("run", str(tmp_path / "bad.yaml"), str(tmp_path / "met.yaml"))[0] == 2


@pytest.mark.parametrize("argv", [("run", "--frob"), ("run", "--backend", "nope", "x"), ("draw", "x.yaml"),
                                  ("draw", "x.yaml", "--step", "one", "-o", "x.png"), ("atomicity", "--pages", "x"),
                                  ("conform", "--frob"), ("bench",), ("frob",), ()])
def test_a_refused_command_line_is_one_error_line_and_exit_2(argv: tuple[str, ...]) -> None:
    """Item 9: argparse printed its usage block; now one ``error:`` line."""
    status, out, err = cli(*argv)
    assert status == 2 and out == "" and one_error_line(err)


def test_an_internal_error_is_one_line_and_exit_70(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from uffdsim.backends import sim
    monkeypatch.setattr(sim.SimBackend, "run", lambda self, scenario: 1 / 0)
    (tmp_path / "met.yaml").write_text(MET)
    status, _, err = cli("run", str(tmp_path / "met.yaml"))
    assert status == 70 and "internal error" in one_error_line(err)


def test_the_exit_codes_are_documented() -> None:
    readme = (ROOT / "README.md").read_text()
    for text in ("0 ok", "1 an expectation failed", "2 bad input", "70 internal error"):
        assert text in readme
    assert "70 internal error" in " ".join(cli("run", "--help")[1].split())


# -- item 10: untrusted text escaped on output --------------------------------------------------------

def test_a_newline_in_an_expect_by_kernel_key_cannot_forge_a_line(tmp_path: Path) -> None:
    path = tmp_path / "forged.yaml"
    path.write_text(HEAD + "  - mmap: {name: a, pages: 1}\n  - write: {at: a, pages: 1, value: 1}\n"
                    "    expect_by_kernel: {\">=6.1\\nTraceback (most recent call last):\\n\\e[2J\": {ok: true}}\n")
    status, _, err = cli("run", str(path))
    assert status == 2 and len(err.splitlines()) == 1 and err.startswith("error: ")
    assert "\\nTraceback" in err and "\x1b" not in err


def test_frame_labels_and_file_names_are_printed_escaped(tmp_path: Path) -> None:
    path = tmp_path / "evil\nTraceback\x1b[2J.yaml"
    path.write_text(HEAD + "  - mmap: {name: a, pages: 1}\n  - write: {at: a, pages: 1, value: 1}\n"
                    "  - observe: {at: a, pages: 1}\n"
                    "    expect: {pages: [{frame: \"f9\\nTraceback (most recent call last):\\e[2J\\u202e\"}]}\n")
    status, out, err = cli("run", str(path))
    assert status == 1 and err == ""
    assert len(out.splitlines()) == 4 and "\x1b" not in out and "\u202e" not in out
    assert "expected f9\\nTraceback" in out
    status, _, err = cli("run", str(tmp_path / "gone\n\x1b[2J.yaml"))
    assert status == 2 and "\x1b" not in one_error_line(err)


# -- the smaller ones ---------------------------------------------------------------------------------

def test_stdout_on_a_full_disk_is_one_error_line_not_an_internal_error() -> None:
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, "-m", "uffdsim", "run", "move-after-fork"], stdout=full,
                              stderr=subprocess.PIPE, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2 and "internal error" not in proc.stderr
    assert "cannot write the output: No space left on device" in one_error_line(proc.stderr)


@pytest.mark.parametrize("cmd", [("run", ""), ("draw", "", "--step", "0", "-o", "/tmp/x.png")])
def test_an_empty_scenario_name_is_not_the_current_folder(cmd: tuple[str, ...]) -> None:
    status, _, err = cli(*cmd)
    assert status == 2 and "Is a directory" not in one_error_line(err) and "''" in err


def test_draw_takes_a_bundled_scenario_name_as_run_does(tmp_path: Path) -> None:
    status, out, err = cli("draw", "move-after-fork", "--step", "0", "-o", str(tmp_path / "x.png"))
    assert (status, err) == (0, "") and (tmp_path / "x.png").exists()


def test_the_api_refuses_what_it_cannot_model_in_one_line() -> None:
    from uffdsim import Machine
    from uffdsim.argcheck import ArgTypeError, ArgValueError
    from uffdsim.errors import errno_value
    from uffdsim.mm.machine import MachineConfig
    from uffdsim.recipes import move_range
    with pytest.raises(ArgValueError, match="thp: expected one of always, madvise, never"):
        MachineConfig(thp="bogus")
    with pytest.raises(ArgTypeError, match="swap: expected True or False"):
        MachineConfig(swap="no")
    with pytest.raises(ArgTypeError, match="name: expected a process name"):
        Machine().spawn(None)  # type: ignore[arg-type]
    with pytest.raises(ArgTypeError, match="kernel: expected a profile name"):
        Machine(kernel=6.10)  # type: ignore[arg-type]
    assert Machine(kernel="6.12").kernel.name == "6.12"
    with pytest.raises(KeyError) as info:
        errno_value("EFOO")
    assert isinstance(info.value, ValueError) and str(info.value).startswith("unknown errno name 'EFOO' (known:")
    m = Machine()
    p = m.spawn("main")
    a, b = p.mmap(2), p.mmap(2)
    u = p.userfaultfd(features=["move"])
    u.register(b, 2 * 4096, ["missing"])
    for size in (0, -4096, 100):
        with pytest.raises(ArgValueError, match="page_size: expected a positive multiple of 4096"):
            move_range(u, b, a, 4096, page_size=size)


@pytest.mark.parametrize("text", ["pages: '４'", "pages: '٣'", "pages: 1\n  - write: {at: 'a+٣', pages: 1, value: 1}"])
def test_unicode_digits_are_not_numbers(text: str) -> None:
    from uffdsim.scenario import ScenarioError
    with pytest.raises(ScenarioError, match="expected"):
        loads_scenario(HEAD + "  - mmap: {name: a, " + text.replace("\n", "}\n", 1) + ("}\n" if "\n" not in text else "\n"))


# -- issue 18 item 5: limits bound work, not honest length --------------------------------------------

def test_a_scenario_of_100000_steps_within_the_work_limit_is_accepted() -> None:
    """Issue 18 item 5: 1,042 honest steps were refused by a 1,000-step limit."""
    from uffdsim.runner import run_scenario
    from uffdsim.scenario import MAX_STEPS, ScenarioError
    assert MAX_STEPS >= 100_000
    text = HEAD + "  - ksm_merge:\n" * (MAX_STEPS - 2) + "  - mmap: {name: a, pages: 1}\n" \
        "  - write: {at: a, pages: 1, value: 7}\n    expect: {ok: true}\n"
    sc = loads_scenario(text)
    assert len(sc.steps) == MAX_STEPS and run_scenario(sc).status == "passed"
    with pytest.raises(ScenarioError, match=f"{MAX_STEPS + 1} steps, more than the limit"):
        loads_scenario(text + "  - ksm_merge:\n")


def test_dense_yaml_is_refused_by_its_node_count_before_anything_is_built() -> None:
    from uffdsim.scenario import MAX_YAML_EVENTS, ScenarioError, count_events
    assert count_events(HEAD + "  - ksm_merge:\n", "x") < 20
    with pytest.raises(ScenarioError, match=f"more than {MAX_YAML_EVENTS} YAML nodes"):
        loads_scenario("name: t\nabout: x\nsteps: [" + "0," * MAX_YAML_EVENTS + "0]\n", "dense.yaml")


VALUE_STEP = HEAD + """\
  - mmap: {name: a, pages: 512, align: 2M}
  - write: {at: a, pages: 512, value: 0x10, value_step: 1}
  - observe: {at: a+254, pages: 3}
    expect: {pages: [{value: 0x0e}, {value: 0x0f}, {value: 0x10}]}
  - write: {at: a+510, pages: 4, value: 7, value_step: 3}
    expect: {errno: EFAULT}
  - observe: {at: a+510, pages: 2}
    expect: {pages: [{value: 7}, {value: 10}]}
"""


def test_a_write_with_a_value_step_writes_each_page_its_own_value() -> None:
    """Issue 18 item 5: writing each page of a 2 MiB region with its own value is one step."""
    from uffdsim.runner import run_scenario
    result = run_scenario(loads_scenario(VALUE_STEP))
    assert result.status == "passed", result.unmet()


@pytest.mark.kernel
def test_a_write_with_a_value_step_agrees_with_the_kernel() -> None:
    from uffdsim.backends.kernel.caps import capabilities
    from uffdsim.runner import compare, run_scenario
    why = capabilities().missing([])
    if why is not None:
        pytest.skip(f"kernel backend unavailable: {why}")
    sc = loads_scenario(VALUE_STEP)
    sim, kernel = run_scenario(sc, "sim"), run_scenario(sc, "kernel")
    assert kernel.status == "passed", kernel.unmet()
    assert compare(sim, kernel) == []


# -- the fuzzer that found these, seeded and short -----------------------------------------------------

def test_generated_scenarios_run_and_draw_without_a_failure() -> None:
    """Generated forks, exits and KSM of many processes, run and drawn: no traceback, hang, runaway, bad exit."""
    code = ("import json, resource; resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))\n"
            "from uffdsim.inputfuzz import fuzz\n"
            "s = fuzz(120, seed=19, budget=30, mem_cap_mb=1024, seconds=60, semantic_share=1.0)\n"
            "print(json.dumps(s.to_json()))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env=dict(os.environ, MPLBACKEND="Agg"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    import json
    doc = json.loads(proc.stdout.strip().splitlines()[-1])
    assert doc["cases"] >= 40 and doc["semantic"] == doc["cases"] and doc["draws"] > 0 and doc["accepted"] > 0
    assert (doc["tracebacks"], doc["hangs"], doc["memory"], doc["bad_exits"], doc["unescaped"]) == (0, 0, 0, 0, 0), \
        doc["failures"]


def test_the_fuzzer_holds_exit_codes_to_the_documented_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    from uffdsim import inputfuzz
    assert inputfuzz.run_cli(["run", "no/such.yaml"], 20).kind == "rejected"
    import uffdsim.cli as C
    monkeypatch.setattr(C, "cmd_run", lambda args: (print("error: x", file=sys.stderr), 1)[1])
    real = C.build_parser

    def patched():  # type: ignore[no-untyped-def]
        p = real()
        p._subparsers._group_actions[0].choices["run"].set_defaults(func=C.cmd_run)  # type: ignore[union-attr]
        return p
    monkeypatch.setattr(C, "build_parser", patched)
    assert inputfuzz.run_cli(["run", "x.yaml"], 20).kind == "bad-exit"          # an error line with exit 1
    monkeypatch.setattr(C, "cmd_run", lambda args: (print("\x1b[2J"), 0)[1])
    assert inputfuzz.run_cli(["run", "x.yaml"], 20).kind == "unescaped"


def test_the_fuzzer_counts_cpu_time_not_a_busy_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """A hang is a case past its CPU budget: a loop is one; waiting (a starved case) within 10x is not."""
    import time as T
    from uffdsim import inputfuzz
    import uffdsim.cli as C
    real = C.build_parser

    def patched():  # type: ignore[no-untyped-def]
        p = real()
        p._subparsers._group_actions[0].choices["run"].set_defaults(func=C.cmd_run)  # type: ignore[union-attr]
        return p
    monkeypatch.setattr(C, "build_parser", patched)

    def spin(args: object) -> int:
        while True:
            pass
    monkeypatch.setattr(C, "cmd_run", spin)
    assert inputfuzz.run_cli(["run", "x.yaml"], 0.5).kind == "hang"
    monkeypatch.setattr(C, "cmd_run", lambda args: (T.sleep(1.0), 0)[1])
    assert inputfuzz.run_cli(["run", "x.yaml"], 0.5).kind == "accepted"
