"""One scenario on several kernel profiles side by side, and the version tables of Appendix A2.

:func:`side_by_side` runs a scenario on the simulator once per profile (:mod:`uffdsim.kernels`)
and returns one row per step with each kernel's outcome; :func:`changes_rows`,
:func:`profile_rows` and :func:`lab_rows` are the tables A2 shows, from the profiles and the
recorded lab runs (``data/conformance-6.12.json``, ``conformance-6.1.json``, ``conformance.json``).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from .kernels import CHANGES, CONFIG_SWITCHES, PROFILES, UNMODELLED, KernelProfile, get_profile, matches
from .resources import corpus_dir, data_file
from .runner import finish
from .scenario import Scenario, load_scenario

DEFAULT_KERNELS = ("6.1", "6.8", "6.12", "6.18")
#: the recorded conformance runs, by the kernel they ran on
RECORDS = {"6.18 (this machine)": "conformance.json", "6.12 (lab)": "conformance-6.12.json",
           "6.1 (lab)": "conformance-6.1.json"}


def outcome(rec: dict[str, Any]) -> str:
    """A step's result in a few words."""
    from .report import fmt_result
    return fmt_result(rec)


def side_by_side(scenario: "str | Scenario", kernels: Sequence["str | KernelProfile"] = DEFAULT_KERNELS
                 ) -> tuple[list[str], list[list[str]]]:
    """(header, rows): each step of the scenario with its outcome on each kernel profile."""
    from .backends.sim import SimBackend
    s = scenario if isinstance(scenario, Scenario) else load_scenario(corpus_dir() / f"{scenario}.yaml")
    profs = [get_profile(k) for k in kernels]
    results = [finish(s, "sim", SimBackend(kernel=p).run(s)) for p in profs]
    header = ["step", "op"] + [f"{p.name}: {r.status}" for p, r in zip(profs, results)]
    rows = []
    for step in s.steps:
        cells = []
        for r in results:
            rec = r.steps[step.i] if step.i < len(r.steps) else None
            cells.append("—" if rec is None else outcome(rec))
        rows.append([str(step.i), step.op] + cells)
    return header, rows


def differing_rows(header: list[str], rows: list[list[str]]) -> list[list[str]]:
    """The rows where the kernels' outcomes differ."""
    return [r for r in rows if len(set(r[2:])) > 1]


def profile_rows() -> tuple[list[str], list[list[Any]]]:
    header = ["profile", "UFFDIO_MOVE", "features", "pt_reclaim", "differs from 6.18 in", "note"]
    ref = PROFILES["6.18"]
    rows = [[p.name, "yes" if p.has("move") else "no", hex(p.features), "y" if p.pt_reclaim else "n",
             ", ".join(p.differences(ref)) or "—", p.note] for p in PROFILES.values()]
    return header, rows


def changes_rows() -> tuple[list[str], list[list[Any]]]:
    header = ["since", "change", "before", "after", "commit", "scenario", "observed"]
    rows = [[c.label or ".".join(map(str, c.since)), c.key, c.before, c.after, c.commit, c.scenario, c.observed]
            for c in sorted([*CHANGES.values(), *UNMODELLED.values()], key=lambda c: c.since)]
    rows.append(["6.14 (config)", "pt_reclaim", "DONTNEED leaves an emptied page table in place",
                 "a DONTNEED whose range covers a page table's whole 2 MiB-aligned span frees the emptied "
                 "table; one that empties a table without covering its "
                 "span leaves it (thp-dontneed-unaligned-2m-keeps-table)",
                 CONFIG_SWITCHES["pt_reclaim"].split("): ", 1)[0] + ")",
                 "thp-dontneed-whole-table-pt-reclaim", "lab: off in 6.12.118, on in this machine's 6.18"])
    return header, rows


def load_records(folder: Path | None = None) -> dict[str, dict[str, Any]]:
    out = {}
    for label, name in RECORDS.items():
        path = (folder / name) if folder else data_file(name)
        if path.is_file():
            out[label] = json.loads(path.read_text())
    return out


def lab_rows(records: dict[str, dict[str, Any]] | None = None) -> tuple[list[str], list[list[Any]]]:
    """One row per recorded run.  A record updated with ``conform --update`` re-ran only the scenarios
    that were new or changed and kept the others from earlier runs: ``last run`` says how many ran in
    the last run, which is what the boot and batch seconds (of the lab's last boot) measure."""
    header = ["kernel", "release", "simulator profile", "scenarios", "agree", "divergences", "skipped",
              "last run", "boot s", "batch s"]
    rows = []
    for label, doc in (records if records is not None else load_records()).items():
        t, lab = doc.get("totals", {}), doc.get("lab", {})
        update = doc.get("update") or {}
        last = update.get("rerun", t.get("scenarios")) if isinstance(update, dict) else t.get("scenarios")
        rows.append([label, doc.get("kernel"), doc.get("profile", lab.get("profile", "6.18")),
                     t.get("scenarios"), t.get("agree"), t.get("divergences"), t.get("skipped"), last,
                     lab.get("seconds", {}).get("boot", "—"), lab.get("seconds", {}).get("total", "—")])
    return header, rows


def profile_of_record(doc: dict[str, Any]) -> KernelProfile:
    """The simulator profile a recorded run was compared with."""
    from .kernels import profile_for_release
    name = doc.get("profile") or doc.get("lab", {}).get("profile")
    if name in PROFILES:
        return PROFILES[name]
    return profile_for_release(doc.get("kernel", "6.18"))


def observed_differences(a: str = "6.12 (lab)", b: str = "6.18 (this machine)",
                         records: dict[str, dict[str, Any]] | None = None) -> list[str]:
    """Scenarios whose kernel-side status or expectations differ between two recorded real kernels.

    Both runs met their expectations (0 divergences against their profiles); a scenario that has
    per-kernel expectations, or ran on one kernel only, is where the two kernels behave differently.
    """
    recs = records if records is not None else load_records()
    if a not in recs or b not in recs:
        return []
    ka = {e["name"]: e for e in recs[a]["scenarios"]}
    kb = {e["name"]: e for e in recs[b]["scenarios"]}
    out = []
    for name in sorted(set(ka) & set(kb)):
        if ka[name]["kernel"] != kb[name]["kernel"]:
            out.append(name)
            continue
        try:
            s = load_scenario(corpus_dir() / f"{name}.yaml")
        except Exception:  # noqa: BLE001 - a scenario removed since the record
            continue
        pa, pb = (profile_of_record(recs[x]) for x in (a, b))
        if (s.kernel and matches(s.kernel, pa) != matches(s.kernel, pb)) or \
                any(st.expect_for(pa) != st.expect_for(pb) for st in s.steps if st.expect_by_kernel):
            out.append(name)
    return out
