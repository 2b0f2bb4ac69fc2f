"""Performance plots from the kernel benchmark's data: ns per page and GiB/s by method and size.

Input: a list of records, one per (method, size) measurement::

    {"method": "move-4k", "size_mib": 16, "ns_per_page": 212.5, "gib_per_s": 17.9}

``method`` names the way pages were moved (``move-4k``, ``copy-dontneed-2m``, ``memcpy``, ...),
``size_mib`` the size of the range in MiB, ``ns_per_page`` the time per 4 KiB page and
``gib_per_s`` the throughput; an optional ``thp`` (0..1, the share of the source backed by huge
pages) splits a method's line, so that points with different THP shares are never joined.  The shorter spellings ``size_mb`` and ``gib_s`` are accepted too.
Other keys are ignored; records missing a field are skipped.  The benchmark's JSON
(``python -m uffdsim bench kernel --json``, recorded in ``data/kernel_bench.json``) is an object
holding the list under ``results`` (or ``records``), with ``kernel``, ``cpus`` and ``date`` beside
it (see :func:`load_records` and :func:`describe_source`).  Axes switch to a log scale when the
values span more than 20x.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Mapping

from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

from . import style as S

FIELDS = ("method", "size_mb", "ns_per_page", "gib_s")
#: other spellings of the fields (the kernel benchmark writes size_mib and gib_per_s)
ALIASES = {"size_mb": ("size_mb", "size_mib"), "gib_s": ("gib_s", "gib_per_s"),
           "method": ("method",), "ns_per_page": ("ns_per_page",)}
LOG_SPAN = 20.0


def normalise(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The usable records, with the four fields typed; repeated (method, size) pairs keep the last."""
    out: dict[tuple[str, float], dict[str, Any]] = {}
    for r in records:
        if not isinstance(r, Mapping):
            continue
        got = {k: next((r[a] for a in ALIASES[k] if r.get(a) is not None), None) for k in FIELDS}
        if any(v is None for v in got.values()):
            continue
        try:
            rec = {"method": str(got["method"]), "size_mb": float(got["size_mb"]),
                   "ns_per_page": float(got["ns_per_page"]), "gib_s": float(got["gib_s"])}
        except (TypeError, ValueError):
            continue
        thp = r.get("thp")
        rec["thp"] = float(thp) if isinstance(thp, (int, float)) else None
        out[(rec["method"], rec["size_mb"])] = rec
    return list(out.values())


def _thp_groups(points: list[dict[str, Any]]) -> list[tuple[float | None, list[dict[str, Any]]]]:
    """A method's points split by THP share (rounded to 1%), most points first: only points
    with the same share are joined by a line (a 0%-THP point is another experiment)."""
    groups: dict[float | None, list[dict[str, Any]]] = {}
    for r in points:
        key = None if r.get("thp") is None else round(r["thp"], 2)
        groups.setdefault(key, []).append(r)
    return sorted(groups.items(), key=lambda kv: (-len(kv[1]), -(kv[0] or 0.0)))


def load_records(path: str | Path) -> list[dict[str, Any]]:
    """Records from a benchmark JSON file: a list, or ``{"records": [...]}`` / ``{"results": [...]}``."""
    data = json.loads(Path(path).read_text())
    return extract_records(data)


def extract_records(data: Any) -> list[dict[str, Any]]:
    if isinstance(data, Mapping):
        for key in ("records", "results", "data", "runs"):
            if isinstance(data.get(key), list):
                return normalise(data[key])
        return []
    return normalise(data if isinstance(data, list) else [])


def describe_source(path: str | Path) -> str:
    """``recorded on Linux 6.18.44, x86_64, 2 CPUs, 2026-11-27 (C helper)``: where the numbers come from."""
    data = json.loads(Path(path).read_text())
    if not isinstance(data, Mapping):
        return f"recorded in {Path(path).name}"
    parts = [f"Linux {data['kernel']}" if data.get("kernel") else "",
             str(data.get("machine") or ""),
             f"{data['cpus']} CPUs" if data.get("cpus") else "",
             str(data.get("date") or "")[:10]]
    how = f" ({data['helper']})" if data.get("helper") else ""
    return "recorded on " + ", ".join(p for p in parts if p) + how


def _family_line(method: str) -> str:
    """Solid for moves, dashed for copies, dotted for anything else (memcpy)."""
    if method.startswith("move"):
        return "-"
    if method.startswith("copy"):
        return "--"
    return ":"


def _needs_log(values: list[float]) -> bool:
    pos = [v for v in values if v > 0]
    return bool(pos) and max(pos) / min(pos) > LOG_SPAN


def _size_label(mb: float, _pos: Any = None) -> str:
    if mb >= 1024:
        return f"{mb / 1024:g} GiB"
    if mb >= 1:
        return f"{mb:g} MiB"
    return f"{mb * 1024:g} KiB"


def draw_performance(records: Iterable[Mapping[str, Any]], title: str | None = None,
                     source: str | None = None) -> Figure:
    """Two panels: ns per page and GiB/s against the range size, one line per method.

    ``source`` (e.g. ``recorded on Linux 6.18, 2 CPUs``) is printed under the title.
    """
    recs = normalise(records)
    if not recs:
        raise ValueError("no benchmark records with method, size_mb, ns_per_page and gib_s")
    methods = sorted({r["method"] for r in recs})
    sizes = sorted({r["size_mb"] for r in recs})
    with S.style():
        fig = S.new_figure(9.5, 5.6)
        axes = fig.subplots(1, 2)
        for ax, key, label in ((axes[0], "ns_per_page", "time per page (ns, lower is better)"),
                               (axes[1], "gib_s", "throughput (GiB/s, higher is better)")):
            for k, m in enumerate(methods):
                colour, marker, _ = S.SERIES[k % len(S.SERIES)]
                line = _family_line(m)
                groups = _thp_groups([r for r in recs if r["method"] == m])
                for g, (thp, group) in enumerate(groups):
                    pts = sorted((r["size_mb"], r[key]) for r in group)
                    name = m if len(groups) == 1 else f"{m} ({thp:.0%} THP)" if thp is not None else m
                    gid = f"series:{key}:{m}" if g == 0 else f"series:{key}:{m}:thp{thp}"
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], color=colour, marker=marker,
                            linestyle=line, linewidth=1.4, markersize=5, label=name, gid=gid,
                            markerfacecolor=colour if g == 0 else "none")
            if len(sizes) > 1 and sizes[-1] / sizes[0] > 4:
                ax.set_xscale("log", base=2)
                ax.xaxis.set_major_formatter(FuncFormatter(_size_label))
                ax.xaxis.set_minor_locator(NullLocator())
                ax.set_xticks(sizes)
            if _needs_log([r[key] for r in recs]):
                ax.set_yscale("log")
                ax.yaxis.set_major_locator(LogLocator(base=10))
            else:
                ax.set_ylim(bottom=0)
            ax.set_xlabel("range size")
            ax.set_ylabel(label)
            ax.grid(True, which="major", color="#DDDDDD", linewidth=0.6)
            ax.set_title("ns per page" if key == "ns_per_page" else "GiB/s", fontsize=9)
        fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=min(len(methods), 6),
                   frameon=False, title="method (solid: UFFDIO_MOVE, dashed: UFFDIO_COPY + MADV_DONTNEED)")
        fig.suptitle(title or "Moving pages: cost by method and size", fontweight="bold")
        if source:
            fig.text(0.5, 0.905, source, ha="center", fontsize=8, color="#444444")
        fig.subplots_adjust(left=0.07, right=0.98, bottom=0.22, top=0.84, wspace=0.22)
    return fig
