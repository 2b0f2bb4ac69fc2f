"""``python -m uffdsim atomicity``: the explorer (default) or the real-kernel race (``--kernel``).

``register(subparsers)`` adds the subcommand to an argparse subparsers object; ``run(args)``
executes it and returns the exit status.  Bad arguments produce one ``error:`` line and status 2,
never a traceback.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from .explorer import MAX_STATES, AtomicityResult, explore
from .program import MAX_INCREMENTS, MAX_PAGES, PIN_CAVEAT, Program
from .scheduler import run_to_end
from .state import SRC_PAGE_KINDS
from .strategies import STRATEGIES

#: measured lower bounds (states >= factor * pages * (increments + 1)**2, default source page):
#: what is certain to pass the explorer's limit is refused before any work
STATES_FLOOR = {"copy-dontneed": 5, "move-fallback": 5}
MAX_TRIALS = 100_000   #: kernel race: trials per strategy (each is a few ms)
HELP = "exhaustive interleavings of a mover and a writer (or the same race on the real kernel)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--strategy", action="append", metavar="NAME",
                   help=f"one of {', '.join(STRATEGIES)}, or 'all' (default); repeatable")
    p.add_argument("--pages", type=int, default=1, metavar="P",
                   help=f"pages moved (1..{MAX_PAGES}, default 1)")
    p.add_argument("--increments", type=int, default=None, metavar="K",
                   help=f"increments by the writer (explorer: 0..{MAX_INCREMENTS}, default 3); the "
                        f"explorer stops with an error past {MAX_STATES} states in all (every strategy "
                        "with 4 pages and 8 increments fits)")
    p.add_argument("--src-page", choices=SRC_PAGE_KINDS, default=None,
                   help="the source page (default: exclusive for move and copy-dontneed, "
                        "pinned for the others, so that MOVE fails and the fallback or the "
                        "hypothetical behaviour shows)")
    p.add_argument("--trace", action="store_true",
                   help="print the shortest counterexample of every strategy (text output)")
    p.add_argument("--schedule", metavar="IDS",
                   help="replay one interleaving instead, e.g. ABBAAB (thread ids A = mover, "
                        "B = writer); the run is completed preferring A if the ids run out")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--kernel", action="store_true",
                   help="race a C writer against the real ioctls instead of exploring")
    p.add_argument("--trials", type=int, default=1000, metavar="N",
                   help=f"kernel race: trials per strategy (1..{MAX_TRIALS}, default 1000)")
    p.add_argument("--seed", type=int, default=0, help="kernel race: seed of the start jitter")


def register(subparsers: "argparse._SubParsersAction") -> argparse.ArgumentParser:
    """Add the ``atomicity`` subcommand; its handler is :func:`run`."""
    p = subparsers.add_parser("atomicity", help=HELP, description=HELP)
    add_arguments(p)
    p.set_defaults(func=run)
    return p


class UsageError(ValueError):
    pass


def _strategies(args: argparse.Namespace, kernel: bool) -> list[str]:
    names = args.strategy or ["all"]
    out: list[str] = []
    for n in names:
        if n == "all":
            out += [s.name for s in STRATEGIES.values() if not (kernel and s.hypothetical)]
        elif n in STRATEGIES:
            if kernel and STRATEGIES[n].hypothetical:
                raise UsageError(f"strategy {n!r} is hypothetical (not Linux): it cannot run on "
                                 "the kernel; the kernel race has move, copy-dontneed, "
                                 "move-fallback")
            out.append(n)
        else:
            raise UsageError(f"unknown strategy {n!r}; choose from "
                             f"{', '.join(STRATEGIES)}, all")
    return list(dict.fromkeys(out))


def _yes(flag: bool) -> str:
    return "yes" if flag else "NO"


def format_result(r: AtomicityResult, trace: bool = True) -> list[str]:
    hist = " ".join(f"{k}:{v}" for k, v in sorted(r.lost_histogram.items()))
    lines = [
        f"strategy {r.strategy}  [{r.label}]",
        f"  {r.pages} page(s), {r.increments} increment(s), source page {r.src_page}",
        f"  interleavings      {r.interleavings}  ({r.states} distinct states)",
        f"  lose an increment  {r.lost}  (interleavings by increments lost: {hist})",
        f"  source non-empty   {r.src_nonempty}",
        f"  leak a page        {r.leaked}",
        f"  mover copied data  {r.copied}   EBUSY returned {r.ebusy}   deadlocks {r.deadlocks}",
        f"  promised in every interleaving: atomicity {_yes(r.atomic)}, zero copy "
        f"{_yes(r.zero_copy)}, empty source {_yes(r.src_empty)}",
    ]
    if r.caveat:
        lines.append(f"  but atomicity holds for CPU threads only ({r.detached_pin} interleavings): "
                     f"{r.caveat}")
    if trace and r.counterexample:
        lines.append(f"  shortest counterexample ({len(r.counterexample_schedule)} steps, schedule "
                     f"{r.counterexample_schedule}):")
        lines += ["    " + t for t in r.counterexample]
    return lines


def format_table(results: Sequence[AtomicityResult]) -> list[str]:
    head = (f"{'strategy':<22} {'src page':<10} {'interleavings':>13} {'lost':>8} "
            f"{'src!=empty':>10} {'leaked':>6}  atomic zero-copy empty-src")
    rows = [head, "-" * len(head)]
    for r in results:
        name = r.strategy + (" *" if r.hypothetical else "")
        atomic = _yes(r.atomic) + ("+" if r.caveat else "")
        rows.append(f"{name:<22} {r.src_page:<10} {r.interleavings:>13} {r.lost:>8} "
                    f"{r.src_nonempty:>10} {r.leaked:>6}  {atomic:<6} "
                    f"{_yes(r.zero_copy):<9} {_yes(r.src_empty)}")
    if any(r.hypothetical for r in results):
        rows.append("* hypothetical: debated on linux-mm in 2023, not Linux")
    if any(r.caveat for r in results):
        rows.append("+ " + PIN_CAVEAT)
    return rows


def _run_explorer(args: argparse.Namespace) -> int:
    names = _strategies(args, kernel=False)
    k = 3 if args.increments is None else args.increments
    programs = [Program.build(n, args.pages, k, args.src_page) for n in names]
    floor = sum(STATES_FLOOR.get(n, 0) * args.pages * (k + 1) ** 2 for n in names) if args.src_page is None else 0
    if floor > MAX_STATES:
        raise UsageError(f"{', '.join(names)} with {args.pages} page(s) and {k} increment(s) need at least "
                         f"{floor} states, more than the explorer's limit of {MAX_STATES}; use fewer "
                         "increments or strategies")
    if args.schedule is not None:
        return _replay(programs, args)
    budget = MAX_STATES                   # shared by the strategies: the whole command stays bounded
    results = []
    for p in programs:
        r = explore(p, budget)
        budget -= r.states
        results.append(r)
    if args.json:
        data = [r.to_dict() for r in results]
        print(json.dumps(data[0] if len(data) == 1 else data, indent=2))
        return 0
    if len(results) == 1:
        print("\n".join(format_result(results[0])))
        return 0
    print("\n".join(format_table(results)))
    if args.trace:
        for r in results:
            print()
            print("\n".join(format_result(r)))
    return 0


def _replay(programs: list[Program], args: argparse.Namespace) -> int:
    if len(programs) != 1:
        raise UsageError("--schedule replays one strategy: name it with --strategy")
    prog = programs[0]
    r = run_to_end(prog, args.schedule.strip().upper())
    if args.json:
        o = prog.outcome(r.final)
        print(json.dumps({"strategy": prog.strategy.name, "schedule": r.schedule,
                          "complete": r.complete, "lost_increments": o.lost_increments,
                          "src_nonempty": o.src_nonempty, "trace": r.report()}, indent=2))
    else:
        print(f"strategy {prog.strategy.name}, schedule {r.schedule}")
        print("\n".join(r.report()))
    return 0


def _run_kernel(args: argparse.Namespace) -> int:
    from . import kernel_race
    names = _strategies(args, kernel=True)
    if args.increments is not None or args.src_page is not None or args.trace or args.schedule:
        raise UsageError("--increments, --src-page, --trace and --schedule apply to the explorer; "
                         "the kernel writer increments until the mover is done, on the "
                         "strategy's own page")
    if not 1 <= args.trials <= MAX_TRIALS:
        raise UsageError(f"--trials must be from 1 to {MAX_TRIALS}, not {args.trials}")
    if not 1 <= args.pages <= MAX_PAGES:
        raise UsageError(f"--pages must be from 1 to {MAX_PAGES}, not {args.pages}")
    report = kernel_race.race(names, trials=args.trials, pages=args.pages, seed=args.seed)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print("\n".join(kernel_race.format_report(report)))
    return 0 if report.status != "error" else 1


def run(args: argparse.Namespace) -> int:
    """Execute ``atomicity``; returns the exit status (2 with one error line on bad input)."""
    try:
        if args.kernel:
            return _run_kernel(args)
        if args.trials != 1000 or args.seed != 0:
            raise UsageError("--trials and --seed only apply with --kernel")
        return _run_explorer(args)
    except (UsageError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry point: ``python -m uffdsim.concurrency [atomicity] ...``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["atomicity"]:
        argv = argv[1:]
    p = argparse.ArgumentParser(prog="python -m uffdsim atomicity", description=HELP)
    add_arguments(p)
    return run(p.parse_args(argv))
