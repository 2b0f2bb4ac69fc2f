"""Explorer timings (issue 4): every strategy on 1 page x 3 increments must finish well under
5 s.  Prints JSON: per strategy and size, the counts and the best / median wall time of
``--repeat`` runs.  Usage: python benchmarks/atomicity.py [--repeat N] [--large]"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time

from uffdsim.concurrency import STRATEGIES, Program, explore


def measure(name: str, pages: int, k: int, repeat: int) -> dict:
    prog = Program.build(name, pages, k)
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = explore(prog)
        times.append(time.perf_counter() - t0)
    assert result is not None
    return {"strategy": name, "pages": pages, "increments": k, "src_page": prog.src_page,
            "interleavings": result.interleavings, "states": result.states,
            "lost": result.lost, "src_nonempty": result.src_nonempty,
            "best_s": round(min(times), 4), "median_s": round(statistics.median(times), 4),
            "under_5s": max(times) < 5.0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--large", action="store_true", help="also 2x4 and 4x6 (slower)")
    a = ap.parse_args()
    sizes = [(1, 3), (1, 1), (2, 3)] + ([(2, 4), (4, 6)] if a.large else [])
    rows = [measure(n, p, k, a.repeat) for p, k in sizes for n in STRATEGIES]
    out = {"benchmark": "atomicity-explorer", "python": platform.python_version(),
           "machine": platform.machine(), "repeat": a.repeat, "results": rows,
           "all_1x3_under_5s": all(r["under_5s"] for r in rows if (r["pages"], r["increments"])
                                   == (1, 3))}
    json.dump(out, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
