"""Differential fuzzing: random scenarios run on the simulator and on the kernel, divergences saved.

:func:`steps_strategy` is a Hypothesis strategy of scenario steps (plain dicts in the scenario
format): two 8-page regions, a userfaultfd with the destination registered for MISSING faults,
then a random sequence of writes, reads, forks, exits, madvise advices, mprotect, mlock, KSM
merges, pins, MOVE/COPY/ZEROPAGE with random ranges and modes, and observations.  Sequences never
touch the registered destination from user space (that would block with nobody to resolve it).

:func:`differential` runs one sequence on both backends and returns the divergences;
:func:`save_divergence` writes a (shrunk) diverging sequence as a corpus scenario whose
expectations are the kernel's results, so it fails on the simulator until the model is fixed.
Hypothesis is only needed to generate sequences, not to import this module.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import yaml

from .runner import ScenarioResult, compare, finish, get_backend
from .scenario import Scenario, parse_scenario

PAGES = 8
PROLOGUE: list[dict[str, Any]] = [
    {"mmap": {"name": "src", "pages": PAGES}},
    {"mmap": {"name": "dst", "pages": PAGES}},
    {"uffd": {"features": ["move"]}},
    {"register": {"at": "dst", "pages": PAGES, "mode": ["missing"]}},
]
EPILOGUE: list[dict[str, Any]] = [
    {"observe": {"at": "src", "pages": PAGES}},
    {"observe": {"at": "dst", "pages": PAGES}},
]
SRC_ADVICE = ("dontneed", "free", "dontfork", "dofork", "wipeonfork", "keeponfork", "mergeable",
              "unmergeable", "pageout", "guard_install", "guard_remove")


def steps_strategy(max_ops: int = 12, swap: bool = True) -> Any:
    """A Hypothesis strategy of whole step lists (prologue + random ops + epilogue)."""
    from hypothesis import strategies as st

    page = st.integers(0, PAGES - 1)
    count = st.integers(1, 4)

    def at(region: str, i: int) -> str:
        return f"{region}+{i}" if i else region

    def span(i: int, n: int) -> int:
        return max(1, min(n, PAGES - i))

    def ranged(op: str, region: str, **extra: Any) -> Any:
        return st.builds(lambda i, n, **kw: {op: {"at": at(region, i), "pages": span(i, n), **kw}},
                         page, count, **extra)

    def pair(op: str, modes: tuple[str, ...]) -> Any:
        return st.builds(lambda d, s, n, m: {op: {"dst": at("dst", d), "src": at("src", s),
                                                  "pages": min(n, PAGES - d, PAGES - s), "mode": m}},
                         page, page, count, st.lists(st.sampled_from(modes), unique=True, max_size=len(modes)))

    advices = SRC_ADVICE if swap else tuple(a for a in SRC_ADVICE if a != "pageout")
    op = st.one_of(
        ranged("write", "src", value=st.integers(0, 255)),
        ranged("read", "src"),
        st.builds(lambda i, n, a: {"madvise": {"at": at("src", i), "pages": span(i, n), "advice": a}},
                  page, count, st.sampled_from(advices)),
        ranged("madvise", "dst", advice=st.just("dontneed")),
        ranged("mprotect", "src", prot=st.sampled_from(["r", "rw"])),
        ranged("mlock", "src"),
        ranged("munlock", "src"),
        st.just({"fork": {}}),
        st.just({"exit": {}}),
        st.builds(lambda i, v: {"write": {"at": at("src", i), "pages": 1, "value": v, "proc": "child"}},
                  page, st.integers(0, 255)),
        st.just({"ksm_merge": {}}),
        ranged("pin", "src", name=st.just("buf")),
        st.just({"unpin": {"name": "buf"}}),
        pair("move", ("dontwake", "allow_src_holes")),
        pair("move", ("allow_src_holes",)),
        pair("copy", ("dontwake",)),
        ranged("zeropage", "dst"),
        ranged("observe", "src"),
    )
    return st.lists(op, min_size=1, max_size=max_ops).map(fix_up)


def fix_up(ops: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Make a random op list valid: one child at a time, child steps only while it lives, one pin."""
    out: list[dict[str, Any]] = []
    alive, forks, pinned, ref = None, 0, False, False
    for step in ops:
        (op, fields), = step.items()
        fields = dict(fields)
        if op == "fork":
            if alive:
                continue
            forks += 1
            alive = f"c{forks}"
            fields = {"child": alive}
        elif op == "exit":
            if not alive:
                continue
            fields = {"proc": alive}
            alive = None
        elif fields.get("proc") == "child":
            if not alive:
                continue
            fields["proc"] = alive
        elif op == "pin":
            if pinned:
                continue
            pinned = True
        elif op == "unpin":
            if not pinned:
                continue
            pinned = False
        elif op == "ref":
            if ref:
                continue
            ref = True
        elif op == "unref":
            if not ref:
                continue
            ref = False
        if "mode" in fields and not fields["mode"]:
            del fields["mode"]
        out.append({op: fields})
    return PROLOGUE + out + EPILOGUE


