"""uffdsim installs like a package: a wheel with everything it reads, a console script that works
from any folder in a clean venv, and extras that match what each use needs.

The wheel is built from a copy of the checkout (``pip wheel .``), installed into a fresh venv
from the system Python with its core dependency only (no extras), and the ``uffdsim`` command
is run from an empty folder: ``--version``, ``run --list``, ``run <bundled scenario>``, ``doctor``
and ``conform`` (which runs the corpus on the kernel too where that is allowed, else skips it;
whether the kernel agrees with the simulator is tests/test_conform.py's concern).
"""
from __future__ import annotations

import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path
from typing import Iterator

import pytest

from install_helpers import ROOT, copy_checkout, make_venv, pip, run, scratch_root, system_python

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]
SCENARIOS = sorted(p.name for p in (ROOT / "uffdsim" / "scenarios").glob("*.yaml"))


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_the_notebooks_extra_names_what_binder_installs() -> None:
    """``uffdsim[notebooks]`` and requirements.txt (Binder) name the same packages (besides the
    core dependency), so `pip install uffdsim[notebooks]` runs the notebooks as Binder does."""
    reqs = {_name(line) for line in (ROOT / "requirements.txt").read_text().splitlines()
            if line.strip() and not line.startswith(("#", "-"))}
    core = {_name(r) for r in PYPROJECT["project"]["dependencies"]}
    extra = {_name(r) for r in PYPROJECT["project"]["optional-dependencies"]["notebooks"]}
    assert extra == reqs - core


def test_the_changelog_describes_this_version() -> None:
    assert re.search(rf"^## {re.escape(VERSION)}\b", (ROOT / "CHANGELOG.md").read_text(), re.M)


@pytest.fixture(scope="module")
def installed() -> Iterator[dict[str, Path]]:
    """A wheel built from a copy of the checkout, installed alone in a fresh venv."""
    python = system_python()
    if python is None:
        pytest.skip("no Python >= 3.11 with venv to build a clean venv from")
    with scratch_root("uffd-package-") as root:
        repo = copy_checkout(root / "repo")
        pip(Path(sys.executable), "wheel", "--no-deps", "-w", str(root / "dist"), ".", cwd=repo)
        wheels = sorted((root / "dist").glob("uffdsim-*.whl"))
        assert len(wheels) == 1, wheels
        py = make_venv(root / "venv", python)
        pip(py, "install", str(wheels[0]))
        (root / "elsewhere").mkdir()
        yield {"wheel": wheels[0], "venv": root / "venv", "cwd": root / "elsewhere"}


def test_the_wheel_carries_the_corpus_the_data_and_the_command(installed: dict[str, Path]) -> None:
    with zipfile.ZipFile(installed["wheel"]) as whl:
        names = whl.namelist()
        entry_points = next(whl.read(n).decode() for n in names if n.endswith(".dist-info/entry_points.txt"))
        metadata = next(whl.read(n).decode() for n in names if n.endswith(".dist-info/METADATA"))
    assert installed["wheel"].name.startswith(f"uffdsim-{VERSION}-py3-none-any")
    assert sorted(n.split("/")[-1] for n in names if n.startswith("uffdsim/scenarios/") and n.endswith(".yaml")) == SCENARIOS
    assert {n for n in names if n.startswith("uffdsim/data/")} == \
        {f"uffdsim/data/{p.name}" for p in (ROOT / "uffdsim" / "data").glob("*.json")}
    assert "uffdsim/examples/uffd_move_example.c" in names and "uffdsim/py.typed" in names
    manpage = {p.relative_to(ROOT).as_posix() for p in (ROOT / "uffdsim" / "examples" / "manpage").rglob("*")
               if p.is_file() and p.suffix != ".md"}       # chapter 7 renders these on Binder too
    assert manpage and manpage <= set(names)
    assert "uffdsim = uffdsim.cli:main" in entry_points
    assert "Provides-Extra: notebooks" in metadata
    assert not any(n.startswith(("tests/", "notebooks/", "book/", "scripts/")) for n in names)


