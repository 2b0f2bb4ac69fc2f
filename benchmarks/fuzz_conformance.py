"""Differential fuzzing at scale: N random sequences on the simulator and the kernel; print JSON.

Usage: python benchmarks/fuzz_conformance.py [--sequences N] [--save DIR] [--no-swap] [--thp] [--mthp] [--kernel 6.12]
--thp mixes in sequences on 2 MiB-aligned regions (uffdsim.fuzz.thp_steps_strategy); --mthp makes every
sequence one on multi-size THP folios with references, pins and partial moves
(uffdsim.fuzz.mthp_steps_strategy; root, Linux 6.8+); --kernel runs
the kernel side in the lab VM (all sequences in one boot) against the simulator's profile for it.
Prints {"sequences": N, "divergences": D, ...}; each diverging sequence is saved as a scenario
(expecting the kernel's results) in DIR (default: a temporary folder, printed on stderr).
"""
from __future__ import annotations

import argparse
import json
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, settings

from uffdsim.backends.kernel import KernelBackend
from uffdsim.fuzz import differential, mthp_steps_strategy, save_divergence, steps_strategy, thp_steps_strategy


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", type=int, default=5000)
    parser.add_argument("--save", type=Path, default=None)
    parser.add_argument("--no-swap", action="store_true", help="leave MADV_PAGEOUT out (no zram needed)")
    parser.add_argument("--thp", action="store_true", help="half the sequences on 2 MiB-aligned regions (THP)")
    parser.add_argument("--mthp", action="store_true", help="every sequence on mTHP folios (sizes, references, partial moves)")
    parser.add_argument("--kernel", choices=("6.12",), help="run the kernel side in the lab VM")
    args = parser.parse_args()
    strategy = steps_strategy(swap=not args.no_swap)
    if args.thp:
        from hypothesis import strategies as st
        strategy = st.one_of(strategy, thp_steps_strategy())
    if args.mthp:
        strategy = mthp_steps_strategy(swap=not args.no_swap)
    if args.kernel:
        return in_lab(args, strategy)
    ok, why = KernelBackend().available()
    if not ok:
        print(json.dumps({"sequences": 0, "divergences": 0, "skipped": why}))
        return 0
    folder = args.save or Path(tempfile.mkdtemp(prefix="uffd-fuzz-"))
    stats = {"sequences": 0, "divergences": 0, "skipped": 0, "steps": 0}
    reasons: dict[str, int] = {}
    saved: list[str] = []
    start = time.monotonic()

    @settings(max_examples=args.sequences, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def one(steps: list) -> None:
        diffs, sim, kern = differential(steps)
        stats["sequences"] += 1
        stats["steps"] += len(steps)
        if "skipped" in (sim.status, kern.status):
            stats["skipped"] += 1
            count_skip(reasons, sim, kern)
        if diffs:
            stats["divergences"] += 1
            saved.append(str(save_divergence(steps, kern, diffs, folder)))
        if stats["sequences"] % 100 == 0:
            print(f"[{stats['sequences']}/{args.sequences}] {stats['divergences']} divergences, "
                  f"{time.monotonic() - start:.0f} s", file=sys.stderr)

    one()
    print(f"divergences saved in {folder}" if saved else "no divergences", file=sys.stderr)
    print(json.dumps({**stats, "skip_reasons": reasons, "kernel": platform.release(), "thp": args.thp,
                      "mthp": args.mthp, "seconds": round(time.monotonic() - start, 1), "saved": saved}))
    return 1 if stats["divergences"] else 0


def count_skip(reasons: dict[str, int], *results) -> None:
    """Count why a sequence was skipped (the first skipping backend's reason, numbers stripped)."""
    why = next(f"{r.backend}: {r.reason}" for r in results if r.status == "skipped")
    key = re.sub(r"0x[0-9a-f]+|\d+", "N", why)[:120]
    reasons[key] = reasons.get(key, 0) + 1


def in_lab(args: argparse.Namespace, strategy) -> int:
    """Draw the sequences, run them all in one lab boot, compare with the simulator's profile."""
    import yaml
    from uffdsim.backends.sim import SimBackend
    from uffdsim.fuzz import scenario_of
    from uffdsim.lab.vm import LabBackend, LabError
    from uffdsim.runner import compare, finish
    drawn: list = []

    @settings(max_examples=args.sequences, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def draw(steps: list) -> None:
        drawn.append(steps)
    draw()
    start = time.monotonic()
    folder = args.save
    files = []
    with tempfile.TemporaryDirectory(prefix="uffd-fuzz-seq-") as tmp:
        for n, steps in enumerate(drawn):
            path = Path(tmp) / f"seq{n:05d}.yaml"
            s = scenario_of(steps, f"seq{n:05d}")
            path.write_text(yaml.safe_dump({"name": s.name, "about": "fuzz", "requires": s.requires, "steps": steps}))
            files.append(path)
        lab = LabBackend(args.kernel)
        try:
            batch = lab.prepare(files, progress=lambda m: print(m, file=sys.stderr, flush=True))
        except LabError as err:
            print(json.dumps({"sequences": 0, "divergences": 0, "skipped": str(err)}))
            return 0
        sim = SimBackend(kernel=lab.profile())
        stats = {"sequences": 0, "divergences": 0, "skipped": 0, "steps": 0}
        reasons: dict[str, int] = {}
        saved = []
        for path, steps in zip(files, drawn):
            scenario = scenario_of(steps, path.stem)
            scenario.path = str(path)
            a = finish(scenario, "sim", sim.run(scenario))
            b = finish(scenario, "kernel", lab.run(scenario))
            stats["sequences"] += 1
            stats["steps"] += len(steps)
            if "skipped" in (a.status, b.status):
                stats["skipped"] += 1
                count_skip(reasons, a, b)
                continue
            diffs = compare(a, b)
            if diffs:
                stats["divergences"] += 1
                folder = folder or Path(tempfile.mkdtemp(prefix="uffd-fuzz-lab-"))   # only when needed
                saved.append(str(save_divergence(steps, b, diffs, folder)))
    print(json.dumps({**stats, "skip_reasons": reasons, "kernel": batch.guest["guest"], "profile": sim.profile_name,
                      "thp": args.thp, "mthp": args.mthp, "seconds": round(time.monotonic() - start, 1),
                      "lab_seconds": batch.seconds, "saved": saved}))
    return 1 if stats["divergences"] else 0


if __name__ == "__main__":
    sys.exit(main())
