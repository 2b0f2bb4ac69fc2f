"""The built book in a real browser: every page renders its figures and widgets, and no errors,
served from 127.0.0.1 with every other host blocked, without a single failed request.

The browser test needs ``_build/html`` (``make book``) and headless Chromium; it skips with the
reason when either is missing.  With ``CI=true`` or ``UFFD_BOOK_INSTALL_CHROMIUM=1`` it installs
Debian's ``chromium`` with apt-get first (root only).  It prints the summary line
``pages=N figures=F described=D widgets=W failed_requests=R violations=V`` (V: axe-core's WCAG 2.1
A/AA violations, which must be 0; D: figures whose alt text is a description) and writes the per-page report to
``_build/dom_check.txt``.  The other tests check the page reader and the net-log reader of
``scripts/dom_check.py`` on small inputs, and that the blocked browser does count a page's
requests to another host and its 404s.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("dom_check", ROOT / "scripts" / "dom_check.py")
assert _spec is not None and _spec.loader is not None
dom_check = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("dom_check", dom_check)        # dataclasses look their module up there
_spec.loader.exec_module(dom_check)


def _parse(html: str):
    page = dom_check.PageDom()
    page.feed(html)
    page.close()
    return page


# -- the page reader ----------------------------------------------------------------------------

FIGURE = '<div class="cell_output docutils container"><img alt="x" src="../_images/ab12.png" /></div>'
STDERR = ('<div class="cell_output docutils container"><div class="output stderr '
          'highlight-myst-ansi notranslate"><pre>warning</pre></div></div>')
TRACEBACK = ('<div class="cell_output docutils container"><div class="output traceback '
             'highlight-ipythontb notranslate"><pre>Traceback (most recent call last):\n'
             'ZeroDivisionError: division by zero</pre></div></div>')


def test_reader_counts_notebook_images_only() -> None:
    page = _parse(f'<img alt="Binder logo" src="../_static/images/logo_binder.svg">{FIGURE}'
                  '<img class="jupyter-widgets widget-image" src="blob:null/1">')
    assert page.images == ["../_images/ab12.png"] and page.problems == []


def test_reader_flags_stderr_and_tracebacks_in_outputs() -> None:
    assert _parse(STDERR).problems == ["an output block of class stderr"]
    problems = _parse(TRACEBACK).problems
    assert "an output block of class traceback" in problems
    assert "an output shows a Python traceback" in problems


def test_reader_allows_cells_meant_to_raise_and_prose() -> None:
    allowed = f'<div class="cell tag_raises-exception docutils container">{TRACEBACK}</div>'
    assert _parse(allowed).problems == []
    assert _parse("<p>A Traceback in prose is not an output.</p>").problems == []


def test_reader_counts_rendered_widgets() -> None:
    html = ('<div class="lm-Widget jupyter-widgets widget-container widget-vbox">'
            '<div class="lm-Widget jupyter-widgets widget-inline-hbox widget-slider"></div></div>'
            '<div class="lm-Widget jupyter-widgets widget-html"></div>')
    page = _parse(html)
    assert (page.widget_roots, page.widget_elements) == (2, 3)


def test_expected_figures_follow_the_mime_priority(tmp_path: Path) -> None:
    (tmp_path / "nb.ipynb").write_text(json.dumps({"cells": [
        {"cell_type": "code", "metadata": {}, "outputs": [
            {"output_type": "display_data", "data": {"image/png": "", "text/plain": ""}},
            {"output_type": "display_data", "data": {dom_check.WIDGET_VIEW: {}, "image/png": ""}},
        ]},
        {"cell_type": "code", "metadata": {"tags": ["remove-output"]}, "outputs": [
            {"output_type": "display_data", "data": {"image/png": ""}}]},
        {"cell_type": "markdown", "metadata": {}, "source": "![a figure](fig.png)"},
    ]}))
    exp = dom_check.expected_for(tmp_path, "nb")
    assert (exp.figures, exp.widget_views) == (2, 1)


def test_reader_flags_resources_loaded_from_other_hosts() -> None:
    page = _parse('<script src="https://cdn.jsdelivr.net/npm/x.js"></script>'
                  '<link rel="stylesheet" href="//fonts.example.org/a.css">'
                  '<link rel="canonical" href="https://example.org/page.html">'
                  '<img src="http://127.0.0.1:8000/_images/a.png"><img src="../_images/b.png">'
                  '<a href="https://github.com/x/y">a link is not a load</a>')
    assert page.outside == ["<script src=https://cdn.jsdelivr.net/npm/x.js>",
                            "<link href=//fonts.example.org/a.css>"]


def _netlog(events: list[dict]) -> dict:
    return {"constants": {"logEventTypes": {"REQUEST_ALIVE": 1, "URL_REQUEST_START_JOB": 2,
                                            "HTTP_TRANSACTION_READ_RESPONSE_HEADERS": 3},
                          "logSourceType": {"URL_REQUEST": 1, "SOCKET": 2}},
            "events": events}


def _request(sid: int, url: str, site: str, end: dict, status: str = "HTTP/1.1 200 OK") -> list[dict]:
    src = {"id": sid, "type": 1}
    return [{"source": src, "type": 1, "phase": 1, "params": {"url": url}},
            {"source": src, "type": 2, "phase": 1, "params": {"url": url, "network_isolation_key": f"{site} {site}"}},
            {"source": src, "type": 3, "phase": 0, "params": {"headers": [status]}},
            {"source": src, "type": 1, "phase": 2, "params": end}]


def test_net_log_reader_counts_the_pages_failed_requests(tmp_path: Path) -> None:
    page = "http://127.0.0.1"
    log = _netlog(_request(1, "http://127.0.0.1:9/ok.js", page, {})
                  + _request(2, "https://cdn.example.org/x.js", page, {"net_error": -105})
                  + _request(3, "http://127.0.0.1:9/gone.png", page, {}, "HTTP/1.0 404 File not found")
                  + _request(4, "http://127.0.0.1:9/font.woff2", page, {"net_error": -400})   # cache probe
                  + _request(5, "https://update.example.org/", "null", {"net_error": -105}))  # the browser's own
    path = tmp_path / "netlog.json"
    path.write_text(json.dumps(log)[:-2])                 # as Chromium leaves it when killed
    assert dom_check.failed_requests(path, page) == [
        "http://127.0.0.1:9/gone.png (HTTP 404)", "https://cdn.example.org/x.js (net error -105)"]


def test_toc_entries_are_read_in_order() -> None:
    entries = dom_check.toc_entries(ROOT)
    assert entries[0] == "book/intro"
    assert "notebooks/08-compacting-heap" in entries and len(entries) == len(set(entries))


# -- the browser check --------------------------------------------------------------------------

def _chromium() -> str:
    found = dom_check.find_chromium()
    if found:
        return found
    if os.environ.get("CI") != "true" and os.environ.get("UFFD_BOOK_INSTALL_CHROMIUM") != "1":
        pytest.skip("headless Chromium is not installed: `apt-get install chromium` (or set "
                    "UFFD_BOOK_CHROMIUM, or UFFD_BOOK_INSTALL_CHROMIUM=1 to let this test install it)")
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("Chromium is missing and cannot be installed here (needs root and apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
        assert done.returncode == 0, f"{' '.join(cmd)} failed: {done.stderr.strip()[-500:]}"
    found = dom_check.find_chromium()
    assert found, "apt-get installed chromium but no chromium binary is on PATH"
    return found


def test_the_blocked_browser_counts_other_hosts_and_404s(tmp_path: Path) -> None:
    """The check can fail: a page that loads a CDN script and a missing image shows both."""
    (tmp_path / "page.html").write_text(
        '<html><head><link rel="icon" href="data:,"><script src="https://cdn.jsdelivr.net/npm/x.js"></script>'
        '</head><body><img src="missing.png"><p id="done">hello</p></body></html>')
    chromium = _chromium()
    with dom_check.serve(tmp_path) as base:
        dom, failed = dom_check.launch(chromium, base + "page.html")
    assert 'id="done"' in dom
    assert [f.split(" (")[0].rsplit("/", 1)[-1] for f in failed] == ["missing.png", "x.js"], failed
    assert failed[0].endswith("(HTTP 404)") and failed[1].endswith("(net error -105)"), failed


def test_every_page_renders_in_chromium(capsys: pytest.CaptureFixture[str]) -> None:
    if not (ROOT / "_build" / "html" / "index.html").is_file():
        pytest.skip("_build/html/index.html is missing: build the book first (`make book`)")
    results = dom_check.run(ROOT, _chromium())
    report = "\n".join(r.line() for r in results) + "\n" + dom_check.summary(results)
    (ROOT / "_build" / "dom_check.txt").write_text(report + "\n")
    with capsys.disabled():
        print("\n" + dom_check.summary(results))
    failed = [r.line() for r in results if not r.ok]
    assert not failed, "pages that do not render as their notebooks say:\n" + "\n".join(failed)


def test_axe_finds_what_a_page_gets_wrong(tmp_path: Path) -> None:
    """The accessibility check can fail: an image without alt text and grey-on-white text are found."""
    if not (dom_check.TEST_ASSETS / "axe.min.js").is_file():
        pytest.skip("_vendor_test/axe.min.js is missing: run scripts/vendor_js.sh (make vendor)")
    (tmp_path / "page.html").write_text(
        '<html lang="en"><head><title>t</title><link rel="icon" href="data:,"></head><body><main>'
        '<img src="data:image/gif;base64,R0lGODlhAQABAAAAACw="><p style="color:#bbbbbb">faint</p>'
        '</main></body></html>')
    with dom_check.serve(tmp_path, inject=dom_check.AXE_RUNNER) as base:
        dom, _failed = dom_check.launch(_chromium(), base + "page.html")
    found = dom_check.AXE_RESULTS.search(dom)
    assert found, "axe-core did not report"
    ids = {v["id"] for v in json.loads(found.group(1))["violations"]}
    assert {"image-alt", "color-contrast"} <= ids, ids


def test_reader_flags_a_widget_that_failed_to_render() -> None:
    html = ('<div class="lm-Widget jupyter-widgets"><div class="jupyter-widgets-error-widget icon-error">'
            '<pre>Click to show javascript error.</pre></div></div>')
    assert _parse(html).problems == ["a widget failed to render (its view raised in the browser)"]
