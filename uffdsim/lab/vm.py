"""Boot one lab kernel in a qemu micro-VM (TCG, 1 vCPU, bounded memory) and run a batch in it.

One VM at a time (a flock), a hard timeout, and no qemu left behind: qemu runs in its own
process group, which is killed in ``finally`` and on SIGINT/SIGTERM (handlers installed for the
duration of the boot).  The serial log is kept in the cache's ``logs/`` on failure.  ``/dev/kvm``
is not used: on these machines it is a nested-virtualisation shim that aborts or hangs.
"""
from __future__ import annotations

import fcntl
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from ..runner import BackendRun
from ..scenario import Scenario
from .fetch import KERNELS, cache_dir, manifest
from .initramfs import build_initramfs

MEMORY_MIB = 1024
#: seconds for the boot (to the guest's first line) and per scenario on top of it
BOOT_BUDGET = 120.0
PER_SCENARIO = 20.0
#: seconds per page a scenario's steps touch, on top of PER_SCENARIO: TCG is slow, and the ported
#: kernel selftests touch 32 MiB many times over (peer-kselftest-move-pmd: about 75,000 pages)
PER_PAGE = 0.005
#: seconds per thread a step starts (``fault_async``, ``madvise`` with ``thread``): under TCG the
#: real-size peer-kselftest-move port took about 0.4 s per chunk (256 chunks in 108 s after the boot)
PER_THREAD = 0.6


def scenario_budget(path: str | Path) -> float:
    """Seconds a scenario may take in the guest: PER_SCENARIO, PER_PAGE per page its steps touch
    and PER_THREAD per thread they start."""
    from ..backends.kernel.backend import scenario_work
    from ..scenario import ScenarioError, load_scenario
    try:
        pages, threads = scenario_work(load_scenario(path))
    except ScenarioError:
        return PER_SCENARIO
    return PER_SCENARIO + PER_PAGE * pages + PER_THREAD * threads


class LabError(Exception):
    """A one-line reason the lab could not run (not fetched, no qemu, boot failed, timeout)."""


@dataclass
class BatchResult:
    """What one boot produced: the guest's description and each file's raw run."""

    series: str
    guest: dict[str, Any]
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)   #: path -> raw record
    seconds: dict[str, float] = field(default_factory=dict)         #: boot, total


def kernel_dir(series: str) -> Path:
    if series not in KERNELS:
        raise LabError(f"unknown lab kernel {series!r} (known: {', '.join(KERNELS)})")
    d = cache_dir() / series
    if not (d / "vmlinuz").exists() or not (d / "initramfs.cpio.gz").exists():
        raise LabError(f"lab kernel {series} is not fetched (run: python -m uffdsim lab fetch)")
    return d


def lab_unavailable(series: str = "6.12") -> str | None:
    """Why the lab cannot boot ``series`` here (None when it can)."""
    if shutil.which("qemu-system-x86_64") is None:
        return "qemu-system-x86_64 is not installed (Debian package qemu-system-x86)"
    try:
        kernel_dir(series)
    except LabError as err:
        return str(err)
    return None


#: host folders the guest gets as fresh tmpfs mounts (so their contents are not visible there)
HIDDEN_IN_GUEST = ("/tmp", "/run", "/var/tmp", "/dev/shm")


def work_mounts(paths: list[Path]) -> list[tuple[str, str]]:
    """(9p tag, path) for each of ``paths`` that the guest's tmpfs mounts would hide (the checkout
    and the venv, e.g. a CI clone under /tmp); a path inside another listed one is not repeated."""
    hidden = [p for p in dict.fromkeys(str(Path(x).resolve()) for x in paths)
              if any(p == h or p.startswith(h + "/") for h in HIDDEN_IN_GUEST)]
    outer = [p for p in hidden if not any(p != q and p.startswith(q + "/") for q in hidden)]
    return [(f"work{n}", p) for n, p in enumerate(sorted(outer))]


def qemu_command(kdir: Path, share: Path, thp: str, extra: list[tuple[str, str]] = ()) -> list[str]:
    append = f"console=ttyS0 panic=-1 no_timer_check rdinit=/init transparent_hugepage={thp} loglevel=4"
    return ["qemu-system-x86_64", "-accel", "tcg,tb-size=256", "-cpu", "max,la57=off", "-smp", "1",
            "-m", str(MEMORY_MIB), "-machine", "mem-merge=off", "-nodefaults", "-display", "none", "-no-reboot",
            "-serial", f"file:{share / 'serial.log'}",
            "-kernel", str(kdir / "vmlinuz"), "-initrd", str(share / "initramfs.cpio.gz"), "-append", append,
            "-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
            "-virtfs", f"local,path={share},mount_tag=out,security_model=none,multidevs=remap",
            *[a for tag, path in extra for a in
              ("-virtfs", f"local,path={path},mount_tag={tag},security_model=none,readonly=on,multidevs=remap")]]


def host_thp() -> str:
    """The host's THP mode (the guest boots with the same, so results compare)."""
    try:
        text = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
        return text.split("[")[1].split("]")[0]
    except (OSError, IndexError):
        return "madvise"


