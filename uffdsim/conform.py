"""Conformance: run the scenario corpus on the simulator and on the running kernel, and compare.

For each scenario: the status on each backend (``passed``, ``failed``, ``skipped``), every step
field on which the two differ (:func:`uffdsim.runner.compare`), and, for each step that carries an
expectation, whether each backend met it (``steps``, with a ``digest`` of the scenario that ran:
``uffdsim claims`` checks a citation of a step against them).  A scenario *diverges* when at
least one step differs; it is *skipped* when either backend could not run it (then nothing is
compared).  A scenario that ran ran *fully* or with *partial* observation: without root the
kernel hides frames (PFNs), which are then reported as not observable and not compared
(:data:`uffdsim.runner.NOT_OBSERVABLE`).  The summary line is ``conform: N scenarios, D
divergences, S skipped (F full, P partial)`` with D the number of diverging scenarios; it always
starts with ``conform: N scenarios, D divergences, S skipped`` (:func:`parse_summary`).
A run in which nothing ran (F + P = 0) is not a pass: :attr:`Report.ok` is False and
:meth:`Report.nothing_ran` says why.

``python -m uffdsim conform [--json] [--record FILE]``; from Python, :func:`conform`.  The book's
appendix shows the recorded run (``data/conformance.json``): :func:`load_record` reads it back.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import platform
import re
from collections import Counter
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, TextIO

from .resources import corpus_dir
from .runner import COMPARED_PAGE, ScenarioResult, compare, compared_page_fields, finish
from .scenario import Scenario, ScenarioError, load_scenario

#: the corpus shipped with the project
CORPUS = corpus_dir()


@dataclass
class Entry:
    """One scenario's conformance result."""

    name: str
    path: str
    sim: str                                   #: passed / failed / skipped / error
    kernel: str
    divergences: list[dict[str, Any]] = field(default_factory=list)
    reason: str | None = None                  #: why it was skipped (or could not be loaded)
    unmet: dict[str, list[str]] = field(default_factory=dict)   #: backend -> unmet expectations
    observation: str | None = None             #: full / partial (kernel side), None: did not run
    not_observable: list[str] = field(default_factory=list)     #: kernel page fields not compared
    compared: dict[str, int] = field(default_factory=dict)      #: page field -> how many were compared
    #: what the steps that carry an expectation did on each backend (:func:`step_outcomes`)
    steps: list[dict[str, Any]] = field(default_factory=list)
    digest: str | None = None                  #: :func:`scenario_digest` of the file that ran

    @property
    def status(self) -> str:
        if "error" in (self.sim, self.kernel):
            return "error"
        if "skipped" in (self.sim, self.kernel):
            return "skipped"
        return "diverges" if self.divergences else "agrees"


@dataclass
class Report:
    kernel: str
    date: str
    entries: list[Entry]
    uffd: str | None = None                    #: how userfaultfd was opened (caps.uffd_via)

    @property
    def totals(self) -> dict[str, int]:
        statuses = [e.status for e in self.entries]
        return {"scenarios": len(self.entries), "divergences": statuses.count("diverges"),
                "skipped": statuses.count("skipped"), "errors": statuses.count("error"),
                "agree": statuses.count("agrees"),
                "full": sum(e.observation == "full" for e in self.entries if e.status in ("agrees", "diverges")),
                "partial": sum(e.observation == "partial" for e in self.entries if e.status in ("agrees", "diverges")),
                "divergent_steps": len({(e.name, d["i"]) for e in self.entries for d in e.divergences}),
                "page_fields": sum(sum(e.compared.values()) for e in self.entries)}

    @property
    def page_fields(self) -> dict[str, int]:
        """Page fields compared over the whole run, per field (observe steps, both backends)."""
        return {key: sum(e.compared.get(key, 0) for e in self.entries) for key in COMPARED_PAGE}

    def fields_line(self) -> str:
        """``page fields compared: 2695 (state 385, ..., anon_exclusive 385, ...)``."""
        per = self.page_fields
        return (f"page fields compared: {sum(per.values())} ("
                + ", ".join(f"{k} {v}" for k, v in per.items()) + ")")

    def summary(self) -> str:
        t = self.totals
        return (f"conform: {t['scenarios']} scenarios, {t['divergences']} divergences, {t['skipped']} skipped "
                f"({t['full']} full, {t['partial']} partial)")

    def nothing_ran(self) -> str | None:
        """One line saying why no scenario ran at all (None when at least one did)."""
        t = self.totals
        if t["full"] + t["partial"]:
            return None
        reasons = Counter(e.reason for e in self.entries if e.reason)
        if not reasons:
            return f"conform checked nothing: no scenario ran ({t['scenarios']} given)"
        why, n = reasons.most_common(1)[0]
        return (f"conform checked nothing: all {t['scenarios']} scenarios were skipped or could not "
                f"be loaded; {n} because {why}")

    def to_json(self) -> dict[str, Any]:
        lab = getattr(self, "lab", None)            # set by uffdsim.lab.conform for a lab VM run
        update = getattr(self, "update", None)      # set by merge_update(): which entries are older
        return {"kernel": self.kernel, "machine": platform.machine(), "date": self.date,
                **({"update": update} if update else {}),
                **({"lab": lab} if lab else {}),
                **({"profile": self.profile} if getattr(self, "profile", None) else {}), "uffd": self.uffd, "totals": self.totals,
                "page_fields": self.page_fields,
                "scenarios": [dict(asdict(e), status=e.status) for e in self.entries]}

    @property
    def ok(self) -> bool:
        t = self.totals
        return t["divergences"] == 0 and t["errors"] == 0 and self.nothing_ran() is None


