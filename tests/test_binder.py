"""A Binder session, rebuilt here: the notebooks pass nbval in the environment repo2docker builds.

repo2docker (Binder's builder) runs, for this repository (see README.md, "Binder"):

    pip install --no-cache-dir -r requirements.txt
    pip install --no-cache-dir .          # non-editable: the package comes from site-packages

and then serves the notebooks from the checkout, as an ordinary user without any privilege
(so, here, without userfaultfd).  The tests below do the same: a fresh venv from the system
Python, a copy of the checkout (so the source tree is not on ``sys.path``), those two pip
commands, then every notebook under nbval as ``nobody`` from ``notebooks/`` with the saved
outputs.  Only nbval and pytest are added to the venv, after the Binder steps, to run the check.
Where root cannot drop to ``nobody`` (no setpriv) the notebook run skips with the reason.

A second test asks repo2docker itself which Dockerfile it would build (``--no-build --debug``,
no Docker needed), for the current release and for an older one (2024.07.0, before repo2docker
learnt to install a ``pyproject.toml`` project): both must install requirements.txt and then the
package with ``pip install .`` exactly once.  All temporary files are removed afterwards.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from install_helpers import (NOBODY, ROOT, as_unprivileged, copy_checkout, make_venv, pip,
                             run, scratch_root, system_python)

#: an older repo2docker, whose python buildpack installs the package only when setup.py exists;
#: chardet 5 is what it imports (chardet 6 dropped `chardet.universaldetector` as it uses it)
OLD_REPO2DOCKER = ("jupyter-repo2docker==2024.07.0", "chardet==5.2.0")
NBVAL_TIMEOUT = 900


def _pins(*names: str) -> list[str]:
    """``name==version`` from constraints.txt for each name (the test harness: nbval, pytest)."""
    pins = dict(line.split("==", 1) for line in (ROOT / "constraints.txt").read_text().split()
                if "==" in line and not line.startswith("#"))
    return [f"{n}=={pins[n]}" for n in names]


@pytest.fixture(scope="module")
def binder() -> Iterator[dict[str, Path]]:
    """A checkout copy and a venv built as repo2docker builds them; removed afterwards."""
    python = system_python(for_others=os.geteuid() == 0)
    if python is None:
        pytest.skip("no Python >= 3.11 with venv that an unprivileged user can run "
                    "(e.g. only a pyenv Python under root's home): apt-get install python3-venv")
    with scratch_root("uffd-binder-") as root:
        repo = copy_checkout(root / "repo")
        py = make_venv(root / "venv", python)
        pip(py, "install", "-r", "requirements.txt", cwd=repo)           # repo2docker, step 1
        pip(py, "install", ".", cwd=repo)                                 # repo2docker, step 2
        pip(py, "install", *_pins("nbval", "pytest"))                     # only to run the check
        for sub in ("home", "tmp"):
            (root / sub).mkdir()
            if os.geteuid() == 0:
                os.chown(root / sub, NOBODY, NOBODY)
        yield {"root": root, "repo": repo, "python": py}


def _reader_env(b: dict[str, Path]) -> dict[str, str]:
    """A new user's environment: their own HOME and TMPDIR, the venv first on PATH, nothing else."""
    return {"HOME": str(b["root"] / "home"), "TMPDIR": str(b["root"] / "tmp"),
            "PATH": f"{b['python'].parent}:/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1"}


def _as_reader() -> list[str]:
    prefix, why = as_unprivileged()
    if prefix is None:
        pytest.skip(f"cannot run the notebooks as an unprivileged user: {why}")
    return prefix


PROBE = """
import json, sys, uffdsim
from uffdsim.resources import corpus_files, data_file, example_file
print(json.dumps({"module": uffdsim.__file__, "scenarios": len(corpus_files()),
                  "data": sorted(p.name for p in data_file("x").parent.glob("*.json")),
                  "example": example_file("uffd_move_example.c").is_file(), "path0": sys.path[0]}))
"""


def test_the_package_comes_from_site_packages_with_its_files(binder: dict[str, Path]) -> None:
    """From notebooks/, ``import uffdsim`` finds the installed copy, and it carries its files."""
    done = run([*_as_reader(), str(binder["python"]), "-c", PROBE], timeout=60,
               cwd=binder["repo"] / "notebooks", env=_reader_env(binder))
    info = json.loads(done.stdout)
    assert "/site-packages/uffdsim/" in info["module"], info
    assert info["scenarios"] == len(list((ROOT / "uffdsim" / "scenarios").glob("*.yaml"))) > 100
    assert info["data"] == sorted(p.name for p in (ROOT / "uffdsim" / "data").glob("*.json"))
    assert info["example"]


