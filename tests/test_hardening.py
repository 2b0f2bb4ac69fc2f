"""Issue 9 (bad input): no traceback, no runaway, the kernel's errno, for every example of the issue."""
from __future__ import annotations

import contextlib
import errno as E
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from uffdsim import Machine, UffdError
from uffdsim.argcheck import ArgTypeError, ArgValueError
from uffdsim.cli import main
from uffdsim.recipes import MoveRangeError, move_range
from uffdsim.runner import run_scenario
from uffdsim.scenario import (MAX_FILE_BYTES, ScenarioError, load_scenario, loads_scenario)

ROOT = Path(__file__).resolve().parent.parent
HEAD = "name: t\nabout: x\nsteps:\n"
MAP = "  - mmap: {name: src, pages: 2}\n"
PAGE = 4096


def cli(*argv: str) -> tuple[int, str, str]:
    """Run the command line in this process: (status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main(list(argv))
        except SystemExit as stop:
            status = stop.code if isinstance(stop.code, int) else 2
    return status, out.getvalue(), err.getvalue()


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


# -- the loader: every malformed file is one line naming file, step and field ---------------------

BAD_TEXTS = {
    "align-list": (HEAD + "  - mmap: {name: src, pages: 2, align: [2M]}\n", "step 0 (mmap): field 'align'"),
    "align-dict": (HEAD + "  - mmap: {name: src, pages: 2, align: {x: 1}}\n", "step 0 (mmap): field 'align'"),
    "errno-list": (HEAD + MAP + "  - read: {at: src, pages: 1}\n    expect: {errno: [EBUSY]}\n",
                   "step 1 (read): field 'expect.errno'"),
    "int-top-key": ("name: t\n1: 2\nabout: x\nsteps:\n" + MAP, "field 1: unknown top-level field"),
    "duplicate-key": ("name: t\nname: u\nabout: x\nsteps:\n" + MAP, "duplicate key 'name'"),
    "duplicate-field": (HEAD + "  - mmap: {name: src, pages: 2, pages: 3}\n", "duplicate key 'pages'"),
    "u64-pages": (HEAD + MAP + "  - munmap: {at: src, pages: 1000000000000000000000000000000}\n",
                  "step 1 (munmap): field 'pages'"),
    "u64-address": (HEAD + MAP + "  - munmap: {at: 18446744073709551616, pages: 1}\n", "step 1 (munmap): field 'at'"),
    "u64-mode": (HEAD + MAP + "  - uffd: {}\n  - move: {dst: src, src: src, pages: 1, mode: 18446744073709551616}\n",
                 "step 2 (move): field 'mode'"),
    "huge-digits": (HEAD + "  - mmap: {name: src, pages: " + "9" * 5000 + "}\n", ""),
    "deep-nesting": (HEAD + MAP + "  - read: {at: src, pages: 1}\n    expect: {pages: " + "[" * 5000 + "]" * 5000 + "}\n", ""),
    "observe-2**40": (HEAD + MAP + "  - observe: {at: src, pages: 1099511627776}\n", "observe looks at most at 4096 pages"),
    "too-many-mapped": (HEAD + "  - mmap: {name: a, pages: 65536}\n  - mmap: {name: b, pages: 1}\n", "(limit)"),
    "too-much-work": (HEAD + "  - mmap: {name: a, pages: 65536}\n" + "  - write: {at: a, pages: 65536, value: 1}\n" * 5,
                      "step 4 (write): the steps of one scenario touch at most"),
}


@pytest.mark.parametrize("name", sorted(BAD_TEXTS))
def test_malformed_scenarios_are_one_line_errors(name: str) -> None:
    text, message = BAD_TEXTS[name]
    with pytest.raises(ScenarioError) as info:
        loads_scenario(text, "bad.yaml")
    assert "\n" not in str(info.value) and str(info.value).startswith("bad.yaml: ")
    assert message in str(info.value)


def bad_files(tmp: Path) -> dict[str, tuple[Path, str]]:
    """Files the issue lists, with what the error must say."""
    good = (HEAD + MAP).replace("about: x", "about: café")
    files = {"latin-1": (good.encode("latin-1"), "not UTF-8 text"), "utf-16": (good.encode("utf-16"), "NUL byte"),
             "nul": (good.replace("café", "caf\0").encode(), "NUL byte"), "too-big": (b"#" * (MAX_FILE_BYTES + 1), "larger than")}
    out: dict[str, tuple[Path, str]] = {}
    for name, (data, message) in files.items():
        (tmp / f"{name}.yaml").write_bytes(data)
        out[name] = (tmp / f"{name}.yaml", message)
    (tmp / "loop1").symlink_to(tmp / "loop2")
    (tmp / "loop2").symlink_to(tmp / "loop1")
    out["symlink-loop"] = (tmp / "loop1", "Too many levels of symbolic links")
    (tmp / "folder").mkdir()
    out["directory"] = (tmp / "folder", "Is a directory")
    out["dev-zero"] = (Path("/dev/zero"), "larger than")
    return out


def test_unreadable_files_are_one_line_errors(tmp_path: Path) -> None:
    for name, (path, message) in bad_files(tmp_path).items():
        with pytest.raises(ScenarioError) as info:
            load_scenario(path)
        assert "\n" not in str(info.value) and str(path) in str(info.value), name
        assert message in str(info.value), (name, str(info.value))


def test_run_draw_and_conform_reject_bad_files_with_one_line_and_nonzero_exit(tmp_path: Path) -> None:
    for name, (path, message) in bad_files(tmp_path).items():
        status, _, err = cli("run", str(path))
        assert status != 0 and message in one_error_line(err), (name, err)
        status, _, err = cli("draw", str(path), "--step", "0", "-o", str(tmp_path / "x.png"))
        assert status != 0 and message in one_error_line(err), (name, err)
    for name in ("latin-1", "symlink-loop"):
        status, out, err = cli("conform", "-q", str(bad_files_path(tmp_path, name)))
        assert status != 0 and "Traceback" not in err and "could not be loaded" in out


def bad_files_path(tmp: Path, name: str) -> Path:
    return tmp / ("loop1" if name == "symlink-loop" else f"{name}.yaml")


def test_the_rejected_examples_exit_nonzero_through_the_real_entry_point(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text("name: t\nname: u\nabout: x\nsteps:\n" + MAP)
    proc = subprocess.run([sys.executable, "-m", "uffdsim", "run", str(path)], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1 and "duplicate key 'name'" in proc.stderr


# -- the command line: records checked first, limits with a clear error ----------------------------

def test_conform_on_an_empty_folder_exits_nonzero_with_one_line(tmp_path: Path) -> None:
    status, _, err = cli("conform", str(tmp_path))
    assert status == 2 and "no scenario files" in one_error_line(err)


@pytest.mark.parametrize("cmd", [("conform", "-q"), ("bench", "kernel", "-q")])
def test_record_into_a_missing_folder_or_a_directory_is_refused_before_the_work(tmp_path: Path, cmd: tuple[str, ...],
                                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from uffdsim import conform as C
    from uffdsim.backends.kernel import bench
    def no_work(*a: object, **k: object) -> None:
        raise AssertionError("the long work started")
    monkeypatch.setattr(C, "conform", no_work)
    monkeypatch.setattr(bench, "run_bench", no_work)
    for target, message in ((tmp_path / "missing" / "x.json", "does not exist"), (tmp_path, "is a directory")):
        status, _, err = cli(*cmd, "--record", str(target))
        assert status == 2 and message in one_error_line(err)


@pytest.mark.parametrize("argv,message", [
    (("bench", "kernel", "--sizes", "1000000"), "sizes must be 1..1024 MiB"),
    (("bench", "kernel", "--runs", "1000000000"), "1..100"),
    (("atomicity", "--kernel", "--trials", "1000000000"), "--trials must be from 1 to 100000"),
])
def test_limits_are_refused_up_front(argv: tuple[str, ...], message: str) -> None:
    status, _, err = cli(*argv)
    assert status == 2 and message in err and "Traceback" not in err


def test_atomicity_all_strategies_at_the_documented_maximum_is_bounded() -> None:
    from uffdsim.concurrency import explorer
    status, _, err = cli("atomicity", "--strategy", "all", "--pages", "8", "--increments", "64")
    assert status == 2 and "explorer's limit" in one_error_line(err)
    assert explorer.MAX_STATES <= 20_000
    status, out, err = cli("atomicity", "--strategy", "all", "--pages", "4", "--increments", "8")
    assert status == 0 and err == ""


def test_draw_snapshots_only_the_drawn_step_and_at_most_the_cap(tmp_path: Path) -> None:
    from uffdsim.snapshot import SNAPSHOT_MAX_PAGES, scenario_steps
    sc = loads_scenario(HEAD + "  - mmap: {name: a, pages: 65536}\n  - write: {at: a+7, pages: 1, value: 1}\n"
                        "  - observe: {at: a, pages: 8}\n")
    done = scenario_steps(sc, upto=2, only_last=True)
    assert [s.step.i for s in done] == [2]
    vma = done[0].after.processes[0].vmas[0]
    assert len(vma.entries) == SNAPSHOT_MAX_PAGES < 65536


# -- the simulator agrees with the kernel ---------------------------------------------------------

@pytest.fixture
def proc() -> tuple:
    m = Machine()
    p = m.spawn("main")
    a, b = p.mmap(4), p.mmap(4)
    p.write(a, 4 * PAGE, 0x41)
    u = p.userfaultfd(features=["move"])
    u.register(b, 4 * PAGE, ["missing"])
    return p, u, a, b


def errno_of(fn, *args, **kw) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(UffdError) as info:
        fn(*args, **kw)
    return info.value.name


@pytest.mark.parametrize("pages", [2**40, 10**30, 2**35])
def test_mmap_longer_than_the_address_space_is_enomem(pages: int) -> None:
    p = Machine().spawn("main")
    assert errno_of(p.mmap, pages) == "ENOMEM"
    assert p.mmap(1) > 0


def test_huge_ranges_give_the_kernels_errno(proc: tuple) -> None:
    p, u, a, b = proc
    assert errno_of(p.madvise, a, 2**46, "dontneed") == "ENOMEM"
    assert errno_of(p.mlock, a, 2**46) == "ENOMEM"
    assert errno_of(p.mprotect, a, 2**46, "r") == "ENOMEM"
    assert errno_of(p.madvise, a, 2**64 - PAGE, "dontneed") == "EINVAL"       # wraps: EINVAL
    assert errno_of(p.mprotect, a, 2**64 - PAGE, "r") == "ENOMEM"              # wraps: ENOMEM
    assert errno_of(p.munmap, a, 2**46) == "EINVAL"                             # past TASK_SIZE
    assert p.observe(a, PAGE)[0].state == "none"        # the mapped part was still dropped, as the kernel does


def test_zero_and_negative_lengths_are_einval(proc: tuple) -> None:
    p, u, a, b = proc
    assert errno_of(p.munmap, a, 0) == "EINVAL"
    assert errno_of(u.wake, b, -PAGE) == "EINVAL"
    for op in (u.move, u.copy):
        with pytest.raises(UffdError) as info:
            op(b, a, -PAGE)
        assert info.value.errno == E.EINVAL and info.value.out is None
    with pytest.raises(UffdError) as info:
        u.move(-PAGE, a, PAGE)
    assert info.value.errno == E.EINVAL
    with pytest.raises(MoveRangeError) as rinfo:
        move_range(u, b, a, -PAGE)
    assert rinfo.value.errno == E.EINVAL


@pytest.mark.parametrize("call,exc,message", [
    (lambda p, u, a, b: u.has_feature("frob"), ValueError, "unknown feature 'frob'"),
    (lambda p, u, a, b: Machine("x"), TypeError, "config: expected a MachineConfig"),
    (lambda p, u, a, b: p.mmap(1, "wx"), ValueError, "prot: expected one of"),
    (lambda p, u, a, b: p.mmap(1, align=3), ValueError, "align"),
    (lambda p, u, a, b: p.mmap(1, align=0), ValueError, "align"),
    (lambda p, u, a, b: p.mmap(1, file="bogus"), ValueError, "file"),
    (lambda p, u, a, b: p.write(a, PAGE, 256), ValueError, "value: expected a byte value"),
    (lambda p, u, a, b: p.write(a, PAGE, -7), ValueError, "value: expected a byte value"),
    (lambda p, u, a, b: p.fault_async("t", b, True, value=999), ValueError, "value: expected a byte value"),
    (lambda p, u, a, b: u.move(1.5, a, PAGE), TypeError, "dst: expected an integer"),
    (lambda p, u, a, b: u.move(None, a, PAGE), TypeError, "dst: expected an integer"),
    (lambda p, u, a, b: p.write(None, PAGE, 1), TypeError, "addr: expected an integer"),
    (lambda p, u, a, b: u.move(b, a, 2**65), ValueError, "does not fit in 64 bits"),
])
def test_bad_api_arguments_are_one_line_type_or_value_errors(proc: tuple, call, exc, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(exc) as info:
        call(*proc)
    assert isinstance(info.value, (ArgTypeError, ArgValueError))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_region_whose_mmap_failed_is_map_failed() -> None:
    """As in C, the address of a failed mmap is MAP_FAILED (-1): a step using it gets the kernel's EINVAL."""
    sc = loads_scenario(HEAD + "  - mmap: {name: big, pages: 1099511627776}\n    expect: {errno: ENOMEM}\n"
                        "  - munmap: {at: big, pages: 1}\n    expect: {errno: EINVAL}\n"
                        "  - write: {at: big+1, pages: 1, value: 1}\n    expect: {errno: EFAULT}\n")
    result = run_scenario(sc, "sim")
    assert result.status == "passed", result.unmet()