SUMMARY = re.compile(r"conform: (\d+) scenarios, (\d+) divergences, (\d+) skipped"
                     r"(?: \((\d+) full, (\d+) partial\))?")


def parse_summary(text: str) -> dict[str, int] | None:
    """The numbers of the last summary line in ``text`` (full/partial absent in older lines)."""
    found = SUMMARY.findall(text)
    if not found:
        return None
    keys = ("scenarios", "divergences", "skipped", "full", "partial")
    return {k: int(v) for k, v in zip(keys, found[-1]) if v != ""}


def scenario_files(paths: Iterable[str | Path] = ()) -> list[Path]:
    """The ``*.yaml`` files named or found in the given directories (default: the corpus)."""
    out: list[Path] = []
    for p in [Path(x) for x in paths] or [CORPUS]:
        try:
            is_dir = p.is_dir()
        except OSError:                    # e.g. a symlink loop: loading it says why
            is_dir = False
        out.extend(sorted(p.glob("*.yaml")) if is_dir else [p])
    return out


def _unmet(result: ScenarioResult) -> list[str]:
    return [f"step {s['i']} ({s['op']}): {s['expect'][len('unmet: '):]}" for s in result.unmet()]


def shown(path: Path) -> str:
    """The path relative to the project (or as given, when outside it)."""
    try:
        return str(path.resolve().relative_to(CORPUS.parent))
    except (ValueError, OSError, RuntimeError):      # outside the project, or a symlink loop
        return str(path)


