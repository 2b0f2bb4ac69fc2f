"""Build and run other projects' UFFDIO_MOVE tests on the running kernel; print JSON (issue 18).

The originals of the ``peer-*`` scenarios (``scenarios/README.md``, "Peer suites"):

* the kernel selftests ``tools/testing/selftests/mm/uffd-unit-tests.c`` (cases ``move``,
  ``move-pmd``, ``move-pmd-split``; ``mmap-changing`` is newer than 6.12), from Debian's
  ``linux-source-6.12`` package: ``apt-get download`` + ``dpkg-deb`` into the temporary folder,
  nothing installed; or ``--kernel-tar`` (a ``linux-source-6.12.tar.xz`` or a kernel tree);
* LTP's ``testcases/kernel/syscalls/userfaultfd/userfaultfd02.c``, from a git directory
  (``--ltp-git``, default: the mirror ``/work/.mirror/linux-test-project+ltp/repo`` if present,
  else ``git clone`` from GitHub).  LTP needs autoconf, automake and m4 to configure; those not on
  PATH are taken from Debian's packages the same way (``apt-get download``, unpacked, their paths
  rewritten into the temporary folder);
* go-userfaultfd's ``TestMove`` (``userfaultfd_test.go``), at the commit that
  ``scenarios/peer-go-userfaultfd-testmove.yaml`` names, from a git directory (``--go-git``,
  default: the mirror ``/work/.mirror/ricardobranco777+go-userfaultfd/repo`` if present, else
  ``git clone`` from GitHub), run with ``go test -run '^TestMove$'``.  Go and golang.org/x/sys come
  from Debian: without ``go`` on PATH (or without x/sys) the script installs ``golang-go`` and
  ``golang-golang-x-sys-dev`` with ``apt-get install`` (root only, as ``uffdsim lab`` installs its
  host tools), and nothing comes from the Go module proxy.  Debian 12 has Go 1.19 and x/sys 0.3.0
  where the module asks for Go 1.25 and x/sys 0.37, so in the temporary copy ``go.mod``'s ``go``
  line is lowered to the installed Go and x/sys is replaced by Debian's (``GOPROXY=off``); the
  package's cgo constants come from ``<linux/userfaultfd.h>``, and Debian 12's (Linux 6.1) has no
  ``UFFDIO_MOVE`` (the test then skips itself), so the 6.12 uapi header of the kernel sources above
  goes first on the include path.  The JSON lists these adaptations.

Everything is fetched and built in a temporary folder that is removed at the end (``--keep`` keeps
it).  Each case is ``pass``, ``fail``, ``skip`` or ``not run`` (with the reason).  Usage:

    python benchmarks/peer_tests.py [--kernel-tar PATH] [--ltp-git DIR] [--go-git DIR] [--keep]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

LTP_MIRROR = Path("/work/.mirror/linux-test-project+ltp/repo")
LTP_URL = "https://github.com/linux-test-project/ltp"
GO_MIRROR = Path("/work/.mirror/ricardobranco777+go-userfaultfd/repo")
GO_URL = "https://github.com/ricardobranco777/go-userfaultfd"
GO_SCENARIO = Path(__file__).resolve().parent.parent / "scenarios" / "peer-go-userfaultfd-testmove.yaml"
GO_PACKAGES = ("golang-go", "golang-golang-x-sys-dev")
DEBIAN_XSYS = Path("/usr/share/gocode/src/golang.org/x/sys")
KERNEL_PACKAGE = "linux-source-6.12"
SELFTEST_DIR = "tools/testing/selftests/mm"
SELFTEST_FILES = ("uffd-unit-tests.c", "uffd-common.c", "uffd-common.h", "vm_util.c", "vm_util.h")
#: uapi headers newer than the system's (UFFDIO_MOVE, PAGEMAP_SCAN) that the selftests include
UAPI_HEADERS = ("include/uapi/linux/userfaultfd.h", "include/uapi/linux/fs.h")
MOVE_CASES = ("move", "move-pmd", "move-pmd-split")
TIMEOUT = 900


class Skip(Exception):
    """A suite that cannot be built or run here (the message says why)."""


def run(cmd: list[str], cwd: Path | None = None, env: dict[str, str] | None = None,
        timeout: int = TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def must(cmd: list[str], what: str, **kw: Any) -> subprocess.CompletedProcess:
    try:
        r = run(cmd, **kw)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise Skip(f"{what}: {err}") from None
    if r.returncode != 0:
        tail = (r.stderr or r.stdout).strip().splitlines()[-3:]
        raise Skip(f"{what} failed (exit {r.returncode}): {' | '.join(tail)[:300]}")
    return r


def apt_unpack(packages: list[str], into: Path) -> Path:
    """Download Debian packages (no install) and unpack them under ``into/root``."""
    into.mkdir(parents=True, exist_ok=True)
    must(["apt-get", "download", *packages], f"apt-get download {' '.join(packages)}", cwd=into)
    root = into / "root"
    for deb in sorted(into.glob("*.deb")):
        must(["dpkg-deb", "-x", str(deb), str(root)], f"dpkg-deb -x {deb.name}")
    return root


# -- kernel selftests ------------------------------------------------------------------------------

def kernel_sources(tmp: Path, kernel_tar: str | None) -> tuple[Path, str]:
    """A folder holding the selftest files and the uapi headers; and where they came from."""
    if kernel_tar and Path(kernel_tar).is_dir():
        return Path(kernel_tar), f"kernel tree {kernel_tar}"
    if kernel_tar:
        tar = Path(kernel_tar)
        origin = f"tarball {tar}"
    else:
        root = apt_unpack([KERNEL_PACKAGE], tmp / "deb")
        tars = sorted(root.glob("usr/src/linux-source-*.tar.*"))
        if not tars:
            raise Skip(f"{KERNEL_PACKAGE}: no source tarball in the package")
        tar = tars[0]
        ver = must(["dpkg-deb", "-f", str(next((tmp / 'deb').glob('*.deb'))), "Version"], "dpkg-deb -f")
        origin = f"Debian {KERNEL_PACKAGE} {ver.stdout.strip()}"
    top = tar.name.split(".tar")[0]           # Debian's tarball unpacks into linux-source-6.12/
    members = [f"{top}/{SELFTEST_DIR}/{f}" for f in SELFTEST_FILES] + [f"{top}/{h}" for h in UAPI_HEADERS]
    members += [f"{top}/tools/testing/selftests/kselftest.h", f"{top}/mm/gup_test.h"]
    must(["tar", "-xf", str(tar), "-C", str(tmp), *members], "tar -x (selftest files)")
    return tmp / top, origin


def kernel_selftests(tmp: Path, kernel_tar: str | None) -> dict[str, Any]:
    src, origin = kernel_sources(tmp, kernel_tar)
    inc = tmp / "uapi" / "linux"
    inc.mkdir(parents=True)
    for h in UAPI_HEADERS:
        shutil.copy(src / h, inc / Path(h).name)
    mm = src / SELFTEST_DIR
    binary = tmp / "uffd-unit-tests"
    # raw uapi headers: `make headers` would turn __packed into the attribute
    must(["gcc", "-O2", "-w", "-D__packed=__attribute__((packed))", f"-I{tmp / 'uapi'}", f"-I{mm}",
          *(str(mm / f) for f in ("uffd-unit-tests.c", "uffd-common.c", "vm_util.c")),
          "-lpthread", "-lm", "-o", str(binary)], "gcc uffd-unit-tests")
    t0 = time.monotonic()
    r = run([str(binary), "-f", "move"], cwd=tmp)
    cases: dict[str, Any] = {}
    for name, mem, verdict, reason in re.findall(
            r"Testing (\S+) on (\S+)\.\.\. (done|failed|skipped)(?: \[reason: ([^\]]*)\])?", r.stdout):
        cases[f"{name} on {mem}"] = {"result": {"done": "pass", "failed": "fail", "skipped": "skip"}[verdict],
                                     **({"reason": reason} if reason else {})}
    for name in MOVE_CASES:
        cases.setdefault(f"{name} on anon", {"result": "not run", "reason": "not in the output"})
    return {"source": origin, "command": "uffd-unit-tests -f move", "exit": r.returncode,
            "summary": next((ln for ln in r.stdout.splitlines() if ln.startswith("Userfaults unit tests")), None),
            "seconds": round(time.monotonic() - t0, 2), "cases": cases,
            "not ported here": {"mmap-changing": "not in 6.12's uffd-unit-tests.c (posted 2025-04)"}}


# -- LTP -----------------------------------------------------------------------------------------

def autotools(tmp: Path) -> dict[str, str]:
    """An environment with autoconf, automake and m4 (from Debian packages if not on PATH)."""
    env = dict(os.environ)
    if all(shutil.which(t) for t in ("autoconf", "automake", "aclocal", "m4")):
        return env
    root = apt_unpack(["m4", "autoconf", "automake", "autotools-dev"], tmp / "autotools")
    # the scripts and perl modules name their data folders absolutely: point them into root
    subs = [("/usr/share/automake-1.16", "automake-1.16"), ("/usr/share/autoconf", "autoconf"),
            ("'/usr/share/aclocal", None)] + [(f"/usr/bin/{t}", None) for t in
                                              ("m4", "autom4te", "autoconf", "autoheader", "aclocal", "automake")]
    for path in list((root / "usr/bin").iterdir()) + [p for p in (root / "usr/share").rglob("*") if p.is_file()]:
        if path.is_symlink() or not path.is_file():
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        new = text
        for old, _ in subs:
            if old.startswith("'"):
                new = new.replace(old, "'" + str(root) + old[1:])
            else:
                new = re.sub(r"(?<![\w/.-])" + re.escape(old), str(root) + old, new)
        if new != text:
            path.write_text(new)
    for short, versioned in (("aclocal", "aclocal-1.16"), ("automake", "automake-1.16")):
        link = root / "usr/bin" / short
        if not link.exists():
            link.symlink_to(versioned)
    env["PATH"] = f"{root / 'usr/bin'}:{env.get('PATH', '')}"
    env["ACLOCAL_PATH"] = "/usr/share/aclocal"          # pkg.m4 of the installed pkg-config
    return env


def ltp_sources(tmp: Path, ltp_git: str | None) -> tuple[Path, str]:
    dest = tmp / "ltp"
    git_dir = Path(ltp_git) if ltp_git else (LTP_MIRROR if LTP_MIRROR.exists() else None)
    if git_dir is not None:
        commit = must(["git", "--git-dir", str(git_dir), "rev-parse", "HEAD"], "git rev-parse").stdout.strip()
        dest.mkdir()
        archive = subprocess.Popen(["git", "--git-dir", str(git_dir), "archive", "HEAD"], stdout=subprocess.PIPE)
        untar = subprocess.run(["tar", "-x", "-C", str(dest)], stdin=archive.stdout, capture_output=True)
        archive.wait()
        if archive.returncode or untar.returncode:
            raise Skip(f"git archive of {git_dir} failed")
        return dest, f"{git_dir} at {commit}"
    must(["git", "clone", "--depth", "1", LTP_URL, str(dest)], f"git clone {LTP_URL}")
    commit = must(["git", "-C", str(dest), "rev-parse", "HEAD"], "git rev-parse").stdout.strip()
    return dest, f"{LTP_URL} at {commit}"


def ltp(tmp: Path, ltp_git: str | None) -> dict[str, Any]:
    src, origin = ltp_sources(tmp, ltp_git)
    env = autotools(tmp)
    must(["make", "autotools"], "LTP make autotools", cwd=src, env=env)
    must(["./configure"], "LTP ./configure", cwd=src, env=env)
    must(["make", "-C", "lib", f"-j{os.cpu_count() or 1}"], "LTP make -C lib", cwd=src, env=env)
    must(["make", "-C", "testcases/kernel/syscalls/userfaultfd", "userfaultfd02"], "LTP make userfaultfd02",
         cwd=src, env=env)
    work = tmp / "ltp-tmp"
    work.mkdir()
    t0 = time.monotonic()
    r = run([str(src / "testcases/kernel/syscalls/userfaultfd/userfaultfd02")], cwd=work,
            env=dict(env, LTPROOT=str(src), TMPDIR=str(work)), timeout=300)
    out = r.stdout + r.stderr
    counts = {k: int(v) for k, v in re.findall(r"^(passed|failed|broken|skipped|warnings)\s+(\d+)", out, re.M)}
    verdict = ("pass" if r.returncode == 0 and counts.get("passed") else
               "skip" if r.returncode == 32 else "fail")
    return {"source": origin, "seconds": round(time.monotonic() - t0, 2), "exit": r.returncode,
            "cases": {"userfaultfd02": {"result": verdict, "summary": counts,
                                        "lines": [ln for ln in out.splitlines() if "userfaultfd02.c" in ln]}}}


# -- go-userfaultfd ------------------------------------------------------------------------------

def go_commit(scenario: Path = GO_SCENARIO) -> str:
    """The go-userfaultfd commit the ported scenario's ``about`` names."""
    m = re.search(r"commit ([0-9a-f]{7,40})\b", scenario.read_text())
    if not m:
        raise Skip(f"{scenario.name}: its about names no commit")
    return m[1]


