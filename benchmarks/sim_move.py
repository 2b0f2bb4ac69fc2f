"""Move a 1 GiB region (262,144 pages) with one UFFDIO_MOVE in the simulator; print JSON.

Usage: python benchmarks/sim_move.py [--pages N]
Only the MOVE call is timed; peak_rss_mb is the whole process's peak resident set.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time

from uffdsim import PAGE_SIZE, Machine


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=262_144)
    args = parser.parse_args()
    machine = Machine()
    proc = machine.spawn("main")
    length = args.pages * PAGE_SIZE
    src = proc.mmap(args.pages)
    dst = proc.mmap(args.pages)
    print(f"populating {args.pages} pages...", file=sys.stderr)
    proc.write(src, length, 0x5A)
    uffd = proc.userfaultfd(features=["move"])
    uffd.register(dst, length, ["missing"])
    print("moving...", file=sys.stderr)
    start = time.perf_counter()
    moved = uffd.move(dst, src, length)
    seconds = time.perf_counter() - start
    assert moved == length
    assert proc.observe(src, PAGE_SIZE)[0].state == "none"
    assert proc.observe(dst + length - PAGE_SIZE, PAGE_SIZE)[0].value == 0x5A
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"pages": args.pages, "seconds": round(seconds, 3), "peak_rss_mb": round(peak_mb, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
