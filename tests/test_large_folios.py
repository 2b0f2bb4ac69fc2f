"""Large folios (multi-size THP) and ordinary page references: the model, the scenario format and
the kernel backend's journaled mTHP knobs; the C reproducer of 6.18's -EAGAIN retry."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from kernel_helpers import compile_c
from uffdsim import lerrno as E
from uffdsim.errors import UffdError
from uffdsim.mm import move as move_mod
from uffdsim.mm.machine import Machine
from uffdsim.scenario import ScenarioError, load_scenario

PAGE = 4096
ROOT = Path(__file__).resolve().parent.parent
MTHP_64K = "/sys/kernel/mm/transparent_hugepage/hugepages-64kB/enabled"


def machine(kernel: str = "6.18", **mthp: str) -> tuple[Machine, object]:
    m = Machine(kernel=kernel)
    for size, policy in mthp.items():
        m.set_mthp(int(size.strip("k")), policy)
    return m, m.spawn("main")


def orders(proc: object, addr: int, pages: int) -> list[int | None]:
    return [v.order for v in proc.observe(addr, pages * PAGE)]  # type: ignore[attr-defined]


# -- alloc_anon_folio() -------------------------------------------------------------------------

def test_always_maps_a_whole_64k_folio_on_one_write() -> None:
    m, p = machine(k64="always")
    buf = p.mmap(32, align=2 << 20)
    p.write(buf + 3 * PAGE, PAGE, 1)
    assert orders(p, buf, 17) == [4] * 16 + [None]
    assert [v.value for v in p.observe(buf, 4 * PAGE)] == [0, 0, 0, 1]


@pytest.mark.parametrize("policy, hugepage, nohugepage, order", [
    ("never", True, False, 0), ("madvise", False, False, 0), ("madvise", True, False, 4),
    ("inherit", False, False, 0), ("inherit", True, False, 4),          # top-level: madvise
    ("always", False, True, 0),
])
def test_policy_decides_the_order(policy: str, hugepage: bool, nohugepage: bool, order: int) -> None:
    m, p = machine(k64=policy)
    buf = p.mmap(16, align=2 << 20)
    if hugepage:
        p.madvise(buf, 16 * PAGE, "hugepage")
    if nohugepage:
        p.madvise(buf, 16 * PAGE, "nohugepage")
    p.write(buf, PAGE, 1)
    assert orders(p, buf, 1) == [order]


def test_folio_must_fit_the_vma_else_next_enabled_size() -> None:
    m, p = machine(k64="always", k16="always")
    buf = p.mmap(24, align=2 << 20)
    p.write(buf + 20 * PAGE, PAGE, 1)          # [16, 32) sticks out of the VMA: 16 KiB at [20, 24)
    assert orders(p, buf + 19 * PAGE, 5) == [None, 2, 2, 2, 2]


def test_populated_range_falls_back_and_registered_vma_gets_small_pages() -> None:
    m, p = machine(k64="always")
    buf = p.mmap(16, align=2 << 20)
    p.touch(buf + PAGE, False)                 # the zero page: a PTE in the 64 KiB block
    p.write(buf + 9 * PAGE, PAGE, 1)
    assert orders(p, buf + 9 * PAGE, 1) == [0]
    armed = p.mmap(16, align=2 << 20)
    p.userfaultfd().register(armed, 16 * PAGE, ["wp"])
    p.write(armed, PAGE, 1)
    assert orders(p, armed, 2) == [0, None]


def test_no_mthp_knobs_before_6_8() -> None:
    with pytest.raises(UffdError) as err:
        machine(kernel="6.1", k64="always")
    assert err.value.errno == E.ENOENT
    with pytest.raises(UffdError):
        Machine().set_mthp(8, "always")
    with pytest.raises(UffdError):
        Machine().set_mthp(64, "sometimes")


# -- moves of large folios, references ------------------------------------------------------------

def moving(**mthp: str) -> tuple[Machine, object, object, int, int]:
    m, p = machine(**mthp)
    src, dst = p.mmap(32, align=2 << 20), p.mmap(32)
    p.write(src, 32 * PAGE, 0x41)
    ctx = p.userfaultfd()
    ctx.register(dst, 32 * PAGE, ["missing"])
    return m, p, ctx, src, dst


def test_reference_refuses_the_split_and_unref_allows_it() -> None:
    m, p, ctx, src, dst = moving(k64="always")
    p.ref(src + 7 * PAGE, PAGE, "pipe")
    with pytest.raises(UffdError) as err:
        ctx.move(dst, src, PAGE, [])
    assert err.value.errno == E.EBUSY and "extra reference" in str(m.trail)
    assert orders(p, src, 16) == [4] * 16                  # the failed attempt left the folio whole
    p.unref("pipe")
    assert ctx.move(dst, src, PAGE, []) == PAGE
    assert orders(p, dst, 1) == [0] and orders(p, src + PAGE, 1) == [0]


def test_reference_on_a_small_page_does_not_stop_a_move() -> None:
    m, p, ctx, src, dst = moving()
    p.ref(src, PAGE, "pipe")
    assert ctx.move(dst, src, PAGE, []) == PAGE
    with pytest.raises(UffdError):
        p.ref(src + PAGE, PAGE, "pipe")                    # the name is taken
    p.unref("pipe")
    with pytest.raises(UffdError):
        p.unref("pipe")


def test_whole_aligned_folio_is_split_on_6_18() -> None:
    m, p = machine(k64="always")
    src, dst = p.mmap(16, align=2 << 20), p.mmap(16, align=2 << 20)
    p.write(src, 16 * PAGE, 1)
    p.userfaultfd().register(dst, 16 * PAGE, ["missing"])
    assert p.uffds[-1].move(dst, src, 16 * PAGE, []) == 16 * PAGE  # type: ignore[attr-defined]
    assert orders(p, dst, 16) == [0] * 16


def test_first_page_decides_exclusivity() -> None:
    """The check is PageAnonExclusive(&folio->page); unmapping the first page keeps its flag."""
    m, p, ctx, src, dst = moving(k64="always")
    p.madvise(src, PAGE, "dontneed")
    assert ctx.move(dst, src + 5 * PAGE, PAGE, []) == PAGE
    m, p, ctx, src, dst = moving(k64="always")
    child = p.fork("c")
    child.exit()
    p.write(src + PAGE, PAGE, 2)                           # reused in place (6.15+), only page 1 exclusive
    assert orders(p, src + PAGE, 1) == [4]
    with pytest.raises(UffdError) as err:
        ctx.move(dst, src + PAGE, PAGE, [])
    assert err.value.errno == E.EBUSY
    p.write(src, PAGE, 3)                                  # now the first page is exclusive too
    assert ctx.move(dst, src + PAGE, PAGE, []) == PAGE


def test_6_12_copies_instead_of_reusing_a_large_folio() -> None:
    m, p = machine(kernel="6.12", k64="always")
    src = p.mmap(16, align=2 << 20)
    p.write(src, 16 * PAGE, 1)
    p.fork("c").exit()
    p.write(src + PAGE, PAGE, 2)
    assert orders(p, src, 2) == [4, 0]


@pytest.mark.parametrize("kernel, expect", [("6.18", -E.EEXIST), ("6.12", 16 * PAGE)])
def test_move_batch_keeps_a_stale_eagain(monkeypatch: pytest.MonkeyPatch, kernel: str, expect: int) -> None:
    """6.18's move_pages() keeps err = -EAGAIN through a step that then succeeds (move_batch):
    the pages of that step are moved but not counted, and the loop finds them at dst (EEXIST)."""
    m, p = machine(kernel=kernel)
    src, dst = p.mmap(16), p.mmap(16)
    p.write(src, 16 * PAGE, 1)
    ctx = p.userfaultfd()
    ctx.register(dst, 16 * PAGE, ["missing"])
    real, calls = move_mod.move_pages_ptes, []

    def racy(*args: object) -> int:
        calls.append(1)
        return -E.EAGAIN if len(calls) == 1 else real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(move_mod, "move_pages_ptes", racy)
    try:
        got = ctx.move(dst, src, 16 * PAGE, [])
    except UffdError as err:
        got = err.out if err.out is not None else -err.errno
    assert got == expect
    assert [v.state for v in p.observe(dst, 16 * PAGE)] == ["present"] * 16   # all moved either way


# -- the scenario format --------------------------------------------------------------------------

@pytest.mark.parametrize("step, field", [
    ("mthp: {size: 48K, enabled: always}", "size"),
    ("mthp: {size: 64K, enabled: sometimes}", "enabled"),
    ("mthp: {size: 64K, enabled: always, proc: main}", "proc"),
    ("ref: {at: buf, pages: 0, name: r}", "pages"),
    ("ref: {at: buf, pages: 257, name: r}", "pages"),
    ("observe: {at: buf, pages: 1}\n    expect: {pages: [{order: 10}]}", "expect.pages"),
])
def test_bad_steps_are_one_error_line(tmp_path: Path, step: str, field: str) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(f"name: bad\nabout: x\nsteps:\n  - mmap: {{name: buf, pages: 4}}\n  - {step}\n")
    with pytest.raises(ScenarioError) as err:
        load_scenario(str(f))
    msg = str(err.value)
    assert "\n" not in msg and "step 1" in msg and field.split(".")[0] in msg


def test_the_corpus_has_25_large_folio_scenarios_on_three_sizes() -> None:
    names = [p.stem for p in (ROOT / "scenarios").glob("*.yaml")
             if p.stem.startswith("mthp-") or "-ref-" in p.stem or p.stem.startswith("ref-")]
    assert len(names) >= 25
    text = " ".join((ROOT / "scenarios" / f"{n}.yaml").read_text() for n in names)
    for size in ("64K", "32K", "128K", "1M", "16K"):
        assert f"size: {size}" in text


# -- the kernel: journaled knobs and the C reproducer --------------------------------------------

def root_with_mthp() -> bool:
    return os.geteuid() == 0 and os.path.exists(MTHP_64K)


@pytest.mark.skipif(not root_with_mthp(), reason="needs root and anonymous mTHP (Linux 6.8+)")
def test_kernel_mthp_step_is_restored_and_a_leftover_journal_replayed() -> None:
    from uffdsim.backends.kernel import KernelBackend, guard, leftovers
    from uffdsim.runner import finish
    before = guard.read_knob(MTHP_64K)
    sc = load_scenario(str(ROOT / "scenarios" / "mthp-ref-ebusy.yaml"))
    result = finish(sc, "kernel", KernelBackend().run(sc))
    assert result.status == "passed", result.steps
    assert guard.read_knob(MTHP_64K) == before
    # a run killed after setting the knob: its journal says so, doctor --repair restores it
    with guard.machine_lock("mthp") as journal:
        guard.write_journal(journal, {"knobs": {MTHP_64K: {"old": before, "ours": ["always"]}}})
        guard.write_knob(MTHP_64K, "always")
    try:
        report = leftovers.scan(repair=True)
        assert any(r.startswith("mthp:") for r in report.repaired), report
        assert guard.read_knob(MTHP_64K) == before
    finally:
        if guard.read_knob(MTHP_64K) == "always":
            guard.write_knob(MTHP_64K, before)


def compiled(tmp_path: Path) -> Path:
    return compile_c(ROOT / "book" / "examples" / "uffd_move_eagain_retry.c", tmp_path / "uffd_move_eagain_retry",
                     "-pthread")


def test_reproducer_shows_the_spin_on_6_18(tmp_path: Path) -> None:
    """The holes mode needs no root and no mTHP; on the running kernel (6.18 here) the ioctl spins."""
    from uffdsim.backends.kernel.profile import running_profile_cached
    exe = compiled(tmp_path)
    run = subprocess.run([str(exe), "holes", "20"], capture_output=True, text=True, timeout=60)
    if run.returncode == 77:
        pytest.skip(run.stdout.strip())
    if running_profile_cached().has("move_batch"):
        assert run.returncode == 1 and "RESULT: REPRODUCED" in run.stdout, run.stdout
    else:
        assert run.returncode == 0 and "NOT REPRODUCED" in run.stdout, run.stdout


def test_a_refused_split_is_ebusy_at_once_not_retried(tmp_path: Path) -> None:
    """One MOVE out of a referenced THP makes one refused split and answers EBUSY (the stable fix that
    turns split_folio()'s -EAGAIN into -EBUSY; without it the ioctl retries and never returns);
    after the unref it moves."""
    exe = compile_c(ROOT / "book" / "examples" / "uffd_move_split_refused.c", tmp_path / "uffd_move_split_refused")
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    if run.returncode == 77:
        pytest.skip(run.stdout.strip())
    assert run.returncode == 0 and "RESULT: 3 of 3 moves EBUSY" in run.stdout, run.stdout
    tries = [line for line in run.stdout.splitlines() if "in a pipe, try" in line]
    added = [int(line.rsplit("+", 1)[1]) for line in tries]
    assert len(added) == 3 and min(added) == 1, run.stdout     # machine-wide counters: never less
    assert "pipe closed:" in run.stdout and " ok " in run.stdout.split("pipe closed:")[1], run.stdout


# -- what the mTHP fuzzer found (each failed before its fix) ---------------------------------------

def test_free_of_part_of_a_shared_folio_neither_splits_nor_frees() -> None:
    """folio_maybe_mapped_shared(): MADV_FREE leaves a large folio another process maps alone."""
    m, p = machine(k64="always")
    src = p.mmap(16, align=2 << 20)
    p.write(src, PAGE, 1)                                   # pages 1..15 zero-filled
    p.fork("c")
    p.madvise(src + 4 * PAGE, 4 * PAGE, "free")
    assert orders(p, src, 16) == [4] * 16


def test_pageout_of_part_splits_and_leaves_zero_pages_unswapped() -> None:
    m, p = machine(k64="always")
    src = p.mmap(32, align=2 << 20)
    p.write(src + 8 * PAGE, 16 * PAGE, 0x54)                # folios [0,16) and [16,32), half zero
    p.madvise(src + 8 * PAGE, 24 * PAGE, "pageout")
    assert [v.state for v in p.observe(src + 6 * PAGE, 4 * PAGE)] == ["zero", "zero", "swap", "swap"]


def test_large_swapin_only_of_slots_written_out_together() -> None:
    m, p = machine(k64="always", k16="always")
    src = p.mmap(16, align=2 << 20)
    p.write(src, 16 * PAGE, 5)
    p.madvise(src, 16 * PAGE, "pageout")                    # one aligned cluster of 16 slots
    p.read(src + 3 * PAGE, PAGE)
    assert orders(p, src, 16) == [4] * 16
    other = p.mmap(16, align=2 << 20)
    p.write(other, 16 * PAGE, 6)
    p.madvise(other + PAGE, PAGE, "pageout")                # splits: small folios from here on
    p.madvise(other, 16 * PAGE, "pageout")                  # 16 slots written one by one
    p.read(other + 5 * PAGE, PAGE)
    assert orders(p, other + 4 * PAGE, 2) == [None, 0]
