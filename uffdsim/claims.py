"""The book's claims checker: every ``{claim}`scenario``` citation points at a scenario that proves it.

A sentence in a notebook's Markdown cell (``notebooks/*.ipynb``) or a book page (``book/*.md``)
cites the corpus scenario that shows what it says with the MyST role ``{claim}`scenario-name```
(one scenario per role; :mod:`book/_ext/claims.py <claims>` renders it as a badge).  A citation
*fails* when its scenario

* does not exist in the corpus (``missing``),
* does not pass on the simulator, run now (``sim <status>``), or
* is not recorded as agreeing with the kernel in the conformance record
  (``data/conformance.json``: ``kernel not recorded`` / ``kernel <status>``).

A citation is *checked on the kernel* when the record shows its scenario passing on both backends
with no divergence.  ``python -m uffdsim claims [--root DIR] [FILE ...]`` prints one line per
citation and ends with ``claims: C citations of S scenarios in P pages; F failing, K checked on the
kernel`` (K counts citations); it exits 1 when F > 0.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, TextIO

from .resources import corpus_files, data_file, package_dir

#: ``{claim}`name```: the role as MyST writes it (one scenario name per role)
CLAIM_RE = re.compile(r"\{claim\}`([^`]*)`")
#: code that is not parsed as MyST: fenced blocks and double-backtick spans
#: code that cannot cite: fenced code (a MyST directive fence such as ```{glossary} is prose,
#: except code-like directives and live cells) and ``double-backtick`` spans
_CODE_RE = re.compile(r"^(```+|~~~+)(?![ \t]*\{(?!code|live-cell|literalinclude))[^\n]*\n.*?^\1[ \t]*$|(?<!`)``(?!`)[^\n]+?(?<!`)``(?!`)",
                      re.S | re.M)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z`*_(\"])")


@dataclass(frozen=True)
class Citation:
    """One ``{claim}`` role: where it is and which scenario it cites."""

    page: str          #: the page's path relative to the root (``notebooks/05-errors.ipynb``)
    where: str         #: ``cell 29`` (a notebook's 0-based cell index) or ``line 12``
    scenario: str
    sentence: str      #: the sentence that carries it, roles and Markdown stripped


@dataclass(frozen=True)
class Check:
    """A citation and what the corpus, the simulator and the conformance record say about it."""

    citation: Citation
    exists: bool
    sim: str | None            #: passed / failed / skipped (run now); None when missing
    kernel: str | None         #: the record's status (agrees / diverges / skipped); None if absent

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
        return None

    @property
    def on_kernel(self) -> bool:
        return self.exists and self.kernel == "agrees"


def _plain(text: str) -> str:
    """A sentence without roles, Markdown emphasis or link targets, on one line."""
    text = CLAIM_RE.sub("", text)
    text = re.sub(r"\{[a-z:-]+\}`([^`]*)`", r"\1", text)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"[*_]{1,2}([^*_]+)[*_]{1,2}", r"\1", text)
    text = " ".join(text.replace("`", "").split())
    return re.sub(r"\s+([.,;:!?)])", r"\1", text).strip(" -")


def _sentence_at(text: str, pos: int) -> str:
    """The sentence of ``text`` (a paragraph) that contains offset ``pos``."""
    start = text.rfind("\n\n", 0, pos) + 1
    end = text.find("\n\n", pos)
    para = text[start:end if end >= 0 else len(text)]
    offset = pos - start
    at = 0
    for piece in _SENTENCE_END.split(para):
        at = para.find(piece, at)
        if at <= offset <= at + len(piece):
            return _plain(piece)
        at += len(piece)
    return _plain(para)


def citations_in_text(text: str, page: str, where: str) -> list[Citation]:
    """The citations in one Markdown text (code blocks and ``double-backtick`` spans ignored)."""
    blanked = _CODE_RE.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)
    return [Citation(page, where, m.group(1).strip(), _sentence_at(text, m.start()))
            for m in CLAIM_RE.finditer(blanked)]


def citations_in_file(path: Path, root: Path) -> list[Citation]:
    """The citations on one page: a notebook's Markdown cells, or a Markdown file's lines."""
    try:
        page = str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        page = str(path)
    if path.suffix == ".ipynb":
        try:
            cells = json.loads(path.read_text(encoding="utf-8")).get("cells", [])
        except (ValueError, AttributeError) as err:
            raise ValueError(f"{path}: not a notebook ({err})") from None
        out: list[Citation] = []
        for n, cell in enumerate(cells):
            if cell.get("cell_type") == "markdown":
                src = cell.get("source", "")
                out += citations_in_text("".join(src) if isinstance(src, list) else src, page, f"cell {n}")
        return out
    text = path.read_text(encoding="utf-8")
    cites = citations_in_text(text, page, "")
    lines = [text.count("\n", 0, m.start()) + 1
             for m in CLAIM_RE.finditer(_CODE_RE.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text))]
    return [Citation(c.page, f"line {ln}", c.scenario, c.sentence) for c, ln in zip(cites, lines)]


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


def kernel_record(path: Path | None = None) -> dict[str, str]:
    """Scenario name -> status in the conformance record (only runs passing on both count as agrees)."""
    rec = json.loads((path or data_file("conformance.json")).read_text())
    out = {}
    for e in rec.get("scenarios", []):
        status = e.get("status")
        if status == "agrees" and (e.get("sim"), e.get("kernel")) != ("passed", "passed"):
            status = f"sim {e.get('sim')}, kernel {e.get('kernel')}"
        out[e["name"]] = status
    return out


def sim_status(path: Path) -> str:
    """Run one scenario file on the simulator: passed / failed / skipped, or ``error: ...``."""
    from .runner import run_scenario
    from .scenario import ScenarioError, load_scenario
    try:
        return run_scenario(load_scenario(path), "sim").status
    except ScenarioError as err:
        return f"error: {err}"


def check(citations: Iterable[Citation], corpus: Mapping[str, Path] | None = None,
          record: Mapping[str, str] | None = None) -> list[Check]:
    """Check every citation (each cited scenario is run on the simulator once)."""
    corpus = corpus_index() if corpus is None else corpus
    record = kernel_record() if record is None else record
    sims: dict[str, str] = {}
    out = []
    for c in citations:
        path = corpus.get(c.scenario)
        if path is not None and c.scenario not in sims:
            sims[c.scenario] = sim_status(path)
        out.append(Check(c, path is not None, sims.get(c.scenario), record.get(c.scenario)))
    return out


def summary(checks: list[Check]) -> str:
    """``claims: C citations of S scenarios in P pages; F failing, K checked on the kernel``."""
    scen = {c.citation.scenario for c in checks}
    pages = {c.citation.page for c in checks}
    failing = sum(1 for c in checks if c.problem)
    kernel = sum(1 for c in checks if c.on_kernel)
    return (f"claims: {len(checks)} citations of {len(scen)} scenarios in {len(pages)} pages; "
            f"{failing} failing, {kernel} checked on the kernel")


def line(c: Check) -> str:
    """One citation: ``page:where  scenario  ok (sim passed, kernel agrees)`` or ``FAIL (why)``."""
    cite = c.citation
    state = f"FAIL ({c.problem})" if c.problem else f"ok (sim {c.sim}, kernel {c.kernel})"
    return f"{cite.page}:{cite.where}  {cite.scenario}  {state}"


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
        if not Path(f).is_file():
            print(f"error: {f}: no such file", file=sys.stderr)
            return 2
    try:
        checks = check(scan(root, [Path(f) for f in args.files]))
    except (ValueError, UnicodeDecodeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"citations": [dict(page=c.citation.page, where=c.citation.where,
                                             scenario=c.citation.scenario, sim=c.sim, kernel=c.kernel,
                                             problem=c.problem) for c in checks],
                          "summary": summary(checks)}, indent=1))
        return 1 if any(c.problem for c in checks) else 0
    return 1 if report(checks) else 0


def register(sub: Any) -> None:
    """Add ``python -m uffdsim claims``."""
    p = sub.add_parser("claims", help="check the book's {claim} citations against the corpus and the kernel record")
    p.add_argument("files", nargs="*", help="pages to scan (default: notebooks/*.ipynb and book/*.md)")
    p.add_argument("--root", help="the book's folder (default: the checkout holding uffdsim)")
    p.add_argument("--json", action="store_true", help="the checks as JSON")
    p.set_defaults(func=cmd_claims)