def _code_cells(repo: Path) -> int:
    return sum(c["cell_type"] == "code" for nb in sorted((repo / "notebooks").glob("*.ipynb"))
               for c in json.loads(nb.read_text())["cells"])


def test_every_notebook_passes_nbval_as_an_unprivileged_reader(binder: dict[str, Path],
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    prefix = _as_reader()
    repo, nbdir = binder["repo"], binder["repo"] / "notebooks"
    tmp = binder["root"] / "tmp"
    cmd = [*prefix, str(binder["python"]), "-m", "pytest", "-c", str(repo / "pytest.ini"),
           "--rootdir", str(repo), "-o", "addopts=", "-p", "no:cacheprovider", "-q",
           "--nbval", "--nbval-current-env", "--nbval-sanitize-with", str(repo / "nbval_sanitize.cfg"),
           *sorted(p.name for p in nbdir.glob("*.ipynb"))]
    done = subprocess.run(cmd, cwd=nbdir, env=_reader_env(binder), capture_output=True, text=True,
                          timeout=NBVAL_TIMEOUT, stdin=subprocess.DEVNULL)
    summary = (done.stdout.strip().splitlines() or ["(no output)"])[-1]
    with capsys.disabled():
        print(f"\nbinder-like nbval ({as_unprivileged()[1]}): {summary.strip('= ')}")
    assert done.returncode == 0, f"nbval failed in the Binder-like session:\n{done.stdout[-6000:]}{done.stderr[-2000:]}"
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|error)", summary)}
    assert counts.get("passed", 0) + counts.get("skipped", 0) == _code_cells(repo), summary
    assert not counts.get("failed") and not counts.get("error"), summary
    left = sorted(p.name for p in tmp.iterdir() if not p.name.endswith((".lock", ".journal")))
    assert not left, f"the notebooks left temporary files behind: {left}"


# -- repo2docker itself --------------------------------------------------------------------------

def _old_repo2docker() -> Path:
    """OLD_REPO2DOCKER unpacked once into .venv/ (removed by `make distclean`)."""
    target = ROOT / ".venv" / f"repo2docker-{OLD_REPO2DOCKER[0].split('==')[1]}"
    if not (target / ".complete").is_file():
        shutil.rmtree(target, ignore_errors=True)
        try:
            pip(Path(sys.executable), "install", "--no-deps", "--target", str(target), *OLD_REPO2DOCKER)
        except AssertionError as err:
            shutil.rmtree(target, ignore_errors=True)
            pytest.skip(f"cannot download {OLD_REPO2DOCKER[0]} from PyPI: {str(err)[-300:]}")
        (target / ".complete").touch()
    return target


def _dockerfile(repo: Path, pythonpath: Path | None) -> str:
    """The Dockerfile repo2docker would build for ``repo`` (printed by --no-build --debug)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    done = run([sys.executable, "-m", "repo2docker", "--no-build", "--debug", str(repo)],
               timeout=120, env=env)
    text = done.stdout + done.stderr
    assert "FROM " in text and "LABEL repo2docker.version" in text, text[-2000:]
    return text


@pytest.fixture(scope="module")
def checkout() -> Iterator[Path]:
    with scratch_root("uffd-r2d-") as root:
        yield copy_checkout(root / "repo")


@pytest.mark.parametrize("release", ["current", "2024.07.0"])
def test_repo2docker_installs_requirements_then_the_package_once(checkout: Path, release: str,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("repo2docker", reason="jupyter-repo2docker is not installed (requirements-dev.txt)")
    text = _dockerfile(checkout, None if release == "current" else _old_repo2docker())
    version = re.search(r'LABEL repo2docker.version="([^"]+)"', text)
    runs = [line for line in text.splitlines() if line.startswith("RUN ") and "pip install" in line]
    with capsys.disabled():
        print(f"\nrepo2docker {version and version.group(1)}: " + " ; ".join(r[4:] for r in runs))
    assert runs == ['RUN ${KERNEL_PYTHON_PREFIX}/bin/pip install --no-cache-dir -r "requirements.txt"',
                    "RUN ${KERNEL_PYTHON_PREFIX}/bin/pip install --no-cache-dir ."], runs
    assert "Building conda environment for python=3.11\n" in text, "runtime.txt's Python 3.11 is not what it installs"
