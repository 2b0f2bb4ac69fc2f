"""Write the corpus scenarios ported from the kernel selftests' UFFDIO_MOVE cases (scenarios/peer-kselftest-*.yaml).

``tools/testing/selftests/mm/uffd-unit-tests.c`` (``uffd_move_test_common()``, Debian's
linux-source-6.12 6.12.118) moves 32 MiB in chunks of one page (``move``) or one PMD
(``move-pmd``, ``move-pmd-split``), each chunk on the missing fault of its first destination page.
The scenario format cannot run a handler thread, so the roles swap: a ``fault_async`` thread takes
the fault, the scenario reads the message and moves the chunk as the selftest's handler does
(``move_page()`` in uffd-common.c: ALLOW_SRC_HOLES, the whole chunk, success expected), then the
thread must be released.  Per chunk, the expectations are the selftest's: the source holds
count_verify's 1 before, the destination holds it after, the source reads 0 after.

    python scripts/peer_scenarios.py [--pages N] [--out scenarios]

All three keep the selftest's 32 MiB: ``move`` is 8192 chunks of one page (8 steps each, 65,544
steps in all, within the 100,000-step limit), the PMD cases 16 chunks.  ``--pages`` writes a
smaller ``move`` for experiments.  The expectations every chunk repeats are written once as YAML
anchors (``&one``) and referred to by aliases (``*one``) in the other chunks, which keeps the
real-size file under the 4 MiB limit of a scenario file.  The page's contents are one byte in the
scenario format: the count.  ``fault_async`` reads by default, as the selftest's faulting access does.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

SELFTEST_PAGES = 8192           #: UFFD_TEST_MEM_SIZE (32 MiB) / 4 KiB
PMD_PAGES = 512
READ_AT = "debian linux-source-6.12 6.12.118-1~deb12u1"

CASES = {
    "move": ("uffd_move_test", 1, "nohugepage", None,
             "prevent_hugepages(): MADV_NOHUGEPAGE on the source before it is populated"),
    "move-pmd": ("uffd_move_pmd_test", PMD_PAGES, "hugepage", "hugepage",
                 "request_hugepages(): MADV_HUGEPAGE on the source; MADV_HUGEPAGE on the destination"),
    "move-pmd-split": ("uffd_move_pmd_split_test", PMD_PAGES, "hugepage", "nohugepage",
                       "request_hugepages(): MADV_HUGEPAGE on the source; MADV_NOHUGEPAGE on the destination"),
}


def scenario(case: str, pages: int) -> str:
    fn, chunk, src_advice, dst_advice, setup = CASES[case]
    chunks = pages // chunk
    scaled = "" if pages == SELFTEST_PAGES else f" Scaled to {pages} pages (the selftest: {SELFTEST_PAGES}) for a quick experiment."
    about = (f"Port of the kernel selftest {case!r} on anon: repository torvalds/linux (as shipped in {READ_AT}), "
             f"file tools/testing/selftests/mm/uffd-unit-tests.c, functions {fn}() and uffd_move_test_common(), "
             f"with move_page() from uffd-common.c. {setup}. Every chunk of {chunk} page(s) is moved on the missing "
             f"fault of its first destination page, with ALLOW_SRC_HOLES; the selftest's handler thread is the "
             f"scenario here and the faulting reader a fault_async thread. Expectations are the selftest's: the "
             f"source holds the count 1, the destination holds it after the fault, the source then reads 0, and "
             f"every move succeeds (missing_faults == step_count).{scaled}")
    align = ", align: 2M" if chunk > 1 else ""
    lines = [f"name: peer-kselftest-{case}", f"about: {json.dumps(about)}", "requires: [threads" + (", thp]" if chunk > 1 else "]"),
             "steps:",
             f"  - mmap: {{name: src, pages: {pages}{align}}}",
             f"  - mmap: {{name: dst, pages: {pages}{align}}}",
             f"  - madvise: {{at: src, pages: {pages}, advice: {src_advice}}}",
             "  - uffd: {features: [move], user_mode_only: true}",
             f"  - write: {{at: src, pages: {pages}, value: 1}}",
             f"  - madvise: {{at: dst, pages: {pages}, advice: dontneed}}"]
    if dst_advice:
        lines.append(f"  - madvise: {{at: dst, pages: {pages}, advice: {dst_advice}}}")
    lines += [f"  - madvise: {{at: src, pages: {pages}, advice: dontfork}}",
              f"  - register: {{at: dst, pages: {pages}, mode: [missing]}}"]
    for c in range(chunks):
        at = c * chunk
        off = f"+{at}" if at else ""
        first = c == 0                    # the first chunk defines the anchors, the others refer to them
        lines += [
            f"  - observe: {{at: src{off}, pages: {chunk}}}",
            "    expect: " + ("&one {all_pages: {state: present, value: 1}}" if first else "*one"),
            f"  - fault_async: {{thread: t{c}, at: dst{off}}}",
            "    expect: " + ("&blk {blocked: true}" if first else "*blk"),
            "  - read_events: {}",
            f"    expect: {{events: [{{type: pagefault, at: dst{off}, write: false}}]}}",
            f"  - move: {{dst: dst{off}, src: src{off}, pages: {chunk}, mode: "
            + ("&holes [allow_src_holes]}" if first else "*holes}"),
            "    expect: " + (f"&moved {{ok: true, move: {chunk * 4096}}}" if first else "*moved"),
            f"  - thread: {{thread: t{c}}}",
            "    expect: " + ("&go {blocked: false}" if first else "*go"),
            f"  - observe: {{at: dst{off}, pages: {chunk}}}",
            "    expect: *one",
            f"  - read: {{at: src{off}, pages: {chunk}}}",
            f"  - observe: {{at: src{off}, pages: {chunk}}}",
            "    expect: " + ("&zero {all_pages: {value: 0}}" if first else "*zero"),
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pages", type=int, default=SELFTEST_PAGES, help="pages of the 'move' case (default: the selftest's 8192)")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "scenarios"))
    args = ap.parse_args()
    for case in CASES:
        pages = args.pages if case == "move" else SELFTEST_PAGES
        path = Path(args.out) / f"peer-kselftest-{case}.yaml"
        path.write_text(scenario(case, pages))
        print(path)


if __name__ == "__main__":
    main()
