"""The input fuzzer at scale: mutated scenario files and command lines through the CLI; print JSON.

Usage: python benchmarks/fuzz_inputs.py [--cases N] [--seed S] [--budget SECONDS] [--mem-cap MiB]
Prints {"cases", "accepted", "rejected", "tracebacks", "hangs", "memory", "bad_exits", "seconds",
"slowest", "peak_rss_mb", "failures": [the first 20, with their input]}.  Each case runs the real
command line (``uffdsim.cli.main``) in this process on the simulator backend, under a per-case time
budget and an address-space cap (RLIMIT_AS = 2 x the memory cap).  Exit status 1 on any failure.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys

os.environ.setdefault("MPLBACKEND", "Agg")

from uffdsim.inputfuzz import fuzz  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--budget", type=float, default=20.0, help="seconds per case before it counts as a hang")
    parser.add_argument("--mem-cap", type=float, default=1024.0, help="MiB of peak RSS before a case counts as a runaway")
    args = parser.parse_args()
    cap = int(args.mem_cap * 2) << 20
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    def progress(s: object) -> None:
        print(f"fuzz_inputs: {s.cases} cases, {s.tracebacks} tracebacks, {s.hangs} hangs", file=sys.stderr, flush=True)  # type: ignore[attr-defined]

    summary = fuzz(args.cases, seed=args.seed, budget=args.budget, mem_cap_mb=args.mem_cap, progress=progress)
    doc = dict(summary.to_json(), seed=args.seed, budget_s=args.budget, mem_cap_mb=args.mem_cap, backend="sim")
    print(json.dumps(doc, indent=1))
    return 0 if summary.ok else 1


if __name__ == "__main__":
    sys.exit(main())