def test_a_mode_given_as_one_string_is_one_name(proc: tuple) -> None:
    p, u, a, b = proc
    assert u.move(b, a, PAGE, mode="dontwake") == PAGE
    assert errno_of(u.move, b + PAGE, a + PAGE, PAGE, mode="frob") == "EINVAL"


@pytest.mark.parametrize("name", ["args-move-negative-len", "args-mmap-huge", "args-huge-range-syscalls"])
def test_the_new_corpus_scenarios_pass_on_the_simulator(name: str) -> None:
    result = run_scenario(load_scenario(ROOT / "scenarios" / f"{name}.yaml"), "sim")
    assert result.status == "passed", result.unmet()


@pytest.mark.kernel
def test_the_kernel_backend_never_touches_its_own_python_memory() -> None:
    """madvise(DONTNEED) over 64 TiB from a region: ENOMEM, and the scenario process lives on."""
    from uffdsim.backends.kernel.caps import capabilities
    why = capabilities().missing([])
    if why is not None:
        pytest.skip(f"kernel backend unavailable: {why}")
    from uffdsim.runner import compare
    for name in ("args-huge-range-syscalls", "args-move-negative-len", "args-mmap-huge"):
        sc = load_scenario(ROOT / "scenarios" / f"{name}.yaml")
        sim, kernel = run_scenario(sc, "sim"), run_scenario(sc, "kernel")
        assert kernel.status == "passed", kernel.unmet()
        assert compare(sim, kernel) == []