HP = 512                     #: pages in one PMD (2 MiB)
THP_PAGES = 2 * HP           #: each THP region spans two PMDs
THP_OFFSETS = (0, 1, 255, 511, 512, 513, 1023)
THP_COUNTS = (1, 16, 256, 512, 1024)


def thp_steps_strategy(max_ops: int = 10) -> Any:
    """Sequences on two 2 MiB-aligned, two-PMD regions: hugepage/nohugepage advice, writes and reads
    that fault huge pages (or the huge zero page), DONTNEED of partial and whole PMDs, moves of
    partial and whole PMD ranges (aligned or not, with or without holes allowed), ZEROPAGE,
    write-protection, registration modes, fork/exit; observations at the PMD edges."""
    from hypothesis import strategies as st

    off = st.sampled_from(THP_OFFSETS)
    cnt = st.sampled_from(THP_COUNTS)

    def at(region: str, i: int) -> str:
        return f"{region}+{i}" if i else region

    def fit(i: int, n: int) -> int:
        return max(1, min(n, THP_PAGES - i))

    def ranged(op: str, region: str, **extra: Any) -> Any:
        return st.builds(lambda i, n, **kw: {op: {"at": at(region, i), "pages": fit(i, n), **kw}}, off, cnt, **extra)

    prologue = st.builds(
        lambda advice, mode: [{"mmap": {"name": "src", "pages": THP_PAGES, "align": "2M"}},
                              {"mmap": {"name": "dst", "pages": THP_PAGES, "align": "2M"}}]
        + ([{"madvise": {"at": "src", "pages": THP_PAGES, "advice": advice}}] if advice else [])
        + [{"uffd": {"features": ["move"]}},
           {"register": {"at": "dst", "pages": THP_PAGES, "mode": mode}}],
        st.sampled_from(("hugepage", "nohugepage", None)), st.sampled_from((["missing"], ["missing", "wp"])))
    op = st.one_of(
        ranged("write", "src", value=st.integers(1, 255)),
        ranged("read", "src"),
        ranged("madvise", "src", advice=st.sampled_from(("hugepage", "nohugepage", "dontneed"))),
        ranged("madvise", "dst", advice=st.sampled_from(("dontneed", "hugepage", "nohugepage"))),
        st.builds(lambda d, s, n, m: {"move": {"dst": at("dst", d), "src": at("src", s),
                                               "pages": min(n, THP_PAGES - d, THP_PAGES - s), "mode": m}},
                  st.sampled_from((0, 1, 512)), st.sampled_from((0, 1, 512)), cnt,
                  st.lists(st.sampled_from(("allow_src_holes", "dontwake")), unique=True, max_size=2)),
        ranged("zeropage", "dst"),
        ranged("writeprotect", "dst", wp=st.booleans()),
        st.just({"fork": {}}),
        st.just({"exit": {}}),
        st.builds(lambda r, i: {"observe": {"at": at(r, i), "pages": 2 if i < THP_PAGES - 1 else 1}},
                  st.sampled_from(("src", "dst")), off),
    )
    epilogue = [{"observe": {"at": at(r, i), "pages": 2 if i < THP_PAGES - 1 else 1}}
                for r in ("src", "dst") for i in (0, 511, 1023)]
    return st.builds(lambda pro, ops: pro + fix_up(ops)[len(PROLOGUE):-len(EPILOGUE)] + epilogue,
                     prologue, st.lists(op, min_size=1, max_size=max_ops))


