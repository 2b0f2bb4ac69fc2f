"""Conformance: run the scenario corpus on the simulator and on the running kernel, and compare.

For each scenario: the status on each backend (``passed``, ``failed``, ``skipped``) and every step
field on which the two differ (:func:`uffdsim.runner.compare`).  A scenario *diverges* when at
least one step differs; it is *skipped* when either backend could not run it (then nothing is
compared).  The summary line is ``conform: N scenarios, D divergences, S skipped`` with D the
number of diverging scenarios.

``python -m uffdsim conform [--json] [--record FILE]``; from Python, :func:`conform`.  The book's
appendix shows the recorded run (``data/conformance.json``): :func:`load_record` reads it back.
"""
from __future__ import annotations

import datetime as _dt
import json
import platform
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, TextIO

from .resources import corpus_dir
from .runner import ScenarioResult, compare, finish
from .scenario import ScenarioError, load_scenario

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

    @property
    def totals(self) -> dict[str, int]:
        statuses = [e.status for e in self.entries]
        return {"scenarios": len(self.entries), "divergences": statuses.count("diverges"),
                "skipped": statuses.count("skipped"), "errors": statuses.count("error"),
                "agree": statuses.count("agrees"),
                "divergent_steps": len({(e.name, d["i"]) for e in self.entries for d in e.divergences})}

    def summary(self) -> str:
        t = self.totals
        return f"conform: {t['scenarios']} scenarios, {t['divergences']} divergences, {t['skipped']} skipped"

    def to_json(self) -> dict[str, Any]:
        lab = getattr(self, "lab", None)            # set by uffdsim.lab.conform for a lab VM run
        return {"kernel": self.kernel, "machine": platform.machine(), "date": self.date,
                **({"lab": lab} if lab else {}),
                **({"profile": self.profile} if getattr(self, "profile", None) else {}), "totals": self.totals,
                "scenarios": [dict(asdict(e), status=e.status) for e in self.entries]}

    @property
    def ok(self) -> bool:
        t = self.totals
        return t["divergences"] == 0 and t["errors"] == 0


def scenario_files(paths: Iterable[str | Path] = ()) -> list[Path]:
    """The ``*.yaml`` files named or found in the given directories (default: the corpus)."""
    out: list[Path] = []
    for p in [Path(x) for x in paths] or [CORPUS]:
        out.extend(sorted(p.glob("*.yaml")) if p.is_dir() else [p])
    return out


def _unmet(result: ScenarioResult) -> list[str]:
    return [f"step {s['i']} ({s['op']}): {s['expect'][len('unmet: '):]}" for s in result.unmet()]


def shown(path: Path) -> str:
    """The path relative to the project (or as given, when outside it)."""
    try:
        return str(path.resolve().relative_to(CORPUS.parent))
    except ValueError:
        return str(path)


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
    entry.unmet = {r.backend: _unmet(r) for r in (a, b) if r.unmet()}
    return entry


def conform(paths: Iterable[str | Path] = (), progress: TextIO | None = None,
            sim: Any = None, kernel: Any = None) -> Report:
    """Run every scenario on both backends; progress lines (``[3/104] name``) go to ``progress``."""
    from .backends.kernel import KernelBackend
    from .backends.kernel.caps import capabilities
    from .backends.sim import SimBackend
    from .kernels import running_profile_cached
    files = scenario_files(paths)
    sim = sim or SimBackend(kernel=running_profile_cached())   # the profile of the running kernel
    kernel = kernel or KernelBackend()
    entries = []
    for n, path in enumerate(files, 1):
        if progress is not None:
            print(f"[{n}/{len(files)}] {path.stem}", file=progress, flush=True)
        entries.append(conform_one(path, sim, kernel))
    date = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
    report = Report(capabilities().kernel, date, entries)
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
        print(f"{e.name:<{width}}  {e.sim:<8} {e.kernel:<8} {len(e.divergences):>5}  {note}", file=out)
    prof = getattr(report, "profile", None)
    print(f"kernel {report.kernel}, {report.date}" + (f", simulator profile {prof}" if prof else ""), file=out)
    if report.totals["errors"]:
        print(f"{report.totals['errors']} file(s) could not be loaded (see the table)", file=out)
    print(report.summary(), file=out)


def record(report: Report, path: str | Path) -> None:
    Path(path).write_text(json.dumps(report.to_json(), indent=1) + "\n")


def load_record(path: str | Path) -> dict[str, Any]:
    """A recorded run (``data/conformance.json``) as a dict."""
    return json.loads(Path(path).read_text())
