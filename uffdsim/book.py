"""Helpers for the book's notebooks, so that their code cells stay short and only call uffdsim.

The chapters of the book (``notebooks/*.ipynb``) share a few small needs that are not part of
the simulator itself: finding the scenario corpus and the recorded data, showing a table the
same way in Jupyter and in the static book, running a scenario on the kernel where that is
possible (and saying why not elsewhere), and printing the outcome of an ioctl or the state of
a page in one line.  Nothing here changes what the simulator computes.

* paths: :func:`repo_root`, :func:`corpus_dir`, :func:`data_file`, :func:`example_file`
* output: :func:`html_table` (a :class:`Table`), :func:`show_pages`, :func:`api_reference`
* the kernel: :func:`kernel_status` (probed once), :func:`run_on_kernel`
* ioctl outcomes: :func:`outcome` (a call), :func:`step_outcome` / :func:`step_decision`
  (a scenario step record), :func:`ioctl_summary` (all ioctl steps of a result)
* :class:`Demo`: a machine with ``src`` and ``dst`` ready for a MOVE, in one line

Importing this module needs neither IPython nor matplotlib: tables and Markdown are objects
with ``_repr_html_`` / ``_repr_markdown_``, which Jupyter displays as it would ``IPython.display.HTML``.
"""
from __future__ import annotations

import functools
import importlib
import inspect
import re
from dataclasses import dataclass
from html import escape
from pathlib import Path

from typing import Any, Callable, Iterable, Mapping, Sequence

from .resources import corpus_dir as _corpus_dir, data_file as _data_file, example_file as _example_file, package_dir

from .errors import UffdError
from .mm.folio import PAGE_SIZE
from .mm.machine import Machine
from .runner import FrameLabeller, ScenarioResult, describe_addr, run_scenario
from .scenario import Scenario

__all__ = ["repo_root", "corpus_dir", "data_file", "example_file", "Table", "html_table", "Markdown", "kernel_status",
           "run_on_kernel", "field_text", "outcome", "step_outcome", "step_decision", "ioctl_summary",
           "show_pages", "Demo", "api_reference", "signature", "first_paragraph", "scenario_regions",
           "named_addresses", "book_claims", "api_table", "Html", "claim_table", "scenario_catalogue"]

#: the range ioctls whose output field a scenario step records
IOCTL_OPS = ("move", "copy", "zeropage")

# ---------------------------------------------------------------------------------------------
# paths


def repo_root() -> Path:
    """The folder that holds the package (a source checkout's root, or site-packages)."""
    return package_dir().parent


def corpus_dir() -> Path:
    """The scenario corpus shipped in the package (``uffdsim/scenarios``)."""
    return _corpus_dir()


def data_file(name: str) -> Path:
    """A recorded result shipped in the package (``uffdsim/data``: ``kernel_bench.json``, ...)."""
    return _data_file(name)


def example_file(name: str) -> Path:
    """An example program shipped in the package (``uffdsim/examples``: ``uffd_move_example.c``)."""
    return _example_file(name)


# ---------------------------------------------------------------------------------------------
# tables and Markdown


def _cell_html(value: Any) -> str:
    """One table cell as HTML: text escaped, `backticks` as code, a list as lines."""
    if isinstance(value, (list, tuple)):
        return "<br>".join(_cell_html(v) for v in value)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", escape("" if value is None else str(value)))