MTHP_PAGES = 64              #: each mTHP region: 256 KiB, room for two 128 KiB folios
MTHP_OFFSETS = (0, 1, 3, 7, 8, 15, 16, 17, 24, 31, 32, 47, 48, 63)
MTHP_COUNTS = (1, 2, 4, 8, 16, 17, 32, 64)


def mthp_steps_strategy(max_ops: int = 10, swap: bool = True) -> Any:
    """Sequences on two 2 MiB-aligned 64-page regions with one to three mTHP sizes (16 to 128 KiB)
    set to random policies: writes that fault large folios of any allowed order, references
    (vmsplice) and pins on single pages, partial and whole-folio moves at aligned and unaligned
    offsets, DONTNEED/FREE/PAGEOUT of parts, mprotect of parts, fork/exit and child writes."""
    from hypothesis import strategies as st

    off = st.sampled_from(MTHP_OFFSETS)
    cnt = st.sampled_from(MTHP_COUNTS)

    def at(region: str, i: int) -> str:
        return f"{region}+{i}" if i else region

    def fit(i: int, n: int) -> int:
        return max(1, min(n, MTHP_PAGES - i))

    def ranged(op: str, region: str, **extra: Any) -> Any:
        return st.builds(lambda i, n, **kw: {op: {"at": at(region, i), "pages": fit(i, n), **kw}}, off, cnt, **extra)

    sizes = st.lists(st.sampled_from(("16K", "32K", "64K", "128K")), min_size=1, max_size=3, unique=True)
    prologue = st.builds(
        lambda sz, pol, advice: [{"mthp": {"size": z, "enabled": p}} for z, p in zip(sz, pol)]
        + [{"mmap": {"name": "src", "pages": MTHP_PAGES, "align": "2M"}},
           {"mmap": {"name": "dst", "pages": MTHP_PAGES, "align": "2M"}}]
        + ([{"madvise": {"at": "src", "pages": MTHP_PAGES, "advice": advice}}] if advice else [])
        + [{"uffd": {"features": ["move"]}},
           {"register": {"at": "dst", "pages": MTHP_PAGES, "mode": ["missing"]}}],
        sizes, st.lists(st.sampled_from(("always", "always", "madvise", "inherit", "never")), min_size=3, max_size=3),
        st.sampled_from(("hugepage", None, None, "nohugepage")))
    advices = ("dontneed", "free", "hugepage", "nohugepage") + (("pageout",) if swap else ())
    op = st.one_of(
        ranged("write", "src", value=st.integers(1, 255)),
        ranged("write", "src", value=st.integers(1, 255)),
        ranged("read", "src"),
        ranged("madvise", "src", advice=st.sampled_from(advices)),
        ranged("mprotect", "src", prot=st.sampled_from(["r", "rw"])),
        st.builds(lambda i: {"ref": {"at": at("src", i), "pages": 1, "name": "pipe"}}, off),
        st.just({"unref": {"name": "pipe"}}),
        st.builds(lambda i: {"pin": {"at": at("src", i), "pages": 1, "name": "buf"}}, off),
        st.just({"unpin": {"name": "buf"}}),
        st.builds(lambda d, s, n, m: {"move": {"dst": at("dst", d), "src": at("src", s),
                                               "pages": min(n, MTHP_PAGES - d, MTHP_PAGES - s), "mode": m}},
                  off, off, cnt, st.lists(st.sampled_from(("allow_src_holes", "dontwake")), unique=True, max_size=2)),
        st.builds(lambda i, n: {"move": {"dst": at("dst", i), "src": at("src", i), "pages": min(n, MTHP_PAGES - i)}},
                  st.sampled_from((0, 16, 32, 48)), st.sampled_from((4, 8, 16, 32))),
        st.just({"fork": {}}),
        st.just({"exit": {}}),
        st.builds(lambda i, v: {"write": {"at": at("src", i), "pages": 1, "value": v, "proc": "child"}},
                  off, st.integers(1, 255)),
        st.builds(lambda r, i: {"observe": {"at": at(r, i), "pages": 2 if i < MTHP_PAGES - 1 else 1}},
                  st.sampled_from(("src", "dst")), off),
    )
    epilogue = [{"observe": {"at": r, "pages": MTHP_PAGES}} for r in ("src", "dst")]
    return st.builds(lambda pro, ops: pro + fix_up(ops)[len(PROLOGUE):-len(EPILOGUE)] + epilogue,
                     prologue, st.lists(op, min_size=1, max_size=max_ops))


