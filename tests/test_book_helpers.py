"""uffdsim.book: the notebooks' helpers say what happened, escape what they show, and never fail a cell."""
from __future__ import annotations

import sys

import pytest

from uffdsim import PAGE_SIZE as P
from uffdsim import book
from uffdsim.runner import run_scenario
from uffdsim.scenario import load_scenario, loads_scenario

ONE_MOVE = """
name: one-move
steps:
  - mmap: {name: src, pages: 2}
  - mmap: {name: dst, pages: 2}
  - write: {at: src, pages: 1, value: 0x41}
  - uffd: {}
  - register: {at: dst, pages: 2, mode: [missing]}
  - move: {dst: dst, src: src, pages: 2}
  - move: {dst: dst+1, src: src+1, pages: 1}
  - move: {dst: dst, src: src+1b, pages: 1}
"""


def test_table_escapes_html_and_keeps_code() -> None:
    html = book.html_table(["name", "<b>"], [("<script>alert(1)</script>", "`move_pages()` & co")])._repr_html_()
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "&lt;b&gt;" in html
    assert "<code>move_pages()</code> &amp; co" in html


def test_table_cells_with_several_lines_and_nothing() -> None:
    table = book.html_table(["a", "b"], [(["first", "second"], None)])
    assert "first<br>second" in table._repr_html_()
    assert table._repr_html_().count("<tr>") == 2          # header row and one body row
    assert repr(table) == "<table: 1 row(s) of a, b>"     # what nbval compares as text/plain


def test_outcome_of_success_and_errno() -> None:
    d = book.Demo()
    assert book.outcome(lambda: d.u.move(d.dst, d.src, P)) == "ok, move=4096"
    assert book.outcome(lambda: d.u.move(d.dst, d.src, P)) == "EEXIST, move=-17"
    assert book.outcome(lambda: d.u.move(d.dst, d.src + 1, P)) == "EINVAL, move=unwritten"


def test_outcome_of_partial_progress_and_the_decision() -> None:
    d = book.Demo(pages=2)
    d.p.madvise(d.src + P, P, "dontneed")                 # page 1 is a hole: the walk stops there
    assert book.outcome(lambda: d.u.move(d.dst, d.src, 2 * P)) == "EAGAIN, move=4096"
    text = book.outcome(lambda: d.u.move(d.dst + P, d.src + P, P), decision=True)
    assert text.startswith("ENOENT, move=-2  [") and "hole" in text


def test_outcome_names_other_fields() -> None:
    d = book.Demo()
    assert book.outcome(lambda: d.u.copy(d.dst, d.src, P), field="copy") == "ok, copy=4096"


def test_outcome_lets_other_exceptions_through() -> None:
    def boom() -> int:
        raise RuntimeError("not an ioctl error")
    with pytest.raises(RuntimeError):
        book.outcome(boom)


def test_step_records_read_like_ioctls() -> None:
    res = run_scenario(loads_scenario(ONE_MOVE), "sim")
    partial, hole, unaligned = res.steps[5:8]
    assert book.step_outcome(partial) == "EAGAIN, move=4096"
    assert book.step_outcome(hole) == "ENOENT, move=-2"
    assert book.step_outcome(unaligned) == "EINVAL, move=unwritten"
    assert "hole" in book.step_decision(hole)
    assert book.ioctl_summary(res) == "move EAGAIN/4096; move ENOENT/-2; move EINVAL/unwritten"


def test_demo_shows_the_page_and_the_move() -> None:
    d = book.Demo()
    d.p.fork("child")
    assert d.page() == "main  src+0: present value=65 frame=f0 mapcount=2 | sim only: anon_exclusive=False"
    assert d.move() == "MOVE: EBUSY, move=-16  [folio not anon-exclusive -> EBUSY]"


def test_demo_with_one_value_per_page_and_a_registered_source() -> None:
    d = book.Demo(pages=2, value=[0x41, 0x42], dst_pages=1, register_src=True)
    assert [v.value for v in d.p.observe(d.src, 2 * P)] == [0x41, 0x42]
    assert d.regions == {"src": (d.src, 2), "dst": (d.dst, 1)}
    d.u.move(d.dst, d.src, P)
    assert d.p.fault_async("t", d.src, write=False).blocked      # src is registered: a userfault


def test_show_pages_prints_one_line_per_page(capsys: pytest.CaptureFixture[str]) -> None:
    d = book.Demo(pages=2)
    d.p.madvise(d.src + P, P, "dontneed")
    book.show_pages(d.p, d.src, 2, d.regions)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["src", "present", "value", "0x41"] and lines[0].endswith("  anon-exclusive (simulator only)")
    assert lines[1].split() == ["src+1", "none"]


