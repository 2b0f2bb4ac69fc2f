"""The kernel lab: the corpus on Debian's 6.12 in a qemu micro-VM (0 divergences against the 6.12
profile), a no-MOVE smoke test on 6.1, and no qemu left behind on SIGTERM.

The kernels are fetched on first use when running as root with apt-get (CI); elsewhere the tests
skip with the reason (run ``python -m uffdsim lab fetch``).  Set UFFDSIM_LAB=0 to skip them.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from uffdsim.lab.fetch import FetchError, fetch
from uffdsim.lab.vm import lab_unavailable, run_batch
from uffdsim.resources import corpus_dir

pytestmark = pytest.mark.lab


def need(series: str) -> None:
    """Skip unless the lab can boot ``series`` (fetching it first where we may)."""
    if os.environ.get("UFFDSIM_LAB") == "0":
        pytest.skip("UFFDSIM_LAB=0")
    if lab_unavailable(series) is None:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip(f"lab: {lab_unavailable(series)} (and not root with apt-get to fetch it)")
    try:
        fetch([series], say=lambda m: None)
    except (FetchError, OSError, subprocess.SubprocessError) as err:
        pytest.skip(f"lab: cannot fetch {series}: {err}")
    why = lab_unavailable(series)
    if why:
        pytest.skip(f"lab: {why}")


#: left out of the test's lab run: under TCG the three ported 32 MiB selftests take minutes each
#: (peer-kselftest-move starts 8192 threads, one per fault); they belong in the recorded lab run,
#: data/conformance-6.12.json, made with `conform --kernel 6.12`
LAB_TEST_LEFT_OUT = ("peer-kselftest-move.yaml", "peer-kselftest-move-pmd.yaml", "peer-kselftest-move-pmd-split.yaml")


def lab_test_corpus() -> list[Path]:
    """The corpus less :data:`LAB_TEST_LEFT_OUT`."""
    return [p for p in sorted(corpus_dir().glob("*.yaml")) if p.name not in LAB_TEST_LEFT_OUT]


def test_corpus_on_612_conforms_to_the_612_profile() -> None:
    need("6.12")
    from uffdsim.lab.conform import conform_in_lab
    files = lab_test_corpus()
    assert len(files) == len(list(corpus_dir().glob("*.yaml"))) - len(LAB_TEST_LEFT_OUT)
    report = conform_in_lab("6.12", files)
    assert report is not None
    t = report.totals
    diverging = [(e.name, e.divergences[:1]) for e in report.entries if e.divergences]
    assert t["scenarios"] >= 150 and t["divergences"] == 0 and t["errors"] == 0, diverging
    assert report.kernel.startswith("6.12.") and report.profile == "6.12"
    assert report.lab["move"] is True
    # skipped ones say why: a later kernel (MADV_GUARD_INSTALL is 6.13+, large-folio COW reuse 6.15+)
    skipped = [(e.name, e.reason) for e in report.entries if e.status == "skipped"]
    assert all(re.search(r"6\.1[3-9]", reason or "") for _name, reason in skipped), skipped


def test_61_has_no_move_and_runs_the_rest() -> None:
    need("6.1")
    files = [corpus_dir() / "args-len-zero.yaml", corpus_dir() / "zeropage-installs-zero-page.yaml"]
    batch = run_batch("6.1", files)
    assert batch.guest["guest"].startswith("6.1.") and batch.guest["move"] is False
    assert batch.guest["features"] == "0x1fff"
    moving, plain = (batch.runs[str(f.resolve())] for f in files)
    assert "MOVE unsupported" in moving["skipped"] and "6.8" in moving["skipped"]
    assert plain["skipped"] is None and plain["steps"]


def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(d.name))
    return out


def test_sigterm_leaves_no_qemu_behind() -> None:
    need("6.12")
    proc = subprocess.Popen([sys.executable, "-m", "uffdsim", "lab", "run", "--kernel", "6.12", "-q",
                             str(corpus_dir() / "args-len-zero.yaml")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    qemu = None
    deadline = time.monotonic() + 60
    while qemu is None and time.monotonic() < deadline and proc.poll() is None:
        qemu = next((c for c in _children(proc.pid)
                     if "qemu" in Path(f"/proc/{c}/comm").read_text(errors="replace")), None)
        time.sleep(0.2)
    assert qemu is not None, "qemu never started"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) != 0
    assert not Path(f"/proc/{qemu}").exists(), f"qemu {qemu} survived SIGTERM of its parent"


def test_fetch_falls_back_to_the_newest_612_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    from uffdsim.lab import fetch as F
    listing = ("linux-image-6.12.9+deb12-amd64 - Linux 6.12\nlinux-image-6.12.120+deb12-amd64 - Linux 6.12\n"
               "linux-image-6.12.120+deb12-rt-amd64 - Linux 6.12 rt\n")
    monkeypatch.setattr(F.subprocess, "run",
                        lambda *a, **k: subprocess.CompletedProcess(a[0], 0, stdout=listing, stderr=""))
    package, note = F.choose_package(F.KERNELS["6.12"])
    assert package == "linux-image-6.12.120+deb12-amd64"
    assert note and "no longer offered" in note and F.KERNELS["6.12"].pinned in note
    monkeypatch.setattr(F.subprocess, "run",
                        lambda *a, **k: subprocess.CompletedProcess(a[0], 0, stdout=F.KERNELS["6.12"].pinned + " - x\n" + listing, stderr=""))
    assert F.choose_package(F.KERNELS["6.12"]) == (F.KERNELS["6.12"].pinned, None)


def test_cache_dir_is_outside_git_and_overridable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from uffdsim.lab.fetch import cache_dir
    monkeypatch.setenv("UFFDSIM_LAB_CACHE", str(tmp_path))
    assert cache_dir() == tmp_path
    monkeypatch.delenv("UFFDSIM_LAB_CACHE")
    assert cache_dir() == Path.home() / ".cache" / "uffdsim-lab"


def test_a_checkout_under_tmp_is_shared_with_the_guest() -> None:
    """A CI clone under /tmp was invisible in the guest (its /tmp is a fresh tmpfs), so the guest
    found no Python and produced no results; such a checkout and venv now come as extra shares."""
    from pathlib import Path

    from uffdsim.lab.vm import qemu_command, work_mounts
    assert work_mounts([Path("/work/repo"), Path("/root/.pyenv")]) == []
    assert work_mounts([Path("/tmp/ci/repo"), Path("/tmp/ci/repo/.venv"), Path("/dev/shm/v")]) == \
        [("work0", "/dev/shm/v"), ("work1", "/tmp/ci/repo")]
    cmd = " ".join(qemu_command(Path("/k"), Path("/s"), "madvise", [("work0", "/tmp/ci/repo")]))
    assert "path=/tmp/ci/repo,mount_tag=work0,security_model=none,readonly=on" in cmd


def test_the_guest_memory_is_not_merged_by_the_hosts_ksm() -> None:
    """qemu marks guest RAM MADV_MERGEABLE by default: the host's KSM (a 6.18 conform run's KSM
    scenarios) would then merge its own test pages with the guest's, and a page that must stay
    unique would not.  The lab turns that off, so a lab run and a host run can share the machine."""
    from pathlib import Path

    from uffdsim.lab.vm import qemu_command
    cmd = qemu_command(Path("/k"), Path("/s"), "madvise")
    assert cmd[cmd.index("-machine") + 1] == "mem-merge=off"


def test_a_scenarios_lab_budget_grows_with_the_pages_it_touches() -> None:
    # TCG is slow: the ported selftests' 32 MiB moves timed out at the flat 20 s per scenario
    from uffdsim.lab.vm import PER_SCENARIO, scenario_budget
    from uffdsim.resources import corpus_dir
    small = scenario_budget(corpus_dir() / "move-after-fork.yaml")
    big = scenario_budget(corpus_dir() / "peer-kselftest-move-pmd.yaml")
    assert PER_SCENARIO <= small < PER_SCENARIO + 1 and big > 10 * PER_SCENARIO


def test_a_scenarios_lab_budget_grows_with_the_threads_it_starts(tmp_path: Path) -> None:
    # the real-size selftest port starts 8192 fault threads and timed out at its pages' 430 s
    from uffdsim.lab.vm import PER_SCENARIO, PER_THREAD, scenario_budget
    head = "name: t\nabout: x\nsteps:\n  - mmap: {name: a, pages: 1}\n  - uffd: {}\n  - register: {at: a, pages: 1, mode: [missing]}\n"
    one, two = tmp_path / "one.yaml", tmp_path / "two.yaml"
    one.write_text(head + "  - fault_async: {thread: t0, at: a}\n")
    two.write_text(head + "  - fault_async: {thread: t0, at: a}\n  - madvise: {at: a, pages: 1, advice: dontneed, thread: m}\n")
    assert scenario_budget(two) - scenario_budget(one) >= PER_THREAD - 0.01
    assert scenario_budget(one) >= PER_SCENARIO + PER_THREAD
