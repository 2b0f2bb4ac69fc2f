#!/usr/bin/env python3
"""Open every page of the built book in headless Chromium and check what it renders.

For each page listed in ``_toc.yml`` (after ``make book`` has written ``_build/html``):

* figures: the page shows as many notebook images (``<img src=".../_images/*.png">``, each
  present on disk) as the notebook has PNG outputs that the book renders as images (a widget
  view or HTML in the same output wins; cells tagged ``remove-output``/``remove-cell`` are
  left out), plus images in markdown.  The notebook is the copy the build executed
  (``_build/jupyter_execute``), or the source if there is none;
* widgets: if the notebook has widget views, the widget JavaScript rendered them (outermost
  ``jupyter-widgets`` elements, with ``widget-*`` classes), at least one per view;
* errors: no output area shows an error or stderr (``Traceback``, an ``error``/``traceback``
  or ``stderr`` output block), except in cells tagged ``raises-exception``.

The DOM is taken after the page's scripts ran (``--dump-dom`` with a virtual time budget),
with the flags of the toolchain notes (no network, fresh profile).  Prints one line per page,
then ``pages=N figures=F widgets=W`` (F and W: images and widget views rendered, over all
pages); ``--json`` prints the details as JSON instead.  Exit status 0 when every page passes,
1 when one fails, 2 when the book or Chromium is missing.

Usage: python scripts/dom_check.py [--root DIR] [--chromium PATH] [--jobs N] [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--virtual-time-budget=15000", "--dump-dom"]
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
SKIP_OUTPUT_TAGS = {"remove-output", "remove-cell"}
#: myst-nb's MIME priority for HTML: the first one present in an output is what the page shows
HTML_PRIORITY = (WIDGET_VIEW, "application/javascript", "text/html", "image/svg+xml", "image/png",
                 "image/gif", "image/jpeg", "text/markdown", "text/latex", "text/plain")
MD_IMAGE = re.compile(r"!\[[^\]]*\]\([^)]+\)|^```\{(?:figure|image)\}", re.MULTILINE)
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr"}


def find_chromium(explicit: str | None = None) -> str | None:
    """The Chromium binary: ``explicit``, $UFFD_BOOK_CHROMIUM, or the first known name on PATH."""
    for name in (explicit, os.environ.get("UFFD_BOOK_CHROMIUM"), *CHROMIUM_NAMES):
        if name and (shutil.which(name) or Path(name).is_file()):
            return shutil.which(name) or name
    return None


def toc_entries(root: Path) -> list[str]:
    """Every ``root:``/``file:`` entry of ``_toc.yml``, in order (a tiny reader: no YAML needed)."""
    entries = []
    for line in (root / "_toc.yml").read_text().splitlines():
        m = re.match(r"^\s*-?\s*(root|file):\s*(\S+)\s*(#.*)?$", line)
        if m:
            entries.append(m.group(2).strip("'\""))
    return entries


@dataclass
class Expected:
    """What a page's source says its built page must show."""

    source: str
    figures: int = 0
    widget_views: int = 0


def rendered_mime(bundle: dict[str, Any]) -> str | None:
    """The MIME type myst-nb's HTML builder renders from an output bundle (its priority order)."""
    return next((m for m in HTML_PRIORITY if m in bundle), None)


def expected_for(root: Path, entry: str) -> Expected:
    """Figures and widget views a page must show, from the notebook the book rendered.

    That is the copy the build executed (``_build/jupyter_execute/<entry>.ipynb``) when there is
    one, else the source notebook's stored outputs; for a Markdown page, its image directives."""
    executed = root / "_build" / "jupyter_execute" / f"{entry}.ipynb"
    nb = executed if executed.is_file() else root / f"{entry}.ipynb"
    if nb.is_file():
        data = json.loads(nb.read_text())
        exp = Expected(str(nb.relative_to(root)))
        for cell in data.get("cells", []):
            if cell.get("cell_type") == "markdown":
                exp.figures += len(MD_IMAGE.findall("".join(cell.get("source", ""))))
                continue
            tags = set(cell.get("metadata", {}).get("tags", []))
            if tags & SKIP_OUTPUT_TAGS:
                continue
            for out in cell.get("outputs", []):
                mime = rendered_mime(out.get("data", {}))
                exp.figures += mime == "image/png"
                exp.widget_views += mime == WIDGET_VIEW
        return exp
    md = root / f"{entry}.md"
    if md.is_file():
        return Expected(str(md.relative_to(root)), figures=len(MD_IMAGE.findall(md.read_text())))
    return Expected(f"{entry} (no source found)")


