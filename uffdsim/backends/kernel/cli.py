"""Subcommands of ``python -m uffdsim`` that need the running kernel: ``doctor``, ``conform``, ``bench``.

``doctor`` also lists what interrupted kernel runs left on the machine; ``doctor --repair``
undoes it (:mod:`.leftovers`).

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
    if why is not None:
        out.append(f"kernel backend: unavailable: {why}")
    elif caps.user_mode_only or not caps.frames_visible:
        limits = (["scenarios needing root setup (KSM, swap, khugepaged tuning) are skipped"]
                  if caps.uid != 0 else [])
        if caps.user_mode_only:
            limits.append("scenarios needing kernel-mode faults are skipped")
        if not caps.frames_visible:
            limits.append("frames (PFNs) are not observable, so scenarios that observe present "
                          "pages run with partial observation")
        out.append(f"kernel backend: usable via {caps.uffd_via}; " + "; ".join(limits))
    else:
        out.append(f"kernel backend: usable via {caps.uffd_via}")
    return "\n".join(out)


def cmd_doctor(args: argparse.Namespace) -> int:
    from . import leftovers, signals
    caps = capabilities()
    with signals.protected():
        rep = leftovers.scan(repair=args.repair)
    if args.json:
        doc = caps.to_json()
        doc["kernel_backend"] = {"usable": caps.missing([]) is None, "why": caps.missing([]),
                                 "uffd": caps.uffd_via, "user_mode_only": caps.user_mode_only,
                                 "frames_observable": caps.frames_visible}
        doc["leftovers"] = {"found": rep.found, "busy": rep.busy, "repaired": rep.repaired,
                            "failed": rep.failed}
        print(json.dumps(doc, indent=1))
    else:
        print(doctor_text(caps))
        print(leftovers.report_text(rep, args.repair))
    return 1 if rep.failed else 0


# -- conform --------------------------------------------------------------------------------------

CONFORM_HELP = ("run the scenario corpus on the simulator and on the running kernel and report "
                "every step where they differ; the last line is 'conform: N scenarios, D "
                "divergences, S skipped (F full, P partial)' where D counts scenarios with at least "
                "one differing step, S those that a backend could not run, F those compared fully "
                "and P those with page fields the kernel hides without root (not compared); exits "
                "1 on any divergence, 2 with a one-line reason when no scenario could run at all")


def check_record(path: str | None) -> str | None:
    """Why ``--record PATH`` cannot be written (checked before the long work starts), or None."""
    if path is None:
        return None
    import os
    p = os.path.abspath(path)
    if os.path.isdir(p):
        return f"--record {path}: is a directory (give a file name)"
    folder = os.path.dirname(p)
    if not os.path.isdir(folder):
        return f"--record {path}: the folder {folder} does not exist"
    if not os.access(folder, os.W_OK) or (os.path.exists(p) and not os.access(p, os.W_OK)):
        return f"--record {path}: not writable"
    return None


def write_record(path: str, text: str) -> int:
    """Write a record; one error line and status 1 when that fails after all."""
    try:
        with open(path, "w") as f:
            f.write(text)
    except OSError as err:
        print(f"error: cannot write {path}: {err.strerror or err}", file=sys.stderr)
        return 1
    print(f"recorded to {path}", file=sys.stderr)
    return 0


def cmd_conform(args: argparse.Namespace) -> int:
    from ... import conform as C
    why = check_record(args.record)
    if why:
        print(f"error: {why}", file=sys.stderr)
        return 2
    files = C.scenario_files(args.paths)
    if not files:
        print(f"error: no scenario files (*.yaml) in {', '.join(args.paths)}", file=sys.stderr)
        return 2
    progress = None if args.quiet else sys.stderr
    old = None
    if args.update:
        if not args.record:
            print("error: --update needs --record FILE (the record to bring up to date)", file=sys.stderr)
            return 2
        try:
            old = C.load_record(args.record)
        except (OSError, ValueError) as err:
            print(f"error: --update: cannot read {args.record}: {getattr(err, 'strerror', None) or err}", file=sys.stderr)
            return 2
        if not isinstance(old, dict) or not isinstance(old.get("scenarios"), list):
            print(f"error: --update: {args.record} is not a conformance record", file=sys.stderr)
            return 2
        all_files = C.scenario_files([])                  # the record is of the whole corpus
        again = {p.resolve() for p in files} if args.paths else set()   # named: re-run even if unchanged
        stale = {p.resolve() for p in C.stale_files(all_files, old)}
        outside = [p for p in files if args.paths and p.resolve() not in {q.resolve() for q in all_files}]
        if outside:
            print(f"error: --update: {outside[0]} is not in the corpus the record is of", file=sys.stderr)
            return 2
        files = [p for p in all_files if p.resolve() in stale | again]
        if progress is not None:
            print(f"update: {len(files)} of {len(all_files)} scenarios to re-run (new, changed since {old.get('date')}, or named)",
                  file=progress, flush=True)
        if not files:
            print(f"{args.record}: up to date", file=sys.stderr)
            return 0
    if args.kernel:
        from ...lab.conform import conform_in_lab
        report = conform_in_lab(args.kernel, files if old else args.paths, progress=progress)
        if report is None:
            return 2
    else:
        report = C.conform(files if old else args.paths, progress=progress)
    if old is not None:
        try:
            report = C.merge_update(old, report, all_files)
        except ValueError as err:
            print(f"error: --update: {err}", file=sys.stderr)
            return 2
    recorded = 0
    if args.record:
        recorded = write_record(args.record, json.dumps(report.to_json(), indent=1) + "\n")
    if args.json:
        print(json.dumps(report.to_json(), indent=1))
    else:
        C.print_table(report)
        for e in report.entries:
            for d in e.divergences:
                print(f"  {e.name}: step {d['i']} ({d['op']}) {d['field']}: "
                      f"sim={d.get('sim')!r} kernel={d.get('kernel')!r}")
    nothing = report.nothing_ran()
    if nothing:
        print(f"error: {nothing}", file=sys.stderr)
        return 2
    return 0 if report.ok and not recorded else 1


# -- bench ----------------------------------------------------------------------------------------

MAX_SIZE_MIB = 1024      #: bench kernel: the largest size (it maps twice that, plus a copy)
MAX_SIZES = 8
MAX_RUNS = 100


def sizes_mib(text: str) -> tuple[int, ...]:
    """``1,16,256`` -> (1, 16, 256): positive whole MiB, at most MAX_SIZE_MIB each."""
    try:
        sizes = tuple(int(x) for x in text.split(",")) if len(text) < 200 else ()
    except ValueError:
        sizes = ()
    if not sizes:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole MiB like 1,16,256, got {text[:60]!r}") from None
    if min(sizes) <= 0 or max(sizes) > MAX_SIZE_MIB or len(sizes) > MAX_SIZES:
        raise argparse.ArgumentTypeError(f"sizes must be 1..{MAX_SIZE_MIB} MiB, at most {MAX_SIZES} of them, got {text[:60]!r}")
    return sizes


def positive_int(text: str) -> int:
    try:
        value = int(text) if len(text) < 20 else 0
    except ValueError:
        value = 0
    if not 0 < value <= MAX_RUNS:
        raise argparse.ArgumentTypeError(f"expected a whole number 1..{MAX_RUNS}, got {text[:40]!r}")
    return value


def bench_kernel(args: argparse.Namespace) -> int:
    from .bench import format_table, run_bench
    why = check_record(args.record)
    if why:
        print(f"error: {why}", file=sys.stderr)
        return 2
    sizes = args.sizes or (1, 16, 256)
    progress = None if args.quiet else (lambda msg: print(f"bench: {msg}", file=sys.stderr, flush=True))
    doc = run_bench(sizes, args.runs, progress=progress)
    recorded = write_record(args.record, json.dumps(doc, indent=1) + "\n") if args.record else 0
    print(json.dumps(doc, indent=1) if args.json else format_table(doc))
    return 2 if "skipped" in doc else recorded


#: bench target -> function(args) -> exit status
BENCH_TARGETS: dict[str, Callable[[argparse.Namespace], int]] = {"kernel": bench_kernel}
#: extra options for the bench parser: (flags, add_argument kwargs)
BENCH_OPTIONS: list[tuple[tuple[str, ...], dict[str, Any]]] = []


def cmd_bench(args: argparse.Namespace) -> int:
    return BENCH_TARGETS[args.target](args)


def register(subparsers: "argparse._SubParsersAction") -> None:
    doc = subparsers.add_parser("doctor", help="what this kernel offers the kernel backend, and why anything is missing")
    doc.add_argument("--json", action="store_true", help="machine-readable output")
    doc.add_argument("--repair", action="store_true",
                     help="undo what interrupted kernel runs left (journals, swap, temporary folders)")
    doc.set_defaults(func=cmd_doctor)

    con = subparsers.add_parser("conform", help=CONFORM_HELP, description=CONFORM_HELP)
    con.add_argument("paths", nargs="*", help="scenario files or directories (default: the scenarios/ corpus)")
    con.add_argument("--json", action="store_true", help="print a JSON document (per-scenario entries and totals)")
    con.add_argument("--record", metavar="FILE", help="also write the JSON document to FILE (e.g. data/conformance.json); "
                     "its folder must exist (checked before the run)")
    con.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    con.add_argument("--update", action="store_true",
                     help="with --record FILE: run only the scenarios that are new or changed since FILE was "
                          "recorded (same kernel release), and any corpus files named, and merge them into it; "
                          "the others keep their recorded entries (their simulator side is not re-run: run "
                          "conform whole for that)")
    con.add_argument("--kernel", metavar="SERIES", choices=("6.12", "6.1"),
                     help="run the kernel side in a lab VM booting Debian's SERIES kernel (see 'lab fetch')")
    con.set_defaults(func=cmd_conform)

    ben = subparsers.add_parser("bench", help="benchmarks: 'kernel' measures MOVE, COPY+DONTNEED and memcpy on this kernel")
    ben.add_argument("target", choices=BENCH_TARGETS, help="what to benchmark")
    ben.add_argument("--json", action="store_true", help="print the JSON document")
    ben.add_argument("--record", metavar="FILE", help="also write the JSON document to FILE (e.g. data/kernel_bench.json)")
    ben.add_argument("--sizes", type=sizes_mib,
                     help=f"comma-separated sizes in MiB, 1..{MAX_SIZE_MIB}, at most {MAX_SIZES} (default 1,16,256)")
    ben.add_argument("--runs", type=positive_int, default=5, metavar="N",
                     help=f"runs per measurement, 1..{MAX_RUNS}; the median is reported (default 5)")
    ben.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    for flags, kwargs in BENCH_OPTIONS:
        ben.add_argument(*flags, **kwargs)
    ben.set_defaults(func=cmd_bench)
