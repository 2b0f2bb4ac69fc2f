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
from uffdsim.live import MAX_SOURCE, run_cell, run_cell_json
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
