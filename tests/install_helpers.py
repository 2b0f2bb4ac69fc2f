"""Helpers for the tests that install the repository the way a reader does (Binder, a wheel).

* :func:`scratch_root`: a temporary folder other users can read, always removed afterwards;
* :func:`copy_checkout`: the files a fresh clone has (tracked and new, not ignored), copied;
* :func:`system_python`, :func:`make_venv`: a fresh venv from the system Python;
* :func:`pip`: pip in such a venv, with the user's warm cache and a bounded time;
* :func:`as_unprivileged`: the command prefix that runs something as ``nobody`` (when we are
  root), or None with the reason it cannot.
"""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

ROOT = Path(__file__).resolve().parent.parent
#: the pip the Makefile upgrades a new venv to (the bundled one resolves about 2x slower)
PIP_VERSION = "26.3"
NOBODY = 65534


def usable_by_others(path: str) -> bool:
    """Whether any user can run ``path``: the file and every folder above it are world-executable
    (a pyenv Python under root's 0700 home is not, so ``nobody`` could not start its venv)."""
    real = Path(os.path.realpath(path))
    return real.is_file() and all(p.stat().st_mode & stat.S_IXOTH for p in (real, *real.parents))


def system_python(for_others: bool = False) -> str | None:
    """A Python >= 3.11 to build a fresh venv from: the one behind the venv that runs the tests
    (what `make venv` built it from), else python3 on PATH, else /usr/bin/python3.  With
    ``for_others``, only one every user can run (None when there is none)."""
    seen = []
    for cand in (getattr(sys, "_base_executable", None) or sys.executable, shutil.which("python3"),
                 "/usr/local/bin/python3", "/usr/bin/python3"):
        if not cand or not os.path.exists(cand) or os.path.realpath(cand) in seen:
            continue
        seen.append(os.path.realpath(cand))
        if for_others and not usable_by_others(cand):
            continue
        ok = subprocess.run([cand, "-c", "import sys, venv; sys.exit(sys.version_info < (3, 11))"],
                            capture_output=True, timeout=60)
        if ok.returncode == 0:
            return cand
    return None


def scratch_parent() -> str | None:
    """Where scratch venvs go: /dev/shm when it is a tmpfs that allows exec and has room (a venv
    of ~20000 files is removed in a second there, versus ~30 s on a disk mounted with `discard`),
    else the default temp dir (None)."""
    try:
        with open("/proc/self/mounts") as f:
            mounts = [line.split() for line in f]
        shm = next(m for m in mounts if m[1] == "/dev/shm")
        st = os.statvfs("/dev/shm")
    except (OSError, StopIteration):
        return None
    roomy = st.f_bavail * st.f_frsize > 3 << 30
    return "/dev/shm" if shm[2] == "tmpfs" and "noexec" not in shm[3].split(",") and roomy else None


@contextmanager
def scratch_root(prefix: str) -> Iterator[Path]:
    """A new folder for scratch files, readable (not writable) by every user; removed on exit."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=scratch_parent()))
    try:
        path.chmod(0o755)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        assert not path.exists(), f"{path} was not removed"


def checkout_files(root: Path = ROOT) -> list[str]:
    """Paths (relative) a fresh clone would have: tracked files plus new ones git does not ignore."""
    done = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "--cached", "--others",
                           "--exclude-standard"], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"git ls-files failed: {done.stderr.strip()}")
    return sorted({p for p in done.stdout.split("\0") if p and os.path.lexists(root / p)})


def copy_checkout(dest: Path, root: Path = ROOT) -> Path:
    """Copy the checkout's files (symlinks as links) into ``dest``; returns ``dest``."""
    for rel in checkout_files(root):
        src, dst = root / rel, dest / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            os.symlink(os.readlink(src), dst)
        else:
            shutil.copy2(src, dst)
    for d in [dest, *(p for p in dest.rglob("*") if p.is_dir() and not p.is_symlink())]:
        d.chmod(0o755)
    return dest


def run(cmd: Sequence[str], timeout: float, **kw) -> subprocess.CompletedProcess[str]:
    """Run ``cmd``; on failure raise with the command and the end of its output."""
    done = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, **kw)
    if done.returncode != 0:
        tail = (done.stdout + done.stderr).strip()[-3000:]
        raise AssertionError(f"`{' '.join(map(str, cmd))}` exited {done.returncode}:\n{tail}")
    return done


def make_venv(path: Path, python: str) -> Path:
    """A fresh venv at ``path`` from ``python``, with the Makefile's pip; returns its python."""
    run([python, "-m", "venv", str(path)], timeout=300)
    py = path / "bin" / "python"
    pip(py, "install", f"pip=={PIP_VERSION}")
    return py


def pip(py: Path, *args: str, cwd: Path | None = None, timeout: float = 600) -> str:
    """``python -m pip ARGS`` quietly, with the invoking user's pip cache; returns its output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_REQUIRE_VIRTUALENV", "PYTHONPATH"))}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    done = run([str(py), "-m", "pip", *args, "--quiet"], timeout=timeout, cwd=cwd, env=env)
    return done.stdout


def as_unprivileged() -> tuple[list[str] | None, str]:
    """The prefix that drops to ``nobody`` (uid/gid 65534, no groups, no capabilities).

    Returns ``([], why)`` when we already are an ordinary user, and ``(None, why)`` when we are
    root but cannot drop privileges here (no setpriv)."""
    if os.geteuid() != 0:
        return [], f"already an unprivileged user (uid {os.geteuid()})"
    setpriv = shutil.which("setpriv")
    if not setpriv:
        return None, "running as root, and setpriv (util-linux) is not installed to drop to nobody"
    prefix = [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
              "--inh-caps=-all", "--bounding-set=-all", "--"]
    probe = subprocess.run([*prefix, "id", "-u"], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0 or probe.stdout.strip() != str(NOBODY):
        return None, f"setpriv cannot drop to uid {NOBODY} here: {probe.stderr.strip()[:200]}"
    return prefix, f"as nobody (uid {NOBODY}) through setpriv"
