"""The decision path of one operation: the chain of kernel functions from its explanation trail.

The simulator records, for every operation, the functions it went through (in the order they
first ran, with repeat counts) and the decision that ended it (``Trail.decision``, e.g. ``folio
not anon-exclusive -> EBUSY``).  This draws that chain top to bottom as a flow, marks the function
where it ended, and ends in the decision: red (vermillion) for an errno, green for success.
Intermediate decisions (``Trail.notes``) are listed beside the flow.

Gids: ``trail:func:NAME``, ``trail:ended:NAME`` (the outline on the function where it ended),
``trail:decision``, ``trail:outcome``.
"""
from __future__ import annotations

import re
from typing import Any, Mapping

from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from ..trail import Trail
from . import style as S
from .alt import set_alt

ERRNO_RE = re.compile(r"->\s*(E[A-Z0-9]+)\s*$")


def trail_errno(trail: Trail) -> str | None:
    """The errno named at the end of the trail's decision (``... -> EBUSY``), if any."""
    m = ERRNO_RE.search(trail.decision or "")
    return m.group(1) if m else None


def as_trail(trail: Trail | Mapping[str, Any]) -> Trail:
    """A Trail from a Trail or from ``Trail.to_dict()``'s output."""
    if isinstance(trail, Trail):
        return trail
    path = [str(f) for f, _ in trail.get("path", [])]
    counts = [int(n) for _, n in trail.get("path", [])]
    return Trail(op=str(trail.get("op", "")), path=path, counts=counts,
                 decision=str(trail.get("decision", "")), notes=list(trail.get("notes", [])))


def draw_decision_path(trail: Trail | Mapping[str, Any], title: str | None = None,
                       outcome: str | None = None, errno: str | None = None) -> Figure:
    """The trail as a flow of function boxes ending in the decision.

    ``outcome`` (e.g. ``move -> EAGAIN (move = 4096)``) adds a last box with what the caller saw;
    ``errno`` is that outcome's errno (``None`` for success); without it the decision's own errno is used.
    """
    t = as_trail(trail)
    err = errno if outcome is not None else trail_errno(t)
    failed = err is not None
    colour = S.TEXT_ON_ERROR if failed else S.TEXT_ON_SUCCESS     # white text on it: AA contrast
    funcs = list(zip(t.path, t.counts))
    n = len(funcs) + 2 + (outcome is not None)
    height = min(16.0, max(3.2, 1.2 + 0.62 * n))
    with S.style():
        fig = S.new_figure(8.0, height)
        ax = fig.add_axes((0.02, 0.02, 0.96, 1 - 0.75 / height))
        ax.set_xlim(0, 100)
        ax.set_ylim(n, -0.2)
        ax.set_axis_off()
        fig.suptitle(title or f"Decision path of {t.op or 'the last operation'}", fontweight="bold")
        cx, w = 27.0, 44.0
        y = 0.3

        def box(y: float, text: str, gid: str, face: str = "white", edge: str = "#333333",
                lw: float = 0.9, colour: str = S.BLACK, mono: bool = False, bold: bool = False) -> None:
            lines = text.count("\n") + 1
            h = 0.42 + 0.2 * (lines - 1)
            p = FancyBboxPatch((cx - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.02,rounding_size=0.15",
                               facecolor=face, edgecolor=edge, linewidth=lw, zorder=2,
                               mutation_aspect=1 / 10)
            p.set_gid(gid)
            ax.add_patch(p)
            ax.text(cx, y, text, ha="center", va="center", fontsize=8, color=colour, zorder=3,
                    family="DejaVu Sans Mono" if mono else "DejaVu Sans",
                    fontweight="bold" if bold else "normal")

        def arrow(y0: float, y1: float) -> None:
            ax.add_patch(FancyArrowPatch((cx, y0 + 0.24), (cx, y1 - 0.24), arrowstyle="-|>",
                                         mutation_scale=9, color="#444444", linewidth=0.9, zorder=1))

        box(y, t.op or "operation", "trail:op", face=S.LIGHT, bold=True)
        for k, (func, count) in enumerate(funcs):
            arrow(y, y + 1)
            y += 1
            last = k == len(funcs) - 1
            label = func + (f"  ×{count}" if count > 1 else "")
            box(y, label, f"trail:func:{func}", mono=True, edge=colour if last else "#333333",
                lw=2.2 if last else 0.9)
            if last:
                ax.patches[-1].set_gid(f"trail:ended:{func}")
                ax.text(cx + w / 2 + 1, y, "ended here", fontsize=7.5, color=colour, va="center",
                        fontweight="bold")
        arrow(y, y + 1)
        y += 1
        decision = t.decision or ("no decision recorded: the operation ran to the end" if not failed else "")
        box(y, S.wrap(decision, 62), "trail:decision", face=colour, edge=colour, colour="white", bold=True)
        if outcome is not None:
            arrow(y, y + 1)
            y += 1
            box(y, outcome, "trail:outcome", face="white", edge=colour, lw=2.0, colour=colour, bold=True)
        if t.notes:
            text = "\n".join("• " + S.wrap(note, 40).replace("\n", "\n   ") for note in t.notes)
            ax.text(cx + w / 2 + 12, 0.1, "on the way:\n" + text, fontsize=7.5, va="top", ha="left",
                    color="#333333", bbox={"facecolor": S.LIGHT, "edgecolor": "#999999", "pad": 4})
    heading = title or f"Decision path of {t.op or 'the last operation'}"
    words = [f"{heading.rstrip('.')}.",
             (f"{t.op or 'The operation'} calls " + " then ".join(f for f, _ in funcs) + ".") if funcs else "",
             f"Decision: {decision}." if decision else "", f"The caller saw: {outcome}." if outcome else "",
             ("On the way: " + "; ".join(t.notes) + ".") if t.notes else ""]
    return set_alt(fig, " ".join(w for w in words if w))
