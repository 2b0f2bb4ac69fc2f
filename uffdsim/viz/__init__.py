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
"""
from .concurrency import Replay, replay, replay_result, state_snapshot
from .decision import draw_decision_path, trail_errno
from .perf import describe_source, draw_performance, load_records
from .space import draw_address_space, draw_before_after, gids, highlighted
from .steps import draw_step, draw_step_trail, step_figure, step_snapshots
from .style import png_bytes, save_png, to_image
from .timeline import TimelineStep, draw_timeline, parse_trace

__all__ = ["draw_address_space", "draw_before_after", "draw_step", "draw_step_trail", "step_figure",
           "step_snapshots", "draw_decision_path", "trail_errno", "draw_timeline", "TimelineStep",
           "parse_trace", "replay", "replay_result", "Replay", "state_snapshot", "draw_performance",
           "load_records", "describe_source", "png_bytes", "save_png", "to_image", "highlighted", "gids"]
