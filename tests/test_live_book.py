"""The live book: cells that run uffdsim in the reader's browser give what the notebooks give.

Native tests check :mod:`uffdsim.live` and the SVG pictures (same layout, texts and colours as
the PNG figures).  The browser tests need ``_build/html`` (``make book``) and headless Chromium
(installed as ``tests/test_book_pages.py`` does, or skipped with the reason): they serve the site
on 127.0.0.1 with every other host unresolvable, run every live cell of every page in Pyodide, and
require each output to equal the native one (``scripts/live_check.py``).
"""
from __future__ import annotations

import errno
import importlib.util
import json
import re
import sys
from pathlib import Path
from urllib.parse import quote

import pytest

from uffdsim import lerrno
from uffdsim.errors import ERRNO_VALUES
from uffdsim import live as livemod
from uffdsim.live import MAX_OUTPUT, MAX_SOURCE, run_cell, run_cell_json
from uffdsim.resources import corpus_dir
from uffdsim.scenario import MAX_STEPS, load_scenario
from uffdsim.snapshot import diff, scenario_steps
from uffdsim.viz import svg as svgmod
from uffdsim.viz.palette import FOLIO_COLOURS

ROOT = Path(__file__).resolve().parent.parent
SITE = ROOT / "_build" / "html"
_spec = importlib.util.spec_from_file_location("live_check", ROOT / "scripts" / "live_check.py")
assert _spec is not None and _spec.loader is not None
live_check = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("live_check", live_check)
_spec.loader.exec_module(live_check)

CHAPTERS = [f"notebooks/{p.stem}" for p in sorted((ROOT / "notebooks").glob("0[1-8]-*.ipynb"))]


# -- what a live cell runs ----------------------------------------------------------------------

def test_a_scenario_cell_prints_the_step_table_and_trails() -> None:
    res = run_cell("yaml", (corpus_dir() / "move-after-fork.yaml").read_text())
    assert res["ok"] is True
    lines = res["text"].splitlines()
    assert lines[0] == "move-after-fork [sim]: passed"
    assert any("EBUSY move=-16" in line for line in lines)          # Linux's EBUSY, on any host
    assert "trails (the kernel functions each step went through):" in lines
    assert res["svg"].startswith("<svg ") and res["svg"].endswith("</svg>")


def test_a_mistake_is_one_line_not_a_traceback() -> None:
    for kind, source, start in (
            ("yaml", "name: x\nsteps:\n  - mmap: 3\n", "error: live.yaml: step 0 (mmap)"),
            ("yaml", "name: [unclosed\n", "error: live.yaml"),
            ("python", "from uffdsim import Machine\nMachine().spawn('p').mmap(0)\n", "error: "),
            ("python", "1/0\n", "error: ZeroDivisionError"),
            ("cobol", "x", "error: unknown live cell kind"),
            ("yaml", "#" * (MAX_SOURCE + 1), "error: the cell is")):
        res = run_cell(kind, source)
        assert res["ok"] is False
        assert res["text"].startswith(start), res["text"]
        assert "Traceback" not in res["text"] and res["text"].strip().count("\n") == 0, res["text"]


def test_a_python_cell_prints_and_draws_its_machine() -> None:
    res = run_cell("python", "from uffdsim import Machine\nmachine = Machine()\np = machine.spawn('m')\n"
                             "a = p.mmap(1)\np.write(a, 4096, 0x41)\nprint(p.observe(a, 4096)[0].value)\n")
    assert res == {"ok": True, "text": "65\n", "svg": res["svg"]} and "data-gid=\"frame:" in res["svg"]


def test_results_are_deterministic_json() -> None:
    src = (corpus_dir() / "thp-whole-pmd-move.yaml").read_text()
    a, b = run_cell_json("yaml", src), run_cell_json("yaml", src)
    assert a == b and json.loads(a)["svg_sha256"] and len(json.loads(a)["svg_sha256"]) == 64