def go_toolchain() -> tuple[str, list[str]]:
    """``go`` and Debian's golang.org/x/sys, installed with apt-get when missing; (version, installed)."""
    installed: list[str] = []
    if not shutil.which("go") or not DEBIAN_XSYS.is_dir():
        if os.geteuid() != 0 or not shutil.which("apt-get"):
            raise Skip(f"no Go toolchain (install it: apt-get install {' '.join(GO_PACKAGES)})")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        run(["apt-get", "update", "-qq"], env=env, timeout=600)
        must(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *GO_PACKAGES],
             f"apt-get install {' '.join(GO_PACKAGES)}", env=env)
        installed = list(GO_PACKAGES)
    if not shutil.which("go") or not DEBIAN_XSYS.is_dir():
        raise Skip(f"apt-get install {' '.join(GO_PACKAGES)} gave no go or no {DEBIAN_XSYS}")
    version = must(["go", "env", "GOVERSION"], "go env GOVERSION").stdout.strip()
    return version, installed


def go_version_line(goversion: str) -> str:
    """``go1.19.8`` -> ``1.19``: the ``go`` line of go.mod that toolchain accepts."""
    m = re.match(r"go(\d+)\.(\d+)", goversion)
    if not m:
        raise Skip(f"cannot read the Go version {goversion!r}")
    return f"{m[1]}.{m[2]}"