def test_owned_ranges_clip_range_syscalls(monkeypatch: pytest.MonkeyPatch) -> None:
    """owned.py's rule: as written unless the range reaches the interpreter's memory; then the
    kernel judges the arguments (a probe process) and the call is made between its mappings."""
    from uffdsim.backends.kernel import owned, probe
    from uffdsim.backends.kernel.sys.pagemap import Mapping
    saved = list(owned.OWNED)
    interp = [(0x15000, 0x16000), (0x30000, 0x31000)]
    try:
        owned.OWNED[:] = []
        owned.own(0x10000, 0x12000)
        owned.own(0x20000, 0x21000)
        maps = sorted(owned.OWNED + interp)
        monkeypatch.setattr(owned, "mappings", lambda: [Mapping(s, e, "rw-p") for s, e in maps])
        asked: list[tuple] = []
        verdict: list[int | None] = [None]
        monkeypatch.setattr(probe, "range_call", lambda *a: asked.append(a) or verdict[0])
        assert owned.interpreter_parts(0x10000, 0x40000) == interp
        calls: list[tuple[int, int]] = []
        record = lambda s, n: calls.append((s, n))  # noqa: E731
        # inside the scenario's memory and holes: the call as written, no probe
        owned.madvise(0x10000, 0x3000, record, 4)
        assert calls == [(0x10000, 0x3000)] and asked == []
        # reaching the interpreter: the probe sees the scenario's own arguments ...
        calls.clear()
        with pytest.raises(UffdError) as info:
            owned.madvise(0x10000, 1 << 20, record, 4)
        assert asked == [("madvise", 0x10000, 1 << 20, 4)]
        # ... and the kernel gets every part between the interpreter's mappings; that memory is a hole
        assert calls == [(0x10000, 0x5000), (0x16000, 0x1A000), (0x31000, 0xDF000)]
        assert info.value.errno == E.ENOMEM
        # mprotect/mlock stop at the first hole: only the first part
        calls.clear()
        with pytest.raises(UffdError):
            owned.mprotect(0x10000, 1 << 20, record, 1)
        assert calls == [(0x10000, 0x5000)]
        # the kernel refused the arguments in the probe: its errno, nothing called here
        calls.clear()
        verdict[0] = E.EINVAL
        with pytest.raises(UffdError) as info:
            owned.munmap(0x11000, 1 << 40, record)
        assert info.value.errno == E.EINVAL and calls == []
        verdict[0] = None
        owned.munmap(0x11000, 1 << 20, record)
        assert calls == [(0x11000, 0x4000), (0x16000, 0x1A000), (0x31000, 0xE0000)]
        assert owned.OWNED == [(0x10000, 0x11000)]
        assert owned.foreign(0x10000, 0x30000, [(0x25000, 0x26000)])
        assert not owned.foreign(0x10000, 0x11000, [(0x10000, 0x11000)])
    finally:
        owned.OWNED[:] = saved