def _table_html(header: Sequence[Any], rows: Iterable[Sequence[Any]], cell_attrs: str = "") -> str:
    """``header`` and ``rows`` as an HTML table with the book theme's class; ``cell_attrs`` on each cell."""
    head = "".join(f"<th{cell_attrs}>{_cell_html(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td{cell_attrs}>{_cell_html(c)}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table class=\"table\"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


@dataclass(frozen=True)
class Table:
    """A small table that renders the same in Jupyter and in the static book (as HTML)."""

    header: tuple[Any, ...]
    rows: tuple[tuple[Any, ...], ...]

    def _repr_html_(self) -> str:
        """The table as HTML, left-aligned, with the book theme's table class."""
        return _table_html(self.header, self.rows, ' style="text-align:left"')

    def __repr__(self) -> str:
        return f"<table: {len(self.rows)} row(s) of {', '.join(map(str, self.header))}>"


def html_table(header: Sequence[Any], rows: Iterable[Sequence[Any]]) -> Table:
    """A table to display: the last expression of a cell, or ``display(html_table(...))``."""
    return Table(tuple(header), tuple(tuple(r) for r in rows))


@dataclass(frozen=True)
class Markdown:
    """Markdown text that Jupyter and the book render (like ``IPython.display.Markdown``)."""

    text: str

    def _repr_markdown_(self) -> str:
        """The text itself, for Jupyter's Markdown renderer."""
        return self.text

    def __repr__(self) -> str:
        return f"<Markdown: {len(self.text.splitlines())} line(s)>"


# ---------------------------------------------------------------------------------------------
# the running kernel


@functools.cache
def kernel_status() -> tuple[bool, str]:
    """(True, what works) when scenarios can run on this machine's kernel, else (False, why not)."""
    try:
        from .backends.kernel import KernelBackend
        return KernelBackend().available()
    except Exception as err:                   # no kernel backend here: not Linux, no ctypes, ...
        return False, f"kernel backend unavailable here: {type(err).__name__}: {err}"


def run_on_kernel(scenario: Scenario) -> tuple[ScenarioResult | None, str | None]:
    """Run a scenario on the running kernel: (result, None), or (None, why it did not run here)."""
    ok, why = kernel_status()
    if not ok:
        return None, why
    try:
        result = run_scenario(scenario, "kernel")
    except Exception as err:                   # a backend failure must not stop a notebook
        return None, f"kernel backend error: {type(err).__name__}: {err}"
    if result.status == "skipped":
        return None, result.reason
    return result, None


# ---------------------------------------------------------------------------------------------
# outcomes of ioctls


def field_text(value: int | None) -> int | str:
    """An ioctl's output field as the kernel left it: the number, or ``unwritten``."""
    return "unwritten" if value is None else value


def outcome(call: Callable[[], Any], field: str = "move", decision: bool = False) -> str:
    """Make one ioctl call and say how it went: ``ok, move=4096``, ``EBUSY, move=-16``, ...

    The output field is printed as the kernel left it (``unwritten`` when it was not written;
    positive with EAGAIN after partial progress).  With ``decision`` and an error from the
    simulator, the trail's decision follows in brackets: ``EBUSY, move=-16  [folio not anon-exclusive -> EBUSY]``.
    """
    try:
        return f"ok, {field}={call()}"
    except UffdError as err:
        text = f"{err.name}, {field}={field_text(err.out)}"
        trail = getattr(err, "trail", None)
        if decision and trail is not None:
            text += f"  [{trail.decision}]"
        return text


def step_outcome(rec: Mapping[str, Any]) -> str:
    """A scenario step record's ioctl result: ``ok, move=N`` or ``ERRNO, move=...``."""
    op = rec.get("op", "move")
    return f"{rec.get('errno') or 'ok'}, {op}={field_text(rec.get(op))}"


def step_decision(rec: Mapping[str, Any]) -> str:
    """The simulator's decision for a step: its explanation trail after the chain of functions."""
    trail = (rec.get("trail") or "").split(" || ", 1)[0]     # not what woken threads did afterwards
    return trail.split(": ", 1)[1] if ": " in trail else rec.get("why", "")


def scenario_regions(scenario: Scenario, result: ScenarioResult) -> dict[str, tuple[int, int]]:
    """The regions a run mapped: name -> (address, pages), from its ``mmap`` step records."""
    sizes = scenario.region_pages()
    return {st.args["name"]: (rec["addr"], sizes[st.args["name"]])
            for st, rec in zip(scenario.steps, result.steps)
            if st.op == "mmap" and rec.get("addr") is not None}


def named_addresses(text: str, regions: Mapping[str, tuple[int, int]]) -> str:
    """``text`` with every hexadecimal address inside a region written as ``name+page+byteb``."""
    return re.sub(r"0x[0-9a-f]{6,}", lambda m: describe_addr(int(m.group(0), 16), dict(regions)), text)


def book_claims(notebooks: Iterable[Path] | None = None) -> list[tuple[str, str, str]]:
    """Every ``{claim}`scenario``` citation in the notebooks' Markdown cells.

    Returns (notebook stem, scenario name, the sentence that cites it) in notebook order, as read
    by :func:`uffdsim.claims.scan` (the book's claims checker), so a chapter's claim table and the
    checker can never disagree about what the text cites.
    """
    from .claims import scan
    files = sorted((repo_root() / "notebooks").glob("*.ipynb")) if notebooks is None else list(notebooks)
    return [(Path(c.page).stem, c.scenario, c.sentence) for c in scan(repo_root(), files)]


def ioctl_summary(result: ScenarioResult, ops: Sequence[str] = IOCTL_OPS) -> str:
    """Every ioctl step of a result that ran, compactly: ``move EAGAIN/8192; move ENOENT/-2``."""
    return "; ".join(f"{s['op']} {s['errno'] or 'ok'}/{field_text(s.get(s['op']))}"
                     for s in result.steps if s["op"] in ops and not s.get("not_run"))


# ---------------------------------------------------------------------------------------------
# pages and a ready-made experiment


def show_pages(proc: Any, addr: int, pages: int = 1,
               regions: Mapping[str, tuple[int, int]] | None = None) -> None:
    """Print one line per page (never faults): state, value, pfn and mapcount, as a read,
    ``/proc/PID/pagemap`` and ``/proc/kpagecount`` would show them, then the PageAnonExclusive
    flag, labelled ``(simulator only)``: a program cannot read it; on a real kernel only root
    sees it, as bit 34 (``KPF_OWNER_2``) of the debugging file ``/proc/kpageflags``."""
    for k, v in enumerate(proc.observe(addr, pages * PAGE_SIZE)):
        label = describe_addr(addr + k * PAGE_SIZE, dict(regions or {}))
        if v.state == "present":
            owner = "anon-exclusive" if v.anon_exclusive else "not anon-exclusive"
            print(f"  {label:<6} present  value {v.value:#04x}  pfn {v.pfn:#x}  mapcount {v.mapcount}"
                  f"  {owner} (simulator only)")
        elif v.state == "zero":
            print(f"  {label:<6} the shared zero page")
        else:
            print(f"  {label:<6} {v.state}")


class Demo:
    """A fresh simulated machine for one experiment, ready for UFFDIO_MOVE.

    Process ``p`` (``main``) maps ``src`` (``pages`` pages, written with ``value``, or one value
    per page) and ``dst`` (``dst_pages``, default as many); ``u`` is its userfaultfd, asked for
    the MOVE feature, with ``dst`` (and ``src`` too with ``register_src``) registered for
    MISSING faults.  ``m`` is the machine, ``regions`` names the two ranges.
    """

    def __init__(self, pages: int = 1, value: int | Sequence[int] = 0x41, *,
                 dst_pages: int | None = None, register_src: bool = False) -> None:
        self.m = Machine()
        self.p = self.m.spawn("main")
        dst_pages = pages if dst_pages is None else dst_pages
        self.src, self.dst = self.p.mmap(pages), self.p.mmap(dst_pages)
        if isinstance(value, int):
            self.p.write(self.src, pages * PAGE_SIZE, value)
        else:
            for i, v in enumerate(value):
                self.p.write(self.src + i * PAGE_SIZE, PAGE_SIZE, v)
        self.u = self.p.userfaultfd(features=["move"])
        if register_src:
            self.u.register(self.src, pages * PAGE_SIZE, ["missing"])
        self.u.register(self.dst, dst_pages * PAGE_SIZE, ["missing"])
        self.regions = {"src": (self.src, pages), "dst": (self.dst, dst_pages)}
        self.frames = FrameLabeller()          # physical frames named f0, f1, ... by first sight

    def page(self, where: str = "src", proc: Any = None, i: int = 0) -> str:
        """One page, without touching it: what pagemap and kpagecount show, then after ``|`` what
        the simulator shows directly (PageAnonExclusive, which on a real kernel only root reads,
        from bit 34 of ``/proc/kpageflags``; the swap entry's exclusive bit; a pin)."""
        proc = proc or self.p
        v = proc.observe((self.src if where == "src" else self.dst) + i * PAGE_SIZE, PAGE_SIZE)[0]
        frame = self.frames.label({"state": v.state, "frame": v.pfn})
        text = f"{proc.name:5} {where}+{i}: {v.state}"
        if v.state == "present":
            text += (f" value={v.value} frame={frame} mapcount={v.mapcount}" + (" ksm" if v.ksm else "")
                     + f" | sim only: anon_exclusive={v.anon_exclusive}" + (" pinned" if v.pinned else ""))
        elif v.state == "swap":
            text += f" | sim only: swap entry exclusive bit {v.anon_exclusive}"
        return text

    def move(self, i: int = 0) -> str:
        """UFFDIO_MOVE of page i from src to dst: the outcome, the ``move`` field, the decision."""
        at = i * PAGE_SIZE
        return "MOVE: " + outcome(lambda: self.u.move(self.dst + at, self.src + at, PAGE_SIZE), decision=True)


# ---------------------------------------------------------------------------------------------
# the API reference appendix


class _Shown:
    """Shows a text as is inside a signature (string annotations, long default values)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _default(value: Any) -> Any:
    """A default value as a reader should see it: names for functions, paths from the repository."""
    if value is inspect.Parameter.empty:
        return value
    if inspect.isfunction(value) or inspect.isclass(value):
        return _Shown(value.__name__)                 # not "<function f at 0x...>"
    return _Shown(repr(value).replace(str(Path(__file__).resolve().parents[1]), "<repo>"))


def signature(obj: Any) -> str:
    """``obj``'s call signature without addresses or absolute paths; ``(...)`` when it has none."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return "(...)"
    params = [p.replace(annotation=_Shown(p.annotation) if isinstance(p.annotation, str) else p.annotation,
                        default=_default(p.default)) for p in sig.parameters.values()]
    ret = sig.return_annotation
    return str(sig.replace(parameters=params, return_annotation=_Shown(ret) if isinstance(ret, str) else ret))


def first_paragraph(obj: Any) -> str:
    """The first paragraph of the object's own docstring, on one line (``""`` when it has none)."""
    doc = obj.__doc__ if inspect.isclass(obj) else inspect.getdoc(obj)
    doc = inspect.cleandoc(doc or "")
    if inspect.isclass(obj) and doc.startswith(obj.__name__ + "("):
        doc = ""                                      # the signature dataclasses generate
    para = " ".join(doc.split("\n\n")[0].split())
    para = re.sub(r":[a-z]+:`~?([^`]+)`", r"`\1`", para)      # Sphinx roles -> code
    return para.replace("``", "`")


def _item(head: str, obj: Any) -> str:
    text = first_paragraph(obj)
    return f"{head}: {text}" if text else head


def _defined_in(obj: Any, module_name: str) -> bool:
    """Whether ``obj`` comes from the module, or from a submodule of that package (a re-export)."""
    home = getattr(obj, "__module__", None) or ""
    return home == module_name or home.startswith(module_name + ".")


def _public_names(module: Any) -> list[str]:
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n, v in vars(module).items()
                 if not n.startswith("_") and (inspect.isclass(v) or inspect.isfunction(v))
                 and _defined_in(v, module.__name__)]
    return sorted(set(names), key=lambda n: (n.lower(), n))