def adapt_go_mod(text: str, go_line: str, xsys: Path) -> tuple[str, list[str]]:
    """go.mod for the local toolchain: the ``go`` line lowered, golang.org/x/sys from ``xsys``."""
    notes = []
    m = re.search(r"^go (\S+)$", text, re.M)
    if m and [int(x) for x in m[1].split(".")[:2]] > [int(x) for x in go_line.split(".")]:
        text = text.replace(m[0], f"go {go_line}")
        notes.append(f"go.mod: go {m[1]} -> go {go_line}")
    text = re.sub(r"^toolchain \S+\n", "", text, flags=re.M)
    if "golang.org/x/sys" in text:
        text += f"\nreplace golang.org/x/sys => {xsys}\n"
        notes.append(f"golang.org/x/sys -> Debian's {xsys}")
    return text, notes


def go_sources(tmp: Path, go_git: str | None, commit: str) -> tuple[Path, str]:
    dest = tmp / "go-userfaultfd"
    git_dir = Path(go_git) if go_git else (GO_MIRROR if GO_MIRROR.exists() else None)
    where = str(git_dir)
    if git_dir is None:
        git_dir, where = tmp / "go-userfaultfd.git", GO_URL
        must(["git", "clone", "--bare", GO_URL, str(git_dir)], f"git clone {GO_URL}")
    full = must(["git", "--git-dir", str(git_dir), "rev-parse", "--verify", f"{commit}^{{commit}}"],
                f"commit {commit} in {git_dir}").stdout.strip()
    dest.mkdir(parents=True)
    archive = subprocess.Popen(["git", "--git-dir", str(git_dir), "archive", full], stdout=subprocess.PIPE)
    untar = subprocess.run(["tar", "-x", "-C", str(dest)], stdin=archive.stdout, capture_output=True)
    archive.wait()
    if archive.returncode or untar.returncode:
        raise Skip(f"git archive {full} of {git_dir} failed")
    return dest, f"{where} at {full}"


