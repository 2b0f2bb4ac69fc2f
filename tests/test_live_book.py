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
from uffdsim.scenario import load_scenario
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
    model = [p for p in (ROOT / "uffdsim").rglob("*.py") if "kernel" not in p.parts and p.name != "kernel_race.py"]
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
    assert (scenmod.MAX_STEPS, livemod.MAX_SOURCE) == (1000, 20_000)
    assert run_cell("yaml", "#" * (MAX_SOURCE + 1))["ok"] is False          # the limit still holds
    assert "leak" not in run_cell("python", "print(sorted(k for k in globals() if not k.startswith('__')))")["text"]


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
    assert label.startswith("move-after-fork: after 10: observe")
    assert "src+0 empty" in label and "dst+0 maps frame pfn 0x1000, exclusive, read-write" in label
    assert "process c (exited)" in label and "<title>" in res["svg"]
    moved = run_cell("yaml", (corpus_dir() / "move-after-fork.yaml").read_text().rsplit("  - observe", 1)[0])
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


def test_every_live_cell_gives_the_native_output_in_chromium(capsys: pytest.CaptureFixture[str]) -> None:
    chromium = _site_and_chromium()
    res = live_check.check_site(SITE, chromium, timeout=180)
    with capsys.disabled():
        print(f"\nlive cells: {res['cells']} on {len(res['pages'])} pages, {res['identical']} identical, "
              f"{res['different']} different; {len(res['failed_requests'])} failed requests")
    bad = [(p["page"], c["id"], c["differs"], str(c["browser_text"])[:300]) for p in res["pages"]
           for c in p["cells"] if c["differs"]]
    assert res["cells"] >= len(CHAPTERS) and not bad, bad
    assert res["failed_requests"] == []


def test_an_edited_cell_with_a_mistake_shows_the_one_line_error_in_chromium() -> None:
    chromium = _site_and_chromium()
    bad = "name: broken\nsteps:\n  - mmap: {name: src, pages: -1}\n"
    server = live_check.serve(SITE)
    try:
        report = live_check.open_page(chromium, server, "notebooks/01-why-move.html",
                                      "autorun=1&edit=" + quote(bad), timeout=180)
    finally:
        server.close()
    first = report["cells"][0]
    assert first["ok"] is False and first["text"] == json.loads(run_cell_json("yaml", bad))["text"]
    assert first["text"].startswith("error: live.yaml: step 0 (mmap)") and "Traceback" not in first["text"]
