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

* accessible: axe-core (vendored from npm into ``_vendor_test/`` by ``scripts/vendor_js.sh``; the
  published site does not carry it) runs in the page after its widgets rendered, with the WCAG 2.0/2.1
  A and AA rules; any violation fails the page.  The test server injects it (:data:`AXE_RUNNER`) into
  every HTML page it serves: the built files never contain it.  Figures are counted as described when
  their ``alt`` is a sentence, not a file name;

* stands alone: the pages are served by a plain static server on 127.0.0.1 and Chromium
  resolves no other host (``--host-resolver-rules``); every request a page makes (read from
  Chromium's net log) must succeed: no name that does not resolve, no HTTP 4xx/5xx.  And no
  page names an outside host in the ``src``/``href`` of a script, style sheet, image, font or
  frame (links a reader clicks are fine), nor does a style sheet in ``url(...)``.

The DOM is taken after the page's scripts ran (``--dump-dom`` with a virtual time budget),
with the flags of the toolchain notes (no network, fresh profile).  Prints one line per page,
then ``pages=N figures=F described=D widgets=W failed_requests=R violations=V`` (F and W: images
and widget views rendered, D: images with a description as alt text, R: failed requests, V: axe
violations (elements), over all pages); ``--json`` prints the details as JSON instead.
Exit status 0 when every page passes, 1 when one fails, 2 when the book or Chromium is missing.

:func:`serve` (a static server on 127.0.0.1) and :func:`launch` (one headless Chromium run with
outside hosts blocked, returning the DOM and the failed requests) are meant for other browser
checks too.

Usage: python scripts/dom_check.py [--root DIR] [--chromium PATH] [--jobs N] [--json]
"""
from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Iterator, Sequence
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-features=AutofillServerCommunication,OptimizationHints,Translate,MediaRouter",
         "--virtual-time-budget=15000", "--dump-dom"]
#: Chromium resolves no host but the local server's: any request elsewhere fails (and is counted)
BLOCK_OTHER_HOSTS = "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
#: Chromium's cache-only probe before a real fetch (the font loader does it): not a failed request
ERR_CACHE_MISS = -400
#: elements whose src/href the browser loads by itself (an <a href> is only a link)
LOADED_ATTRS = {"script": ("src",), "img": ("src", "srcset"), "source": ("src", "srcset"),
                "iframe": ("src",), "embed": ("src",), "video": ("src", "poster"), "audio": ("src",),
                "track": ("src",), "object": ("data",), "input": ("src",)}
LOADED_LINK_RELS = {"stylesheet", "preload", "modulepreload", "prefetch", "icon", "shortcut",
                    "apple-touch-icon", "manifest", "font", "preconnect", "dns-prefetch"}
CSS_URL = re.compile(r"""url\(\s*['"]?([^'")\s]+)""")
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
SKIP_OUTPUT_TAGS = {"remove-output", "remove-cell"}
#: myst-nb's MIME priority for HTML: the first one present in an output is what the page shows
HTML_PRIORITY = (WIDGET_VIEW, "application/javascript", "text/html", "image/svg+xml", "image/png",
                 "image/gif", "image/jpeg", "text/markdown", "text/latex", "text/plain")
MD_IMAGE = re.compile(r"!\[[^\]]*\]\([^)]+\)|^```\{(?:figure|image)\}", re.MULTILINE)
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr"}


#: where the test-only browser assets are (axe-core); served under /__test__/ by the test server only
TEST_ASSETS = ROOT / "_vendor_test"
#: the WCAG rule sets axe runs (Lighthouse's accessibility audit uses the same engine)
AXE_TAGS = ("wcag2a", "wcag2aa", "wcag21a", "wcag21aa")
#: injected before </body> of every page the test server serves: runs axe once the page settled
#: (widgets rendered) and leaves the violations in the DOM as JSON for --dump-dom to carry out
AXE_RUNNER = """<script src="/__test__/axe.min.js"></script>
<script>
(function () {
  function report(doc) {
    var el = document.createElement("script");
    el.type = "application/json";
    el.id = "axe-results";
    el.textContent = JSON.stringify(doc).replace(/</g, "\\\\u003c");
    document.body.appendChild(el);
  }
  function run() {
    if (!window.axe) { report({error: "axe-core did not load"}); return; }
    window.axe.run(document, {runOnly: {type: "tag", values: %s}, resultTypes: ["violations"]})
      .then(function (r) {
        report({violations: r.violations.map(function (v) {
          return {id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map(function (n) {
            return {target: n.target.join(" "), html: n.html.slice(0, 300)};
          })};
        })});
      }, function (e) { report({error: String(e)}); });
  }
  window.addEventListener("load", function () { setTimeout(run, 4000); });
})();
</script>
""" % json.dumps(list(AXE_TAGS))
AXE_RESULTS = re.compile(r'<script type="application/json" id="axe-results">(.*?)</script>', re.S)


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
        self.described: list[str] = []      #: notebook images whose alt text is a description
        self.widget_elements = 0            #: elements with a widget-* class
        self.widget_roots = 0               #: outermost jupyter-widgets elements
        self.problems: list[str] = []
        self.outside: list[str] = []        #: resources loaded from another host

    def _note_outside(self, tag: str, a: dict[str, str | None]) -> None:
        attrs = LOADED_ATTRS.get(tag, ())
        if tag == "link" and set((a.get("rel") or "").lower().split()) & LOADED_LINK_RELS:
            attrs = ("href",)
        for name in attrs:
            for url in re.split(r",\s*", a.get(name) or ""):
                url = url.strip().split(" ")[0]
                if is_outside(url):
                    self.outside.append(f"<{tag} {name}={url}>")

    def _inside(self, cls: str) -> bool:
        return any(cls in classes for _, classes in self.stack)

    def _flag(self, what: str) -> None:
        if not self._inside("tag_raises-exception"):      # cells meant to raise may show it
            self.problems.append(what)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        classes = set((a.get("class") or "").split())
        self._note_outside(tag, a)
        if tag == "img":
            src = a.get("src") or ""
            if "_images/" in src and src.split("?")[0].endswith(".png"):
                self.images.append(src)
                alt = (a.get("alt") or "").strip()
                if alt and not re.search(r"\.(png|svg|jpe?g|gif)$", alt, re.I) and " " in alt:
                    self.described.append(alt)
        if any(c.startswith("widget-") for c in classes):
            self.widget_elements += 1
        if "jupyter-widgets" in classes and not self._inside("jupyter-widgets"):
            self.widget_roots += 1
        if "jupyter-widgets-error-widget" in classes:      # a view the widget JS could not create
            self._flag("a widget failed to render (its view raised in the browser)")
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


def is_outside(url: str) -> bool:
    """Whether a URL the page loads points at a host other than the local server."""
    parts = urlsplit(url.strip())
    if parts.scheme in ("", "data", "blob", "about", "javascript") and not url.strip().startswith("//"):
        return False
    return parts.scheme not in ("http", "https", "") or (parts.hostname or "") not in LOCAL_HOSTS


def outside_in_css(html_dir: Path) -> list[str]:
    """``url(...)`` references to other hosts in the built style sheets (fonts, images)."""
    found = []
    for css in sorted(html_dir.rglob("*.css")):
        for url in CSS_URL.findall(css.read_text(errors="replace")):
            if is_outside(url):
                found.append(f"{css.relative_to(html_dir)}: url({url})")
    return found


# -- the local server and the browser ----------------------------------------------------------

class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files without logging each request to stderr."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _InjectingHandler(_QuietHandler):
    """Also serves :data:`TEST_ASSETS` under ``/__test__/`` and adds ``inject`` before ``</body>``
    of every HTML page: the test's own scripts reach the page without being in the built site."""

    inject = ""

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path.startswith("/__test__/"):
            asset = (TEST_ASSETS / path[len("/__test__/"):]).resolve()
            if asset.is_relative_to(TEST_ASSETS.resolve()) and asset.is_file():
                self._send(asset.read_bytes(), "text/javascript")
            else:
                self.send_error(404)
            return
        local = Path(self.translate_path(self.path))
        if local.is_dir():
            local = local / "index.html"
        if local.suffix == ".html" and local.is_file():
            html = local.read_text(errors="replace")
            at = html.rfind("</body>")
            html = html[:at] + self.inject + html[at:] if at >= 0 else html + self.inject
            self._send(html.encode(), "text/html; charset=utf-8")
            return
        super().do_GET()

    def _send(self, body: bytes, ctype: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@contextmanager
def serve(directory: Path, inject: str = "") -> Iterator[str]:
    """A plain static file server for ``directory`` on 127.0.0.1 (a free port); yields its base URL.

    With ``inject``, every HTML page gets that text before ``</body>`` and ``/__test__/`` serves
    the test-only assets (axe-core); the files on disk are not changed.
    (Failed requests are counted from the browser's net log, which also sees other hosts.)"""
    if inject:
        handler_cls = type("Injecting", (_InjectingHandler,), {"inject": inject})
        handler = functools.partial(handler_cls, directory=str(directory))
    else:
        handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="dom-check-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def failed_requests(netlog: Path, site: str) -> list[str]:
    """Requests made for a page of ``site`` (its network isolation key) that failed: a network
    error (``-105`` is a name that did not resolve, i.e. another host) or HTTP status >= 400."""
    text = netlog.read_text(errors="replace").rstrip().rstrip(",")
    try:
        log = json.loads(text)
    except json.JSONDecodeError:                       # Chromium killed before it closed the log
        log = json.loads(text + "]}")
    types = {v: k for k, v in log["constants"]["logEventTypes"].items()}
    sources = {v: k for k, v in log["constants"]["logSourceType"].items()}
    urls: dict[int, str] = {}
    ours: set[int] = set()
    bad: dict[int, str] = {}
    for ev in log.get("events", []):
        if sources.get(ev["source"]["type"]) != "URL_REQUEST":
            continue
        sid, params = ev["source"]["id"], ev.get("params") or {}
        if "url" in params:
            urls.setdefault(sid, params["url"])
        if site in str(params.get("network_isolation_key", "")):
            ours.add(sid)
        error = params.get("net_error", 0) if types.get(ev["type"]) == "REQUEST_ALIVE" else 0
        if error < 0 and error != ERR_CACHE_MISS:         # how the request ended
            bad[sid] = f"net error {error}"
        if types.get(ev["type"]) == "HTTP_TRANSACTION_READ_RESPONSE_HEADERS":
            status = re.match(r"HTTP/\S+ (\d+)", (params.get("headers") or [""])[0])
            if status and int(status.group(1)) >= 400:
                bad[sid] = f"HTTP {status.group(1)}"
    return sorted(f"{urls.get(sid, '?')} ({why})" for sid, why in bad.items() if sid in ours)


def launch(chromium: str, url: str, flags: Sequence[str] = (), timeout: float = 120.0) -> tuple[str, list[str]]:
    """One headless Chromium run on ``url`` with every host but 127.0.0.1 blocked and a fresh
    profile: returns the DOM after the page's scripts ran, and the page's failed requests."""
    site = "{0.scheme}://{0.hostname}".format(urlsplit(url))
    with tempfile.TemporaryDirectory(prefix="dom-check-") as tmp:
        netlog = Path(tmp) / "netlog.json"
        proc = subprocess.run([chromium, *FLAGS, BLOCK_OTHER_HOSTS, f"--user-data-dir={tmp}/profile",
                               f"--log-net-log={netlog}", *flags, url],
                              capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0 or "<html" not in proc.stdout.lower():
            tail = proc.stderr.strip().splitlines()[-3:]
            raise RuntimeError(f"chromium exited {proc.returncode}: {' | '.join(tail)}")
        failed = failed_requests(netlog, site) if netlog.is_file() else ["(Chromium wrote no net log)"]
    return proc.stdout, failed


@dataclass
class PageResult:
    entry: str
    html: str
    expected: Expected
    figures: int = 0
    widget_roots: int = 0
    widget_elements: int = 0
    failed_requests: list[str] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    described: int = 0
    violations: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def violation_count(self) -> int:
        """Elements axe found in violation of a rule, over all rules."""
        return sum(len(v.get("nodes", [])) for v in self.violations)

    def line(self) -> str:
        status = "ok  " if self.ok else "FAIL"
        text = (f"{status} {self.entry}: figures {self.figures}/{self.expected.figures}, "
                f"widgets {self.widget_roots} rendered for {self.expected.widget_views} view(s), "
                f"{len(self.failed_requests)} failed request(s), "
                f"{self.violation_count()} accessibility violation(s)")
        return text + "".join(f"\n       - {p}" for p in self.problems)


def check_page(root: Path, html_dir: Path, entry: str, chromium: str, base_url: str) -> PageResult:
    """Render one page (served from ``base_url``) and compare it with its source."""
    page = html_dir / f"{entry}.html"
    res = PageResult(entry, str(page.relative_to(root)) if page.is_relative_to(root) else str(page),
                     expected_for(root, entry))
    if not page.is_file():
        res.problems.append(f"{res.html} was not built")
        return res
    try:
        dom, res.failed_requests = launch(chromium, base_url + f"{entry}.html")
    except (RuntimeError, subprocess.TimeoutExpired, OSError) as err:
        res.problems.append(f"could not render: {err}")
        return res
    static = PageDom()
    static.feed(page.read_text(errors="replace"))
    static.close()
    parser = PageDom()
    parser.feed(dom)
    parser.close()
    res.figures = len(parser.images)
    res.described = len(parser.described)
    axe = AXE_RESULTS.search(dom)
    if axe is None:
        res.problems.append("axe-core did not report (did the page load?)")
    else:
        doc = json.loads(axe.group(1))
        if "error" in doc:
            res.problems.append(f"axe-core failed: {doc['error']}")
        res.violations = doc.get("violations", [])
        for v in res.violations:
            targets = ", ".join(n["target"] for n in v["nodes"][:3])
            res.problems.append(f"accessibility: {v['id']} ({v.get('impact')}): {v['help']}: "
                                f"{len(v['nodes'])} element(s), e.g. {targets}")
    undescribed = res.figures - res.described
    if undescribed:
        res.problems.append(f"{undescribed} figure(s) without a description as alt text")
    res.widget_roots, res.widget_elements = parser.widget_roots, parser.widget_elements
    res.problems += sorted(set(parser.problems))
    res.outside = sorted(set(static.outside + parser.outside))
    if res.failed_requests:
        res.problems.append(f"{len(res.failed_requests)} failed request(s), e.g. {res.failed_requests[0]}")
    if res.outside:
        res.problems.append(f"loads from another host: {', '.join(res.outside[:3])}")
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
    failed = sum(len(r.failed_requests) for r in results)
    described = sum(r.described for r in results)
    violations = sum(r.violation_count() for r in results)
    return (f"pages={len(results)} figures={figures} described={described} widgets={widgets} "
            f"failed_requests={failed} violations={violations}")


def run(root: Path, chromium: str, jobs: int = 2) -> list[PageResult]:
    """Check every page of the table of contents (``jobs`` browsers at a time), in TOC order,
    served from a static server on 127.0.0.1 with every other host blocked."""
    html_dir = root / "_build" / "html"
    entries = toc_entries(root)
    if not (TEST_ASSETS / "axe.min.js").is_file():
        raise SystemExit(f"dom_check: {TEST_ASSETS}/axe.min.js is missing: run scripts/vendor_js.sh (make vendor)")
    with serve(html_dir, inject=AXE_RUNNER) as base_url, ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        results = list(pool.map(lambda e: check_page(root, html_dir, e, chromium, base_url), entries))
    css = outside_in_css(html_dir)
    if css and results:
        results[0].problems.append(f"style sheets load from another host: {', '.join(css[:3])}")
    return results


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