@contextmanager
def _one_vm() -> Iterator[None]:
    cache_dir().mkdir(parents=True, exist_ok=True)
    with open(cache_dir() / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@contextmanager
def _killed_on_signal(proc: subprocess.Popen) -> Iterator[None]:
    """While booted: SIGINT/SIGTERM kill qemu's process group, then act as before."""
    def kill_group() -> None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def handler(signum: int, frame: Any) -> None:
        kill_group()
        raise KeyboardInterrupt if signum == signal.SIGINT else SystemExit(128 + signum)
    old = {}
    in_main = True
    try:
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            old[s] = signal.signal(s, handler)
    except ValueError:          # not the main thread: the finally still kills
        in_main = False
    try:
        yield
    finally:
        kill_group()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        if in_main:
            for s, h in old.items():
                signal.signal(s, h)


def run_batch(series: str, files: list[str | Path], timeout: float | None = None,
              progress: Callable[[str], None] | None = None) -> BatchResult:
    """Boot ``series`` once and run every file on its kernel backend; raises LabError on failure."""
    why = lab_unavailable(series)
    if why:
        raise LabError(why)
    kdir = kernel_dir(series)
    files = [str(Path(f).resolve()) for f in files]
    timeout = timeout or BOOT_BUDGET + sum(scenario_budget(f) for f in files)
    root = Path(__file__).resolve().parents[2]
    with _one_vm(), tempfile.TemporaryDirectory(prefix="uffdsim-lab-run-") as tmp:
        share = Path(tmp)
        os.chmod(share, 0o777)
        # the guest sees the host's root, but not its /tmp (a fresh tmpfs there): copy the files in
        (share / "scen").mkdir()
        inside = {}
        for n, f in enumerate(files):
            shutil.copyfile(f, share / "scen" / f"{n:05d}.yaml")
            inside[f"/tmp/lab-out/scen/{n:05d}.yaml"] = f
        (share / "files").write_text("\n".join(inside) + "\n")
        (share / "job.sh").write_text(
            f"cd {shlex.quote(str(root))}\nexport PYTHONDONTWRITEBYTECODE=1 HOME=/tmp\n"
            f"exec {shlex.quote(sys.executable)} -m uffdsim.lab.guest /tmp/lab-out/results.jsonl "
            f"$(cat /tmp/lab-out/files)\n")
        start = time.monotonic()
        extra = work_mounts([root, Path(sys.prefix)])
        (share / "mounts").write_text("".join(f"{tag} {path}\n" for tag, path in extra))
        build_initramfs(kdir, share)        # fresh, so /init always matches this code
        cmd = qemu_command(kdir, share, host_thp(), extra)
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=open(share / "qemu.err", "w"), start_new_session=True)
        boot = None
        seen = 0
        with _killed_on_signal(proc):
            while proc.poll() is None:
                if time.monotonic() - start > timeout:
                    break
                time.sleep(0.5)
                if boot is None and (share / "results.jsonl").exists():
                    boot = time.monotonic() - start
                if progress and (share / "results.jsonl").exists():
                    n = (share / "results.jsonl").read_text().count("\n")
                    if n > seen:
                        seen = n
                        progress(f"{series}: {max(n - 1, 0)}/{len(files)} scenarios")
        total = time.monotonic() - start
        timed_out = proc.returncode is None or total > timeout
        lines = []
        if (share / "results.jsonl").exists():
            lines = [json.loads(x) for x in (share / "results.jsonl").read_text().splitlines() if x.strip()]
        problem = None
        if timed_out:
            problem = f"lab {series}: timed out after {timeout:.0f} s"
        elif not lines:
            problem = f"lab {series}: the guest produced no results"
        elif (share / "rc").exists() and (share / "rc").read_text().strip() != "0":
            problem = f"lab {series}: the guest runner exited {(share / 'rc').read_text().strip()}"
        if problem:
            logs = cache_dir() / "logs"
            logs.mkdir(exist_ok=True)
            stamp = time.strftime("%Y%m%dT%H%M%S")
            kept = []
            for name in ("serial.log", "guest.log", "qemu.err"):
                if (share / name).exists():
                    dest = logs / f"{series}-{stamp}-{name}"
                    shutil.copy2(share / name, dest)
                    kept.append(str(dest))
            raise LabError(f"{problem}; logs kept: {', '.join(kept) or 'none'}")
        result = BatchResult(series, lines[0], seconds={"boot": round(boot or 0.0, 1), "total": round(total, 1)})
        for rec in lines[1:]:
            result.runs[inside.get(rec["path"], rec["path"])] = rec
        result.guest["package"] = manifest().get("kernels", {}).get(series, {}).get("version")
        return result


class LabBackend:
    """A kernel backend whose kernel is a lab VM: :meth:`prepare` boots once for all files,
    :meth:`run` then hands back each scenario's raw run."""

    name = "kernel"

    def __init__(self, series: str) -> None:
        self.series = series
        self.batch: BatchResult | None = None

    def prepare(self, files: list[str | Path], progress: Callable[[str], None] | None = None) -> BatchResult:
        self.batch = run_batch(self.series, files, progress=progress)
        return self.batch

    def run(self, scenario: Scenario) -> BackendRun:
        if self.batch is None:
            self.prepare([scenario.path])
        assert self.batch is not None
        rec = self.batch.runs.get(str(Path(scenario.path).resolve()))
        if rec is None:
            return BackendRun(skipped=f"not run in the {self.series} lab VM (the batch ended early)")
        if "error" in rec:
            return BackendRun(skipped=f"lab guest error: {rec['error']}")
        return BackendRun(rec.get("steps") or [], rec.get("skipped"),
                          dict(rec.get("info") or {}, profile=self.profile()))

    def profile(self) -> Any:
        """The kernel profile of the booted guest (version, config, MOVE offered or not)."""
        from ..kernels import profile_for_release
        assert self.batch is not None
        g = self.batch.guest
        return profile_for_release(g["guest"], config=g.get("config"), move=g.get("move"))
