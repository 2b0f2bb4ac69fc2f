"""The kernel backend runs scenarios on the running kernel, agrees with the simulator on the corpus
scenarios tried here, reports hung steps and goes on, and leaves nothing behind.

Skipped, with the reason, where userfaultfd or UFFDIO_MOVE is unavailable (EPERM, ENOSYS under
seccomp, a kernel older than 6.8).  Nothing here is timed: every wait inside the backend is bounded.
"""
from __future__ import annotations

import ctypes
import json
import os
import signal
from pathlib import Path

import pytest

from uffdsim.backends.kernel import KernelBackend
from uffdsim.backends.kernel import sys as k
from uffdsim.backends.kernel.caps import active_swaps, capabilities
from uffdsim.backends.kernel.proctree import ProcessDied, ProcTree
from uffdsim.backends.sim import SimBackend
from uffdsim.cli import main
from uffdsim.runner import compare, finish, run_scenario
from uffdsim.scenario import load_scenario, loads_scenario

WHY = capabilities().missing([])
pytestmark = [pytest.mark.kernel, pytest.mark.skipif(WHY is not None, reason=f"kernel backend unavailable: {WHY}")]

CORPUS = Path(__file__).resolve().parent.parent / "scenarios"
PR_GET_CHILD_SUBREAPER = 37


def children(pid: int | None = None) -> set[int]:
    """Processes (zombies included) whose parent is ``pid`` (default: this process)."""
    pid = os.getpid() if pid is None else pid
    out = set()
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.add(int(d))
    return out


def is_subreaper() -> bool:
    flag = ctypes.c_int(0)
    ctypes.CDLL(None).prctl(PR_GET_CHILD_SUBREAPER, ctypes.byref(flag), 0, 0, 0)
    return bool(flag.value)


@pytest.fixture(autouse=True)
def no_leftovers():
    """Every test must leave no child process behind and the runner not a subreaper."""
    before = children()
    yield
    assert children() - before == set(), "scenario processes left behind"
    assert not is_subreaper()


def both(text: str):
    scenario = loads_scenario(text)
    sim = finish(scenario, "sim", SimBackend().run(scenario))
    kernel = finish(scenario, "kernel", KernelBackend().run(scenario))
    return sim, kernel


@pytest.mark.parametrize("name", ["move-after-fork", "basics-move-one-page", "zero-page-move",
                                  "overlap-ripple", "fork-cross-mm-inherited-uffd",
                                  "wake-move-resolves-fault", "thp-whole-pmd-move",
                                  "pin-ebusy-until-unpin", "guard-src-marker-efault"])
def test_corpus_scenario_passes_and_agrees(name: str) -> None:
    path = CORPUS / f"{name}.yaml"
    if not path.exists():
        pytest.skip(f"{path.name} is not in the corpus")
    scenario = load_scenario(path)
    sim = run_scenario(scenario, "sim")
    kernel = run_scenario(scenario, KernelBackend())
    if kernel.status == "skipped":
        pytest.skip(f"{name}: {kernel.reason}")
    assert kernel.status == "passed", kernel.unmet()
    assert compare(sim, kernel) == []


def test_the_moved_frame_is_the_source_frame() -> None:
    _, kernel = both("""
name: t-zero-copy
steps:
  - mmap: {name: src, pages: 2}
  - mmap: {name: dst, pages: 2}
  - write: {at: src, pages: 2, value: 0x41}
  - observe: {at: src, pages: 2}
  - uffd: {}
  - register: {at: dst, pages: 2}
  - move: {dst: dst, src: src, pages: 2}
    expect: {ok: true, move: 8192}
  - observe: {at: dst, pages: 2}
    expect: {pages: [{state: present, value: 0x41, frame: f0}, {frame: f1}]}
  - observe: {at: src, pages: 2}
    expect: {pages: [{state: none}, {state: none}]}
""")
    assert kernel.status == "passed", kernel.unmet()
    regions = [s["addr"] for s in kernel.steps if s["op"] == "mmap"]
    assert all(a % k.PAGE_SIZE == 0 for a in regions)