class PageDom(HTMLParser):
    """Walks the dumped DOM: notebook images, rendered widgets, and output areas with errors."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, set[str]]] = []
        self.images: list[str] = []
        self.widget_elements = 0            #: elements with a widget-* class
        self.widget_roots = 0               #: outermost jupyter-widgets elements
        self.problems: list[str] = []

    def _inside(self, cls: str) -> bool:
        return any(cls in classes for _, classes in self.stack)

    def _flag(self, what: str) -> None:
        if not self._inside("tag_raises-exception"):      # cells meant to raise may show it
            self.problems.append(what)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        classes = set((a.get("class") or "").split())
        if tag == "img":
            src = a.get("src") or ""
            if "_images/" in src and src.split("?")[0].endswith(".png"):
                self.images.append(src)
        if any(c.startswith("widget-") for c in classes):
            self.widget_elements += 1
        if "jupyter-widgets" in classes and not self._inside("jupyter-widgets"):
            self.widget_roots += 1
        bad = classes & {"traceback", "stderr", "error"}
        if bad and ("output" in classes or self._inside("cell_output")):
            self._flag(f"an output block of class {'/'.join(sorted(bad))}")
        if tag not in VOID:
            self.stack.append((tag, classes))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in VOID and self.stack and self.stack[-1][0] == tag:
            self.stack.pop()

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                del self.stack[i:]
                return

    def handle_data(self, data: str) -> None:
        if "Traceback" in data and self._inside("cell_output"):
            self._flag("an output shows a Python traceback")


@dataclass
class PageResult:
    entry: str
    html: str
    expected: Expected
    figures: int = 0
    widget_roots: int = 0
    widget_elements: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def line(self) -> str:
        status = "ok  " if self.ok else "FAIL"
        text = (f"{status} {self.entry}: figures {self.figures}/{self.expected.figures}, "
                f"widgets {self.widget_roots} rendered for {self.expected.widget_views} view(s)")
        return text + "".join(f"\n       - {p}" for p in self.problems)


def dump_dom(chromium: str, page: Path, timeout: float = 120.0) -> str:
    """The page's DOM after its scripts ran, from a fresh Chromium profile."""
    with tempfile.TemporaryDirectory(prefix="dom-check-") as profile:
        proc = subprocess.run([chromium, *FLAGS, f"--user-data-dir={profile}", page.as_uri()],
                              capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0 or "<html" not in proc.stdout.lower():
        tail = proc.stderr.strip().splitlines()[-3:]
        raise RuntimeError(f"chromium exited {proc.returncode}: {' | '.join(tail)}")
    return proc.stdout


def check_page(root: Path, html_dir: Path, entry: str, chromium: str) -> PageResult:
    """Render one page and compare it with its source."""
    page = html_dir / f"{entry}.html"
    res = PageResult(entry, str(page.relative_to(root)) if page.is_relative_to(root) else str(page),
                     expected_for(root, entry))
    if not page.is_file():
        res.problems.append(f"{res.html} was not built")
        return res
    try:
        dom = dump_dom(chromium, page)
    except (RuntimeError, subprocess.TimeoutExpired, OSError) as err:
        res.problems.append(f"could not render: {err}")
        return res
    parser = PageDom()
    parser.feed(dom)
    parser.close()
    res.figures = len(parser.images)
    res.widget_roots, res.widget_elements = parser.widget_roots, parser.widget_elements
    res.problems += sorted(set(parser.problems))
    missing = [s for s in parser.images if not (page.parent / s.split("?")[0]).resolve().is_file()]
    if missing:
        res.problems.append(f"{len(missing)} image file(s) missing, e.g. {missing[0]}")
    if res.figures != res.expected.figures:
        res.problems.append(f"{res.figures} notebook image(s) rendered, the source has "
                            f"{res.expected.figures}")
    if res.expected.widget_views and (res.widget_roots < res.expected.widget_views
                                      or not res.widget_elements):
        res.problems.append(f"{res.widget_roots} widget(s) rendered for {res.expected.widget_views} "
                            "widget view(s): is the widget JavaScript vendored (make vendor)?")
    return res


def summary(results: list[PageResult]) -> str:
    figures = sum(r.figures for r in results)
    widgets = sum(r.widget_roots for r in results)
    return f"pages={len(results)} figures={figures} widgets={widgets}"


def run(root: Path, chromium: str, jobs: int = 2) -> list[PageResult]:
    """Check every page of the table of contents (``jobs`` browsers at a time), in TOC order."""
    html_dir = root / "_build" / "html"
    entries = toc_entries(root)
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(lambda e: check_page(root, html_dir, e, chromium), entries))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=ROOT, help="the book's root (with _toc.yml, _build/)")
    ap.add_argument("--chromium", help="the Chromium binary (default: $UFFD_BOOK_CHROMIUM or chromium on PATH)")
    ap.add_argument("--jobs", type=int, default=2, help="pages rendered at a time (default 2)")
    ap.add_argument("--json", action="store_true", help="print the per-page details as JSON")
    args = ap.parse_args(argv)
    root = args.root.resolve()
    if not (root / "_build" / "html" / "index.html").is_file():
        print(f"dom_check: {root}/_build/html/index.html is missing: run `make book` first",
              file=sys.stderr)
        return 2
    chromium = find_chromium(args.chromium)
    if chromium is None:
        print("dom_check: no Chromium found (apt-get install chromium, or set UFFD_BOOK_CHROMIUM)",
              file=sys.stderr)
        return 2
    results = run(root, chromium, args.jobs)
    if args.json:
        doc: dict[str, Any] = {"summary": summary(results), "ok": all(r.ok for r in results),
                               "pages": [dict(asdict(r), ok=r.ok) for r in results]}
        print(json.dumps(doc, indent=1))
    else:
        for r in results:
            print(r.line())
        print(summary(results))
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
