#!/usr/bin/env python3
"""Run every live cell of the built book in headless Chromium and compare it with a native run.

The built site (``_build/html``) is served from 127.0.0.1 by this script, and Chromium resolves
no other host (``--host-resolver-rules``), so a page that needs anything from outside fails.
This script drives Chromium over the DevTools protocol on a pipe (``--remote-debugging-pipe``,
no port): it opens each page with live cells, clicks each cell's Run as a reader would, waits for
the cell to finish and reads its output from the page.  The page's script takes no instruction
from the address or from anywhere else: there is no test hook in the published book.  Each output
(text, ok, the SVG's sha256) must equal :func:`uffdsim.live.run_cell_json` run here, natively,
on the same source.

Prints one line per page, then ``live cells: N on P pages, M identical, F different; R failed
requests``; ``--json`` prints the details.  Exit status 0 when every cell is identical and no
request failed, 1 otherwise, 2 when the book or Chromium is missing.

Also importable: :func:`serve`, :class:`Browser` (Chromium over the DevTools protocol),
:class:`LivePage` (a page's live cells, run by clicking) and :func:`live_pages` are what the tests
and ``benchmarks/live_book.py`` use.

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
#: dom_check's flags, but Chromium stays up (no --dump-dom, real time) while this script drives it
FLAGS = [f for f in dom_check.FLAGS if not f.startswith(("--headless", "--virtual-time-budget", "--dump-dom"))]
FLAGS += ["--headless=new", "--disable-default-apps", "--mute-audio", dom_check.BLOCK_OTHER_HOSTS]


@dataclass
class Server:
    """A static server for one folder, on 127.0.0.1; ``failed`` lists the requests it could not answer."""

    httpd: ThreadingHTTPServer
    failed: list[str] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def serve(root: Path) -> Server:
    """Serve ``root`` on 127.0.0.1 (a free port) in a thread (GET only)."""
    failed: list[str] = []

    class Handler(dom_check._QuietHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(root), **kwargs)

        def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
            if self.path != "/favicon.ico":
                failed.append(f"{code} {self.path}")
            super().send_error(code, message, explain)

    Handler.extensions_map = {**SimpleHTTPRequestHandler.extensions_map, ".mjs": "text/javascript",
                              ".wasm": "application/wasm", ".whl": "application/zip"}
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return Server(httpd, failed)


class CdpError(RuntimeError):
    """The browser answered a DevTools command with an error, or a script in the page threw."""


def _pipe() -> tuple[int, int]:
    """A pipe whose two ends are numbered 10 or more (so that neither is fd 3 or 4 of the browser's)."""
    import fcntl
    ends = []
    for fd in os.pipe():
        ends.append(fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10))
        os.close(fd)
    return ends[0], ends[1]


