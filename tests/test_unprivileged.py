"""The kernel backend as a reader without root sees it: run again as user ``nobody``.

When the tests run as root, ``conform``, ``doctor``, ``run`` and a selection of the kernel tests
run a second time as ``nobody`` (setpriv, or runuser), from a copy of the package, the tests and
their pure-Python dependencies in a temporary directory that user can read (the checkout or the
venv's interpreter may sit under a directory only root may enter); the copy is removed afterwards.
Skipped, with the reason, when not root, when no way to drop privileges or no interpreter usable
by ``nobody`` is found.  Nothing machine-wide is changed (vm.unprivileged_userfaultfd is only read).

The needs inference (:mod:`uffdsim.backends.kernel.needs`) is checked here too, without a kernel.
"""
from __future__ import annotations

import importlib.util
import json
import os
import pwd
import grp
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from uffdsim.backends.kernel.needs import FRAMES, KERNEL_FAULTS, ROOT, scenario_needs, unmet
from uffdsim.backends.kernel.sys.uffd import VIA_USER_MODE_ONLY
from uffdsim.conform import parse_summary
from uffdsim.resources import corpus_dir
from uffdsim.scenario import loads_scenario

ROOT_DIR = Path(__file__).resolve().parent.parent
#: the kernel tests run a second time as nobody
KERNEL_TESTS = ("test_kernel_sys.py", "test_kernel_backend.py", "test_atomicity_kernel.py")
#: pure-Python packages the staged run imports (besides the standard library)
PACKAGES = ("yaml", "pytest", "_pytest", "pluggy", "iniconfig", "packaging", "py")
TIMEOUT = 600


# -- the needs inference (no kernel) ----------------------------------------------------------------

def needs_of(steps: str, requires: str = "[]") -> dict[str, list[str]]:
    s = loads_scenario(f"name: t\nrequires: {requires}\nsteps:\n{steps}")
    out: dict[str, list[str]] = {}
    for n in scenario_needs(s, swap_active=False):
        out.setdefault(n.what, []).append(n.why)
    return out


def test_a_pin_of_a_registered_region_needs_kernel_faults() -> None:
    got = needs_of("""  - mmap: {name: dst, pages: 1}
  - uffd: {}
  - register: {at: dst, pages: 1, mode: [missing]}
  - pin: {name: p, at: dst, pages: 1}
""", "[pin]")
    assert got[KERNEL_FAULTS] == ["step 3 (pin) makes the kernel touch registered region 'dst'"]


def test_a_pin_of_an_unregistered_region_needs_nothing_more() -> None:
    assert needs_of("""  - mmap: {name: src, pages: 1}
  - mmap: {name: dst, pages: 1}
  - uffd: {}
  - register: {at: dst, pages: 1, mode: [missing]}
  - pin: {name: p, at: src, pages: 1}
""", "[pin]") == {}


def test_root_only_setup_and_frames_are_needs() -> None:
    got = needs_of("""  - mmap: {name: src, pages: 1}
  - uffd: {features: [event_fork]}
  - ksm_merge: {}
  - observe: {at: src, pages: 1}
""", "[ksm, swap]")
    assert any("KSM" in why for why in got[ROOT]) and any("swap" in why for why in got[ROOT])
    assert any("EVENT_FORK needs CAP_SYS_PTRACE" in why for why in got[ROOT])
    assert got[FRAMES] == ["step 3 (observe): frames are told apart by PFN"]


def test_user_mode_only_skips_kernel_fault_scenarios_with_the_reason() -> None:
    s = loads_scenario("""name: t
steps:
  - mmap: {name: src, pages: 1}
  - mmap: {name: dst, pages: 1}
  - uffd: {}
  - register: {at: src, pages: 1, mode: [missing]}
  - copy: {dst: dst, src: src, pages: 1}
""")

    class UMO:
        user_mode_only = True

    class Full:
        user_mode_only = False

    why = unmet(s, UMO())
    assert why is not None and why.startswith("needs kernel-mode faults: step 4 (copy)")
    assert unmet(s, Full()) is None


def test_declared_needs_count() -> None:
    assert needs_of("  - mmap: {name: a, pages: 1}\n", "[frames, kernel_faults]") == {
        FRAMES: ["declared in requires"], KERNEL_FAULTS: ["declared in requires"]}


# -- the second run, as nobody ------------------------------------------------------------------------

def _drop_command() -> list[str] | None:
    """A command prefix that runs what follows as nobody, or None."""
    try:
        pwd.getpwnam("nobody")
    except KeyError:
        return None
    group = next((g for g in ("nogroup", "nobody") if _group_exists(g)), None)
    if shutil.which("setpriv") and group:
        return ["setpriv", "--reuid=nobody", f"--regid={group}", "--clear-groups"]
    if shutil.which("runuser"):
        return ["runuser", "-u", "nobody", "--"]
    return None


def _group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