def _uffdsim(installed: dict[str, Path], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """The installed ``uffdsim`` command, run from an empty folder outside the checkout."""
    return subprocess.run([str(installed["venv"] / "bin" / "uffdsim"), *args], cwd=installed["cwd"],
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def test_only_the_core_dependency_is_installed(installed: dict[str, Path]) -> None:
    listed = run([str(installed["venv"] / "bin" / "python"), "-m", "pip", "list", "--format=freeze"],
                 timeout=120).stdout
    names = {_name(line) for line in listed.splitlines()} - {"pip", "setuptools", "wheel"}
    assert names == {"uffdsim", "pyyaml"}, names


def test_the_command_runs_a_bundled_scenario_from_anywhere(installed: dict[str, Path]) -> None:
    assert _uffdsim(installed, "--version").stdout.strip() == f"uffdsim {VERSION}"
    listing = _uffdsim(installed, "run", "--list")
    assert listing.returncode == 0, listing.stderr
    assert listing.stdout.splitlines()[-1].startswith(f"{len(SCENARIOS)} bundled scenarios in ")
    assert "/site-packages/uffdsim/scenarios" in listing.stdout.splitlines()[-1]
    done = _uffdsim(installed, "run", "move-after-fork")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("move-after-fork [sim]: passed")
    missing = _uffdsim(installed, "run", "no-such-scenario")
    assert missing.returncode == 2 and missing.stderr.strip() == (
        "error: no-such-scenario: no such file, and no bundled scenario of that name (see `run --list`)")


def test_doctor_and_conform_work_from_anywhere(installed: dict[str, Path],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    doctor = _uffdsim(installed, "doctor")
    assert doctor.returncode == 0, doctor.stderr
    assert re.search(r"^kernel backend: ", doctor.stdout, re.M), doctor.stdout
    conform = _uffdsim(installed, "conform", timeout=900)
    summary = next((line for line in conform.stdout.splitlines() if line.startswith("conform: ")), "(no summary)")
    with capsys.disabled():
        print(f"\ninstalled wheel: {summary}")
    # Whether the kernel agrees is tests/test_conform.py's question (and the kernel is shared with
    # whatever else runs on the machine); here: the whole bundled corpus runs, and a divergence
    # is the only reason to exit 1.
    match = re.fullmatch(rf"conform: {len(SCENARIOS)} scenarios, (\d+) divergences, \d+ skipped( \(\d+ full, \d+ partial\))?", summary)
    assert match, conform.stdout[-3000:] + conform.stderr[-1000:]
    assert conform.returncode == (1 if int(match.group(1)) else 0), conform.stderr[-1000:]
    assert "Traceback" not in conform.stderr


# -- bundled scenario names on the command line (in-process, fast) -------------------------------

def test_run_takes_a_bundled_name_and_an_existing_file_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    from uffdsim.cli import main, scenario_path
    from uffdsim.resources import corpus_dir

    monkeypatch.chdir(tmp_path)
    assert scenario_path("move-after-fork") == str(corpus_dir() / "move-after-fork.yaml")
    assert scenario_path("move-after-fork.yaml") == str(corpus_dir() / "move-after-fork.yaml")
    assert scenario_path("../move-after-fork") == "../move-after-fork"       # names only, no paths
    (tmp_path / "move-after-fork").write_text("name: local-file\nabout: a file in the folder\nsteps:\n"
                                              "  - mmap: {name: a, pages: 1}\n")
    assert scenario_path("move-after-fork") == "move-after-fork"
    assert main(["run", "move-after-fork"]) == 0
    assert capsys.readouterr().out.startswith("local-file [sim]: passed")
    assert main(["run", "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(SCENARIOS) + 1 and lines[0].split()[0] == SCENARIOS[0][:-5]