class Browser:
    """A headless Chromium driven over the DevTools protocol on a pipe: fd 3 in, fd 4 out, NUL-framed JSON.

    One fresh profile, deleted on :meth:`close`; every host but 127.0.0.1 unresolvable.  Use as a
    context manager.  :meth:`send` sends one command and waits for its answer."""

    def __init__(self, chromium: str, timeout: float = 60.0) -> None:
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="uffdsim-live-chromium-")
        cmd_r, self._cmd_w = _pipe()             # we write, Chromium reads on fd 3
        self._out_r, out_w = _pipe()             # Chromium writes on fd 4, we read
        args = [*FLAGS, "--remote-debugging-pipe", f"--user-data-dir={self.profile}", "about:blank"]
        self.proc = subprocess.Popen(
            # bash, not sh: dash cannot name a descriptor above 9
            ["bash", "-c", f'exec "$0" "$@" 3<&{cmd_r} 4>&{out_w} {cmd_r}<&- {out_w}>&-', chromium, *args],
            pass_fds=(cmd_r, out_w), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        os.close(cmd_r)
        os.close(out_w)
        self._next = 0
        self._lock = threading.Lock()
        self._answers: dict[int, "queue.Queue[dict[str, Any]]"] = {}
        self.events: "queue.Queue[dict[str, Any]]" = queue.Queue()
        threading.Thread(target=self._reader, daemon=True).start()

    def _reader(self) -> None:
        buf = b""
        while True:
            try:
                chunk = os.read(self._out_r, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                for q in list(self._answers.values()):
                    q.put({"error": {"message": "the browser closed the pipe"}})
                return
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                answer = self._answers.get(msg["id"]) if "id" in msg else None
                if answer is not None:
                    answer.put(msg)
                else:
                    self.events.put(msg)

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None,
             timeout: float | None = None) -> dict[str, Any]:
        """One DevTools command; its ``result`` (CdpError on an error or no answer in time)."""
        with self._lock:
            self._next += 1
            mid = self._next
            self._answers[mid] = queue.Queue()
        msg: dict[str, Any] = {"id": mid, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")
        try:
            answer = self._answers[mid].get(timeout=timeout or self.timeout)
        except queue.Empty:
            raise CdpError(f"{method}: no answer within {timeout or self.timeout:.0f} s") from None
        finally:
            self._answers.pop(mid, None)
        if "error" in answer:
            raise CdpError(f"{method}: {answer['error'].get('message')}")
        return answer.get("result", {})

    def new_page(self) -> "Tab":
        """A new tab, attached (its own DevTools session)."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        tab = Tab(self, session)
        tab.send("Page.enable")
        return tab

    def close(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        for fd in (self._cmd_w, self._out_r):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


@dataclass
class Tab:
    """One page of a :class:`Browser` (a DevTools session)."""

    browser: Browser
    session: str

    def send(self, method: str, params: dict[str, Any] | None = None, timeout: float | None = None) -> dict[str, Any]:
        return self.browser.send(method, params, self.session, timeout)

    def eval(self, expression: str, timeout: float | None = None) -> Any:
        """The value of a JavaScript expression in the page (promises awaited); CdpError if it throws."""
        res = self.send("Runtime.evaluate", {"expression": expression, "awaitPromise": True,
                                             "returnByValue": True}, timeout)
        if "exceptionDetails" in res:
            d = res["exceptionDetails"]
            raise CdpError(f"in the page: {d.get('exception', {}).get('description') or d.get('text')}")
        return res.get("result", {}).get("value")

    def goto(self, url: str, timeout: float = 60.0) -> None:
        """Open ``url`` and wait until the page and its deferred scripts have run."""
        self.send("Page.navigate", {"url": url})
        self.eval("new Promise((ok, no) => { const t0 = Date.now(); (function wait() {"
                  f" if (document.readyState === 'complete' && location.href === {json.dumps(url)}) ok(true);"
                  f" else if (Date.now() - t0 > {timeout * 1000:.0f}) no(new Error('page did not load'));"
                  " else setTimeout(wait, 50); })(); })", timeout=timeout + 5)

    def click(self, selector: str) -> None:
        """A real mouse click (pressed, released) in the middle of the element ``selector``."""
        box = self.eval(f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
                        " e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();"
                        " return [r.left + r.width / 2, r.top + r.height / 2]; })()")
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", {"type": kind, "x": box[0], "y": box[1], "button": "left",
                                                   "clickCount": 1})

    def key(self, key: str, code: str, keycode: int, shift: bool = False) -> None:
        """A key pressed and released, as the keyboard sends it, to the focused element."""
        for kind in ("rawKeyDown", "keyUp"):
            self.send("Input.dispatchKeyEvent", {"type": kind, "key": key, "code": code,
                                                 "modifiers": 8 if shift else 0, "windowsVirtualKeyCode": keycode})


#: JavaScript run in the page: click the cell's Run, wait until it finished, return what it shows
RUN_CELL_JS = """(async (i, limitMs) => {
  const cell = document.querySelectorAll('.uffd-live')[i];
  const t0 = performance.now();
  const before = cell.dataset.runs || '0';
  cell.querySelector('.uffd-live-run').click();
  while (!(['done', 'stopped'].includes(cell.dataset.state) && cell.dataset.runs !== before)) {
    if (performance.now() - t0 > limitMs) return {error: 'no output within ' + limitMs / 1000 + ' s'};
    await new Promise((r) => setTimeout(r, 25));
  }
  const out = cell.querySelector('.uffd-live-out');
  return {id: cell.id, state: cell.dataset.state, ok: cell.dataset.ok === 'true', text: out.textContent,
          svg_sha256: cell.dataset.svgSha256 || null, ms: Number(cell.dataset.ms),
          total_ms: Number(cell.dataset.totalMs)};
})"""


class LivePage:
    """The live cells of one page of the book, in a :class:`Tab`: run them by clicking, set their text."""

    def __init__(self, tab: Tab, server: Server, path: str, query: str = "") -> None:
        self.tab = tab
        tab.goto(f"{server.base}/{path}" + (f"?{query}" if query else ""))

    def cells(self) -> int:
        return int(self.tab.eval("document.querySelectorAll('.uffd-live').length"))

    def cell(self, i: int) -> str:
        """A CSS selector for cell ``i``."""
        return "#" + str(self.tab.eval(f"document.querySelectorAll('.uffd-live')[{i}].id"))

    def set_source(self, i: int, text: str) -> None:
        """Type ``text`` into cell ``i`` (as a reader's edit: the textarea's value)."""
        self.tab.eval(f"document.querySelectorAll('.uffd-live')[{i}].querySelector('.uffd-live-src').value"
                      f" = {json.dumps(text)}")

    def run(self, i: int, timeout: float = 180.0) -> dict[str, Any]:
        """Click cell ``i``'s Run and wait for its output: id, state, ok, text, svg_sha256, ms, total_ms."""
        return self.tab.eval(f"({RUN_CELL_JS})({i}, {timeout * 1000:.0f})", timeout=timeout + 10)


class _Cells:
    """The live cells of one built page: (id, kind, source), from the HTML the directive wrote."""

    def __init__(self, html: str) -> None:
        import re
        self.cells: list[tuple[str, str, str]] = []
        for m in re.finditer(r'<div class="uffd-live" data-kind="(\w+)"[^>]* id="([^"]+)"[^>]*>.*?'
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


#: axe-core's WCAG 2.0/2.1 A and AA rules, run in a page after its live cells ran (its output,
#: picture and controls in their final state); returns the violations, each with its elements
AXE_AFTER_RUN_JS = """(async (tags) => {
  const r = await window.axe.run(document, {runOnly: {type: 'tag', values: tags}, resultTypes: ['violations']});
  return r.violations.map((v) => ({id: v.id, impact: v.impact, help: v.help,
                                   nodes: v.nodes.map((n) => n.target.join(' '))}));
})"""


def axe_after_run(tab: Tab) -> list[dict[str, Any]] | None:
    """axe-core's violations in the page as it is now (None when axe-core is not vendored)."""
    dom_check = _dom_check()
    axe = dom_check.TEST_ASSETS / "axe.min.js"
    if not axe.is_file():
        return None
    if not tab.eval("typeof window.axe === 'object'"):
        tab.eval(axe.read_text() + "\n;true")
    return tab.eval(f"({AXE_AFTER_RUN_JS})({json.dumps(list(dom_check.AXE_TAGS))})", timeout=120)


def check_site(site: Path, chromium: str, timeout: float = 120.0) -> dict[str, Any]:
    """Run every page's live cells in Chromium; per cell, the fields that differ from native; then
    axe-core on the page with its cells' output shown (``violations`` per page, None without axe)."""
    server = serve(site)
    out: dict[str, Any] = {"pages": [], "cells": 0, "identical": 0, "different": 0, "violations": 0}
    try:
        with Browser(chromium) as browser:
            tab = browser.new_page()
            for path, cells in live_pages(site):
                page: dict[str, Any] = {"page": path, "cells": []}
                try:
                    live = LivePage(tab, server, path)
                    got = [live.run(i, timeout) for i in range(len(cells))]
                    page["violations"] = axe_after_run(tab)
                except CdpError as err:
                    got = [{"error": str(err)}] * len(cells)
                    page["violations"] = [{"id": "not-checked", "impact": None, "help": str(err), "nodes": []}]
                out["violations"] += sum(max(1, len(v["nodes"])) for v in page["violations"] or [])
                for (cid, kind, source), browser_out in zip(cells, got):
                    diffs = compare(browser_out, kind, source) if "error" not in browser_out else ["not run"]
                    page["cells"].append({"id": cid, "kind": kind, "differs": diffs,
                                          "browser_text": browser_out.get("text", browser_out.get("error")),
                                          "ms": browser_out.get("ms")})
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
            for v in page.get("violations") or []:
                print(f"  accessibility after a run: {v['id']} ({v['impact']}): {v['help']}: {', '.join(v['nodes'][:3])}")
        print(f"live cells: {res['cells']} on {len(res['pages'])} pages, {res['identical']} identical, "
              f"{res['different']} different; {len(res['failed_requests'])} failed requests; "
              f"{res['violations']} accessibility violations after the runs")
    return 0 if (res["different"] == 0 and not res["failed_requests"] and res["cells"]
                 and not res["violations"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