def _methods(cls: type) -> list[str]:
    out = []
    for name, value in sorted(vars(cls).items(), key=lambda kv: (kv[0].lower(), kv[0])):
        if name.startswith("_"):
            continue
        if isinstance(value, (staticmethod, classmethod)):
            value = value.__func__
        if inspect.isfunction(value):
            out.append(_item(f"  - `{name}{signature(value)}`", value))
        elif isinstance(value, property):
            out.append(_item(f"  - `{name}` (property)", value))
    return out


def api_table(names: Sequence[str]) -> Table:
    """A table of the named objects (dotted paths such as ``uffdsim.Process.mmap``): signature and
    the first docstring paragraph, generated from the code. An unknown name raises AttributeError."""
    rows = []
    for dotted in names:
        parts = dotted.split(".")
        for cut in range(len(parts), 0, -1):        # the longest importable module prefix
            try:
                obj: Any = importlib.import_module(".".join(parts[:cut]))
                break
            except ImportError:
                continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        sig = signature(obj) if callable(obj) else ""
        rows.append((f"`{'.'.join(parts[cut - 1:])}{sig}`", first_paragraph(obj) if callable(obj) else ""))
    return html_table(["name and signature", "what it does"], rows)


def api_reference(module_name: str) -> Markdown:
    """The public API of one module as a Markdown list: signatures and first docstring paragraphs."""
    try:
        module = importlib.import_module(module_name)
    except Exception as err:                          # e.g. a backend that needs Linux
        return Markdown(f"`{module_name}` cannot be imported here: {type(err).__name__}: {err}")
    lines = [first_paragraph(module) or "(no module docstring)", ""]
    others = []
    for name in _public_names(module):
        obj = getattr(module, name, None)
        if inspect.isclass(obj):
            kind = "exception" if issubclass(obj, BaseException) else "class"
            lines.append(_item(f"- **`{name}{signature(obj)}`** ({kind})", obj))
            lines += _methods(obj)
        elif inspect.isfunction(obj) or inspect.isbuiltin(obj):
            lines.append(_item(f"- **`{name}{signature(obj)}`**", obj))
        else:
            others.append(name)
    if others:
        lines.append("- Constants and type aliases: " + ", ".join(f"`{c}`" for c in others))
    return Markdown("\n".join(lines))


