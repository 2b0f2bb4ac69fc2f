"""Pictures of the simulator (matplotlib): address spaces, steps, decision paths, timelines, benchmarks.

Every function returns a :class:`matplotlib.figure.Figure` of a fixed size that pyplot does not
track; :func:`png_bytes` / :func:`save_png` write deterministic PNGs and :func:`to_image` wraps
one for a notebook.  Importing this package changes no global matplotlib setting.

* :func:`draw_address_space` -- a :class:`~uffdsim.snapshot.Snapshot` as page tables and frames
* :func:`draw_before_after`  -- two snapshots, what changed highlighted; :func:`draw_step` for a
  scenario step
* :func:`draw_decision_path` -- an explanation trail as a flow ending in the decision
* :func:`draw_timeline`      -- an interleaving as lanes (:func:`replay` adapts the explorer)
* :func:`draw_performance`   -- the kernel benchmark's ns/page and GiB/s by method and size
* :func:`describe_space`     -- an address-space picture in words (its alt text; no matplotlib)
* :func:`describe_figure`    -- any figure's alt text (attached by its drawer with :func:`set_alt`)
"""
from __future__ import annotations

import importlib
from typing import Any

#: public name -> the submodule that defines it; submodules (and matplotlib) load on first use,
#: so that ``python -m uffdsim`` and the other subcommands start without matplotlib
EXPORTS: dict[str, str] = {
    "draw_address_space": "space", "draw_before_after": "space", "highlighted": "space", "gids": "space",
    "draw_step": "steps", "draw_step_trail": "steps", "step_figure": "steps", "step_snapshots": "steps",
    "draw_decision_path": "decision", "trail_errno": "decision",
    "draw_timeline": "timeline", "TimelineStep": "timeline", "parse_trace": "timeline",
    "replay": "concurrency", "replay_result": "concurrency", "Replay": "concurrency",
    "state_snapshot": "concurrency",
    "draw_performance": "perf", "load_records": "perf", "describe_source": "perf",
    "png_bytes": "style", "save_png": "style", "to_image": "style",
    "describe_space": "describe", "describe_figure": "alt", "set_alt": "alt",
}
__all__ = list(EXPORTS)


def __getattr__(name: str) -> Any:
    """Load the submodule that defines ``name`` (PEP 562)."""
    if name not in EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(EXPORTS))