def scenario_digest(scenario: Scenario) -> str:
    """A short hash of what a scenario does and expects (its steps and kernel spec; not its
    ``about:`` or step names), so that a record of it can be told from a record of an older version."""
    steps = [{k: v for k, v in s.raw.items() if k != "name"} for s in scenario.steps]
    text = json.dumps({"kernel": scenario.kernel, "steps": steps}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _page_field(hidden: str) -> tuple[int, str] | None:
    """``pages[1].mapcount`` -> (1, "mapcount"); None for anything else."""
    m = re.fullmatch(r"pages\[(\d+)\]\.(\w+)", hidden)
    return (int(m[1]), m[2]) if m else None


def _outcome(scenario: Scenario, result: ScenarioResult, i: int) -> str:
    """``met``, ``unmet: ...``, ``not run``, or ``met (not observable: ...)`` for step ``i``."""
    if result.status == "skipped" or i >= len(result.steps) or result.steps[i].get("not_run"):
        return "not run"
    said = str(result.steps[i].get("expect", "not checked"))
    hidden = [h.split(" ", 2)[2] for h in result.not_observable if h.startswith(f"step {i} ")]
    # the fields each page's expectation names ("pages[1].mapcount" is hidden only if page 1 expects it)
    expected: set[tuple[int, str]] = set()
    for e in [scenario.steps[i].expect or {}] + [e for _, e in scenario.steps[i].expect_by_kernel]:
        expected |= {(n, k) for n, p in enumerate(e.get("pages", [])) for k in p}
        expected |= {(-1, k) for k in e.get("all_pages") or {}}    # one expectation for every page
    hidden = [h for h in hidden if (pf := _page_field(h)) and (pf in expected or (-1, pf[1]) in expected)]
    return f"{said} (not observable: {', '.join(hidden)})" if said == "met" and hidden else said


def step_outcomes(scenario: Scenario, a: ScenarioResult, b: ScenarioResult) -> list[dict[str, Any]]:
    """Per step that carries an expectation: its index, op, name and outcome on each backend."""
    out = []
    for step in scenario.steps:
        if step.expect is None and not step.expect_by_kernel:
            continue
        rec: dict[str, Any] = {"i": step.i, "op": step.op}
        if getattr(step, "name", None):
            rec["name"] = step.name
        rec[a.backend], rec[b.backend] = _outcome(scenario, a, step.i), _outcome(scenario, b, step.i)
        out.append(rec)
    return out


def conform_one(path: Path, sim: Any, kernel: Any) -> Entry:
    """Run one scenario file on both backends."""
    try:
        scenario = load_scenario(path)
    except ScenarioError as err:
        return Entry(path.stem, shown(path), "error", "error", reason=str(err))
    a = finish(scenario, "sim", sim.run(scenario))
    b = finish(scenario, "kernel", kernel.run(scenario))
    entry = Entry(scenario.name, shown(path), a.status, b.status,
                  reason=a.reason if a.status == "skipped" else b.reason if b.status == "skipped" else None)
    if "skipped" not in (a.status, b.status):
        entry.divergences = compare(a, b)
        entry.compared = compared_page_fields(a, b)
    entry.unmet = {r.backend: _unmet(r) for r in (a, b) if r.unmet()}
    entry.observation, entry.not_observable = b.observation, b.not_observable
    entry.steps, entry.digest = step_outcomes(scenario, a, b), scenario_digest(scenario)
    return entry


def conform(paths: Iterable[str | Path] = (), progress: TextIO | None = None,
            sim: Any = None, kernel: Any = None) -> Report:
    """Run every scenario on both backends; progress lines (``[3/104] name``) go to ``progress``."""
    from .backends.kernel import KernelBackend
    from .backends.kernel.caps import capabilities
    from .backends.sim import SimBackend
    from .backends.kernel.profile import running_profile_cached
    files = scenario_files(paths)
    sim = sim or SimBackend(kernel=running_profile_cached())   # the profile of the running kernel
    kernel = kernel or KernelBackend()
    entries = []
    for n, path in enumerate(files, 1):
        if progress is not None:
            print(f"[{n}/{len(files)}] {path.stem}", file=progress, flush=True)
        entries.append(conform_one(path, sim, kernel))
    date = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
    caps = capabilities()
    report = Report(caps.kernel, date, entries, caps.uffd_via)
    report.profile = getattr(sim, "profile_name", None)
    return report


def print_table(report: Report, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    width = max([len(e.name) for e in report.entries] + [8])
    print(f"{'scenario':<{width}}  {'sim':<8} {'kernel':<8} {'diffs':>5}  note", file=out)
    for e in report.entries:
        note = ""
        if e.divergences:
            d = e.divergences[0]
            note = f"step {d['i']} {d['op']} {d['field']}: sim={d.get('sim')!r} kernel={d.get('kernel')!r}"
        elif e.reason:
            note = e.reason
        elif e.not_observable:
            note = f"partial: {len(e.not_observable)} page field(s) not observable ({e.not_observable[0]}, ...)"
        print(f"{e.name:<{width}}  {e.sim:<8} {e.kernel:<8} {len(e.divergences):>5}  {note}", file=out)
    prof = getattr(report, "profile", None)
    print(f"kernel {report.kernel}, {report.date}" + (f", simulator profile {prof}" if prof else "")
          + f", userfaultfd via {report.uffd or 'nothing (unavailable)'}", file=out)
    if report.totals["errors"]:
        print(f"{report.totals['errors']} file(s) could not be loaded (see the table)", file=out)
    print(report.fields_line(), file=out)
    print(report.summary(), file=out)


def stale_files(files: list[Path], old: dict[str, Any]) -> list[Path]:
    """The files a record does not hold as they are now: new scenarios, or changed since (by
    :func:`scenario_digest`); a file that does not load is stale too (the run says why)."""
    digests = {e.get("name"): e.get("digest") for e in old.get("scenarios", []) if isinstance(e, dict)}
    out = []
    for path in files:
        try:
            scenario = load_scenario(path)
        except ScenarioError:
            out.append(path)
            continue
        if scenario.name not in digests or digests[scenario.name] != scenario_digest(scenario):
            out.append(path)
    return out


def merge_update(old: dict[str, Any], report: Report, files: list[Path]) -> Report:
    """``conform --update``: the record ``old`` with the scenarios just run (``report``) in place
    of theirs, in corpus order; scenarios no longer in ``files`` are dropped.  Both runs must be
    on the same kernel release (ValueError otherwise)."""
    if old.get("kernel") != report.kernel:
        raise ValueError(f"the record is of kernel {old.get('kernel')!r}, this run of {report.kernel!r}: record it whole")
    known = {f.name for f in fields(Entry)}
    kept = {e["name"]: Entry(**{k: v for k, v in e.items() if k in known})
            for e in old.get("scenarios", []) if isinstance(e, dict) and "name" in e}
    fresh = {e.name: e for e in report.entries}
    entries = []
    for path in files:
        try:
            name = load_scenario(path).name
        except ScenarioError:
            name = path.stem
        entry = fresh.get(name) or kept.get(name)
        if entry is not None:
            entries.append(entry)
    merged = Report(report.kernel, report.date, entries, report.uffd)
    merged.profile = getattr(report, "profile", None)
    if getattr(report, "lab", None):
        merged.lab = report.lab
    merged.update = {"of": old.get("date"), "rerun": len(report.entries), "kept": len(entries) - len(report.entries)}
    return merged


def record(report: Report, path: str | Path) -> None:
    Path(path).write_text(json.dumps(report.to_json(), indent=1) + "\n")


def load_record(path: str | Path) -> dict[str, Any]:
    """A recorded run (``data/conformance.json``) as a dict."""
    return json.loads(Path(path).read_text())
