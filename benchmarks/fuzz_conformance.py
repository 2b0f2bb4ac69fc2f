"""Differential fuzzing at scale: N random sequences on the simulator and the kernel; print JSON.

Usage: python benchmarks/fuzz_conformance.py [--sequences N] [--save DIR] [--no-swap]
Prints {"sequences": N, "divergences": D, ...}; each diverging sequence is saved as a scenario
(expecting the kernel's results) in DIR (default: a temporary folder, printed on stderr).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, settings

from uffdsim.backends.kernel import KernelBackend
from uffdsim.fuzz import differential, save_divergence, steps_strategy


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", type=int, default=5000)
    parser.add_argument("--save", type=Path, default=None)
    parser.add_argument("--no-swap", action="store_true", help="leave MADV_PAGEOUT out (no zram needed)")
    args = parser.parse_args()
    ok, why = KernelBackend().available()
    if not ok:
        print(json.dumps({"sequences": 0, "divergences": 0, "skipped": why}))
        return 0
    folder = args.save or Path(tempfile.mkdtemp(prefix="uffd-fuzz-"))
    stats = {"sequences": 0, "divergences": 0, "skipped": 0, "steps": 0}
    saved: list[str] = []
    start = time.monotonic()

    @settings(max_examples=args.sequences, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(steps_strategy(swap=not args.no_swap))
    def one(steps: list) -> None:
        diffs, sim, kern = differential(steps)
        stats["sequences"] += 1
        stats["steps"] += len(steps)
        if "skipped" in (sim.status, kern.status):
            stats["skipped"] += 1
        if diffs:
            stats["divergences"] += 1
            saved.append(str(save_divergence(steps, kern, diffs, folder)))
        if stats["sequences"] % 100 == 0:
            print(f"[{stats['sequences']}/{args.sequences}] {stats['divergences']} divergences, "
                  f"{time.monotonic() - start:.0f} s", file=sys.stderr)

    one()
    print(f"divergences saved in {folder}" if saved else "no divergences", file=sys.stderr)
    print(json.dumps({**stats, "seconds": round(time.monotonic() - start, 1), "saved": saved}))
    return 1 if stats["divergences"] else 0


if __name__ == "__main__":
    sys.exit(main())