def requirements(steps: list[dict[str, Any]]) -> list[str]:
    """The kernel capabilities a step list needs."""
    ops = {next(iter(s)) for s in steps}
    advices = {s["madvise"]["advice"] for s in steps if "madvise" in s}
    need = []
    thp = any(s.get("mmap", {}).get("align") == "2M" for s in steps) or "mthp" in ops
    for cap, present in (("thp", thp), ("fork", "fork" in ops), ("ksm", "ksm_merge" in ops), ("pin", "pin" in ops),
                         ("swap", "pageout" in advices), ("guard", "guard_install" in advices)):
        if present:
            need.append(cap)
    return need


def scenario_of(steps: list[dict[str, Any]], name: str = "fuzz") -> Scenario:
    return parse_scenario({"name": name, "about": "generated by uffdsim.fuzz",
                           "requires": requirements(steps), "steps": steps}, name)


def differential(steps: list[dict[str, Any]], kernel: Any = None
                 ) -> tuple[list[dict[str, Any]], ScenarioResult, ScenarioResult]:
    """Run the steps on both backends: (divergences, sim result, kernel result).  The simulator
    answers as ``kernel`` (a profile; default: the running kernel's)."""
    from .backends.sim import SimBackend
    from .kernels import running_profile_cached
    scenario = scenario_of(steps)
    sim = finish(scenario, "sim", SimBackend(kernel=kernel or running_profile_cached()).run(scenario))
    kern = finish(scenario, "kernel", get_backend("kernel").run(scenario))
    if "skipped" in (sim.status, kern.status):
        return [], sim, kern
    return compare(sim, kern), sim, kern


def save_divergence(steps: list[dict[str, Any]], kernel: ScenarioResult, diffs: list[dict[str, Any]],
                    folder: Path) -> Path:
    """Write the sequence as ``fuzz-<hash>.yaml``, expecting what the kernel did at the diverging steps."""
    digest = hashlib.sha1(yaml.safe_dump(steps, sort_keys=True).encode()).hexdigest()[:10]
    name = f"fuzz-{digest}"
    out = [dict(s) for s in steps]
    for i in sorted({d["i"] for d in diffs}):
        rec = kernel.steps[i]
        expect: dict[str, Any] = {"errno": rec["errno"]} if rec.get("errno") else {"ok": True}
        for key in ("move", "copy", "zeropage"):
            if key in rec:
                expect[key] = "unwritten" if rec[key] is None else rec[key]
        if "pages" in rec:
            expect["pages"] = [{k: p[k] for k in ("state", "value", "frame", "thp", "order") if p.get(k) is not None}
                               for p in rec["pages"]]
        out[i] = dict(out[i], expect=expect)
    doc = {"name": name, "about": "A divergence found by differential fuzzing: " +
           "; ".join(f"step {d['i']} {d['field']}" for d in diffs[:3]),
           "requires": requirements(steps), "steps": out}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path