# ---------------------------------------------------------------------------------------------
# claims: the scenario appendix and claim tables (the citations are read by uffdsim.claims)


@dataclass(frozen=True)
class Html:
    """HTML that Jupyter and the book render as is (like ``IPython.display.HTML``)."""

    text: str

    def _repr_html_(self) -> str:
        """The HTML itself."""
        return self.text

    def __repr__(self) -> str:
        return f"<HTML: {len(self.text)} characters>"


def _page_matches(page: str, wanted: str) -> bool:
    stem = Path(page).stem
    return wanted in (page, stem, Path(wanted).stem) or Path(wanted).stem == stem


def claim_table(page: str | None = None, root: Path | None = None) -> Table:
    """The claims a page makes (``"07-documentation"``; None: every page), one row per citation.

    Columns: the citing sentence, the scenario, its result on the simulator (run now) and in the
    kernel conformance record.  Generated from the same ``{claim}`` roles the checker reads.
    """
    from .claims import check, scan
    cites = [c for c in scan(root) if page is None or _page_matches(c.page, page)]
    rows = []
    for c in check(cites):
        cite = c.citation
        kernel = "not recorded" if c.kernel is None else c.kernel
        if cite.step is not None and c.kernel is not None:          # a cited step: met, or why not
            kernel += f"; {c.step_problem}" if c.step_problem else "; the step met on both"
        rows.append(([f"{Path(cite.page).stem}, {cite.where}"] if page is None else []) +
                    [cite.sentence, f"`{cite.target}`", c.sim or "missing", kernel])
    head = (["page"] if page is None else []) + ["claim", "scenario", "simulator", "kernel (recorded)"]
    return html_table(head, rows)


