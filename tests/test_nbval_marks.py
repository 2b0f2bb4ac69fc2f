"""Every notebook cell whose output comes from the live kernel or the clock is marked for nbval.

nbval_sanitize.cfg masks nothing, so a cell that prints something a run on another machine (or a
second run) would print differently must carry the ``nbval-ignore-output`` tag.  A cell counts as
live when its code calls into the running kernel or reads the clock (see :data:`LIVE`).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))

#: calls whose result depends on the running kernel, the machine or the clock
LIVE = re.compile(r"run_on_kernel\(|kernel_race\.(race|availability|run)|KernelBackend\(|"
                  r"backend\s*=\s*[\"'](kernel|both)[\"']|--backend\s+(kernel|both)|"
                  r"platform\.(release|uname|node)|os\.uname|time\.(time|perf_counter|monotonic)|"
                  r"datetime\.now|subprocess\.|capabilities\(|run_bench\(|kernel_status\(\)\s*$|"
                  r"^\s*(if|elif)\s+(not\s+)?KERNEL_OK|rss_anon_kb\(")


def live_unmarked(path: Path) -> list[str]:
    """The cells of one notebook that do something live, print something, and are not marked."""
    out = []
    for n, cell in enumerate(json.loads(path.read_text())["cells"]):
        if cell["cell_type"] != "code" or not cell.get("outputs"):
            continue
        src = "".join(cell["source"])
        marked = "nbval-ignore-output" in cell.get("metadata", {}).get("tags", []) or "NBVAL_IGNORE_OUTPUT" in src
        hit = LIVE.search(src) or re.search(LIVE.pattern, src, re.M)
        if hit and not marked:
            out.append(f"{path.name} cell {n}: {hit.group(0).strip()!r} without the nbval-ignore-output tag")
    return out


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_live_cells_are_marked(path: Path) -> None:
    assert not live_unmarked(path)


def test_the_check_can_fail(tmp_path: Path) -> None:
    nb = {"cells": [{"cell_type": "code", "metadata": {}, "source": ["res, why = run_on_kernel(sc)\n", "print(res)"],
                     "outputs": [{"output_type": "stream", "name": "stdout", "text": ["x\n"]}]}]}
    (tmp_path / "x.ipynb").write_text(json.dumps(nb))
    assert live_unmarked(tmp_path / "x.ipynb") == \
        ["x.ipynb cell 0: 'run_on_kernel(' without the nbval-ignore-output tag"]
    nb["cells"][0]["metadata"]["tags"] = ["nbval-ignore-output"]
    (tmp_path / "x.ipynb").write_text(json.dumps(nb))
    assert live_unmarked(tmp_path / "x.ipynb") == []


def test_sanitizer_masks_no_simulator_output() -> None:
    cfg = (Path(__file__).resolve().parent.parent / "nbval_sanitize.cfg").read_text()
    assert "0x[0-9a-fA-F]" not in cfg, "hex numbers (page values, frames) must be compared exactly"
