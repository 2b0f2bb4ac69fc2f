"""Accessibility: figures carry a description, colours meet AA contrast, the browser check runs axe.

The browser side (axe-core on every built page, 0 violations) is ``scripts/dom_check.py``, run by
``tests/test_book_pages.py``; these tests pin the pieces it relies on.
"""
from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest
from docutils import nodes
from docutils.utils import new_document
from docutils.frontend import get_default_settings
from docutils.parsers.rst import Parser

from uffdsim.book import corpus_dir
from uffdsim.scenario import load_scenario
from uffdsim.viz import describe_figure, draw_step, draw_step_trail, set_alt, to_image
from uffdsim.viz import palette
from uffdsim.viz.concurrency import replay
from uffdsim.viz.style import new_figure, png_bytes

ROOT = Path(__file__).resolve().parent.parent


def _module(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def contrast(a: str, b: str = "#ffffff") -> float:
    """WCAG 2 contrast ratio of two sRGB colours."""
    def lum(h: str) -> float:
        c = [int(h.lstrip("#")[i:i + 2], 16) / 255 for i in (0, 2, 4)]
        c = [x / 12.92 if x <= 0.03928 else ((x + 0.055) / 1.055) ** 2.4 for x in c]
        return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2]
    hi, lo = sorted((lum(a), lum(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def test_a_step_picture_says_what_it_shows() -> None:
    sc = load_scenario(str(corpus_dir() / "move-after-fork.yaml"))
    alt = describe_figure(draw_step(sc, 6))
    assert alt.startswith("move-after-fork, step 6")
    assert "EBUSY" in alt and "shared copy-on-write" in alt
    assert "process c" in alt                       # the child is described, not only the parent
    assert len(alt) <= 1500
    moved = describe_figure(draw_step(sc, 9))
    assert "After:" in moved and "dst" in moved and moved != alt


def test_a_decision_path_and_a_timeline_are_described_from_their_data() -> None:
    sc = load_scenario(str(corpus_dir() / "move-after-fork.yaml"))
    trail = describe_figure(draw_step_trail(sc, 6))
    assert "move_pages_ptes" in trail and "EBUSY" in trail
    lost = replay("copy-dontneed", "AABBBBBBAAA")
    text = describe_figure(lost.timeline())
    assert "Lanes: A = " in text and "1. A:" in text
    assert lost.verdict().rstrip(".") in text


def test_a_plain_chart_is_described_from_its_title_axes_and_bars() -> None:
    fig = new_figure(4, 3)
    ax = fig.add_subplot()
    ax.bar([0, 1], [0.25, 0.0], label="exclusive page")
    ax.set_xticks([0, 1])
    ax.set_xticklabels(["copy", "move"])
    ax.set_ylabel("fraction lost")
    ax.set_title("Lost stores")
    ax.legend()
    alt = describe_figure(fig)
    assert "Lost stores" in alt and "y axis: fraction lost" in alt
    assert "exclusive page: copy 0.25, move 0" in alt
    assert describe_figure(set_alt(fig, "Mine.")) == "Mine."


def test_to_image_carries_the_description_as_alt_metadata() -> None:
    sc = load_scenario(str(corpus_dir() / "move-after-fork.yaml"))
    fig = draw_step(sc, 6)
    data, meta = to_image(fig)._repr_png_()
    assert meta["alt"] == describe_figure(fig)


def test_the_book_extension_gives_each_output_image_its_alt(tmp_path: Path) -> None:
    ext = _module(ROOT / "book" / "_ext" / "figure_alt.py", "figure_alt_under_test")
    png = png_bytes(new_figure(1, 1))
    digest = hashlib.sha256(png).hexdigest()
    nb = {"cells": [{"cell_type": "code", "outputs": [{"output_type": "display_data",
          "data": {"image/png": base64.b64encode(png).decode()},
          "metadata": {"image/png": {"alt": "An empty\nfigure."}}}]}]}
    (tmp_path / "page.ipynb").write_text(json.dumps(nb))
    assert ext.alt_texts(tmp_path / "page.ipynb") == {digest: "An empty figure."}
    assert ext.alt_texts(tmp_path / "missing.ipynb") == {}

    class Env:
        docname = "page"

        def doc2path(self, name: str) -> str:
            return str(tmp_path / f"{name}.ipynb")

    class App:
        srcdir = str(tmp_path)
        env = Env()

    (tmp_path / f"{digest}.png").write_bytes(png)
    doc = new_document("page", get_default_settings(Parser))
    doc += nodes.image(uri=f"{digest}.png")
    doc += nodes.image(uri="other.png")
    ext.set_figure_alt(App(), doc)
    images = list(doc.findall(nodes.image))
    assert images[0]["alt"] == "An empty figure."
    assert "alt" not in images[1]


def test_every_notebook_figure_is_shown_with_a_description() -> None:
    """Saved outputs: each PNG a chapter shows (outside widgets) has alt text in its metadata."""
    missing = []
    for nb_path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for i, cell in enumerate(json.loads(nb_path.read_text())["cells"]):
            for out in cell.get("outputs", []):
                data = out.get("data", {})
                if "image/png" in data and "application/vnd.jupyter.widget-view+json" not in data:
                    if not out.get("metadata", {}).get("image/png", {}).get("alt"):
                        missing.append(f"{nb_path.name} cell {i}")
    assert not missing, f"figures without alt text: {missing}"


def test_widget_images_carry_their_description() -> None:
    pytest.importorskip("ipywidgets")
    from uffdsim.widgets import ScenarioExplorer
    w = ScenarioExplorer()
    import ipywidgets
    images = [c for c in w.children if isinstance(c, ipywidgets.Image)]
    assert images and all(img.tooltip and " " in img.tooltip for img in images)


def test_text_colours_meet_aa_contrast() -> None:
    assert contrast(palette.TEXT_ON_ERROR) >= 4.5
    assert contrast(palette.TEXT_ON_SUCCESS) >= 4.5
    css = (ROOT / "book" / "js" / "a11y.css").read_text()
    button = re.search(r"mod-primary \{\s*background-color: (#[0-9a-fA-F]{6})", css)
    assert button and contrast(button.group(1)) >= 4.5


def test_the_browser_check_injects_axe_only_through_the_test_server(tmp_path: Path) -> None:
    import urllib.request
    dom_check = _module(ROOT / "scripts" / "dom_check.py", "dom_check_a11y")
    (tmp_path / "page.html").write_text("<html><body><p>hi</p></body></html>")
    with dom_check.serve(tmp_path, inject=dom_check.AXE_RUNNER) as base:
        page = urllib.request.urlopen(base + "page.html").read().decode()
    assert "axe.run" in page and page.index("axe.run") < page.index("</body>")
    assert "axe" not in (tmp_path / "page.html").read_text()        # the file is unchanged
    with dom_check.serve(tmp_path) as base:
        assert "axe" not in urllib.request.urlopen(base + "page.html").read().decode()
