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
        "claims: 5 citations (0 name a step) of 5 scenarios in 2 pages; 4 failing, 2 checked on the kernel"


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
    assert lines[-1].startswith("claims: 5 citations (0 name a step) of 5 scenarios in 2 pages; 4 failing, 1 checked")


def test_cli_exits_zero_when_all_hold(tmp_path: Path) -> None:
    notebook(tmp_path / "notebooks" / "01-x.ipynb", f"Fine {{claim}}`{PASSING}`.")
    run = subprocess.run([sys.executable, "-m", "uffdsim", "claims", "--root", str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.splitlines()[-1] == \
        "claims: 1 citations (0 name a step) of 1 scenarios in 1 pages; 0 failing, 1 checked on the kernel"


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
    badge = next(n for n in good.findall() if n.tagname == "claim_badge")
    assert badge["claim_scenario"] == PASSING and badge.astext() == f"✓ {PASSING}"


def test_the_badge_shows_the_cited_step_and_fails_the_build_for_a_bad_one(monkeypatch, steps_corpus) -> None:
    """A badge naming a step carries the step (op and arguments) and its expectation, and is the
    tooltip of a focusable link (aria-describedby); a step that does not exist, carries no
    expectation or is not recorded as met on the kernel is an error (the build fails under -W)."""
    from docutils.core import publish_doctree
    from docutils.parsers.rst import roles
    ext = _extension()
    corpus, record = steps_corpus
    monkeypatch.setattr(ext, "_known", lambda: (corpus, C.kernel_record(record), C.kernel_steps(record)))
    roles.register_local_role("claim", ext.claim_role)

    def render(target: str):
        tree = publish_doctree(f"Moves :claim:`{target}`.", settings_overrides={"report_level": 5})
        errors = [n.astext() for n in tree.findall() if n.tagname == "system_message"]
        return next(n for n in tree.findall() if n.tagname == "claim_badge"), errors

    badge, errors = render("named#the-move")
    assert not errors and badge.astext() == "✓ named#the-move"
    assert badge["claim_fact"] == ("Scenario named, step 6 (the-move): move dst=dst, src=src, pages=1; expect "
                                   "ok=True move=4096. Simulator and kernel agree (recorded in data/conformance.json).")

    whole, _ = render("named")                  # a whole scenario: the steps it checks
    assert whole["claim_fact"].startswith("Scenario named, checks step 3: observe at=src, pages=1; expect pages: "
                                          "state=present value=65 frame=f0 | step 6 (the-move): move")

    class Html:
        body: list = []
    badge["claim_id"], badge["refuri"] = "claim-fact-3", "a6-scenarios.html#scenario-named"
    with pytest.raises(Exception):
        ext.visit_badge_html(Html, badge)                   # SkipNode once the HTML is written
    html = "".join(Html.body)
    assert '<a class="claim reference internal" href="a6-scenarios.html#scenario-named" ' \
           'aria-describedby="claim-fact-3">' in html
    assert '<span class="claim-tip" role="tooltip" id="claim-fact-3">Scenario named, step 6 (the-move): move' in html
    for bad, why in (("named#2", "the step carries no expectation"), ("named#9", "no step 9"),
                     ("named#src-empty", "on the kernel (recorded): unmet"),
                     ("unstepped#6", "no per-step outcome for this version")):
        assert any(why in e for e in render(bad)[1]), (bad, render(bad)[1])


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


# -- reading the book with the MyST parser ---------------------------------------------------------

NESTED = """\
# Nesting

- a list item with a dropdown:

  ````{admonition} A dropdown
  :class: dropdown
  Inside a 4-backtick dropdown {claim}`in-a-dropdown`.

  ```python
  x = "{claim}`not-in-3-backtick-code`"
  ```

  ```{note}
  A directive in the dropdown in the list {claim}`in-a-note-in-a-dropdown`.
  ```
  ````

:::{tip} A title cites {claim}`in-a-title`
A colon fence {claim}`in-a-colon-fence`.
:::

```{glossary}
:sorted:

Term one
  First definition {claim}`in-a-glossary`.

      indented code in a definition {claim}`not-in-indented-code`

Term two
  Second definition.
  Second sentence {claim}`in-a-glossary-second-sentence`.
```

| case | shown by |
| --- | --- |
| a table cell | {claim}`in-a-table#move-it` |

Inline code ``{claim}`not-in-inline-code` `` does not cite, nor math $x = {claim}`not-in-math`$,
nor HTML <span title="{claim}`not-in-html`">x</span>.

% a comment {claim}`not-in-a-comment`

    an indented code block {claim}`not-in-an-indented-block`

```{live-cell} yaml
about: {claim}`not-in-a-live-cell`
```

Last {claim}`last#3`.
"""


def test_the_parser_finds_citations_where_myst_renders_them() -> None:
    """Directive in a dropdown in a list, 4-backtick fences holding 3-backtick ones, a glossary, a
    table; nothing in code (fenced, indented, inline), math, HTML, comments or live cells."""
    cites = C.citations_in_text(NESTED, "p.md", "", first_line=1)
    assert [(c.target, c.where) for c in cites] == [
        ("in-a-dropdown", "line 7"), ("in-a-note-in-a-dropdown", "line 14"), ("in-a-title", "line 18"),
        ("in-a-colon-fence", "line 19"), ("in-a-glossary", "line 26"),
        ("in-a-glossary-second-sentence", "line 32"), ("in-a-table#move-it", "line 37"), ("last#3", "line 50")]
    by = {c.target: c for c in cites}
    assert by["in-a-table#move-it"].scenario == "in-a-table" and by["in-a-table#move-it"].step == "move-it"
    assert by["in-a-table#move-it"].context == by["in-a-table#move-it"].sentence == "a table cell |"
    assert by["in-a-glossary"].context == "Term one" and by["in-a-glossary"].sentence == "First definition."
    assert by["in-a-glossary-second-sentence"].sentence == "Second sentence."
    assert by["last#3"].step == "3"


def test_a_notebook_cell_is_parsed_on_its_own(tmp_path: Path) -> None:
    """The cells of a notebook are parsed one by one (as MyST-NB does): a fence left open in one
    cell does not swallow the next."""
    path = notebook(tmp_path / "n.ipynb", "````{note}\nopen fence {claim}`a`\n", f"Next cell {{claim}}`b`.")
    assert [(c.where, c.scenario) for c in C.citations_in_file(path, tmp_path)] == [("cell 0", "a"), ("cell 2", "b")]


def test_the_parser_tokenises_the_book_as_myst_does() -> None:
    """Our markdown-it configuration (with its linear replacements of three rules) gives the same
    tokens as MyST-Parser's own for every Markdown cell and page of the book."""
    mdit = pytest.importorskip("myst_parser.parsers.mdit")
    from markdown_it.renderer import RendererHTML
    from myst_parser.config.main import MdParserConfig
    from uffdsim import citations as P
    myst = mdit.create_md_parser(MdParserConfig(enable_extensions={"colon_fence", "dollarmath", "substitution",
                                                                   "tasklist"}), RendererHTML)
    ours = P.parser()

    def flat(tokens):
        for t in tokens:
            yield (t.type, t.tag, t.map, t.info, t.content, t.meta.get("name") if t.type == "myst_role" else None)
            yield from flat(t.children or [])

    texts = []
    for page in C.book_pages(ROOT):
        text = P.read_page(page)
        texts += [src for _, src in P.markdown_cells(page, text)] if page.suffix == ".ipynb" else [text]
    assert len(texts) > 100
    for text in texts:
        assert list(flat(ours.parse(text, {}))) == list(flat(myst.parse(text, {})))


def test_the_replaced_rules_give_the_same_tokens_on_generated_text() -> None:
    """The linear myst_role, fragments_join and reference rules agree with the originals on
    generated Markdown made of the characters that drive them."""
    from hypothesis import given, settings, strategies as st
    from markdown_it import MarkdownIt
    from mdit_py_plugins.myst_role import myst_role_plugin
    from uffdsim import citations as P
    original = MarkdownIt("commonmark").use(myst_role_plugin)
    ours = MarkdownIt("commonmark").use(myst_role_plugin)
    ours.inline.ruler.at("myst_role", P._myst_role)
    ours.inline.ruler2.at("fragments_join", P._fragments_join)
    pieces = st.sampled_from(["{claim}", "{a}", "`", "``", "x", " ", "*", "_", "\n", "[a]", ": b", "[", "]", "\n\n"])

    @settings(derandomize=True, max_examples=300, deadline=None)
    @given(st.lists(pieces, max_size=40).map("".join))
    def same(text: str) -> None:
        def flat(tokens):
            return [(t.type, t.content, t.meta.get("name"), flat(t.children or [])) for t in tokens]
        assert flat(ours.parse(text, {})) == flat(original.parse(text, {}))
    same()


def test_work_is_bounded_by_the_page() -> None:
    """A paragraph longer than the limit is refused before the inline parser sees it (markdown-it's
    inline rules grow faster than linearly in a paragraph's length); 20,000 citations in one
    paragraph or 200 KB of unclosed fences or directives nested too deep end at once."""
    from uffdsim import citations as P
    with pytest.raises(P.PageError, match="a paragraph of 539999 characters, more than the limit"):
        C.citations_in_text("A {claim}`move-after-fork` " * 20_000, "p.md", "")
    assert C.citations_in_text("```\n" * 50_000, "p.md", "") == []
    with pytest.raises(P.PageError, match="directives nested more than 16 deep"):
        C.citations_in_text("".join(":" * (30 - k) + "{note}\nx\n" for k in range(20)), "p.md", "")
    one = "A {claim}`move-after-fork` " * 300           # 300 citations in one sentence: one tidy text
    cites = C.citations_in_text(one, "p.md", "")
    assert len(cites) == 300 and len({id(c.sentence) for c in cites}) == 1


def _cli(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "uffdsim", "claims", *args], capture_output=True, text=True,
                          timeout=120, **kw)


@pytest.mark.parametrize("doc, message", [
    ({"cells": {"a": 1}}, "not a notebook ('cells' is dict, not a list)"),
    ({"cells": [1]}, "cell 0: not a notebook cell (a int, not an object)"),
    ({"cells": [{"cell_type": "markdown", "source": 7}]}, "cell 0: 'source' is not text"),
    ({"cells": [{"cell_type": "markdown", "source": ["a", None]}]}, "cell 0: 'source' is not text"),
    ([1, 2], "not a notebook (expected a JSON object, got list)"),
    ("[" * 100_000 + "]" * 100_000, "not a notebook (JSON nested too deeply)"),
    (b"\xff\xfe", "byte 0: not UTF-8 text"),
    (b'{"cells": []}\0', "a NUL byte"),
])
def test_cli_rejects_a_malformed_notebook_in_one_line(tmp_path: Path, doc, message: str) -> None:
    """Malformed notebooks (issue 19, item 8) give one error line and exit 2, never a traceback."""
    bad = tmp_path / "x.ipynb"
    if isinstance(doc, bytes):
        bad.write_bytes(doc)
    else:
        bad.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    run = _cli(str(bad))
    assert run.returncode == 2 and run.stdout == "", run.stderr
    assert run.stderr.startswith(f"error: {bad}: ") and message in run.stderr, run.stderr
    assert len(run.stderr.splitlines()) == 1


def test_cli_says_what_a_path_is_when_it_is_no_page(tmp_path: Path) -> None:
    """A directory, /dev/zero and a page over the size limit are named for what they are (they
    said "no such file"), and the page is read in bounded chunks: /dev/zero ends at once."""
    from uffdsim.citations import MAX_MARKDOWN, MAX_PAGE_BYTES
    big = tmp_path / "big.md"
    big.write_text("word " * (MAX_MARKDOWN // 5 + 1))
    for path, message in ((tmp_path, "a directory, not a page"), (Path("/dev/zero"), "not a regular file"),
                          (big, f"more than {MAX_MARKDOWN} characters of Markdown"),
                          (tmp_path / "nothing.md", "no such file")):
        run = _cli(str(path))
        assert run.returncode == 2 and run.stderr == f"error: {path}: {message}" + run.stderr.split(message, 1)[1]
        assert len(run.stderr.splitlines()) == 1 and "Traceback" not in run.stderr
    huge = tmp_path / "huge.md"
    with huge.open("wb") as f:
        f.truncate(MAX_PAGE_BYTES + 1)                  # sparse: no disk used
    run = _cli(str(huge))
    assert run.returncode == 2 and "larger than" in run.stderr


def test_cli_names_what_to_install_without_the_parser(tmp_path: Path) -> None:
    """The package needs only PyYAML; without markdown-it-py, `claims` says what to install."""
    blocker = tmp_path / "sitecustomize.py"
    blocker.write_text("import sys\nsys.modules['markdown_it'] = None\n")
    page = tmp_path / "p.md"
    page.write_text("Fine {claim}`basics-move-one-page`.\n")
    env = dict(__import__("os").environ, PYTHONPATH=f"{tmp_path}:{ROOT}")
    run = _cli(str(page), env=env)
    assert run.returncode == 2 and run.stderr.startswith("error: reading the book needs markdown-it-py"), run.stderr
    assert len(run.stderr.splitlines()) == 1


# -- citations of steps ----------------------------------------------------------------------------

NAMED = f"""name: named
about: The about text says the source keeps its page ({{claim}} never reads this).
steps:
  - mmap: {{name: src, pages: 1}}
  - mmap: {{name: dst, pages: 1}}
  - write: {{at: src, pages: 1, value: 0x41}}
  - observe: {{at: src, pages: 1}}
    expect: {{pages: [{{state: present, value: 0x41, frame: f0}}]}}
  - uffd: {{features: [move]}}
  - register: {{at: dst, pages: 1, mode: [missing]}}
  - move: {{dst: dst, src: src, pages: 1}}
    name: the-move
    expect: {{ok: true, move: 4096}}
  - observe: {{at: src, pages: 1}}
    name: src-empty
    expect: {{pages: [{{state: none}}]}}
  - observe: {{at: dst, pages: 1}}
    expect: {{pages: [{{state: present, value: 0x41, frame: f0}}]}}
"""


@pytest.fixture
def steps_corpus(tmp_path: Path) -> tuple[dict[str, Path], Path]:
    """A corpus of three copies of NAMED and a small conformance record with per-step outcomes:
    `named` recorded fully (step 7 unmet on the kernel, step 8's frame not observable), `stale`
    recorded from another version, `unstepped` recorded before per-step outcomes existed."""
    from uffdsim.conform import scenario_digest
    from uffdsim.scenario import load_scenario
    d = tmp_path / "corpus"
    d.mkdir()
    corpus = {}
    for name in ("named", "stale", "unstepped"):
        corpus[name] = d / f"{name}.yaml"
        corpus[name].write_text(NAMED.replace("name: named", f"name: {name}"))
    digest = scenario_digest(load_scenario(corpus["named"]))
    steps = [{"i": 3, "op": "observe", "sim": "met", "kernel": "met"},
             {"i": 6, "op": "move", "name": "the-move", "sim": "met", "kernel": "met"},
             {"i": 7, "op": "observe", "name": "src-empty", "sim": "met",
              "kernel": "unmet: page 0 state: expected none, got present"},
             {"i": 8, "op": "observe", "sim": "met", "kernel": "met (not observable: pages[0].frame)"}]
    agree = {"sim": "passed", "kernel": "passed", "status": "agrees"}
    record = tmp_path / "conformance.json"
    record.write_text(json.dumps({"scenarios": [
        dict(agree, name="named", digest=digest, steps=steps),
        dict(agree, name="stale", digest="0" * 16, steps=steps),
        dict(agree, name="unstepped")]}))
    return corpus, record


def test_a_step_citation_needs_the_step_met_on_both_backends(steps_corpus) -> None:
    corpus, record = steps_corpus
    text = " ".join(f"S{n} {{claim}}`{t}`." for n, t in enumerate([
        "named#6", "named#the-move", "named#3", "named#2", "named#99", "named#nope", "named#src-empty",
        "named#8", "stale#6", "unstepped#the-move", "named"]))
    checks = C.check(C.citations_in_text(text, "p.md", "cell 0"), corpus, C.kernel_record(record),
                     C.kernel_steps(record))
    problems = {c.citation.target: c.problem for c in checks}
    assert problems["named#6"] is None and problems["named#the-move"] is None and problems["named#3"] is None
    assert problems["named"] is None
    assert problems["named#2"] == "step 2 carries no expectation (cite a step with expect:)"
    assert problems["named#99"] == "step 99: no step 99 (steps 0 to 8)"
    assert problems["named#nope"] == "step nope: no step named 'nope' (named steps: the-move, src-empty)"
    assert problems["named#src-empty"] == \
        "step 7 (src-empty) on the kernel (recorded): unmet: page 0 state: expected none, got present"
    assert problems["named#8"] == "step 8 on the kernel (recorded): met (not observable: pages[0].frame)"
    assert "ran another version of this scenario (re-record: uffdsim conform" in problems["stale#6"]
    assert "the conformance record has no per-step outcomes for this scenario (re-record" in \
        problems["unstepped#the-move"]
    by = {c.citation.target: c for c in checks}
    assert by["named#the-move"].on_kernel and not by["named#src-empty"].on_kernel
    assert by["named#the-move"].step_shown == \
        "step 6 (the-move): move dst=dst, src=src, pages=1; expect ok=True move=4096"
    assert C.summary(checks) == \
        "claims: 11 citations (10 name a step) of 3 scenarios in 1 pages; 7 failing, 4 checked on the kernel"


def test_conform_records_each_steps_outcome(tmp_path: Path) -> None:
    """The conformance record keeps, per step with an expectation, what each backend did, and the
    digest of the scenario that ran (the claims checker needs both)."""
    from uffdsim import conform
    from uffdsim.backends.sim import SimBackend
    from uffdsim.results import BackendRun

    class SwappedKernel:
        """A stand-in kernel: the simulator, but the last observed page hides its frame and the
        one before reads back as swapped."""
        name = "kernel"

        def run(self, scenario):
            run = SimBackend().run(scenario)
            run.steps[7]["pages"] = [dict(p, state="swap") for p in run.steps[7]["pages"]]
            run.steps[8]["pages"] = [dict(p, hidden=["frame"]) for p in run.steps[8]["pages"]]
            return BackendRun(steps=run.steps, info=run.info)

    path = tmp_path / "named.yaml"
    path.write_text(NAMED)
    entry = conform.conform_one(path, SimBackend(), SwappedKernel())
    assert [(r["i"], r.get("name"), r["sim"], r["kernel"]) for r in entry.steps] == [
        (3, None, "met", "met"), (6, "the-move", "met", "met"),
        (7, "src-empty", "met", "unmet: page 0 state: expected none, got swap"),
        (8, None, "met", "met (not observable: pages[0].frame)")]
    from uffdsim.scenario import load_scenario
    assert entry.digest == conform.scenario_digest(load_scenario(path))
    renamed = NAMED.replace("name: the-move", "name: moved").replace("The about text", "Other about text")
    (tmp_path / "renamed.yaml").write_text(renamed)
    assert conform.scenario_digest(load_scenario(tmp_path / "renamed.yaml")) == entry.digest
    (tmp_path / "changed.yaml").write_text(NAMED.replace("value: 0x41}\n  - observe", "value: 0x42}\n  - observe"))
    assert conform.scenario_digest(load_scenario(tmp_path / "changed.yaml")) != entry.digest


TWO_PAGES = """name: two-pages
steps:
  - mmap: {name: src, pages: 2}
  - write: {at: src, pages: 2, value: 0x41}
  - observe: {at: src, pages: 2}
    expect: {pages: [{state: present, mapcount: 1}, {state: present}]}
"""


@pytest.mark.parametrize("hide, outcome", [
    (1, "met"),                                                # page 1 expects no mapcount: nothing unseen
    (0, "met (not observable: pages[0].mapcount)")])           # page 0 does: the claim is not shown
def test_a_hidden_field_counts_only_on_the_page_that_expects_it(tmp_path: Path, hide: int, outcome: str) -> None:
    """Before: a field hidden on page 1 was reported as unseen because page 0 expected it
    (ksm-ways-out-cost-a-copy#write-copies failed its claims on a KSM page's mapcount)."""
    from uffdsim import conform
    from uffdsim.backends.sim import SimBackend
    from uffdsim.results import BackendRun

    class Hiding:
        name = "kernel"

        def run(self, scenario):
            run = SimBackend().run(scenario)
            run.steps[2]["pages"][hide] = dict(run.steps[2]["pages"][hide], hidden=["mapcount"])
            return BackendRun(steps=run.steps, info=run.info)

    path = tmp_path / "two.yaml"
    path.write_text(TWO_PAGES)
    entry = conform.conform_one(path, SimBackend(), Hiding())
    assert [(r["i"], r["kernel"]) for r in entry.steps] == [(2, outcome)]


@pytest.mark.parametrize("name, message", [
    ("'7'", "expected a kebab-case step name (not a number), got '7'"),
    ("Not_Kebab", "expected a kebab-case step name (not a number), got 'Not_Kebab'"),
    ("[a]", "expected a kebab-case step name"),
    ("the-move", "step 6 is named 'the-move' already (a step name is unique)"),
])
def test_a_step_name_is_validated(name: str, message: str) -> None:
    from uffdsim.scenario import ScenarioError, loads_scenario
    text = NAMED.replace("    name: src-empty", f"    name: {name}")
    with pytest.raises(ScenarioError, match=r"step 7 \(observe\): field 'name': " + __import__("re").escape(message)):
        loads_scenario(text, "s.yaml")


def test_the_audit_script_samples_citations_with_what_they_check(book: Path) -> None:
    """benchmarks/claims_audit.py: a seeded sample, each with its sentence and the expectations of
    the cited scenario (never its about: text)."""
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "claims_audit.py"), "--root", str(book),
                          "--n", "2", "--seed", "1"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout)
    assert doc["citations"] == 5 and len(doc["sample"]) == 2
    again = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "claims_audit.py"), "--root", str(book),
                            "--n", "2", "--seed", "1"], capture_output=True, text=True, timeout=120)
    assert json.loads(again.stdout) == doc
    passing = C.citations_in_text(f"A move {{claim}}`{PASSING}`.", "p.md", "")[0]
    import importlib.util as iu
    spec = iu.spec_from_file_location("claims_audit", ROOT / "benchmarks" / "claims_audit.py")
    audit = iu.module_from_spec(spec)
    spec.loader.exec_module(audit)
    it = audit.item(passing, C.corpus_index())
    assert it["checks"][0] == "step 3: observe at=src, pages=1; expect pages: state=present value=65 frame=f0"
    assert "smallest useful move" not in json.dumps(it).lower()          # the about: text never counts


