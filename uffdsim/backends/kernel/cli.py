"""Subcommands of ``python -m uffdsim`` that need the running kernel: ``doctor``, ``conform``, ``bench``.

``bench`` takes a positional target looked up in :data:`BENCH_TARGETS` (target name ->
``fn(args) -> int``); another module can add a target (e.g. ``sim``) by adding an entry before
the command line is parsed, and its options can be added through :data:`BENCH_OPTIONS`.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Callable

from .caps import Capabilities, Facility, capabilities


# -- doctor ---------------------------------------------------------------------------------------

def doctor_text(caps: Capabilities) -> str:
    """The human-readable report of what this kernel offers."""
    def line(label: str, fac: Facility) -> str:
        return f"  {'ok ' if fac.ok else 'no '} {label:<15} {fac.detail}"

    u = caps.userfaultfd.facts
    out = [f"kernel {caps.kernel} ({caps.machine}), uid {caps.uid}, {caps.cpus} CPUs",
           line("userfaultfd", caps.userfaultfd),
           f"      vm.unprivileged_userfaultfd = {u.get('vm.unprivileged_userfaultfd')}",
           f"      /dev/userfaultfd: {u.get('/dev/userfaultfd')}",
           f"      UFFD_USER_MODE_ONLY: {u.get('user_mode_only', 'not tried')}",
           f"      CAP_SYS_PTRACE: {'yes' if u.get('CAP_SYS_PTRACE') else 'no'}; seccomp: {u.get('seccomp')}"]
    if u.get("features"):
        out.append(f"      features: {', '.join(u['features'])}")
    out += [line("UFFDIO_MOVE", caps.move), line("THP", caps.thp),
            line("huge zero page", caps.huge_zero_page), line("KSM", caps.ksm),
            line("swap", caps.swap), line("pins", caps.pin), line("guard regions", caps.guard),
            line("pagemap", caps.pagemap), line("compiler", caps.compiler)]
    why = caps.missing([])
    if caps.userfaultfd.ok and not caps.move.ok:
        out.append(f"  this kernel ({caps.kernel}) has no UFFDIO_MOVE: it needs Linux 6.8 or later "
                   "(6.12 LTS to match the book). Scenarios that move are skipped here; the simulator "
                   "answers as your kernel does with Machine(kernel=\"6.1\"), and `python -m uffdsim lab run "
                   "--kernel 6.12 FILE` runs scenarios on a real 6.12 in qemu.")
    out.append("kernel backend: " + ("usable" if why is None else f"unavailable: {why}"))
    return "\n".join(out)


def cmd_doctor(args: argparse.Namespace) -> int:
    caps = capabilities()
    if args.json:
        doc = caps.to_json()
        doc["kernel_backend"] = {"usable": caps.missing([]) is None, "why": caps.missing([])}
        print(json.dumps(doc, indent=1))
    else:
        print(doctor_text(caps))
    return 0


# -- conform --------------------------------------------------------------------------------------

CONFORM_HELP = ("run the scenario corpus on the simulator and on the running kernel and report "
                "every step where they differ; the last line is 'conform: N scenarios, D "
                "divergences, S skipped' where D counts scenarios with at least one differing "
                "step and S those that a backend could not run; exits 1 on any divergence")


def cmd_conform(args: argparse.Namespace) -> int:
    from ... import conform as C
    progress = None if args.quiet else sys.stderr
    if args.kernel:
        from ...lab.conform import conform_in_lab
        report = conform_in_lab(args.kernel, args.paths, progress=progress)
        if report is None:
            return 2
    else:
        report = C.conform(args.paths, progress=progress)
    if args.record:
        C.record(report, args.record)
    if args.json:
        print(json.dumps(report.to_json(), indent=1))
    else:
        C.print_table(report)
        for e in report.entries:
            for d in e.divergences:
                print(f"  {e.name}: step {d['i']} ({d['op']}) {d['field']}: "
                      f"sim={d.get('sim')!r} kernel={d.get('kernel')!r}")
    if args.record:
        print(f"recorded to {args.record}", file=sys.stderr)
    return 0 if report.ok else 1


# -- bench ----------------------------------------------------------------------------------------

def sizes_mib(text: str) -> tuple[int, ...]:
    """``1,16,256`` -> (1, 16, 256): positive whole MiB."""
    try:
        sizes = tuple(int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole MiB like 1,16,256, got {text!r}") from None
    if not sizes or min(sizes) <= 0:
        raise argparse.ArgumentTypeError(f"sizes must be positive, got {text!r}")
    return sizes


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return value


def bench_kernel(args: argparse.Namespace) -> int:
    from .bench import format_table, run_bench
    sizes = args.sizes or (1, 16, 256)
    progress = None if args.quiet else (lambda msg: print(f"bench: {msg}", file=sys.stderr, flush=True))
    doc = run_bench(sizes, args.runs, progress=progress)
    if args.record:
        with open(args.record, "w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")
        print(f"recorded to {args.record}", file=sys.stderr)
    print(json.dumps(doc, indent=1) if args.json else format_table(doc))
    return 2 if "skipped" in doc else 0


#: bench target -> function(args) -> exit status
BENCH_TARGETS: dict[str, Callable[[argparse.Namespace], int]] = {"kernel": bench_kernel}
#: extra options for the bench parser: (flags, add_argument kwargs)
BENCH_OPTIONS: list[tuple[tuple[str, ...], dict[str, Any]]] = []


def cmd_bench(args: argparse.Namespace) -> int:
    return BENCH_TARGETS[args.target](args)


def register(subparsers: "argparse._SubParsersAction") -> None:
    doc = subparsers.add_parser("doctor", help="what this kernel offers the kernel backend, and why anything is missing")
    doc.add_argument("--json", action="store_true", help="machine-readable output")
    doc.set_defaults(func=cmd_doctor)

    con = subparsers.add_parser("conform", help=CONFORM_HELP, description=CONFORM_HELP)
    con.add_argument("paths", nargs="*", help="scenario files or directories (default: the scenarios/ corpus)")
    con.add_argument("--json", action="store_true", help="print a JSON document (per-scenario entries and totals)")
    con.add_argument("--record", metavar="FILE", help="also write the JSON document to FILE (e.g. data/conformance.json)")
    con.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    con.add_argument("--kernel", metavar="SERIES", choices=("6.12", "6.1"),
                     help="run the kernel side in a lab VM booting Debian's SERIES kernel (see 'lab fetch')")
    con.set_defaults(func=cmd_conform)

    ben = subparsers.add_parser("bench", help="benchmarks: 'kernel' measures MOVE, COPY+DONTNEED and memcpy on this kernel")
    ben.add_argument("target", choices=BENCH_TARGETS, help="what to benchmark")
    ben.add_argument("--json", action="store_true", help="print the JSON document")
    ben.add_argument("--record", metavar="FILE", help="also write the JSON document to FILE (e.g. data/kernel_bench.json)")
    ben.add_argument("--sizes", type=sizes_mib, help="comma-separated sizes in MiB (default 1,16,256)")
    ben.add_argument("--runs", type=positive_int, default=5, metavar="N",
                     help="runs per measurement; the median is reported (default 5)")
    ben.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    for flags, kwargs in BENCH_OPTIONS:
        ben.add_argument(*flags, **kwargs)
    ben.set_defaults(func=cmd_bench)