def test_regions_are_separated_by_unmapped_pages() -> None:
    """Two regions mapped one after the other are two VMAs: a range crossing the end is EINVAL."""
    _, kernel = both("""
name: t-gap
steps:
  - mmap: {name: a, pages: 2}
  - mmap: {name: b, pages: 2}
  - write: {at: a, pages: 2, value: 1}
  - uffd: {}
  - register: {at: b, pages: 2}
  - move: {dst: b, src: a+1, pages: 2}
    expect: {errno: EINVAL, move: -22}
""")
    assert kernel.status == "passed", kernel.unmet()
    a, b = (s["addr"] for s in kernel.steps if s["op"] == "mmap")
    assert a - (b + 2 * k.PAGE_SIZE) >= k.PAGE_SIZE


def test_a_hung_step_is_reported_and_the_run_goes_on() -> None:
    sim, kernel = both("""
name: t-hang
steps:
  - mmap: {name: dst, pages: 2}
  - uffd: {}
  - register: {at: dst, pages: 2}
  - fork: {child: c}
  - write: {at: dst, pages: 1, value: 1}
  - observe: {at: dst, pages: 1}
""")
    assert kernel.steps[4]["hung"] is True and "handle_userfault" in kernel.steps[4]["why"]
    assert kernel.steps[5].get("not_run")
    assert compare(sim, kernel) == []
    _, after = both("""
name: t-after
steps:
  - mmap: {name: a, pages: 1}
  - write: {at: a, pages: 1, value: 7}
  - observe: {at: a, pages: 1}
    expect: {pages: [{state: present, value: 7}]}
""")
    assert after.status == "passed"


def test_threads_block_and_events_are_read() -> None:
    sim, kernel = both("""
name: t-threads
requires: [threads]
steps:
  - mmap: {name: src, pages: 2}
  - mmap: {name: dst, pages: 2}
  - write: {at: src, pages: 2, value: 0x33}
  - uffd: {}
  - register: {at: dst, pages: 2}
  - fault_async: {thread: t1, at: dst+1, write: true, value: 0x77}
    expect: {blocked: true}
  - read_events: {}
    expect: {events: [{type: pagefault, at: dst+1, write: true}]}
  - thread: {thread: t1}
    expect: {blocked: true}
  - move: {dst: dst+1, src: src+1, pages: 1}
    expect: {ok: true}
  - thread: {thread: t1}
    expect: {blocked: false}
  - observe: {at: dst+1, pages: 1}
    expect: {pages: [{state: present, value: 0x77}]}
""")
    assert kernel.status == "passed", kernel.unmet()
    assert compare(sim, kernel) == []


def test_accesses_that_would_crash_are_efault_and_the_process_lives() -> None:
    sim, kernel = both("""
name: t-segv
steps:
  - mmap: {name: a, pages: 1, prot: none}
  - mmap: {name: b, pages: 1, prot: r}
  - write: {at: a, pages: 1, value: 1}
    expect: {errno: EFAULT}
  - read: {at: a, pages: 1}
    expect: {errno: EFAULT}
  - write: {at: b, pages: 1, value: 1}
    expect: {errno: EFAULT}
  - write: {at: b+1, pages: 1, value: 1}
    expect: {errno: EFAULT}
  - read: {at: b, pages: 1}
    expect: {ok: true}
  - observe: {at: b, pages: 1}
    expect: {pages: [{state: zero}]}
""")
    assert kernel.status == "passed", kernel.unmet()
    assert "SIGSEGV" in kernel.steps[2]["why"]
    assert compare(sim, kernel) == []


