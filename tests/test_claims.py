"""The claims checker (uffdsim/claims.py) and the {claim} role (book/_ext/claims.py).

The first test runs the checker over the whole book: a citation of a scenario that is missing, does
not pass on the simulator or is not recorded as agreeing with the kernel fails it.  The others run
the checker on small fixtures, so each way of failing is shown to be caught.
"""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from uffdsim import claims as C
from uffdsim.book import claim_table, scenario_catalogue
from uffdsim.resources import corpus_dir

ROOT = Path(__file__).resolve().parent.parent
PASSING = "basics-move-one-page"            # in the corpus, passes, agrees in the record


def test_every_citation_in_the_book_holds() -> None:
    checks = C.check(C.scan(ROOT))
    failing = [C.line(c) for c in checks if c.problem]
    assert checks, "the book cites no scenario at all"
    assert not failing, "failing citations:\n" + "\n".join(failing)


def notebook(path: Path, *markdown: str) -> Path:
    cells = [{"cell_type": "markdown", "metadata": {}, "source": text.splitlines(True)} for text in markdown]
    cells.insert(1, {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
                     "source": ["# {claim}`not-a-citation-in-code`\n"]})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    return path


@pytest.fixture
def book(tmp_path: Path) -> Path:
    notebook(tmp_path / "notebooks" / "01-x.ipynb",
             f"# One\n\nA move takes the frame along {{claim}}`{PASSING}`. Second sentence.",
             "Cites nothing that exists {claim}`no-such-scenario`.\n\n"
             "The syntax is ``{claim}`name` `` (code, not a citation).")
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "p.md").write_text(
        "# Page\n\n```\n{claim}`in-a-fence`\n```\n\nBroken on the simulator {claim}`broken-on-sim`.\n"
        "Diverges on the kernel {claim}`diverging`. Never recorded {claim}`unrecorded`.\n")
    return tmp_path


@pytest.fixture
def corpus(tmp_path: Path) -> dict[str, Path]:
    d = tmp_path / "corpus"
    d.mkdir()
    good = corpus_dir() / f"{PASSING}.yaml"
    out = {PASSING: good}
    text = good.read_text()
    for name in ("diverging", "unrecorded"):
        (d / f"{name}.yaml").write_text(text.replace(f"name: {PASSING}", f"name: {name}"))
        out[name] = d / f"{name}.yaml"
    # the same scenario with a wrong expectation: fails on the simulator
    (d / "broken-on-sim.yaml").write_text(
        text.replace(f"name: {PASSING}", "name: broken-on-sim").replace("move: 4096", "move: 8192"))
    out["broken-on-sim"] = d / "broken-on-sim.yaml"
    return out


RECORD = {PASSING: "agrees", "broken-on-sim": "agrees", "diverging": "diverges"}


def test_scan_finds_citations_in_markdown_only(book: Path) -> None:
    cites = C.scan(book)
    assert [(c.page, c.where, c.scenario) for c in cites] == [
        ("notebooks/01-x.ipynb", "cell 0", PASSING),
        ("notebooks/01-x.ipynb", "cell 2", "no-such-scenario"),
        ("book/p.md", "line 7", "broken-on-sim"),
        ("book/p.md", "line 8", "diverging"),
        ("book/p.md", "line 8", "unrecorded")]
    assert cites[0].sentence == "A move takes the frame along."


def test_each_kind_of_failure_is_caught(book: Path, corpus: dict[str, Path]) -> None:
    checks = {c.citation.scenario: c for c in C.check(C.scan(book), corpus, RECORD)}
    assert checks[PASSING].problem is None and checks[PASSING].on_kernel
    assert checks["no-such-scenario"].problem.startswith("missing")
    assert checks["broken-on-sim"].problem == "sim failed"
    assert checks["diverging"].problem == "kernel diverges in the conformance record"
    assert checks["unrecorded"].problem == "kernel not recorded in the conformance record"
    assert C.summary(list(checks.values())) == \
        "claims: 5 citations of 5 scenarios in 2 pages; 4 failing, 2 checked on the kernel"