def test_the_simulator_uses_linux_errno_numbers_whatever_the_host() -> None:
    # Pyodide's errno module has Emscripten's numbers (EBUSY is 10 there); the model must not.
    assert (lerrno.EBUSY, lerrno.EEXIST, lerrno.EAGAIN, lerrno.EINVAL, lerrno.ENOENT) == (16, 17, 11, 22, 2)
    same = [n for n, v in ERRNO_VALUES.items() if hasattr(errno, n)]
    assert same and all(getattr(errno, n) == ERRNO_VALUES[n] for n in same)   # this host is Linux
    # (cli.py compares the host's own OSErrors, a full disk, with the host's constants: not the model)
    model = [p for p in (ROOT / "uffdsim").rglob("*.py")
             if "kernel" not in p.parts and p.name not in ("kernel_race.py", "cli.py")]
    offenders = [p.name for p in model if re.search(r"^\s*import errno\b|^\s*from errno import", p.read_text(), re.M)]
    assert offenders == [], f"simulator modules that read the host's errno numbers: {offenders}"


# -- a cell is bounded and leaves nothing behind (issue 19, items 4 and 5) ---------------------

@pytest.mark.parametrize("source", ["exit()", "exit(3)", "import sys\nsys.exit('bye')", "raise SystemExit",
                                    "raise KeyboardInterrupt", "quit()",
                                    "from uffdsim import Machine\nclass M(Machine):\n"
                                    "    @property\n    def processes(self):\n        raise SystemExit(4)\n"
                                    "machine = M.__new__(M)\n"])
def test_exit_and_interrupts_never_leave_run_cell_json(source: str) -> None:
    res = json.loads(run_cell_json("python", source))     # before: SystemExit went through (status 3)
    assert res["ok"] is False and res["svg"] is None
    last = res["text"].splitlines()[-1]
    assert last.startswith("error: ") and ("SystemExit" in last or "KeyboardInterrupt" in last), res["text"]


def test_output_is_capped_with_a_line_saying_how_much_was_cut() -> None:
    res = run_cell("python", "print('x' * 300_000)\nprint('after')\n")
    lines = res["text"].splitlines()
    assert res["ok"] is True and len(res["text"]) <= MAX_OUTPUT + 100
    assert lines[-1] == f"... output truncated: {MAX_OUTPUT:,} characters shown, {300_007 - MAX_OUTPUT:,} more not shown"
    small = run_cell("python", "print('x' * 100)\n")["text"]
    assert small == "x" * 100 + "\n"                        # below the cap: nothing added


def test_a_cell_cannot_change_what_the_next_cell_gets() -> None:
    from uffdsim import scenario as scenmod
    grown = ("import uffdsim, uffdsim.scenario, uffdsim.live\n"
             "uffdsim.scenario.MAX_STEPS = 3\nuffdsim.live.MAX_SOURCE = 10**9\nuffdsim.leaked = 1\n"
             "import uffdsim.concurrency.explorer as ex\nex.MAX_STATES = 1\n")
    assert run_cell("python", grown)["ok"] is True
    after = run_cell("python", "import uffdsim, uffdsim.scenario, uffdsim.live\n"
                               "import uffdsim.concurrency.explorer as ex\n"
                               "print(uffdsim.scenario.MAX_STEPS, uffdsim.live.MAX_SOURCE, "
                               "hasattr(uffdsim, 'leaked'), ex.MAX_STATES)\n")
    assert after["text"] == f"{scenmod.MAX_STEPS} {MAX_SOURCE} False 20000\n"
    assert (scenmod.MAX_STEPS, livemod.MAX_SOURCE) == (MAX_STEPS, 20_000)     # the defaults, as imported
    assert run_cell("yaml", "#" * (MAX_SOURCE + 1))["ok"] is False          # the limit still holds
    assert "leak" not in run_cell("python", "print(sorted(k for k in globals() if not k.startswith('__')))")["text"]


