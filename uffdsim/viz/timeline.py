"""Interleaving timelines: threads as lanes, atomic steps as boxes in schedule order.

The input is a plain list of :class:`TimelineStep` (thread, short label, flags), so any trace
can be drawn; :mod:`uffdsim.viz.concurrency` turns the atomicity explorer's schedules into one.
Flags the drawing understands:

``window``  the step lies between COPY reading a source page and DONTNEED dropping it: a
            store to the source in this window is lost (the span is shaded);
``lost``    a store whose increment is lost (outlined in vermillion and hatched);
``error``   an ioctl that failed (EBUSY, ...);
``current`` the step a stepper is at (a thick outline);
``copy``, ``zap``, ``move``, ``fault``, ``cow``, ``flip``, ``wake``, ``load``, ``store``: the kind
            of step, shown as a small tag.

Time flows down the page (a row per step), so the figure stays readable in a narrow column.
Gids: ``step:N`` (1-based), ``lost:N``, ``window:K``, ``lane:THREAD``, ``current:N``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from . import style as S
from .alt import set_alt

KIND_FACE = {"copy": "#D9ECF7", "zap": "#F6D8C8", "move": "#D2EBDD", "fault": "#EEEEEE",
             "flip": "#FFF7CC", "wake": "#EEEEEE", "cow": "#F9E7C2", "error": "#F6D8C8"}


@dataclass(frozen=True)
class TimelineStep:
    """One atomic step of one thread."""

    thread: str
    label: str
    flags: frozenset[str] = field(default_factory=frozenset)
    detail: str = ""          #: the full text (for captions and tooltips)


def windows(steps: Sequence[TimelineStep]) -> list[tuple[int, int]]:
    """The runs of consecutive ``window`` steps, as (first, last) 0-based indices."""
    out: list[tuple[int, int]] = []
    start = None
    for i, s in enumerate(steps):
        if "window" in s.flags and start is None:
            start = i
        if "window" not in s.flags and start is not None:
            out.append((start, i - 1))
            start = None
    if start is not None:
        out.append((start, len(steps) - 1))
    return out


def draw_timeline(steps: Sequence[TimelineStep], title: str | None = None,
                  lanes: Iterable[str] | None = None, verdict: str | None = None,
                  lane_names: dict[str, str] | None = None) -> Figure:
    """The schedule as a lane diagram, time flowing down: a column per thread, a row per step.

    ``verdict`` is printed under it (e.g. ``LOST 1 increment``).
    """
    order = list(lanes) if lanes is not None else []
    for s in steps:
        if s.thread not in order:
            order.append(s.thread)
    n = max(len(steps), 1)
    names = lane_names or {}
    top_in, row_in, bottom_in = 1.05, 0.36, 0.45 + (0.35 if verdict else 0)
    height = min(30.0, top_in + row_in * n + bottom_in)
    width = 8.0
    with S.style():
        fig = S.new_figure(width, height)
        ax = fig.add_axes((0.55 / width, bottom_in / height, 1 - 2.05 / width, 1 - (top_in + bottom_in) / height))
        ax.set_xlim(-0.02, len(order) + 0.02)
        ax.set_ylim(n + 0.5, 0.5)
        fig.suptitle(title or "Interleaving timeline", fontweight="bold")
        ax.set_yticks(range(1, n + 1))
        ax.set_ylabel("schedule order (one atomic step per row)")
        ax.xaxis.set_ticks_position("top")
        ax.set_xticks([k + 0.5 for k in range(len(order))])
        ax.set_xticklabels([names.get(t, f"thread {t}") for t in order], fontweight="bold")
        ax.tick_params(axis="both", length=0)
        for side in ("bottom", "right", "top"):
            ax.spines[side].set_visible(False)
        for k, t in enumerate(order):
            lane = Rectangle((k + 0.02, 0.5), 0.96, n, facecolor=S.LANE_COLOURS[k % 4], alpha=0.08,
                             edgecolor="none", zorder=0)
            lane.set_gid(f"lane:{t}")
            ax.add_patch(lane)
        for k, (a, b) in enumerate(windows(steps)):
            span = ax.axhspan(a + 1 - 0.5, b + 1 + 0.5, facecolor=S.YELLOW, alpha=0.35, zorder=0.5,
                              edgecolor=S.ORANGE, linewidth=1.0, linestyle="--")
            span.set_gid(f"window:{k}")
            lost_rows = [i for i in range(a + 1, b + 2) if "lost" in steps[i - 1].flags]
            at_top = not any(r <= a + 3 for r in lost_rows)      # keep clear of the LOST labels
            ax.text(len(order) + 0.06, a + 0.55 if at_top else b + 1.45,
                    "window: COPY has\nread the page,\nDONTNEED has not\ndropped it yet",
                    ha="left", va="top" if at_top else "bottom", fontsize=7.5, color="#8a5a00", clip_on=False)
        for i, s in enumerate(steps, 1):
            col = order.index(s.thread)
            kind = next((f for f in ("error", "copy", "zap", "move", "fault", "cow", "flip", "wake")
                         if f in s.flags), "")
            lost = "lost" in s.flags
            box = Rectangle((col + 0.06, i - 0.4), 0.88, 0.8, zorder=2,
                            facecolor=KIND_FACE.get(kind, "white"),
                            edgecolor=S.HIGHLIGHT if lost or "error" in s.flags else "#333333",
                            linewidth=2.2 if lost else 0.8, hatch="///" if lost else None)
            box.set_gid(f"step:{i}")
            ax.add_patch(box)
            ax.text(col + 0.5, i, s.label, ha="center", va="center", fontsize=8, zorder=3,
                    bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.6, "alpha": 0.9} if lost else None)
            if lost:
                mark = Rectangle((col + 0.06, i - 0.4), 0.88, 0.8, facecolor="none", edgecolor=S.HIGHLIGHT,
                                 linewidth=2.2, zorder=4)
                mark.set_gid(f"lost:{i}")
                ax.add_patch(mark)
                ax.text(len(order) + 0.06, i, "◀ LOST: stored into\na frame then dropped",
                        ha="left", va="center", fontsize=7.5, color=S.HIGHLIGHT, fontweight="bold",
                        clip_on=False, zorder=5)
            if "current" in s.flags:
                cur = Rectangle((col + 0.03, i - 0.46), 0.94, 0.92, facecolor="none", edgecolor=S.BLACK,
                                linewidth=2.6, zorder=5)
                cur.set_gid(f"current:{i}")
                ax.add_patch(cur)
        if verdict:
            lost_any = any("lost" in s.flags for s in steps)
            fig.text(0.5, 0.12 / height, S.wrap(verdict, 95), ha="center", va="bottom", fontsize=9,
                     fontweight="bold", color=S.HIGHLIGHT if lost_any or "LOST" in verdict else S.SUCCESS)
    return set_alt(fig, describe_timeline(steps, title or "Interleaving timeline", order, names, verdict))


def describe_timeline(steps: Sequence[TimelineStep], title: str, lanes: Sequence[str],
                      names: dict[str, str], verdict: str | None = None, limit: int = 40) -> str:
    """The timeline in words: the lanes, then each step in schedule order with its thread."""
    lanes_text = ", ".join(f"{t} = {names[t]}" if t in names else f"thread {t}" for t in lanes)
    words = [f"{title.rstrip('.')}.", f"Lanes: {lanes_text}; {len(steps)} steps in schedule order."]
    for i, s in enumerate(steps[:limit], 1):
        marks = [m for m in ("lost", "error", "window", "current") if m in s.flags]
        words.append(f"{i}. {s.thread}: {s.label.replace(chr(10), ' ')}"
                     + (f" ({', '.join(marks)})" if marks else "") + ".")
    if len(steps) > limit:
        words.append(f"{len(steps) - limit} more steps.")
    if verdict:
        words.append(verdict.rstrip(".") + ".")
    return " ".join(words)


def parse_trace(lines: Iterable[str]) -> list[TimelineStep]:
    """Steps from the explorer's text trace (``  5. B  store src[0] (f0) = 1; ...``); other lines skipped.

    Only the thread and the text are known from text: no flags.  Prefer
    :func:`uffdsim.viz.concurrency.timeline`, which replays the schedule and sets them.
    """
    out = []
    for line in lines:
        head, dot, rest = line.strip().partition(". ")
        if not dot or not head.isdigit():
            continue
        thread, _, text = rest.strip().partition(" ")
        out.append(TimelineStep(thread, text.strip()[:40], frozenset(), text.strip()))
    return out
