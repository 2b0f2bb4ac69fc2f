"""Interrupted kernel runs leave nothing behind (issue 9): the longer run of tests/test_interrupts.py.

``--runs`` (default 120) runs of ``python -m uffdsim run ... --backend kernel`` over swap, THP,
KSM and combined scenarios, each sent SIGINT, SIGTERM or SIGHUP (some a second signal while the
first one's undoing runs) after a delay between 20 ms and 2.1 s (``--delays``); the machine state
(swap areas, zram devices, KSM / khugepaged / THP settings, journals, temporary folders) is
compared with the state before, every 10 runs and at the end.  Prints JSON: runs, leftovers,
signals, seconds (and details).  Needs root, the kernel backend and zram.
Usage: python benchmarks/interrupts.py [--runs N]"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from test_interrupts import DELAYS, WHY, groups  # noqa: E402

from uffdsim.backends.kernel import interrupts  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=120)
    ap.add_argument("--delays", type=lambda t: tuple(float(x) for x in t.split(",")), default=DELAYS,
                    help="comma-separated seconds (default %(default)s)")
    ap.add_argument("-q", "--quiet", action="store_true")
    a = ap.parse_args()
    if WHY:
        print(json.dumps({"benchmark": "interrupts", "status": "skipped", "why": WHY}))
        return 2
    progress = None if a.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    result = interrupts.campaign(groups(), a.runs, a.delays, progress=progress)
    print(json.dumps({"benchmark": "interrupts", **result}, indent=1))
    return 1 if result["leftovers"] else 0


if __name__ == "__main__":
    sys.exit(main())
