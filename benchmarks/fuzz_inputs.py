"""The input fuzzer at scale: mutated scenario files, command lines and generated scenarios through the CLI; print JSON.

Usage: python benchmarks/fuzz_inputs.py [--cases N] [--seed S] [--jobs J] [--budget SECONDS] [--mem-cap MiB]
          [--semantic SHARE] [--claims SHARE] [--live SHARE] [--seconds S]
       python benchmarks/fuzz_inputs.py --merge CHUNK.json ...   (runs saved side by side: one JSON)
Prints {"cases", "accepted", "rejected", "tracebacks", "hangs", "memory", "bad_exits", "unescaped",
"semantic", "draws", "claims", "live", "generators": {generator: {"cases", "ok", "expectation-failed",
"rejected", and any failure kind}}, "seconds", "slowest", "peak_rss_mb",
"failures": [the first 20, with their input]}.
Each case runs the real command line (``uffdsim.cli.main``) in this process on the simulator backend,
under a per-case time budget and an address-space cap (RLIMIT_AS = 2 x the memory cap).  A case is a
mutated corpus file (``run``, or a mutated ``run``/``draw``/``atomicity`` command line) or, with
probability SHARE, a generated scenario (``uffdsim.inputfuzz.semantic_scenario``: forks, exits and
KSM of many processes) that is run or drawn; with probability ``--claims`` a generated Markdown page
or notebook (or a directory, a device, a FIFO) given to ``claims``; with probability ``--live`` a
live cell (a generated YAML scenario or a hostile Python snippet) run as the book's page runs it
(``uffdsim.live.run_cell_json``).  ``--jobs J`` splits the cases over J child processes
(seeds S, S+1, ...) and adds up their counts (``seconds`` is then the wall time, ``slowest`` and
``peak_rss_mb`` the largest of any job).  Exit status 1 on any failure.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

os.environ.setdefault("MPLBACKEND", "Agg")

from uffdsim.inputfuzz import fuzz  # noqa: E402

COUNTS = ("cases", "accepted", "rejected", "tracebacks", "hangs", "memory", "bad_exits", "unescaped",
          "semantic", "draws", "claims", "live")


def merge(docs: list[dict], seconds: float) -> dict:
    """The counts of several jobs added up."""
    out: dict = {k: sum(d.get(k, 0) for d in docs) for k in COUNTS}
    gens: dict[str, dict[str, int]] = {}
    for d in docs:
        for name, counts in d.get("generators", {}).items():
            for k, v in counts.items():
                gens.setdefault(name, {})[k] = gens.get(name, {}).get(k, 0) + v
    out["generators"] = dict(sorted(gens.items()))
    out.update(seconds=round(seconds, 1), slowest=max(d["slowest"] for d in docs),
               peak_rss_mb=max(d["peak_rss_mb"] for d in docs),
               failures=[f for d in docs for f in d["failures"]][:20],
               jobs=[{"seed": d["seed"], "cases": d["cases"], "seconds": d["seconds"]} for d in docs])
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=1, help="child processes sharing the cases (seeds seed, seed+1, ...)")
    parser.add_argument("--budget", type=float, default=20.0,
                        help="seconds of CPU per case (ten times that of wall time) before it counts as a hang")
    parser.add_argument("--mem-cap", type=float, default=1024.0, help="MiB of peak RSS before a case counts as a runaway")
    parser.add_argument("--semantic", type=float, default=0.3, help="share of generated scenarios (0..1)")
    parser.add_argument("--claims", type=float, default=0.0, help="share of claims pages (0..1)")
    parser.add_argument("--live", type=float, default=0.0, help="share of live cells (0..1)")
    parser.add_argument("--seconds", type=float, default=None, help="stop each job after this many seconds")
    parser.add_argument("--merge", nargs="+", metavar="JSON", help="add up the JSON of chunks run side by side "
                        "(other seeds) instead of running; seconds is the longest chunk's")
    args = parser.parse_args()
    if args.merge:
        chunks = []
        for name in args.merge:
            with open(name) as f:
                chunks.append(json.load(f))
        doc = merge(chunks, max(d["seconds"] for d in chunks))
        doc["chunks"] = [{k: d.get(k) for k in ("seed", "cases", "seconds", "semantic_share", "claims_share",
                                                "live_share", "budget_s", "mem_cap_mb")} for d in chunks]
        print(json.dumps(doc, indent=1))
        return 0 if all(doc[k] == 0 for k in ("tracebacks", "hangs", "memory", "bad_exits", "unescaped")) else 1
    common = {"budget_s": args.budget, "mem_cap_mb": args.mem_cap, "backend": "sim", "semantic_share": args.semantic,
              "claims_share": args.claims, "live_share": args.live}
    if args.jobs > 1:
        t0 = time.perf_counter()
        share = -(-args.cases // args.jobs)
        procs = [subprocess.Popen([sys.executable, __file__, "--cases", str(min(share, args.cases - j * share)),
                                   "--seed", str(args.seed + j), "--budget", str(args.budget),
                                   "--mem-cap", str(args.mem_cap), "--semantic", str(args.semantic),
                                   "--claims", str(args.claims), "--live", str(args.live)]
                                  + (["--seconds", str(args.seconds)] if args.seconds else []),
                                  stdout=subprocess.PIPE, text=True) for j in range(args.jobs)]
        docs = [json.loads(p.communicate()[0]) for p in procs]
        doc = dict(merge(docs, time.perf_counter() - t0), seed=args.seed, **common)
        print(json.dumps(doc, indent=1))
        return 0 if all(doc[k] == 0 for k in ("tracebacks", "hangs", "memory", "bad_exits", "unescaped")) else 1
    cap = int(args.mem_cap * 2) << 20
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    def progress(s: object) -> None:
        print(f"fuzz_inputs[{args.seed}]: {s.cases} cases, {s.tracebacks} tracebacks, {s.hangs} hangs, "  # type: ignore[attr-defined]
              f"{s.memory} memory, {s.bad_exits} bad exits", file=sys.stderr, flush=True)  # type: ignore[attr-defined]

    summary = fuzz(args.cases, seed=args.seed, budget=args.budget, mem_cap_mb=args.mem_cap,
                   semantic_share=args.semantic, claims_share=args.claims, live_share=args.live,
                   seconds=args.seconds, progress=progress)
    doc = dict(summary.to_json(), seed=args.seed, **common)
    print(json.dumps(doc, indent=1))
    return 0 if summary.ok else 1


if __name__ == "__main__":
    sys.exit(main())
