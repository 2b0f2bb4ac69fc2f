"""The proposed man page UFFDIO_MOVE(2const) of chapter 7: lint-clean, in the man-pages form, its patch
applies to the shipped page, its stored rendering is current, and its example program works.

The linters and the renderer run where they are installed (``mandoc``, ``groff``, a C compiler, ``git``);
each test says why it skipped otherwise.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from kernel_helpers import UFFD_COMPAT, compile_c
from uffdsim import manpage as mp

PATCH = next(mp.manpage_dir().glob("0001-*.patch"))
FORM = ["NAME", "LIBRARY", "SYNOPSIS", "DESCRIPTION", "RETURN VALUE", "ERRORS", "STANDARDS", "HISTORY",
        "NOTES", "BUGS", "EXAMPLES", "SEE ALSO"]


def need(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed")


TOOLS = {"mandoc": "mandoc -Tlint -Wall", "groff": "groff -man -ww -z"}


@pytest.mark.parametrize("tool", ["mandoc", "groff"])
def test_the_proposed_page_lints_clean(tool: str) -> None:
    need(tool)
    found = {name: out for name, out in mp.lint(mp.proposed()).items() if name.startswith(tool)}
    assert found and all(out == "" for out in found.values()), found


@pytest.mark.parametrize("tool", ["mandoc", "groff"])
def test_the_lint_can_fail(tool: str, tmp_path: Path) -> None:
    need(tool)
    bad = tmp_path / "bad.2const"
    bad.write_text(mp.proposed().read_text().replace(".SH DESCRIPTION\n", ".SH DESCRIPTION\n.XX oops\n", 1))
    assert "XX" in mp.lint(bad)[TOOLS[tool]]


def test_the_page_has_the_man_pages_sections_in_order() -> None:
    assert mp.sections(mp.proposed()) == FORM


def test_semantic_newlines() -> None:
    """man-pages asks for a new line after each sentence (and preferably each clause)."""
    text = mp.proposed().read_text().split(".SH EXAMPLES")[0]
    prose = [ln for ln in text.splitlines() if ln and not ln.startswith(".")]
    assert [ln for ln in prose if re.search(r"[a-z)][.;:] +[A-Za-z(]", ln)] == []


def test_the_patch_turns_the_shipped_page_into_the_proposed_one(tmp_path: Path) -> None:
    need("git")
    target = tmp_path / "man" / "man2const" / "UFFDIO_MOVE.2const"
    target.parent.mkdir(parents=True)
    target.write_text(mp.shipped().read_text())
    res = subprocess.run(["git", "apply", str(PATCH)], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert target.read_text() == mp.proposed().read_text()


def test_the_patch_follows_contributing() -> None:
    """Subject 'man/man2const/UFFDIO_MOVE.2const: Sentence', a body naming its sources, a sign-off line."""
    text = PATCH.read_text()
    assert re.search(r"^Subject: \[PATCH\] man/man2const/UFFDIO_MOVE\.2const: [A-Z]", text, re.M)
    assert "mm/userfaultfd.c" in text and "Signed-off-by:" in text


@pytest.mark.parametrize("page", [mp.proposed(), mp.shipped()], ids=["proposed", "shipped"])
def test_the_stored_rendering_is_current(page: Path) -> None:
    need("mandoc")
    html, how = mp.render_html(page)
    assert how.startswith("rendered now")
    assert page.with_name(page.name + ".html").read_text() == html


def test_the_example_compiles_and_runs(tmp_path: Path) -> None:
    from uffdsim.backends.kernel import sys as k
    src = tmp_path / "uffdio_move.c"
    src.write_text(mp.example_source(mp.proposed()))
    exe = compile_c(src, tmp_path / "uffdio_move", "-Wextra", "-include", str(UFFD_COMPAT))
    ok, why = k.userfaultfd_available()
    if not ok:
        pytest.skip(why)
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert (run.returncode, run.stdout) == (0, "dst[0] = x, src[0] = 0\n"), run.stderr
