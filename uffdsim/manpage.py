"""The proposed man page ``UFFDIO_MOVE(2const)`` of chapter 7: render it, lint it, extract its example.

The roff sources travel with the package in ``uffdsim/examples/manpage/`` (``book/examples/manpage/``
in the repository): the proposed page, the page shipped by man-pages 6.14 (``shipped/``), the patch
from one to the other, and a stored HTML rendering of each for machines without ``mandoc``.
Rendering and linting call ``mandoc`` and ``groff`` where they are installed; nothing here is needed
by the simulator.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from .resources import example_file

#: the date the man-pages build writes over the ``(date)`` placeholder of ``.TH`` (here: of this proposal)
BUILD_DATE = "2026-12-07"
TOOL_TIMEOUT = 60


def manpage_dir() -> Path:
    """The folder with the roff sources (``uffdsim/examples/manpage``)."""
    return example_file("manpage")


def proposed() -> Path:
    """The proposed page, ``UFFDIO_MOVE.2const``."""
    return manpage_dir() / "UFFDIO_MOVE.2const"


def shipped() -> Path:
    """The page as man-pages ships it (man-pages 6.14, ``man/man2const/UFFDIO_MOVE.2const``)."""
    return manpage_dir() / "shipped" / "UFFDIO_MOVE.2const"


def built_source(page: Path) -> str:
    """The roff text with ``(date)`` filled in, as the man-pages build does (mandoc warns otherwise)."""
    return page.read_text().replace(" (date) ", f" {BUILD_DATE} ", 1)


def _run(argv: list[str], text: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, input=text, capture_output=True, text=True, timeout=TOOL_TIMEOUT)


def render_html(page: Path) -> tuple[str, str]:
    """(HTML fragment, how): rendered now with ``mandoc -Thtml`` where mandoc exists, else the
    stored rendering next to the page (``<page>.html``)."""
    stored = page.with_name(page.name + ".html")
    if shutil.which("mandoc"):
        res = _run(["mandoc", "-man", "-Thtml", "-Ofragment"], built_source(page))
        if res.returncode in (0, 1, 2) and res.stdout:
            return res.stdout, "rendered now with mandoc -Thtml"
    return stored.read_text(), "stored rendering (mandoc is not installed here)"


def lint(page: Path) -> dict[str, str | None]:
    """Each linter's complaints about ``page`` ('' = clean, None = the tool is not installed):
    ``mandoc -Tlint -Wall`` and ``groff -man -ww -z``, on the page as the build fills it in."""
    out: dict[str, str | None] = {}
    text = built_source(page)
    for name, argv in (("mandoc -Tlint -Wall", ["mandoc", "-man", "-Tlint", "-Wall"]),
                       ("groff -man -ww -z", ["groff", "-man", "-ww", "-z"])):
        if shutil.which(argv[0]) is None:
            out[name] = None
            continue
        res = _run(argv, text)
        out[name] = (res.stdout + res.stderr).replace("<stdin>", page.name).strip()
    return out


_UNESCAPE = [(r"\-", "-"), (r"\[aq]", "'"), (r"\[rs]", "\\"), (r"\e", "\\")]


def example_source(page: Path) -> str:
    """The C program of the EXAMPLES section, with the roff escapes undone."""
    text = page.read_text()
    examples = text.split(".SH EXAMPLES", 1)[1]
    body = re.search(r"^\.EX\n(.*?)^\.EE$", examples, re.S | re.M)
    if body is None:
        raise ValueError(f"{page.name}: no .EX/.EE block under EXAMPLES")
    lines = []
    for line in body.group(1).splitlines():
        line = "" if line == r"\&" else line
        for esc, plain in _UNESCAPE:
            line = line.replace(esc, plain)
        lines.append(line)
    return "\n".join(lines) + "\n"


def sections(page: Path) -> list[str]:
    """The ``.SH`` headings of ``page``, in order."""
    return re.findall(r"^\.SH (.+)$", page.read_text(), re.M)


__all__ = ["manpage_dir", "proposed", "shipped", "built_source", "render_html", "lint", "example_source",
           "sections", "BUILD_DATE"]
