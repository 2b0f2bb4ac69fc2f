"""The book's claims checker: every ``{claim}`` citation points at a scenario (and step) that proves it.

A sentence in a notebook's Markdown cell (``notebooks/*.ipynb``) or a book page (``book/*.md``)
cites the corpus scenario that shows what it says with the MyST role ``{claim}`scenario```, or the
step that shows it with ``{claim}`scenario#STEP``` (STEP: the 0-based step index, as in the
``uffdsim run`` table, or the value of the step's ``name:``); one target per role.
:mod:`book/_ext/claims.py <claims>` renders it as a badge.  The pages are read with the MyST
parser the book is built with (:mod:`uffdsim.citations`), so citations in directives, dropdowns,
tables and glossaries count and code never does.  A citation *fails* when its scenario

* does not exist in the corpus (``missing``),
* does not pass on the simulator, run now (``sim <status>``), or
* is not recorded as agreeing with the kernel in the conformance record
  (``data/conformance.json``: ``kernel not recorded`` / ``kernel <status>``);

and a citation of a step fails when the step does not exist, carries no expectation, does not
meet it on the simulator now, or is not recorded as meeting it on the kernel (the record's
per-step outcomes, for the same version of the scenario: :func:`uffdsim.conform.scenario_digest`).
The scenario's ``about:`` text never counts.

A citation is *checked on the kernel* when the record shows its scenario passing on both backends
with no divergence (and, for a step, the kernel meeting the step's expectation).
``python -m uffdsim claims [--root DIR] [FILE ...]`` prints one line per citation and ends with
``claims: C citations (N name a step) of S scenarios in P pages; F failing, K checked on the
kernel`` (K counts citations); it exits 1 when F > 0, 2 on a page it cannot read.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, TextIO

from .citations import (Citation, PageError, ParserMissing, citations_in_file, citations_in_text,
                        split_target)
from .resources import corpus_files, data_file, package_dir

__all__ = ["Citation", "Check", "StepRecord", "book_pages", "check", "citations_in_file",
           "citations_in_text", "corpus_index", "kernel_record", "kernel_steps", "report", "scan",
           "split_target", "summary"]


@dataclass(frozen=True)
class Check:
    """A citation and what the corpus, the simulator and the conformance record say about it."""

    citation: Citation
    exists: bool
    sim: str | None            #: passed / failed / skipped (run now); None when missing
    kernel: str | None         #: the record's status (agrees / diverges / skipped); None if absent
    step_problem: str | None = None   #: why the cited step does not hold (None: holds, or no step)
    step_shown: str = ""              #: the cited step as ``i: op args`` and its expectation

    @property
    def problem(self) -> str | None:
        """Why the citation fails, or None."""
        if not self.exists:
            return "missing: no corpus scenario of that name"
        if self.sim != "passed":
            return f"sim {self.sim}"
        if self.kernel is None:
            return "kernel not recorded in the conformance record"
        if self.kernel != "agrees":
            return f"kernel {self.kernel} in the conformance record"
        return self.step_problem

    @property
    def on_kernel(self) -> bool:
        return self.exists and self.kernel == "agrees" and self.step_problem is None


def book_pages(root: Path) -> list[Path]:
    """The pages that may cite: ``notebooks/*.ipynb`` and ``book/*.md`` under ``root``."""
    return sorted(root.glob("notebooks/*.ipynb")) + sorted(root.glob("book/*.md"))


def scan(root: Path | None = None, files: Iterable[Path] = ()) -> list[Citation]:
    """Every citation in the given files (default: every book page under ``root``)."""
    root = root or package_dir().parent
    return [c for p in (list(files) or book_pages(root)) for c in citations_in_file(Path(p), root)]


def corpus_index(paths: Iterable[Path] | None = None) -> dict[str, Path]:
    """Scenario name -> file, for the corpus (its ``name:`` field; the file stem when unreadable)."""
    out: dict[str, Path] = {}
    for path in (corpus_files() if paths is None else paths):
        name = path.stem
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.startswith("name:"):
                name = line.split(":", 1)[1].strip().strip("'\"")
                break
        out[name] = path
    return out


def _load_record(path: Path | None) -> dict[str, Any]:
    """A conformance record (read like a page: a regular file, bounded)."""
    from .citations import read_page
    doc = json.loads(read_page(path or data_file("conformance.json")))
    if not isinstance(doc, dict):
        raise ValueError("expected a JSON object")
    return doc


def kernel_record(path: Path | None = None) -> dict[str, str]:
    """Scenario name -> status in the conformance record (only runs passing on both count as agrees)."""
    out = {}
    for e in _load_record(path).get("scenarios", []):
        status = e.get("status")
        if status == "agrees" and (e.get("sim"), e.get("kernel")) != ("passed", "passed"):
            status = f"sim {e.get('sim')}, kernel {e.get('kernel')}"
        out[e["name"]] = status
    return out


@dataclass(frozen=True)
class StepRecord:
    """What the conformance record says about a scenario's steps (``conform`` records them)."""

    digest: str | None                 #: :func:`uffdsim.conform.scenario_digest` of the run
    kernel: dict[int, str]             #: step index -> outcome on the kernel (``met``, ``unmet: ...``)


def kernel_steps(path: Path | None = None) -> dict[str, StepRecord]:
    """Scenario name -> its per-step record (scenarios recorded without one are left out)."""
    out = {}
    for e in _load_record(path).get("scenarios", []):
        if isinstance(e.get("steps"), list):
            out[e["name"]] = StepRecord(e.get("digest"), {int(r["i"]): str(r.get("kernel")) for r in e["steps"]})
    return out


def find_step(scenario: Any, ref: str) -> Any:
    """The step ``ref`` names in a loaded scenario: a 0-based index or a step's ``name:``."""
    if ref.isdigit():
        if int(ref) >= len(scenario.steps):
            raise LookupError(f"no step {ref} (steps 0 to {len(scenario.steps) - 1})")
        return scenario.steps[int(ref)]
    for step in scenario.steps:
        if step.name == ref:
            return step
    names = [s.name for s in scenario.steps if s.name]
    raise LookupError(f"no step named {ref!r} (" + (f"named steps: {', '.join(names[:8])})" if names
                                                      else "no step has a name:; cite it by index)"))


def show_expect(expect: Mapping[str, Any] | None) -> str:
    """An expectation on one line: ``errno=EBUSY move=0`` or ``pages: present value=1 frame=f0``."""
    if not expect:
        return "none"
    parts = []
    for key, value in expect.items():
        if key == "pages":
            parts.append("pages: " + "; ".join(" ".join(f"{k}={v}" for k, v in p.items()) for p in value))
        elif key == "events":
            parts.append("events: " + "; ".join(" ".join(f"{k}={v}" for k, v in e.items()) for e in value) if value
                         else "events: none")
        else:
            parts.append(f"{key}={value}")
    return " ".join(parts)


def show_step(step: Any) -> str:
    """``3: move dst=dst, src=src, pages=1; expect errno=EBUSY`` (with ``expect_by_kernel`` cases)."""
    from .report import fmt_args
    text = f"step {step.i}" + (f" ({step.name})" if step.name else "") + f": {step.op} {fmt_args(step.raw, step.op)}"
    text = text.rstrip() + f"; expect {show_expect(step.expect)}"
    for spec, expect in step.expect_by_kernel:
        text += f"; on {spec}: {show_expect(expect)}"
    return text


def sim_run(path: Path) -> tuple[str, Any, Any]:
    """Run one scenario file on the simulator: (passed / failed / skipped / ``error: ...``, the
    scenario, the result)."""
    from .runner import run_scenario
    from .scenario import ScenarioError, load_scenario
    try:
        scenario = load_scenario(path)
    except ScenarioError as err:
        return f"error: {err}", None, None
    result = run_scenario(scenario, "sim")
    return result.status, scenario, result


def sim_status(path: Path) -> str:
    """Run one scenario file on the simulator: passed / failed / skipped, or ``error: ...``."""
    return sim_run(path)[0]


def step_check(ref: str, scenario: Any, result: Any, recorded: StepRecord | None) -> tuple[str | None, str]:
    """Why the cited step does not hold (None if it does), and the step shown as text."""
    from .conform import scenario_digest
    if scenario is None:
        return "the scenario does not load", ""
    try:
        step = find_step(scenario, ref)
    except LookupError as err:
        return f"step {ref}: {err}", ""
    shown = show_step(step)
    where = f"step {step.i}" + (f" ({step.name})" if step.name else "")
    if step.expect is None and not step.expect_by_kernel:
        return f"{where} carries no expectation (cite a step with expect:)", shown
    said = result.steps[step.i].get("expect", "not checked") if step.i < len(result.steps) else "not run"
    if said != "met":
        return f"{where} on the simulator: {said}", shown
    if recorded is None:
        return (f"{where}: the conformance record has no per-step outcomes for this scenario "
                "(re-record: uffdsim conform --record data/conformance.json)"), shown
    if recorded.digest != scenario_digest(scenario):
        return (f"{where}: the conformance record ran another version of this scenario "
                "(re-record: uffdsim conform --record data/conformance.json)"), shown
    kernel = recorded.kernel.get(step.i, "not recorded")
    if kernel != "met":
        return f"{where} on the kernel (recorded): {kernel}", shown
    return None, shown


def check(citations: Iterable[Citation], corpus: Mapping[str, Path] | None = None,
          record: Mapping[str, str] | None = None,
          steps: Mapping[str, StepRecord] | None = None) -> list[Check]:
    """Check every citation (each cited scenario is run on the simulator once).

    ``record`` and ``steps`` default to ``data/conformance.json`` (when ``record`` is given and
    ``steps`` is not, no per-step outcomes are known)."""
    corpus = corpus_index() if corpus is None else corpus
    if record is None:
        record, steps = kernel_record(), (kernel_steps() if steps is None else steps)
    steps = {} if steps is None else steps
    sims: dict[str, tuple[str, Any, Any]] = {}
    out = []
    for c in citations:
        path = corpus.get(c.scenario)
        if path is not None and c.scenario not in sims:
            sims[c.scenario] = sim_run(path)
        status, scenario, result = sims.get(c.scenario, (None, None, None))
        problem, shown = (None, "")
        if c.step is not None and path is not None and status == "passed":
            problem, shown = step_check(c.step, scenario, result, steps.get(c.scenario))
        out.append(Check(c, path is not None, status, record.get(c.scenario), problem, shown))
    return out


def summary(checks: list[Check]) -> str:
    """``claims: C citations (N name a step) of S scenarios in P pages; F failing, K checked on the kernel``."""
    scen = {c.citation.scenario for c in checks}
    pages = {c.citation.page for c in checks}
    steps = sum(1 for c in checks if c.citation.step is not None)
    failing = sum(1 for c in checks if c.problem)
    kernel = sum(1 for c in checks if c.on_kernel)
    return (f"claims: {len(checks)} citations ({steps} name a step) of {len(scen)} scenarios in "
            f"{len(pages)} pages; {failing} failing, {kernel} checked on the kernel")


def _safe(text: str) -> str:
    """Text from a page, printable on one line (control characters escaped)."""
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def line(c: Check) -> str:
    """One citation: ``page:where  scenario[#step]  ok (sim passed, kernel agrees)`` or ``FAIL (why)``."""
    cite = c.citation
    state = f"FAIL ({c.problem})" if c.problem else f"ok (sim {c.sim}, kernel {c.kernel}" + \
        (", step met on both)" if cite.step is not None else ")")
    return _safe(f"{cite.page}:{cite.where}  {cite.target}  {state}")


def report(checks: list[Check], out: TextIO | None = None) -> int:
    """Print one line per citation and the summary; the number of failing citations."""
    out = out or sys.stdout
    for c in checks:
        print(line(c), file=out)
    print(summary(checks), file=out)
    return sum(1 for c in checks if c.problem)


def per_page(checks: Iterable[Check]) -> dict[str, int]:
    """Page -> number of citations on it."""
    out: dict[str, int] = {}
    for c in checks:
        out[c.citation.page] = out.get(c.citation.page, 0) + 1
    return out


def cmd_claims(args: argparse.Namespace) -> int:
    root = Path(args.root) if args.root else package_dir().parent
    if not args.files and not book_pages(root):
        print(f"error: no book pages under {root} (notebooks/*.ipynb, book/*.md); pass --root",
              file=sys.stderr)
        return 2
    for f in args.files:
        if not Path(f).exists():
            print(f"error: {f}: no such file", file=sys.stderr)
            return 2
    try:
        rec = Path(args.record) if args.record else None
        record, steps = kernel_record(rec), kernel_steps(rec)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError, PageError) as err:
        print(_safe(f"error: {args.record or 'data/conformance.json'}: not a conformance record "
                    f"({' '.join(str(err).split())[:200]})"), file=sys.stderr)
        return 2
    try:
        checks = check(scan(root, [Path(f) for f in args.files]), record=record, steps=steps)
    except (PageError, ParserMissing) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"citations": [dict(page=c.citation.page, where=c.citation.where,
                                             scenario=c.citation.scenario, step=c.citation.step,
                                             sim=c.sim, kernel=c.kernel, problem=c.problem)
                                        for c in checks],
                          "summary": summary(checks)}, indent=1))
        return 1 if any(c.problem for c in checks) else 0
    return 1 if report(checks) else 0


def register(sub: Any) -> None:
    """Add ``python -m uffdsim claims``."""
    p = sub.add_parser("claims", help="check the book's {claim} citations against the corpus and the kernel record")
    p.add_argument("files", nargs="*", help="pages to scan (default: notebooks/*.ipynb and book/*.md)")
    p.add_argument("--root", help="the book's folder (default: the checkout holding uffdsim)")
    p.add_argument("--record", metavar="FILE", help="the conformance record to check against "
                   "(default: data/conformance.json, as the book's badges do)")
    p.add_argument("--json", action="store_true", help="the checks as JSON")
    p.set_defaults(func=cmd_claims)
