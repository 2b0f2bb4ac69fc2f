"""Run scenarios on a backend, label frames, check expectations, and compare backends.

A backend turns a :class:`~uffdsim.scenario.Scenario` into raw step records (plain dicts):
``i``, ``op``, ``ret``, ``errno`` (a name or None), the ioctl output field (``move``/``copy``/
``zeropage``: an int, or None when unwritten), ``addr`` for mmap, ``pages`` for observe (each with
``state``, ``value``, ``frame`` = a raw frame key such as a pfn, ``thp``, and what
/proc/kpageflags and /proc/kpagecount say: ``anon_exclusive``, ``mapcount``, ``order``), ``blocked`` for thread,
``events`` for read_events (each with ``type``, ``write`` and a numeric ``addr``), ``hung`` when
the step never finished, ``trail`` when the backend explains itself.  The runner turns frame keys
into labels (``f0``, ``f1``... by first sight, ``zero`` for the zero page), addresses into address
expressions (``dst+2``), and checks every ``expect``.

A page may list fields its backend could not see under ``hidden`` (the kernel backend without
root: PFNs are hidden, so ``frame``); the runner sets them to :data:`NOT_OBSERVABLE`, lists them in
:attr:`ScenarioResult.not_observable`, and neither checks nor compares them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .results import Backend, BackendRun
from .scenario import OUT_FIELDS, PAGE, Scenario

#: the value of a page field the backend could not observe (never compared, never checked)
NOT_OBSERVABLE = "not observable"



@dataclass
class ScenarioResult:
    name: str
    backend: str
    status: str                     #: passed, failed, skipped
    steps: list[dict[str, Any]]
    reason: str | None = None
    path: str = ""
    info: dict[str, Any] = field(default_factory=dict)
    #: page fields the backend could not observe, as ``step 5 pages[0].frame``
    not_observable: list[str] = field(default_factory=list)

    @property
    def observation(self) -> str | None:
        """``full``, ``partial`` (some page fields not observable), or None when not run."""
        if self.status == "skipped":
            return None
        return "partial" if self.not_observable else "full"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "backend": self.backend, "status": self.status}
        if self.reason:
            out["reason"] = self.reason
        if self.info.get("uffd"):
            out["uffd"] = self.info["uffd"]
        if self.observation:
            out["observation"] = self.observation
        if self.not_observable:
            out["not_observable"] = self.not_observable
        out["steps"] = self.steps
        return out

    def unmet(self) -> list[dict[str, Any]]:
        return [s for s in self.steps if str(s.get("expect", "")).startswith("unmet")]


class FrameLabeller:
    """Frame labels by first sight in the scenario: f0, f1, ...; the zero page is ``zero``."""

    def __init__(self) -> None:
        self.labels: dict[Any, str] = {}

    def label(self, page: dict[str, Any]) -> str | None:
        if page.get("state") == "zero":
            return "zero"
        key = page.get("frame")
        if page.get("state") != "present" or key is None:
            return None
        if key not in self.labels:
            self.labels[key] = f"f{len(self.labels)}"
        return self.labels[key]


def describe_addr(addr: int, regions: dict[str, tuple[int, int]]) -> str:
    """The address expression for ``addr`` (``dst+2``, ``dst+2+16b``), or its hex value."""
    for name, (base, pages) in regions.items():
        if base <= addr < base + pages * PAGE:
            page, byte = divmod(addr - base, PAGE)
            return name + (f"+{page}" if page else "") + (f"+{byte}b" if byte else "")
    return hex(addr)


def finish(scenario: Scenario, backend: str, run: BackendRun) -> ScenarioResult:
    """Label, translate and check a backend's raw records."""
    if run.skipped:
        return ScenarioResult(scenario.name, backend, "skipped", [], run.skipped, scenario.path,
                              dict(run.info))
    from .kernels import matches, profile_of
    profile = profile_of(backend, run.info)
    if scenario.kernel and not matches(scenario.kernel, profile):
        return ScenarioResult(scenario.name, backend, "skipped", [],
                              f"scenario is for kernels {scenario.kernel}; this is {profile.name}", scenario.path,
                              dict(run.info))
    labeller = FrameLabeller()
    sizes = scenario.region_pages()
    regions: dict[str, tuple[int, int]] = {}
    steps: list[dict[str, Any]] = []
    hidden: list[str] = []
    failed = False
    for step, raw in zip(scenario.steps, run.steps):
        rec = dict(raw)
        if step.op == "mmap" and rec.get("addr") is not None:
            regions[step.args["name"]] = (rec["addr"], sizes[step.args["name"]])
        if "pages" in rec:
            rec["pages"] = [dict(p, frame=labeller.label(p)) for p in rec["pages"]]
            for n, p in enumerate(rec["pages"]):
                for key in p.pop("hidden", ()):
                    p[key] = NOT_OBSERVABLE
                    hidden.append(f"step {step.i} pages[{n}].{key}")
        if "events" in rec:
            rec["events"] = [{"type": e["type"], "at": describe_addr(e["addr"], regions),
                              "write": bool(e.get("write"))} for e in rec["events"]]
        expect = step.expect_for(profile) if step.expect_by_kernel else step.expect
        if expect is not None:
            problems = check_expect(expect, rec, step.op)
            rec["expect"] = "met" if not problems else "unmet: " + "; ".join(problems)
            failed |= bool(problems)
        elif rec.get("hung"):
            failed = True
        steps.append(rec)
    for step in scenario.steps[len(run.steps):]:
        steps.append({"i": step.i, "op": step.op, "ret": None, "errno": None, "not_run": True})
        if step.expect is not None:
            steps[-1]["expect"] = "unmet: not run (an earlier step hung or the run stopped)"
            failed = True
    return ScenarioResult(scenario.name, backend, "failed" if failed else "passed", steps,
                          run.info.get("note"), scenario.path, dict(run.info), hidden)


