#!/usr/bin/env python3
"""Run every live cell of the built book in headless Chromium and compare it with a native run.

The built site (``_build/html``) is served from 127.0.0.1 by this script, and Chromium resolves
no other host (``--host-resolver-rules``), so a page that needs anything from outside fails.
Each page with live cells is opened with ``?autorun``: its script loads Pyodide, runs every live
cell in order and POSTs the outputs back to this server.  Each output (text, ok, the SVG's
sha256) must equal :func:`uffdsim.live.run_cell_json` run here, natively, on the same source.

Prints one line per page, then ``live cells: N on P pages, M identical, F different; R failed
requests``; ``--json`` prints the details.  Exit status 0 when every cell is identical and no
request failed, 1 otherwise, 2 when the book or Chromium is missing.

Also importable: :func:`serve`, :func:`open_page` and :func:`live_pages` are what the tests and
``benchmarks/live_book.py`` use.

Usage: python scripts/live_check.py [--root DIR] [--chromium PATH] [--timeout S] [--json]
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from html import unescape
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parent.parent


def _dom_check() -> Any:
    """scripts/dom_check.py (the static-page check), whose Chromium set-up this script shares."""
    if "dom_check" not in sys.modules:
        spec = importlib.util.spec_from_file_location("dom_check", Path(__file__).with_name("dom_check.py"))
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["dom_check"] = module          # its dataclasses look their module up there
        spec.loader.exec_module(module)
    return sys.modules["dom_check"]


dom_check = _dom_check()
find_chromium = dom_check.find_chromium
#: dom_check's flags, but Chromium stays up (no --dump-dom, real time) until the page reports
FLAGS = [f for f in dom_check.FLAGS if not f.startswith(("--headless", "--virtual-time-budget", "--dump-dom"))]
FLAGS += ["--headless=new", "--disable-default-apps", "--mute-audio", "--remote-debugging-port=0",
          dom_check.BLOCK_OTHER_HOSTS]


@dataclass
class Server:
    """A static server for one folder that also takes the pages' reports."""

    httpd: ThreadingHTTPServer
    reports: "queue.Queue[dict[str, Any]]"
    failed: list[str] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def serve(root: Path) -> Server:
    """Serve ``root`` on 127.0.0.1 (a free port) in a thread; POST /__live_report is queued."""
    reports: "queue.Queue[dict[str, Any]]" = queue.Queue()
    failed: list[str] = []

    class Handler(dom_check._QuietHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(root), **kwargs)

        def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
            if self.path != "/favicon.ico":
                failed.append(f"{code} {self.path}")
            super().send_error(code, message, explain)

        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            if self.path != "/__live_report":
                self.send_error(404)
                return
            length = min(int(self.headers.get("Content-Length") or 0), 16 << 20)
            try:
                reports.put(json.loads(self.rfile.read(length)))
            except ValueError:
                reports.put({"error": "unreadable report"})
            self.send_response(204)
            self.end_headers()

    Handler.extensions_map = {**SimpleHTTPRequestHandler.extensions_map, ".mjs": "text/javascript",
                              ".wasm": "application/wasm", ".whl": "application/zip"}
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return Server(httpd, reports, failed)


def open_page(chromium: str, server: Server, path: str, query: str, timeout: float) -> dict[str, Any]:
    """Open ``path?query`` in a fresh headless Chromium; the page's report, or ``{"error": ...}``."""
    profile = tempfile.mkdtemp(prefix="uffdsim-live-chromium-")
    proc = subprocess.Popen([chromium, *FLAGS, f"--user-data-dir={profile}", f"{server.base}/{path}?{query}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        return server.reports.get(timeout=timeout)
    except queue.Empty:
        return {"error": f"no report from {path} within {timeout:.0f} s"}
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


class _Cells:
    """The live cells of one built page: (id, kind, source), from the HTML the directive wrote."""

    def __init__(self, html: str) -> None:
        import re
        self.cells: list[tuple[str, str, str]] = []
        for m in re.finditer(r'<div class="uffd-live" data-kind="(\w+)" id="([^"]+)">.*?'
                             r'<textarea[^>]*>(.*?)</textarea>', html, re.S):
            self.cells.append((m.group(2), m.group(1), unescape(m.group(3))))


def live_pages(site: Path) -> Iterator[tuple[str, list[tuple[str, str, str]]]]:
    """Every built page with live cells, as (path relative to the site, cells), in name order."""
    for page in sorted(site.rglob("*.html")):
        if "_static" in page.parts or "_sources" in page.parts:
            continue
        text = page.read_text(errors="replace")
        if 'class="uffd-live"' in text:
            yield page.relative_to(site).as_posix(), _Cells(text).cells


def native(kind: str, source: str) -> dict[str, Any]:
    """What the same cell gives in this Python (the reference the browser must equal)."""
    from uffdsim.live import run_cell_json
    return json.loads(run_cell_json(kind, source))


def compare(browser: dict[str, Any], kind: str, source: str) -> list[str]:
    """The fields (text, ok, svg_sha256) in which the browser's output differs from the native one."""
    ref = native(kind, source)
    return [k for k in ("text", "ok", "svg_sha256") if browser.get(k) != ref.get(k)]


def check_site(site: Path, chromium: str, timeout: float = 120.0) -> dict[str, Any]:
    """Run every page's live cells in Chromium; per cell, the fields that differ from native."""
    server = serve(site)
    out: dict[str, Any] = {"pages": [], "cells": 0, "identical": 0, "different": 0}
    try:
        for path, cells in live_pages(site):
            report = open_page(chromium, server, path, "autorun=1", timeout)
            got = report.get("cells", [])
            page = {"page": path, "cells": []}
            for i, (cid, kind, source) in enumerate(cells):
                browser = got[i] if i < len(got) else {"error": report.get("error", "no output")}
                diffs = compare(browser, kind, source) if "error" not in browser else ["not run"]
                page["cells"].append({"id": cid, "kind": kind, "differs": diffs,
                                      "browser_text": browser.get("text", browser.get("error")),
                                      "ms": browser.get("ms")})
                out["cells"] += 1
                out["identical" if not diffs else "different"] += 1
            out["pages"].append(page)
    finally:
        server.close()
    out["failed_requests"] = list(server.failed)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=ROOT / "_build" / "html")
    ap.add_argument("--chromium")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per page (default 120)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if not (args.root / "_static" / "pyodide" / "pyodide.mjs").is_file():
        print(f"live_check: {args.root} has no built book with Pyodide (run `make book`)", file=sys.stderr)
        return 2
    chromium = find_chromium(args.chromium)
    if chromium is None:
        print("live_check: no Chromium found (apt-get install chromium)", file=sys.stderr)
        return 2
    res = check_site(args.root, chromium, args.timeout)
    if args.json:
        print(json.dumps(res, indent=1))
    else:
        for page in res["pages"]:
            bad = [c for c in page["cells"] if c["differs"]]
            print(f"{page['page']}: {len(page['cells'])} live cell(s), "
                  + ("identical" if not bad else "DIFFERENT: " + "; ".join(
                      f"{c['id']} {','.join(c['differs'])}: {str(c['browser_text'])[:120]!r}" for c in bad)))
        print(f"live cells: {res['cells']} on {len(res['pages'])} pages, {res['identical']} identical, "
              f"{res['different']} different; {len(res['failed_requests'])} failed requests")
    return 0 if res["different"] == 0 and not res["failed_requests"] and res["cells"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