def uapi_include(tmp: Path, kernel_tar: str | None) -> Path:
    """A folder with ``linux/userfaultfd.h`` of the kernel sources (the selftests' copy if there)."""
    inc = tmp / "kernel" / "uapi"
    if not (inc / "linux" / "userfaultfd.h").exists():
        src, _ = kernel_sources(tmp / "go-kernel", kernel_tar)
        inc = tmp / "go-kernel" / "uapi"
        (inc / "linux").mkdir(parents=True)
        shutil.copy(src / "include/uapi/linux/userfaultfd.h", inc / "linux" / "userfaultfd.h")
    return inc


def go_verdict(stdout: str) -> str:
    """``go test -v``'s verdict on TestMove."""
    return ("pass" if "--- PASS: TestMove " in stdout else "skip" if "--- SKIP: TestMove " in stdout
            else "fail")


def go_userfaultfd(tmp: Path, go_git: str | None, kernel_tar: str | None) -> dict[str, Any]:
    commit = go_commit()
    version, installed = go_toolchain()
    src, origin = go_sources(tmp, go_git, commit)
    text, notes = adapt_go_mod((src / "go.mod").read_text(), go_version_line(version), DEBIAN_XSYS)
    (src / "go.mod").write_text(text)
    inc = uapi_include(tmp, kernel_tar)
    notes.append("cgo: the kernel sources' include/uapi/linux/userfaultfd.h before the system's")
    env = dict(os.environ, GOPROXY="off", GOFLAGS="-mod=mod", GOTOOLCHAIN="local", GOCACHE=str(tmp / "gocache"),
               GOPATH=str(tmp / "gopath"), CGO_ENABLED="1", CGO_CFLAGS=f"-I{inc}")
    t0 = time.monotonic()
    r = run(["go", "test", "-count=1", "-run", "^TestMove$", "-v", "."], cwd=src, env=env)
    out = r.stdout + r.stderr
    lines = [ln for ln in out.splitlines() if "TestMove" in ln or "userfaultfd_test.go" in ln]
    if r.returncode and not lines:
        lines = out.strip().splitlines()[-5:]
    return {"source": origin, "go": version, "installed": installed, "adapted": notes,
            "command": "go test -run '^TestMove$' -v .", "exit": r.returncode,
            "seconds": round(time.monotonic() - t0, 2),
            "cases": {"TestMove": {"result": go_verdict(r.stdout), "lines": lines}}}