def test_exits_and_nested_forks_are_reaped() -> None:
    sim, kernel = both("""
name: t-tree
requires: [fork]
steps:
  - mmap: {name: src, pages: 1}
  - write: {at: src, pages: 1, value: 0x11}
  - fork: {child: c}
  - fork: {child: d, proc: c}
  - exit: {proc: main}
  - exit: {proc: c}
  - uffd: {proc: d}
  - mmap: {name: dst, pages: 1, proc: d}
  - register: {at: dst, pages: 1, proc: d}
  - move: {dst: dst, src: src, pages: 1, proc: d}
    expect: {errno: EBUSY}
  - write: {at: src, pages: 1, value: 0x12, proc: d}
  - move: {dst: dst, src: src, pages: 1, proc: d}
    expect: {ok: true}
  - write: {at: src, pages: 1, value: 1}
    expect: {errno: ESRCH}
""")
    assert kernel.status == "passed", kernel.unmet()
    assert compare(sim, kernel) == []


def test_a_dead_process_is_reported_and_nothing_is_left() -> None:
    with ProcTree() as tree:
        reply, fds = tree.call("main", {"op": "fork", "args": {"child": "c"}}, 5.0)
        tree.adopt("c", "main", reply["pid"], fds[0])
        pids = [p.pid for p in tree.procs.values()]
        os.kill(tree.procs["main"].pid, signal.SIGKILL)
        with pytest.raises(ProcessDied, match="SIGKILL"):
            tree.call("main", {"op": "observe", "args": {"at": 0, "length": 4096}}, 5.0)
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_ksm_settings_are_restored() -> None:
    if not capabilities().ksm.ok:
        pytest.skip(capabilities().ksm.detail)
    before = k.ksm_save()
    _, kernel = both("""
name: t-ksm
requires: [ksm]
steps:
  - mmap: {name: src, pages: 2}
  - write: {at: src, pages: 2, value: 0x5a}
  - madvise: {at: src, pages: 2, advice: mergeable}
  - ksm_merge: {}
  - observe: {at: src, pages: 2}
    expect: {pages: [{frame: f0}, {frame: f0}]}
""")
    assert kernel.status == "passed", kernel.unmet()
    assert k.ksm_save() == before


def swaps_when_idle() -> list[str]:
    """Active swaps while no run (here or elsewhere on the machine) holds the swap lock."""
    from uffdsim.backends.kernel.guard import machine_lock
    with machine_lock("swap"):
        return active_swaps()


def test_swap_is_set_up_and_removed() -> None:
    if os.geteuid() != 0:
        pytest.skip("setting up swap is root-only (unprivileged runs skip swap scenarios)")
    if not capabilities().swap.ok:
        pytest.skip(capabilities().swap.detail)
    before = swaps_when_idle()
    _, kernel = both("""
name: t-swap
requires: [swap]
steps:
  - mmap: {name: src, pages: 1}
  - write: {at: src, pages: 1, value: 0x41}
  - madvise: {at: src, pages: 1, advice: pageout}
  - observe: {at: src, pages: 1}
    expect: {pages: [{state: swap}]}
""")
    assert kernel.status == "passed", kernel.unmet()
    assert swaps_when_idle() == before


