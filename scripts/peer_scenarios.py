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

``--pages`` scales ``move`` down (the 1,000-step limit: 8 steps per page); the PMD cases keep the
selftest's 32 MiB (16 chunks).  The page's contents are one byte in the scenario format: the count.
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
    scaled = "" if pages == SELFTEST_PAGES else f" Scaled to {pages} pages (the selftest: {SELFTEST_PAGES}) to fit the step limit."
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
        lines += [
            f"  - observe: {{at: src{off}, pages: {chunk}}}",
            "    expect: {all_pages: {state: present, value: 1}}",
            f"  - fault_async: {{thread: t{c}, at: dst{off}, write: false}}",
            "    expect: {blocked: true}",
            "  - read_events: {}",
            f"    expect: {{events: [{{type: pagefault, at: dst{off}, write: false}}]}}",
            f"  - move: {{dst: dst{off}, src: src{off}, pages: {chunk}, mode: [allow_src_holes]}}",
            f"    expect: {{ok: true, move: {chunk * 4096}}}",
            f"  - thread: {{thread: t{c}}}",
            "    expect: {blocked: false}",
            f"  - observe: {{at: dst{off}, pages: {chunk}}}",
            "    expect: {all_pages: {state: present, value: 1}}",
            f"  - read: {{at: src{off}, pages: {chunk}}}",
            f"  - observe: {{at: src{off}, pages: {chunk}}}",
            "    expect: {all_pages: {value: 0}}",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pages", type=int, default=64, help="pages of the 'move' case (the selftest: 8192)")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "scenarios"))
    args = ap.parse_args()
    for case in CASES:
        pages = args.pages if case == "move" else SELFTEST_PAGES
        path = Path(args.out) / f"peer-kselftest-{case}.yaml"
        path.write_text(scenario(case, pages))
        print(path)


if __name__ == "__main__":
    main()
