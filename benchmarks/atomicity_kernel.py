"""The atomicity race on the running kernel (issue 4): a C writer pinned to one CPU increments
counters while this thread, pinned to another, runs each real strategy; lost increments per
strategy over ``--trials`` trials (default 1,000).  Prints JSON (status "skipped" with the reason
where the race cannot run, e.g. on one CPU).
Usage: python benchmarks/atomicity_kernel.py [--trials N] [--pages P] [--seed S]"""
from __future__ import annotations

import argparse
import json
import sys
import time

from uffdsim.concurrency import kernel_race


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--pages", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    t0 = time.perf_counter()
    rep = kernel_race.race(kernel_race.KERNEL_STRATEGIES, trials=a.trials, pages=a.pages,
                           seed=a.seed)
    out = {"benchmark": "atomicity-kernel-race", **rep.to_dict(),
           "wall_s": round(time.perf_counter() - t0, 2)}
    if rep.status == "ok":
        res = {r.strategy: r for r in rep.results}
        out["verdict"] = {"copy_dontneed_loses": res["copy-dontneed"].lost_trials > 0,
                          "move_loses_nothing": res["move"].lost_increments == 0,
                          "move_fallback_loses": res["move-fallback"].lost_trials > 0
                          if not res["move-fallback"].skipped else None}
    json.dump(out, sys.stdout, indent=2)
    print()
    return 0 if rep.status != "error" else 1


if __name__ == "__main__":
    sys.exit(main())