def test_doctor_reports_this_kernel(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor"]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"kernel {os.uname().release}")
    for word in ("userfaultfd", "vm.unprivileged_userfaultfd", "UFFD_USER_MODE_ONLY",
                 "/dev/userfaultfd", "UFFDIO_MOVE", "THP", "KSM", "swap", "CPUs"):
        assert word in text
    assert main(["doctor", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["kernel_backend"]["usable"] is True and doc["move"]["ok"] is True


def test_bench_runs_without_a_compiler(monkeypatch: pytest.MonkeyPatch) -> None:
    from uffdsim.backends.kernel import bench
    monkeypatch.setattr(bench.shutil, "which", lambda name: None)
    doc = bench.run_bench((1,), runs=1, methods=("move-4k", "copy-dontneed-2m", "memcpy"))
    assert doc["helper"] == "ctypes" and "Python overhead" in doc["note"]
    assert [r["method"] for r in doc["results"]] == ["move-4k", "copy-dontneed-2m", "memcpy"]
    assert all(r["ns_per_page"] > 0 and r["gib_per_s"] > 0 for r in doc["results"])


def test_khugepaged_is_quiet_during_thp_scenarios_and_restored() -> None:
    if not capabilities().thp.ok:
        pytest.skip(capabilities().thp.detail)
    from uffdsim.backends.kernel import khugepaged
    if os.geteuid() != 0:
        pytest.skip("khugepaged's knobs are root-only (unprivileged runs skip THP scenarios instead)")
    knob = Path(khugepaged.KHUGEPAGED) / "max_ptes_none"
    before = knob.read_text()
    with khugepaged.quiet_khugepaged():
        assert knob.read_text().strip() == "0"
    assert knob.read_text() == before
    _, kernel = both("""
name: t-thp-split
requires: [thp]
steps:
  - mmap: {name: src, pages: 512, align: 2M}
  - madvise: {at: src, pages: 512, advice: hugepage}
  - write: {at: src, pages: 512, value: 0x48}
  - observe: {at: src, pages: 1}
    expect: {pages: [{state: present, thp: true}]}
  - madvise: {at: src+10, pages: 1, advice: dontneed}
  - observe: {at: src+9, pages: 3}
    expect: {pages: [{thp: false}, {state: none}, {state: present, thp: false}]}
""")
    assert kernel.status == "passed", kernel.unmet()
    assert knob.read_text() == before


def test_a_scenario_out_of_time_stops() -> None:
    scenario = loads_scenario("""
name: t-budget
steps:
  - mmap: {name: a, pages: 1}
  - write: {at: a, pages: 1, value: 1}
""")
    result = run_scenario(scenario, KernelBackend(scenario_timeout=0.0, per_page=0.0, per_thread=0.0))
    assert result.steps[0]["hung"] and "used up" in result.steps[0]["why"]
    assert result.steps[1].get("not_run")


def test_a_scenarios_time_limit_grows_with_its_pages_and_threads() -> None:
    """The real-size selftest port (8,192 fault threads) took 216 s of kernel time on a loaded
    2-CPU machine against a flat 300 s limit; in the lab it stopped at step 10,282 of 65,544 under
    it.  Its limit now grows with its work; a small scenario keeps the flat limit."""
    from uffdsim.backends.kernel.backend import SCENARIO_TIMEOUT, scenario_work
    from uffdsim.lab.vm import PER_PAGE, PER_THREAD
    peer = load_scenario(CORPUS / "peer-kselftest-move.yaml")
    pages, threads = scenario_work(peer)
    assert threads == 8192 and pages >= 8192
    host = KernelBackend()
    assert host.time_limit(peer) >= 3 * 216
    assert host.time_limit(load_scenario(CORPUS / "move-after-fork.yaml")) < SCENARIO_TIMEOUT + 1
    guest = KernelBackend(per_page=PER_PAGE, per_thread=PER_THREAD)
    assert guest.time_limit(peer) >= SCENARIO_TIMEOUT + 8192 * PER_THREAD


def test_signals_come_from_the_kernel_not_from_a_prediction() -> None:
    """A SIGBUS no check of ours foresaw (UFFD_FEATURE_SIGBUS on a write-protect fault) is the kernel's
    answer to a real access, and the scenario process lives on (it used to die: issue 24)."""
    sc = load_scenario(CORPUS / "uffd-sigbus-write-protect-fault.yaml")
    sim, kernel = run_scenario(sc, "sim"), run_scenario(sc, "kernel")
    assert kernel.status == "passed", kernel.unmet()
    assert kernel.steps[5]["why"].startswith("SIGBUS: the kernel ended the write access")
    assert compare(sim, kernel) == []