def test_record_counts_agreement_only_when_both_passed(tmp_path: Path) -> None:
    rec = tmp_path / "conformance.json"
    rec.write_text(json.dumps({"scenarios": [
        {"name": "a", "sim": "passed", "kernel": "passed", "status": "agrees"},
        {"name": "b", "sim": "failed", "kernel": "failed", "status": "agrees"},
        {"name": "c", "sim": "passed", "kernel": "skipped", "status": "skipped"}]}))
    assert C.kernel_record(rec) == {"a": "agrees", "b": "sim failed, kernel failed", "c": "skipped"}


def test_cli_exits_nonzero_on_a_failing_citation(book: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "uffdsim", "claims", "--root", str(book)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == f"notebooks/01-x.ipynb:cell 0  {PASSING}  ok (sim passed, kernel agrees)"
    assert "no-such-scenario  FAIL (missing" in lines[1]
    assert lines[-1].startswith("claims: 5 citations of 5 scenarios in 2 pages; 4 failing, 1 checked")


def test_cli_exits_zero_when_all_hold(tmp_path: Path) -> None:
    notebook(tmp_path / "notebooks" / "01-x.ipynb", f"Fine {{claim}}`{PASSING}`.")
    run = subprocess.run([sys.executable, "-m", "uffdsim", "claims", "--root", str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.splitlines()[-1] == \
        "claims: 1 citations of 1 scenarios in 1 pages; 0 failing, 1 checked on the kernel"


def test_cli_rejects_a_root_without_pages(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "uffdsim", "claims", "--root", str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and run.stderr.startswith("error: no book pages") and "Traceback" not in run.stderr


def test_cli_rejects_a_broken_notebook_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "x.ipynb"
    bad.write_text("{not json")
    run = subprocess.run([sys.executable, "-m", "uffdsim", "claims", str(bad)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and run.stderr.startswith(f"error: {bad}: not a notebook")
    assert "Traceback" not in run.stderr


def test_claim_table_comes_from_the_citations(book: Path) -> None:
    table = claim_table("01-x", root=book)
    assert table.header == ("claim", "scenario", "simulator", "kernel (recorded)")
    assert table.rows[0] == ("A move takes the frame along.", f"`{PASSING}`", "passed", "agrees")
    assert table.rows[1][2:] == ("missing", "not recorded")


def test_catalogue_has_an_anchor_per_scenario() -> None:
    html = scenario_catalogue().text
    for path in sorted(corpus_dir().glob("*.yaml"))[:20]:
        assert f'id="scenario-{path.stem}"' in html
    assert "0x" not in html.split("<div", 1)[0]


def _extension():
    spec = importlib.util.spec_from_file_location("claims_ext", ROOT / "book" / "_ext" / "claims.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_role_reports_an_error_for_an_unknown_scenario() -> None:
    from docutils.core import publish_doctree
    from docutils.parsers.rst import roles
    ext = _extension()
    roles.register_local_role("claim", ext.claim_role)
    good = publish_doctree(f"Moves :claim:`{PASSING}`.", settings_overrides={"report_level": 5})
    bad = publish_doctree("Moves :claim:`no-such-scenario`.", settings_overrides={"report_level": 5})
    errors = [n for n in bad.findall() if n.tagname == "system_message"]
    assert not [n for n in good.findall() if n.tagname == "system_message"]
    assert errors and "not a corpus scenario" in errors[0].astext()
    ref = next(n for n in good.findall() if n.tagname == "reference")
    assert ref["claim_scenario"] == PASSING and ref.astext() == f"✓ {PASSING}"


def test_citations_inside_directive_fences_count_and_code_does_not() -> None:
    """A MyST directive fence (```{glossary}) is prose and its citations count (the glossary's 71
    citations were once skipped as "code"); code fences, live cells and ``spans`` never cite."""
    from uffdsim.claims import citations_in_text
    text = ("```{glossary}\nterm\n  A shared page is EBUSY {claim}`move-after-fork`.\n```\n\n"
            "```python\nx = '{claim}`not-a-citation-1`'\n```\n\n"
            "````{live-cell} yaml\nabout: {claim}`not-a-citation-2`\n````\n\n"
            "```{code-cell} ipython3\n# {claim}`not-a-citation-3`\n```\n\n"
            "Write ``{claim}`not-a-citation-4` `` in a page; a hole is ENOENT {claim}`holes-src-pte-empty`.\n")
    assert [c.scenario for c in citations_in_text(text, "p.md", "")] == ["move-after-fork", "holes-src-pte-empty"]