def test_kernel_status_gives_a_reason_when_the_backend_cannot_load(monkeypatch: pytest.MonkeyPatch) -> None:
    book.kernel_status.cache_clear()
    monkeypatch.setitem(sys.modules, "uffdsim.backends.kernel", None)      # import fails
    try:
        ok, why = book.kernel_status()
        assert ok is False and isinstance(why, str) and why.startswith("kernel backend unavailable here")
        result, reason = book.run_on_kernel(loads_scenario(ONE_MOVE))
        assert result is None and reason == why
    finally:
        book.kernel_status.cache_clear()


def test_kernel_status_passes_on_the_backends_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    KernelBackend = pytest.importorskip("uffdsim.backends.kernel").KernelBackend
    book.kernel_status.cache_clear()
    monkeypatch.setattr(KernelBackend, "available", lambda self: (False, "userfaultfd(2) returns ENOSYS"))
    try:
        assert book.kernel_status() == (False, "userfaultfd(2) returns ENOSYS")
        assert book.run_on_kernel(loads_scenario(ONE_MOVE)) == (None, "userfaultfd(2) returns ENOSYS")
    finally:
        book.kernel_status.cache_clear()


def test_kernel_status_is_probed_once() -> None:
    assert book.kernel_status() is book.kernel_status()


def test_corpus_and_data_are_found_from_the_notebooks_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    root = book.repo_root()
    assert book.corpus_dir().is_dir() and any(book.corpus_dir().glob("*.yaml"))
    load_scenario(next(book.corpus_dir().glob("*.yaml")))                # a scenario file loads
    assert book.data_file("kernel_bench.json").parent == root / "uffdsim" / "data"
    assert book.example_file("uffd_move_example.c").is_file()
    monkeypatch.chdir(root / "notebooks")          # the working directory does not matter
    assert book.corpus_dir() == root / "uffdsim" / "scenarios"
    assert book.data_file("kernel_bench.json").is_file()


def test_api_reference_lists_functions_without_addresses() -> None:
    text = book.api_reference("uffdsim.book")._repr_markdown_()
    assert text.startswith("Helpers for the book's notebooks")
    assert "- **`outcome(call: Callable[[], Any], field: str = 'move', decision: bool = False) -> str`**" in text
    assert "0x" not in text and str(book.repo_root()) not in text
    assert "cannot be imported here" in book.api_reference("uffdsim.no_such_module")._repr_markdown_()


def test_importing_the_helpers_needs_no_ipython_or_matplotlib() -> None:
    import subprocess
    code = ("import sys, uffdsim.book; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('IPython', 'matplotlib')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"



def test_named_addresses_writes_region_and_offset() -> None:
    from uffdsim.book import corpus_dir
    from uffdsim.book import named_addresses, scenario_regions
    from uffdsim.runner import run_scenario
    from uffdsim.scenario import load_scenario
    sc = load_scenario(corpus_dir() / "args-validation-before-vma-checks.yaml")
    res = run_scenario(sc, "sim")
    regions = scenario_regions(sc, res)
    assert set(regions) == {"src", "dst"}
    base = regions["src"][0]
    assert named_addresses(f"address {base + 4096 + 8:#x} not page aligned", regions) == \
        "address src+1+8b not page aligned"
    assert named_addresses("length 0x10 is bad", regions) == "length 0x10 is bad"   # not an address


def test_book_claims_reads_roles_and_every_cited_scenario_exists(tmp_path) -> None:
    from uffdsim.book import corpus_dir
    import json
    from uffdsim.book import book_claims
    nb = {"cells": [{"cell_type": "markdown", "source": [
        "A shared page is EBUSY {claim}`move-after-fork`. A hole is ENOENT {claim}`holes-src-pte-empty`.\n",
        "\n", "| a | KSM {claim}`ksm-merged-ebusy` |\n"]},
        {"cell_type": "code", "source": ["x = '{claim}`not-a-citation`'\n"]}]}
    path = tmp_path / "t.ipynb"
    path.write_text(json.dumps(nb))
    got = book_claims([path])
    assert [(page, name) for page, name, _ in got] == [("t", "move-after-fork"), ("t", "holes-src-pte-empty"),
                                                       ("t", "ksm-merged-ebusy")]
    assert got[0][2] == "A shared page is EBUSY." and got[1][2] == "A hole is ENOENT."
    cited = {name for _, name, _ in book_claims()}
    assert len(cited) >= 40
    assert not [n for n in cited if not (corpus_dir() / f"{n}.yaml").is_file()]


def test_api_table_generates_signatures_and_rejects_unknown_names() -> None:
    from uffdsim.book import api_table
    html = api_table(["uffdsim.Process.mmap", "uffdsim.recipes.move_range"])._repr_html_()
    assert "uffdsim.Process.mmap(self, pages: int" in html and "recipes.move_range(" in html
    with pytest.raises(AttributeError):
        api_table(["uffdsim.Process.no_such_method"])