def test_a_snippet_does_not_draw_its_own_picture() -> None:
    """The page inserts the SVG: a snippet that rebinds the drawing function must not choose it."""
    res = run_cell("python", "import uffdsim.live\nuffdsim.live.address_space_svg = lambda *a, **k: "
                             "'<svg onload=\"alert(1)\"></svg>'\nfrom uffdsim import Machine\nmachine = Machine()\n")
    assert res["ok"] is True and res["svg"].startswith('<svg xmlns="http://www.w3.org/2000/svg"')
    assert "onload" not in res["svg"] and livemod.address_space_svg is svgmod.address_space_svg


def _old_run_yaml(source: str) -> dict[str, object]:
    """The live cell as it was: snapshots before and after every step (the reference for the output)."""
    from uffdsim.report import print_table
    from uffdsim.results import BackendRun
    from uffdsim.runner import finish
    from uffdsim.scenario import loads_scenario
    from uffdsim.snapshot import step_title
    import io

    scenario = loads_scenario(source, "live.yaml")
    steps = scenario_steps(scenario)
    result = finish(scenario, "sim", BackendRun([s.record for s in steps], info={"profile": steps.machine.kernel}))
    out = io.StringIO()
    print_table(result, scenario, out)
    trails = [(s, str(s.trail)) for s in steps if str(s.trail)]
    if trails:
        print("\ntrails (the kernel functions each step went through):", file=out)
        for s, text in trails:
            print(f"  {s.step.i:>3} {s.step.op}: {text}", file=out)
    last = steps[-1]
    svg = svgmod.address_space_svg(last.after, title=f"{scenario.name}: after {step_title(last.step)}",
                                   changes=diff(last.before, last.after))
    return {"ok": result.status != "failed", "text": out.getvalue(), "svg": svg}


HUNG = """name: t-hang
steps:
  - mmap: {name: dst, pages: 2}
  - uffd: {}
  - register: {at: dst, pages: 2}
  - fork: {child: c}
  - write: {at: dst, pages: 1, value: 1}
  - observe: {at: dst, pages: 1}
"""


@pytest.mark.parametrize("name", ["move-after-fork", "thp-whole-pmd-move", "swap-entry-moves-without-swapin",
                                  "ksm-merged-ebusy", "pin-ebusy-until-unpin", HUNG])
def test_drawing_only_the_last_step_gives_the_same_output(name: str) -> None:
    source = name if "\n" in name else (corpus_dir() / f"{name}.yaml").read_text()
    new = run_cell("yaml", source)
    assert new == _old_run_yaml(source)
    if name is HUNG:
        assert "4: write" in new["svg"] and "HUNG" in new["text"]      # the step it hung in is drawn


def _big_scenario(forks: int = 24, pages: int = 256, moves: int = 160) -> str:
    """A scenario of about 7.5 KB that keeps many processes and pages mapped for hundreds of steps."""
    steps = [f"  - mmap: {{name: src, pages: {pages}}}", f"  - mmap: {{name: dst, pages: {pages}}}",
             f"  - write: {{at: src, pages: {pages}, value: 0x41}}"]
    steps += [f"  - fork: {{child: c{i}}}" for i in range(forks)]
    steps += ["  - move: {dst: dst, src: src, pages: 1}"] * moves
    return "name: big\nsteps:\n" + "\n".join(steps) + "\n"