def check_expect(expect: dict[str, Any], rec: dict[str, Any], op: str) -> list[str]:
    """Every way in which the step record misses its expectation (empty when it is met)."""
    problems: list[str] = []
    errno = rec.get("errno")
    if rec.get("hung") and not expect.get("hung"):
        return ["the step hung (a thread waited for a fault nobody resolved)"]
    if "hung" in expect and bool(rec.get("hung")) != expect["hung"]:
        problems.append(f"hung: expected {expect['hung']}, got {bool(rec.get('hung'))}")
    if "ok" in expect and (errno is None) != expect["ok"]:
        problems.append(f"ok: expected {expect['ok']}, got errno {errno}")
    if "errno" in expect and errno != expect["errno"]:
        problems.append(f"errno: expected {expect['errno']}, got {errno or 'success'}")
    for key in OUT_FIELDS:
        if key in expect:
            got = rec.get(key, "absent")
            want = None if expect[key] == "unwritten" else expect[key]
            if got != want:
                problems.append(f"{key}: expected {expect[key]}, got {'unwritten' if got is None else got}")
    if "pages" in expect:
        pages = rec.get("pages") or []
        if len(pages) < len(expect["pages"]):
            problems.append(f"pages: expected {len(expect['pages'])} pages, observed {len(pages)}")
        for n, (want, got) in enumerate(zip(expect["pages"], pages)):
            for k, v in want.items():
                if got.get(k) != v and got.get(k) != NOT_OBSERVABLE:
                    problems.append(f"page {n} {k}: expected {v}, got {got.get(k)}")
    if "all_pages" in expect:
        want_all = expect["all_pages"]
        pages = rec.get("pages") or []
        bad = [(n, k, v, got.get(k)) for n, got in enumerate(pages) for k, v in want_all.items()
               if got.get(k) != v and got.get(k) != NOT_OBSERVABLE]
        if not pages:
            problems.append("all_pages: no page observed")
        elif bad:
            n, k, v, got = bad[0]
            more = len({b[0] for b in bad}) - 1
            problems.append(f"page {n} {k}: expected {v}, got {got}" + (f" (and {more} more pages)" if more else ""))
    if "blocked" in expect and rec.get("blocked") != expect["blocked"]:
        problems.append(f"blocked: expected {expect['blocked']}, got {rec.get('blocked')}")
    if "events" in expect:
        events = rec.get("events") or []
        if len(events) != len(expect["events"]):
            problems.append(f"events: expected {len(expect['events'])}, got {len(events)}: {events}")
        else:
            for n, (want, got) in enumerate(zip(expect["events"], events)):
                for k, v in want.items():
                    if got.get(k) != v:
                        problems.append(f"event {n} {k}: expected {v}, got {got.get(k)}")
    if "trail" in expect and rec.get("trail") is not None and expect["trail"] not in rec["trail"]:
        problems.append(f"trail: expected to contain {expect['trail']!r}, got {rec['trail']!r}")
    return problems


#: the fields of a step record that two backends must agree on
COMPARED = ("ret", "errno", "move", "copy", "zeropage", "blocked", "hung")
COMPARED_PAGE = ("state", "value", "frame", "thp", "anon_exclusive", "mapcount", "order")


def compare(a: ScenarioResult, b: ScenarioResult) -> list[dict[str, Any]]:
    """Every step field on which two backends' results differ."""
    diffs: list[dict[str, Any]] = []
    for sa, sb in zip(a.steps, b.steps):
        for key in COMPARED:
            if sa.get(key) != sb.get(key):
                diffs.append({"i": sa["i"], "op": sa["op"], "field": key, a.backend: sa.get(key), b.backend: sb.get(key)})
        pa, pb = sa.get("pages"), sb.get("pages")
        if pa is not None and pb is not None:
            for n, (x, y) in enumerate(zip(pa, pb)):
                for key in COMPARED_PAGE:
                    if NOT_OBSERVABLE in (x.get(key), y.get(key)):
                        continue
                    if x.get(key) != y.get(key):
                        diffs.append({"i": sa["i"], "op": sa["op"], "field": f"pages[{n}].{key}",
                                      a.backend: x.get(key), b.backend: y.get(key)})
        ea, eb = sa.get("events"), sb.get("events")
        if ea is not None and eb is not None and ea != eb:
            diffs.append({"i": sa["i"], "op": sa["op"], "field": "events", a.backend: ea, b.backend: eb})
    return diffs


def compared_page_fields(a: ScenarioResult, b: ScenarioResult) -> dict[str, int]:
    """How many page fields :func:`compare` held side by side, per field (both observable)."""
    counts = {key: 0 for key in COMPARED_PAGE}
    for sa, sb in zip(a.steps, b.steps):
        pa, pb = sa.get("pages"), sb.get("pages")
        if pa is None or pb is None:
            continue
        for x, y in zip(pa, pb):
            for key in COMPARED_PAGE:
                if NOT_OBSERVABLE not in (x.get(key), y.get(key)):
                    counts[key] += 1
    return counts


def get_backend(name: str) -> Backend:
    """The backend called ``name`` (``sim`` or ``kernel``)."""
    if name == "sim":
        from .backends.sim import SimBackend
        return SimBackend()
    if name == "kernel":
        from .backends.kernel import KernelBackend
        return KernelBackend()
    raise ValueError(f"unknown backend {name!r} (sim, kernel, both)")


def run_scenario(scenario: Scenario, backend: str | Backend = "sim") -> ScenarioResult:
    """Run one scenario on one backend and check it."""
    b = get_backend(backend) if isinstance(backend, str) else backend
    return finish(scenario, b.name, b.run(scenario))