def attempt(name: str, fn: Any, *args: Any) -> dict[str, Any]:
    t0 = time.monotonic()
    try:
        out = fn(*args)
    except Skip as why:
        out = {"result": "not run", "reason": str(why)}
    except subprocess.TimeoutExpired as err:
        out = {"result": "not run", "reason": f"timed out: {err}"}
    out["total_seconds"] = round(time.monotonic() - t0, 1)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kernel-tar", help="a linux-source tarball or kernel tree (default: Debian's linux-source-6.12)")
    ap.add_argument("--ltp-git", help=f"an LTP git directory (default: {LTP_MIRROR} if present, else a clone)")
    ap.add_argument("--go-git", help=f"a go-userfaultfd git directory (default: {GO_MIRROR} if present, else a clone)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (its path goes to stderr)")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="uffd-peer-tests-"))
    try:
        (tmp / "kernel").mkdir()
        (tmp / "ltp-build").mkdir()
        out = {"benchmark": "peer-tests", "kernel": platform.release(), "machine": platform.machine(),
               "euid": os.geteuid(),
               "suites": {"kernel-selftests": attempt("kernel-selftests", kernel_selftests, tmp / "kernel", a.kernel_tar),
                          "ltp": attempt("ltp", ltp, tmp / "ltp-build", a.ltp_git),
                          "go-userfaultfd": attempt("go-userfaultfd", go_userfaultfd, tmp, a.go_git,
                                                    a.kernel_tar)}}
        # each case counts; a suite that could not be built or run counts once, as "not run"
        results = [c["result"] for s in out["suites"].values() for c in s.get("cases", {}).values()]
        results += [s["result"] for s in out["suites"].values() if "cases" not in s]
        out["totals"] = {r: results.count(r) for r in ("pass", "fail", "skip", "not run")}
        print(json.dumps(out, indent=1))
        return 1 if out["totals"]["fail"] else 0
    finally:
        if a.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