def test_a_scenario_cell_snapshots_only_the_step_it_draws(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = livemod.snapshot
    monkeypatch.setattr(livemod, "snapshot", lambda *a, **k: calls.append(1) or real(*a, **k))
    source = _big_scenario()
    assert 6_000 <= len(source) <= 9_000
    res = run_cell("yaml", source)
    assert res["svg"] and "error" not in res["text"].splitlines()[0]
    assert len(calls) == 2          # before and after the last step; before: 2 per step (374 here)


def test_a_big_scenario_cell_stays_small_in_memory() -> None:
    import tracemalloc
    tracemalloc.start()
    try:
        run_cell("yaml", _big_scenario(forks=8, pages=128, moves=100))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 40 << 20, f"peak {peak >> 20} MiB"     # before: snapshots of every step kept


def test_the_picture_says_in_words_what_it_shows() -> None:
    res = run_cell("yaml", (corpus_dir() / "move-after-fork.yaml").read_text())
    label = re.search(r'<svg [^>]*role="img"[^>]*aria-label="([^"]+)"', res["svg"]).group(1)
    last = len(load_scenario(str(corpus_dir() / "move-after-fork.yaml")).steps) - 1
    assert label.startswith(f"move-after-fork: after {last}: observe")      # the last step is drawn
    assert "src+0 empty" in label and "dst+0 maps frame pfn 0x1000, exclusive, read-write" in label
    assert "process c (exited)" in label and "<title>" in res["svg"]
    text = (corpus_dir() / "move-after-fork.yaml").read_text()
    parts = text.split("\n  - ")
    last_move = max(i for i, part in enumerate(parts) if part.startswith("move:"))
    moved = run_cell("yaml", "\n  - ".join(parts[:last_move + 1]) + "\n")    # ends with the move that works
    assert "Changed by this step: main:dst+0: unmapped -> present 0x42" in moved["svg"] or \
        "Changed by this step: main:" in moved["svg"]


# -- the SVG picture is the PNG's picture -------------------------------------------------------

@pytest.mark.parametrize("name", ["move-after-fork", "thp-whole-pmd-move", "swap-entry-moves-without-swapin",
                                  "pin-ebusy-until-unpin", "ksm-merged-ebusy"])
def test_svg_and_matplotlib_draw_the_same_boxes_labels_and_colours(name: str) -> None:
    pytest.importorskip("matplotlib")
    from matplotlib.colors import to_hex

    from uffdsim.viz.space import draw_address_space, gids as png_gids

    last = scenario_steps(load_scenario(corpus_dir() / f"{name}.yaml"))[-1]
    changes = diff(last.before, last.after)
    fig = draw_address_space(last.after, title="t", changes=changes)
    svg = svgmod.address_space_svg(last.after, title="t", changes=changes)
    wanted = ("vma:", "entry:", "frame:", "swap:", "arrow:", "highlight:")
    assert [g for g in png_gids(fig) if g.startswith(wanted)] == [g for g in svgmod.gids(svg) if g.startswith(wanted)]
    png_texts = sorted(t.get_text() for ax in fig.axes for t in ax.texts if t.get_text())
    svg_texts = svgmod.texts(svg)
    assert set(png_texts) <= set(svg_texts), set(png_texts) - set(svg_texts)
    for ax in fig.axes:                              # every folio box has the same fill colour
        for patch in ax.patches:
            gid = patch.get_gid() or ""
            if gid.startswith("frame:"):
                m = re.search(rf'<rect [^>]*fill="([^"]+)"[^>]*data-gid="{re.escape(gid)}"', svg)
                assert m, gid
                assert to_hex(patch.get_facecolor()).lower() == m.group(1).lower()
                assert m.group(1) in FOLIO_COLOURS.values() or m.group(1) == "white"


# -- in the browser ------------------------------------------------------------------------------

def _site_and_chromium() -> str:
    if not (SITE / "_static" / "pyodide" / "pyodide.mjs").is_file():
        pytest.skip("_build/html has no vendored Pyodide: build the book first (`make book`)")
    from test_book_pages import _chromium
    return _chromium()


def test_every_chapter_has_a_live_cell() -> None:
    if not SITE.is_dir():
        pytest.skip("_build/html is missing: build the book first (`make book`)")
    pages = dict(live_check.live_pages(SITE))
    missing = [c for c in CHAPTERS if not pages.get(f"{c}.html")]
    assert not missing, f"chapters without a live cell: {missing}"
    for c in CHAPTERS:                  # each cell says how long it may run and how to stop it
        html = (SITE / f"{c}.html").read_text()
        assert f'data-time-limit="{livemod.TIME_LIMIT_S}"' in html and 'class="uffd-live-stop"' in html, c
        assert f"A run stops after {livemod.TIME_LIMIT_S} s" in html and "Escape stops" in html, c


def test_every_live_cell_gives_the_native_output_in_chromium(capsys: pytest.CaptureFixture[str]) -> None:
    chromium = _site_and_chromium()
    res = live_check.check_site(SITE, chromium, timeout=180)
    with capsys.disabled():
        print(f"\nlive cells: {res['cells']} on {len(res['pages'])} pages, {res['identical']} identical, "
              f"{res['different']} different; {len(res['failed_requests'])} failed requests; "
              f"{res['violations']} accessibility violations after the runs")
    bad = [(p["page"], c["id"], c["differs"], str(c["browser_text"])[:300]) for p in res["pages"]
           for c in p["cells"] if c["differs"]]
    assert res["cells"] >= len(CHAPTERS) and not bad, bad
    assert res["failed_requests"] == []
    if (live_check._dom_check().TEST_ASSETS / "axe.min.js").is_file():
        unchecked = [p["page"] for p in res["pages"] if p.get("violations") is None]
        found = [(p["page"], v["id"], v["nodes"][:3]) for p in res["pages"] for v in p.get("violations") or []]
        assert not unchecked and not found, found or unchecked


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium (DevTools over a pipe) and the built site served on 127.0.0.1."""
    chromium = _site_and_chromium()
    server = live_check.serve(SITE)
    with live_check.Browser(chromium) as b:
        yield b, server
    server.close()


def _page(browser, path: str, query: str = ""):
    b, server = browser
    return live_check.LivePage(b.new_page(), server, path, query)


def _wait_state(page, i: int, states: tuple[str, ...], timeout: float) -> float:
    """Wait until cell ``i`` is in one of ``states``; the seconds it took."""
    return page.tab.eval(f"""(async () => {{ const c = document.querySelectorAll('.uffd-live')[{i}];
        const t0 = performance.now();
        while (!{json.dumps(list(states))}.includes(c.dataset.state)) {{
          if (performance.now() - t0 > {timeout * 1000}) throw new Error('cell state ' + c.dataset.state);
          await new Promise((r) => setTimeout(r, 10)); }}
        return (performance.now() - t0) / 1000; }})()""", timeout=timeout + 10)


PY_PAGE = "notebooks/06-api-design.html"      # its live cell is Python


def test_an_edited_cell_with_a_mistake_shows_the_one_line_error_in_chromium(browser) -> None:
    bad = "name: broken\nsteps:\n  - mmap: {name: src, pages: -1}\n"
    page = _page(browser, "notebooks/01-why-move.html")
    page.set_source(0, bad)
    first = page.run(0)
    assert first["ok"] is False and first["text"] == json.loads(run_cell_json("yaml", bad))["text"]
    assert first["text"].startswith("error: live.yaml: step 0 (mmap)") and "Traceback" not in first["text"]


def test_the_published_page_runs_nothing_from_its_address(browser) -> None:
    """Before: ?autorun&edit=CODE replaced the first cell's source with CODE and ran it, no click."""
    for name in ("live.js", "worker.js"):
        text = (SITE / "_static" / "live" / name).read_text()
        for hook in ("location", "URLSearchParams", "autorun", "__live_report", "document.URL", "referrer",
                     "window.name", "hashchange"):
            assert hook not in text.replace("// This script reads nothing from the page's address", ""), (name, hook)
    page = _page(browser, PY_PAGE, "autorun=1&edit=" + quote("import js\nprint('hijacked')\n") + "#autorun")
    original = json.loads(page.tab.eval("JSON.stringify(document.querySelector('.uffd-live-src').defaultValue)"))
    page.tab.eval("new Promise((r) => setTimeout(r, 4000))", timeout=20)
    state = page.tab.eval("""(() => { const c = document.querySelector('.uffd-live');
        return {state: c.dataset.state, src: c.querySelector('.uffd-live-src').value,
                out: c.querySelector('.uffd-live-out').textContent,
                loaded: performance.getEntriesByType('resource').filter((e) => /pyodide|worker/.test(e.name)).length};
        })()""")
    assert state == {"state": "idle", "src": original, "out": "", "loaded": 0}, state


def test_a_runaway_cell_is_stopped_and_the_page_stays_usable(browser, capsys: pytest.CaptureFixture[str]) -> None:
    page = _page(browser, PY_PAGE)
    cell = page.cell(0)
    page.set_source(0, "while True:\n    pass\n")
    page.tab.click(f"{cell} .uffd-live-run")                        # a real mouse click
    _wait_state(page, 0, ("running",), 120)                          # Pyodide loaded, the loop started
    page.tab.eval("new Promise((r) => setTimeout(r, 1000))")
    # the page answers while Python loops: a click on Reset puts the book's text back at once
    t0 = page.tab.eval("performance.now()")
    page.tab.click(f"{cell} .uffd-live-reset")
    reset_ms = page.tab.eval(f"""(async () => {{ const s = document.querySelector('{cell} .uffd-live-src');
        while (s.value !== s.defaultValue) await new Promise((r) => setTimeout(r, 5));
        return performance.now() - {t0}; }})()""")
    assert reset_ms < 1000 and page.tab.eval(f"document.querySelector('{cell}').dataset.state") == "running"
    t0 = page.tab.eval("performance.now()")
    page.tab.click(f"{cell} .uffd-live-stop")                       # Stop ends it
    _wait_state(page, 0, ("stopped",), 5)
    stop_s = (page.tab.eval("performance.now()") - t0) / 1000
    text = page.tab.eval(f"document.querySelector('{cell} .uffd-live-out').textContent")
    assert text.startswith("error: stopped by you after") and stop_s < 1.0, (text, stop_s)
    # left alone, the loop is stopped by the time limit (10 s), the page ticking all along
    page.tab.eval("window.__beats = 0; setInterval(() => { window.__beats += 1; }, 100); 1")
    page.set_source(0, "while True:\n    pass\n")
    res = page.run(0, timeout=120)
    beats = page.tab.eval("window.__beats")
    assert res["state"] == "stopped" and res["text"].startswith(f"error: stopped after {livemod.TIME_LIMIT_S} s")
    assert livemod.TIME_LIMIT_S * 1000 <= res["ms"] < livemod.TIME_LIMIT_S * 1000 + 1500, res["ms"]
    assert beats >= 0.8 * res["total_ms"] / 100, (beats, res["total_ms"])
    # and the next Run gets a new runtime
    page.set_source(0, "print(6 * 7)\n")
    again = page.run(0)
    assert again["ok"] is True and again["text"] == "42\n"
    with capsys.disabled():
        print(f"\nlive sandbox: reset while looping answered in {reset_ms:.0f} ms; Stop took {stop_s:.2f} s; "
              f"the time limit stopped the loop after {res['ms'] / 1000:.2f} s with {beats} page ticks of 100 ms")


def test_output_is_capped_in_the_browser_as_natively(browser) -> None:
    page = _page(browser, PY_PAGE)
    src = "print('x' * 5_000_000)\nprint('and more')\n"
    page.set_source(0, src)
    res = page.run(0)
    assert res["text"] == json.loads(run_cell_json("python", src))["text"]
    dropped = len("x" * 5_000_000 + "\nand more\n") - MAX_OUTPUT
    assert res["text"].endswith(f"... output truncated: {MAX_OUTPUT:,} characters shown, {dropped:,} more not shown\n")


def test_no_state_survives_from_one_run_to_the_next_in_the_browser(browser) -> None:
    page = _page(browser, PY_PAGE)
    page.set_source(0, "import builtins, uffdsim.scenario, uffdsim.live\nbuiltins.leak = 1\n"
                       "uffdsim.scenario.MAX_STEPS = 3\nuffdsim.live.MAX_SOURCE = 10\nprint('changed')\n")
    assert page.run(0)["text"] == "changed\n"
    probe = ("import builtins, uffdsim.scenario, uffdsim.live\n"
             "print(uffdsim.scenario.MAX_STEPS, uffdsim.live.MAX_SOURCE, hasattr(builtins, 'leak'))\n")
    page.set_source(0, probe)
    assert page.run(0)["text"] == f"{MAX_STEPS} {MAX_SOURCE} False\n"
    # a scenario after it (the same page's worker) runs with the real limits, twice alike
    src = (corpus_dir() / "move-after-fork.yaml").read_text()
    page.tab.eval("document.querySelector('.uffd-live').dataset.kind = 'yaml'")
    page.set_source(0, src)
    ref = live_check.native("yaml", src)
    for _ in range(2):
        got = page.run(0)
        assert (got["text"], got["ok"], got["svg_sha256"]) == (ref["text"], ref["ok"], ref["svg_sha256"])


def test_a_crashed_runtime_is_replaced_on_the_next_run(browser) -> None:
    """Before: a runtime that died broke every later Run until the page was reloaded."""
    page = _page(browser, PY_PAGE)
    page.set_source(0, "import sys\nsys.setrecursionlimit(10**6)\ndef f(n):\n    return f(n + 1)\nf(0)\n")
    res = page.run(0, timeout=120)          # overflows the WebAssembly stack (Pyodide dies) or Python's own
    assert res["ok"] is False and res["text"].startswith(("error: the Python runtime failed (",
                                                          "error: RecursionError")), res
    page.set_source(0, "print(6 * 7)\n")
    assert page.run(0)["text"] == "42\n"
    page.set_source(0, "chunks = []\nwhile True:\n    chunks.append(bytearray(64 << 20))\n")
    res = page.run(0, timeout=120)                  # a memory bomb: WebAssembly's memory runs out
    assert res["ok"] is False and res["text"].startswith("error: "), res
    page.set_source(0, "print(6 * 7)\n")
    assert page.run(0)["text"] == "42\n"
    page.set_source(0, "import js\njs.close()\n")   # the worker ends itself once this run answered
    page.run(0)
    page.set_source(0, "print(6 * 7)\n")
    res = page.run(0)
    assert res["text"] == "42\n" and res["state"] == "done", res


def test_a_live_cell_works_from_the_keyboard_and_names_its_parts(browser) -> None:
    page = _page(browser, "notebooks/01-why-move.html")
    cell = page.cell(0)
    tab = page.tab
    tab.eval(f"document.querySelector('{cell} .uffd-live-src').focus()")
    tab.key("Enter", "Enter", 13, shift=True)                       # Shift+Enter runs
    _wait_state(page, 0, ("done",), 120)
    assert tab.eval(f"document.querySelector('{cell}').dataset.ok") == "true"
    order = []
    for _ in range(3):                                               # Tab walks the cell's controls
        tab.key("Tab", "Tab", 9)
        order.append(tab.eval("document.activeElement.className + '|' + "
                              "getComputedStyle(document.activeElement).outlineStyle + '|' + "
                              "getComputedStyle(document.activeElement).outlineWidth"))
    assert [o.split("|")[0] for o in order] == ["uffd-live-run", "uffd-live-stop", "uffd-live-reset"]
    assert all(o.split("|")[1] == "solid" and float(o.split("|")[2].rstrip("px")) >= 2 for o in order), order
    for _ in range(3):                                               # and out of it: no keyboard trap
        tab.key("Tab", "Tab", 9)
    assert tab.eval(f"document.querySelector('{cell}').contains(document.activeElement)") is False
    # Escape stops a running cell
    tab.eval(f"document.querySelector('{cell}').dataset.kind = 'python'")
    page.set_source(0, "while True:\n    pass\n")
    tab.eval(f"document.querySelector('{cell} .uffd-live-src').focus()")
    tab.key("Enter", "Enter", 13, shift=True)
    _wait_state(page, 0, ("running",), 120)
    tab.key("Escape", "Escape", 27)
    assert _wait_state(page, 0, ("stopped",), 5) < 1.0
    # every control and the picture have a name a screen reader reads; the output is a live region
    doc = tab.send("DOM.getDocument", {"depth": 0})["root"]["nodeId"]
    page.set_source(0, "from uffdsim import Machine\nmachine = Machine()\np = machine.spawn('m')\n"
                       "a = p.mmap(1)\np.write(a, 4096, 0x41)\n")
    page.run(0)
    names = {}
    for sel in ("textarea", ".uffd-live-run", ".uffd-live-stop", ".uffd-live-reset", "svg"):
        node = tab.send("DOM.querySelector", {"nodeId": doc, "selector": f"{cell} {sel}"})["nodeId"]
        ax = tab.send("Accessibility.getPartialAXTree", {"nodeId": node, "fetchRelatives": False})["nodes"][0]
        names[sel] = (ax["role"]["value"], ax.get("name", {}).get("value", ""))
    assert names[".uffd-live-run"] == ("button", "Run") and names[".uffd-live-stop"] == ("button", "Stop")
    assert names[".uffd-live-reset"] == ("button", "Reset") and names["textarea"][1].endswith("editable scenario (YAML) source")
    assert names["svg"][0] == "image" and "m: " in names["svg"][1] and "maps frame" in names["svg"][1], names["svg"]
    assert tab.eval(f"document.querySelector('{cell} .uffd-live-result').getAttribute('aria-live')") == "polite"
    # an output too wide for the box is reached with Tab at once (to scroll it from the keyboard)
    page.set_source(0, "print('x' * 2000)\n")
    page.run(0)
    assert tab.eval(f"document.querySelector('{cell} .uffd-live-out').tabIndex") == 0


CONTRAST_JS = """(() => {
  const lum = (c) => { const v = c.match(/[\\d.]+/g).slice(0, 3).map(Number).map((x) => x / 255)
    .map((x) => x <= 0.03928 ? x / 12.92 : Math.pow((x + 0.055) / 1.055, 2.4));
    return 0.2126 * v[0] + 0.7152 * v[1] + 0.0722 * v[2]; };
  const bg = (e) => { for (; e; e = e.parentElement) { const b = getComputedStyle(e).backgroundColor;
    const a = b.match(/[\\d.]+/g); if (a && (a.length < 4 || Number(a[3]) > 0)) return b; } return 'rgb(255,255,255)'; };
  const out = [];
  for (const e of document.querySelectorAll('.uffd-live *')) {
    if (!e.childNodes.length || ![...e.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim())) continue;
    if (e.closest('svg') || e.hidden || e.closest('[hidden]')) continue;
    const a = lum(getComputedStyle(e).color), b = lum(bg(e));
    out.push([e.className, (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05)]);
  }
  return out; })()"""


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_live_cell_texts_meet_aa_contrast(browser, theme: str) -> None:
    page = _page(browser, "notebooks/05-errors.html")
    page.tab.eval(f"document.documentElement.dataset.theme = '{theme}'; 1")
    page.set_source(0, "name: broken\nsteps:\n  - mmap: {name: src, pages: -1}\n")
    page.run(0)                                                     # the error colour is shown too
    page.tab.eval("document.querySelector('.uffd-live-stop').setAttribute('aria-disabled', 'true'); 1")
    ratios = page.tab.eval(CONTRAST_JS)
    assert {c for c, _ in ratios} >= {"uffd-live-caption", "uffd-live-run", "uffd-live-stop", "uffd-live-status",
                                      "uffd-live-out uffd-live-error"}, ratios
    low = [(c, round(r, 2)) for c, r in ratios if r < 4.5]
    assert not low, low