class Nobody:
    """Runs commands as nobody with the staged copy on PYTHONPATH."""

    def __init__(self, drop: list[str], python: str, stage: Path) -> None:
        self.drop, self.python, self.stage = drop, python, stage

    def run(self, *args: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
        tmp = self.stage / "tmp"          # whatever nobody creates goes away with the stage
        tmp.mkdir(mode=0o1777, exist_ok=True)
        tmp.chmod(0o1777)
        env = {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "PYTHONPATH": str(self.stage),
               "PYTHONDONTWRITEBYTECODE": "1", "LANG": "C.UTF-8", "HOME": str(self.stage),
               "TMPDIR": str(tmp)}
        return subprocess.run(self.drop + ["env", "-i"] + [f"{k}={v}" for k, v in env.items()]
                              + [self.python, *args], cwd=self.stage, capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def _stage(stage: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT_DIR / "uffdsim", stage / "uffdsim", ignore=ignore)
    (stage / "scenarios").symlink_to("uffdsim/scenarios")
    (stage / "tests").mkdir()
    for name in KERNEL_TESTS + ("kernel_helpers.py",):
        shutil.copy(ROOT_DIR / "tests" / name, stage / "tests" / name)
    (stage / "pytest.ini").write_text("[pytest]\nmarkers =\n    kernel: needs the running kernel's userfaultfd\n")
    for name in PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            continue
        origin = Path(spec.origin)
        if origin.name == "__init__.py":
            shutil.copytree(origin.parent, stage / name, ignore=ignore)
        else:
            shutil.copy(origin, stage / origin.name)
    for path in [stage, *stage.rglob("*")]:
        if not path.is_symlink():
            path.chmod(0o755 if path.is_dir() else 0o644)


@pytest.fixture(scope="module")
def nobody() -> Iterator[Nobody]:
    if os.geteuid() != 0:
        pytest.skip("not root: the kernel tests already ran unprivileged")
    drop = _drop_command()
    if drop is None:
        pytest.skip("no user nobody, or neither setpriv nor runuser to become it")
    stage = Path(tempfile.mkdtemp(prefix="uffdsim-unpriv-"))
    try:
        _stage(stage)
        candidates = [sys.executable, os.path.realpath(sys.executable),
                      shutil.which("python3") or "", "/usr/bin/python3"]
        probe = "import sys, yaml, uffdsim; sys.exit(sys.version_info < (3, 11))"
        for python in dict.fromkeys(c for c in candidates if c):
            runner = Nobody(drop, python, stage)
            try:
                if runner.run("-c", probe, timeout=60).returncode == 0:
                    break
            except (OSError, subprocess.SubprocessError):
                continue
        else:
            pytest.skip(f"no Python >= 3.11 that nobody may run (tried {', '.join(candidates)})")
        yield runner
    finally:
        shutil.rmtree(stage, ignore_errors=True)


@pytest.fixture(scope="module")
def doctor(nobody: Nobody) -> dict:
    done = nobody.run("-m", "uffdsim", "doctor", "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    if not doc["kernel_backend"]["usable"]:
        pytest.skip(f"kernel backend unusable as nobody: {doc['kernel_backend']['why']}")
    return doc


@pytest.mark.kernel
def test_doctor_says_which_userfaultfd_is_in_use(nobody: Nobody, doctor: dict) -> None:
    assert doctor["uid"] != 0
    facts = doctor["userfaultfd"]["facts"]
    if facts["vm.unprivileged_userfaultfd"] == "0" and "no access" in facts["/dev/userfaultfd"]:
        assert doctor["kernel_backend"]["uffd"] == VIA_USER_MODE_ONLY
        assert doctor["kernel_backend"]["user_mode_only"]
    text = nobody.run("-m", "uffdsim", "doctor").stdout
    assert f"kernel backend: usable via {doctor['kernel_backend']['uffd']}" in text


def _without_the_real_size_port(stage: Path) -> list[str]:
    """The corpus but peer-kselftest-move: its 8,192 threads take about 6 minutes on the kernel,
    which the root run (test_conform) already spends; as nobody most of its page fields are hidden."""
    files = sorted(str(p.relative_to(stage)) for p in (stage / "scenarios").glob("*.yaml")
                   if p.stem != "peer-kselftest-move")
    assert len(files) > 200, "the corpus is missing"
    return files


@pytest.mark.kernel
def test_unprivileged_conform_checks_most_of_the_corpus(nobody: Nobody, doctor: dict) -> None:
    done = nobody.run("-m", "uffdsim", "conform", "--quiet", *_without_the_real_size_port(nobody.stage))
    lines = done.stdout.splitlines()
    summary = next((line for line in reversed(lines) if line.startswith("conform:")), "")
    print(f"as nobody: {summary}")
    got = parse_summary(summary)
    assert got is not None, done.stdout[-2000:] + done.stderr[-2000:]
    diverging = [line.strip() for line in lines if line.startswith("  ") and ": step " in line]
    assert got["divergences"] == 0, "\n".join(diverging)
    assert done.returncode == 0, done.stderr[-2000:]
    assert got["full"] + got["partial"] >= 120, summary
    assert got["full"] + got["partial"] + got["skipped"] == got["scenarios"]
    assert any(f"userfaultfd via {doctor['kernel_backend']['uffd']}" in line for line in lines)
    if not doctor["kernel_backend"]["frames_observable"]:
        assert got["partial"] > 0       # scenarios observing present pages: frames not compared


def _root_only(stage: Path) -> list[str]:
    files = sorted(str(p.relative_to(stage)) for p in (stage / "scenarios").glob("ksm-*.yaml"))
    assert files, "no ksm-* scenarios in the corpus"
    return files


@pytest.mark.kernel
def test_conform_with_nothing_runnable_fails_in_one_line(nobody: Nobody, doctor: dict) -> None:
    done = nobody.run("-m", "uffdsim", "conform", "--quiet", *_root_only(nobody.stage))
    assert done.returncode == 2
    err = done.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: conform checked nothing: all "), done.stderr
    assert "root" in err[0]


@pytest.mark.kernel
def test_run_on_the_kernel_with_nothing_runnable_fails_in_one_line(nobody: Nobody, doctor: dict) -> None:
    files = _root_only(nobody.stage)
    for backend in ("kernel", "both"):
        done = nobody.run("-m", "uffdsim", "run", "--backend", backend, *files)
        assert done.returncode == 2, (backend, done.stdout[-1000:])
        err = done.stderr.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: the kernel backend ran none of the "), err
    done = nobody.run("-m", "uffdsim", "run", "--backend", "kernel", "scenarios/basics-move-one-page.yaml")
    assert done.returncode == 0 and f"[userfaultfd via {doctor['kernel_backend']['uffd']}]" in done.stdout


@pytest.mark.kernel
def test_the_kernel_tests_pass_unprivileged(nobody: Nobody, doctor: dict) -> None:
    done = nobody.run("-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
                      *[f"tests/{name}" for name in KERNEL_TESTS])
    tail = "\n".join(done.stdout.splitlines()[-40:])
    assert done.returncode == 0, tail
    passed = re.search(r"(\d+) passed", done.stdout)
    assert passed and int(passed[1]) >= 20, tail


# -- the order in which userfaultfd is opened (no kernel: the syscalls are stand-ins) ----------------

def _fake_kernel(monkeypatch: pytest.MonkeyPatch, dev: bool) -> list[str]:
    import errno as E

    from uffdsim.backends.kernel.sys import uffd as U
    from uffdsim.errors import UffdError
    calls: list[str] = []

    def syscall(nr: int, flags: int) -> int:
        calls.append("umo" if flags & U.UFFD_USER_MODE_ONLY else "plain")
        if flags & U.UFFD_USER_MODE_ONLY:
            return 1001
        raise UffdError(E.EPERM, "userfaultfd: not permitted")

    def os_open(path: str, flags: int) -> int:
        calls.append(path)
        if not dev:
            raise PermissionError(E.EACCES, "Permission denied")
        return 1002

    monkeypatch.setattr(U, "syscall", syscall)
    monkeypatch.setattr(U.os, "open", os_open)
    monkeypatch.setattr(U.os, "close", lambda fd: None)
    monkeypatch.setattr(U, "ioctl", lambda fd, req, arg: 1003)
    return calls


def test_open_falls_back_to_user_mode_only_last(monkeypatch: pytest.MonkeyPatch) -> None:
    from uffdsim.backends.kernel.sys.uffd import Userfaultfd
    calls = _fake_kernel(monkeypatch, dev=False)
    u = Userfaultfd.open()
    assert (u.fd, u.via, u.user_mode_only) == (1001, VIA_USER_MODE_ONLY, True)
    assert calls == ["plain", "/dev/userfaultfd", "umo"]


def test_open_prefers_dev_userfaultfd_to_user_mode_only(monkeypatch: pytest.MonkeyPatch) -> None:
    from uffdsim.backends.kernel.sys.uffd import VIA_DEV, Userfaultfd
    calls = _fake_kernel(monkeypatch, dev=True)
    u = Userfaultfd.open()
    assert (u.fd, u.via, u.user_mode_only) == (1003, VIA_DEV, False)
    assert calls == ["plain", "/dev/userfaultfd"]


def test_open_without_the_fallback_reports_eperm(monkeypatch: pytest.MonkeyPatch) -> None:
    from uffdsim.backends.kernel.sys.uffd import Userfaultfd
    from uffdsim.errors import UffdError
    _fake_kernel(monkeypatch, dev=False)
    with pytest.raises(UffdError) as err:
        Userfaultfd.open(fallback_user_mode_only=False)
    assert err.value.name == "EPERM" and "/dev/userfaultfd" in err.value.message