def test_cli_checks_steps_against_a_given_record(tmp_path: Path) -> None:
    """``claims --record FILE``: a step citation holds against a record with per-step outcomes; the
    record is read bounded (a device or a directory is one error line)."""
    from uffdsim.conform import scenario_digest
    from uffdsim.scenario import load_scenario
    path = corpus_dir() / f"{PASSING}.yaml"
    record = tmp_path / "conformance.json"
    record.write_text(json.dumps({"scenarios": [{
        "name": PASSING, "sim": "passed", "kernel": "passed", "status": "agrees",
        "digest": scenario_digest(load_scenario(path)),
        "steps": [{"i": 6, "op": "move", "sim": "met", "kernel": "met"}]}]}))
    page = tmp_path / "p.md"
    page.write_text(f"The move returns the bytes moved {{claim}}`{PASSING}#6`.\n")
    run = _cli(str(page), "--record", str(record))
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.splitlines() == [
        f"{page}:line 1  {PASSING}#6  ok (sim passed, kernel agrees, step met on both)",
        "claims: 1 citations (1 name a step) of 1 scenarios in 1 pages; 0 failing, 1 checked on the kernel"]
    for bad in ("/dev/zero", str(tmp_path), str(page)):
        run = _cli(str(page), "--record", bad)
        assert run.returncode == 2 and run.stderr.startswith(f"error: {bad}: not a conformance record")
        assert len(run.stderr.splitlines()) == 1


def test_an_errata_badge_carries_its_entry_as_context() -> None:
    """An erratum's badges sit in its "Shown by:" sentence, which alone says nothing; the audit
    sample and the badge need the entry (audit 4 judged nine errata rows without it)."""
    from uffdsim.citations import citations_in_text
    text = ("- **2026-12-07.** *Said:* a page stays unmovable. *True:* it moves after the unpin. "
            "*Shown by:* {claim}`pin-ebusy-until-unpin#9`.\n")
    [c] = citations_in_text(text, "a7-errata.md", "", first_line=1)
    assert c.sentence == "Shown by:." and "it moves after the unpin" in c.context