# -- the fuzzer, with a fixed small budget ---------------------------------------------------------

def test_input_fuzzer_finds_no_traceback_hang_or_runaway() -> None:
    """400 seeded cases (scenario files and command lines) in a child with a 3 GiB address-space cap."""
    code = ("import json, resource; resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30));"
            "from uffdsim.inputfuzz import fuzz; s = fuzz(400, seed=9, budget=20, mem_cap_mb=1024, seconds=45);"
            "print(json.dumps(s.to_json()))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env=dict(os.environ, MPLBACKEND="Agg"))
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    import json
    doc = json.loads(proc.stdout.strip().splitlines()[-1])
    assert doc["cases"] >= 100 and doc["rejected"] > 0 and doc["accepted"] > 0
    assert (doc["tracebacks"], doc["hangs"], doc["memory"], doc["bad_exits"]) == (0, 0, 0, 0), doc["failures"]


def test_input_fuzzer_would_have_caught_the_old_bugs() -> None:
    """The run_cli classification: an exception escaping main or an internal-error line is a traceback."""
    from uffdsim import inputfuzz
    assert inputfuzz.run_cli(["run", "/dev/zero"], 20).kind == "rejected"
    assert inputfuzz.run_cli(["atomicity", "--pages", "x"], 20).kind == "rejected"
    import uffdsim.cli as C
    real = C.cmd_run
    try:
        C.cmd_run = lambda args: 1 / 0  # type: ignore[assignment]
        parser_func = C.build_parser
        def patched():  # type: ignore[no-untyped-def]
            p = parser_func()
            p._subparsers._group_actions[0].choices["run"].set_defaults(func=C.cmd_run)  # type: ignore[union-attr]
            return p
        C.build_parser = patched  # type: ignore[assignment]
        assert inputfuzz.run_cli(["run", "x.yaml"], 20).kind == "traceback"
    finally:
        C.cmd_run = real  # type: ignore[assignment]
        C.build_parser = parser_func  # type: ignore[assignment]


def test_the_explorer_stops_at_its_state_budget() -> None:
    from uffdsim.concurrency.explorer import StateSpaceTooLarge, explore
    from uffdsim.concurrency.program import Program
    with pytest.raises(StateSpaceTooLarge, match="explorer's limit"):
        explore(Program.build("copy-dontneed", 2, 8, None), max_states=100)
    assert explore(Program.build("copy-dontneed", 2, 8, None), max_states=2000).states <= 2000


def test_read_at_most_stops_one_byte_past_the_limit() -> None:
    """An endless file (/dev/zero) is read only to limit + 1 bytes: enough to say it is too large."""
    import os as _os

    from uffdsim.boundedread import read_at_most
    fd = _os.open("/dev/zero", _os.O_RDONLY)
    try:
        assert len(read_at_most(fd, 10, chunk=3)) == 11
    finally:
        _os.close(fd)


def test_claims_with_a_deeply_nested_record_is_one_error_line(tmp_path, capsys) -> None:
    """Found by the input fuzzer (claims-page, seed 2300): a JSON record nested 10,000 deep was an
    internal error (RecursionError) instead of one error line."""
    from uffdsim.cli import main
    page = tmp_path / "page.md"
    page.write_text("A page.\n")
    rec = tmp_path / "rec.json"
    rec.write_text('{"cells": ' + "[" * 10_000 + "]" * 10_000 + "}")
    assert main(["claims", str(page), "--record", str(rec)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {rec}: not a conformance record"), err