def _family(name: str) -> str:
    return name.split("-", 1)[0]


def _plain_table(header: Sequence[Any], rows: Iterable[Sequence[Any]]) -> str:
    """A compact HTML table (no per-cell styles: the catalogue has a couple of thousand rows)."""
    return _table_html(header, rows)


#: a scenario longer than this shows its first CATALOGUE_HEAD and last CATALOGUE_TAIL steps
#: (peer-kselftest-move has 65,544: its table alone would be megabytes)
CATALOGUE_ROWS, CATALOGUE_HEAD, CATALOGUE_TAIL = 400, 200, 40


def catalogue_rows(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The catalogue's rows of one scenario; a long one's middle becomes one row that counts it."""
    if len(rows) <= CATALOGUE_ROWS:
        return rows
    middle = rows[CATALOGUE_HEAD:-CATALOGUE_TAIL]
    checked = [r[4] for r in middle if r[4]]
    met = sum(1 for e in checked if e == "met")
    note = (f"{len(middle)} steps not shown (#{middle[0][0]} to #{middle[-1][0]}), run like the others; "
            f"{met} of their {len(checked)} expectations met")
    return rows[:CATALOGUE_HEAD] + [("...", "", note, "", "")] + rows[-CATALOGUE_TAIL:]


def scenario_catalogue() -> Html:
    """Every corpus scenario: what it shows, its steps run on the simulator, its recorded kernel result.

    Each entry has the HTML id ``scenario-<name>`` that the ``{claim}`` badges link to.  The page
    depends on the corpus and the conformance record only (not on which pages cite what: that is
    ``python -m uffdsim claims``), so editing a chapter's prose does not change it.
    """
    from .report import fmt_args, fmt_result
    from .scenario import ScenarioError, load_scenario
    from .resources import corpus_files
    import json
    record = json.loads(data_file("conformance.json").read_text())
    recorded = {e["name"]: e for e in record.get("scenarios", [])}
    entries, families = [], {}
    for path in corpus_files():
        try:
            scenario = load_scenario(path)
        except ScenarioError as err:
            entries.append(f"<p>{escape(str(err))}</p>")
            continue
        name = scenario.name
        families.setdefault(_family(name), []).append(name)
        result = run_scenario(scenario, "sim")
        rows = []
        for step, rec in zip(scenario.steps, result.steps):
            expect = "" if "expect" not in rec else ("met" if rec["expect"] == "met" else rec["expect"])
            rows.append((rec["i"], step.op, fmt_args(step.raw, step.op), fmt_result(rec), expect))
        rows = catalogue_rows(rows)
        kernel = recorded.get(name)
        if kernel is None:
            kernel_text = "not in the conformance record"
        else:
            kernel_text = f"{kernel['kernel']}; with the simulator: {kernel['status']}"
            if kernel.get("reason"):
                kernel_text += f" ({kernel['reason']})"
        entries.append(
            f"<div class=\"scenario-entry\" id=\"scenario-{escape(name)}\">"
            f"<h3><code>{escape(name)}</code></h3><p>{escape(scenario.about)}</p>"
            f"<p><b>Simulator</b> (run for this page): {escape(result.status)}. "
            f"<b>Kernel</b> (recorded): {escape(kernel_text)}. "
            f"<b>File</b>: <code>{escape(Path(path).name)}</code>.</p>"
            + _plain_table(["#", "op", "arguments", "simulator result", "expectation"], rows) + "</div>")
    index = "".join(f"<p><b>{escape(fam)}</b>: " + ", ".join(
        f"<a href=\"#scenario-{escape(n)}\">{escape(n)}</a>" for n in names) + "</p>"
        for fam, names in sorted(families.items()))
    head = (f"<p>{len(entries)} scenarios. Kernel record: Linux {escape(str(record.get('kernel')))} "
            f"({escape(str(record.get('machine')))}), {escape(str(record.get('date')))}; "
            f"{record['totals']['agree']} agree, {record['totals']['divergences']} diverge, "
            f"{record['totals']['skipped']} skipped.</p>")
    return Html(head + index + "".join(entries))
