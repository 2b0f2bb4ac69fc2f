"""``python -m uffdsim lab fetch|run|status``: the kernel lab from the command line."""
from __future__ import annotations

import argparse
import json
import sys

from .fetch import KERNELS, FetchError, cache_dir, fetch, manifest
from .vm import LabError


def cmd_fetch(args: argparse.Namespace) -> int:
    try:
        fetch(args.kernel or None, say=lambda m: print(f"lab: {m}", file=sys.stderr, flush=True))
    except (FetchError, OSError) as err:
        print(f"error: lab fetch: {err}", file=sys.stderr)
        return 1
    print(json.dumps(manifest(), indent=1))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from .vm import lab_unavailable
    print(f"cache: {cache_dir()}")
    for s in KERNELS:
        e = manifest().get("kernels", {}).get(s)
        why = lab_unavailable(s)
        print(f"  {s}: {e['package'] + ' ' + e['version'] if e else 'not fetched'}; "
              f"{'ready' if why is None else why}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Run scenario files in one boot of the lab kernel; the same output as ``run --backend kernel``."""
    from ..cli import print_table
    from ..runner import finish
    from ..scenario import ScenarioError, load_scenario
    from .vm import LabBackend
    scenarios, bad = [], 0
    for path in args.files:
        try:
            scenarios.append(load_scenario(path))
        except ScenarioError as err:
            print(f"error: {err}", file=sys.stderr)
            bad = 2                      # bad input (issue 19: 1 means an expectation failed)
    backend = LabBackend(args.kernel)
    try:
        batch = backend.prepare([s.path for s in scenarios],
                                progress=None if args.quiet else lambda m: print(f"lab: {m}", file=sys.stderr, flush=True))
    except LabError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"lab: {batch.guest['guest']}: booted in {batch.seconds['boot']} s, {batch.seconds['total']} s in all; "
          f"MOVE {'offered' if batch.guest['move'] else 'unsupported: ' + batch.guest['move_detail']}",
          file=sys.stderr)
    for s in scenarios:
        r = finish(s, "kernel", backend.run(s))
        bad = max(bad, int(r.status == "failed"))
        if args.json:
            print(json.dumps(r.to_json()))
        else:
            print_table(r, s)
    return bad


def register(subparsers: "argparse._SubParsersAction") -> None:
    lab = subparsers.add_parser("lab", help="boot Debian's 6.12 / 6.1 kernels in qemu and run scenarios there")
    sub = lab.add_subparsers(dest="lab_command", required=True)
    f = sub.add_parser("fetch", help="download and prepare the lab kernels (apt-get download; cached outside git)")
    f.add_argument("--kernel", action="append", choices=list(KERNELS), help="only this kernel (repeatable)")
    f.set_defaults(func=cmd_fetch)
    st = sub.add_parser("status", help="which lab kernels are ready")
    st.set_defaults(func=cmd_status)
    r = sub.add_parser("run", help="run scenario files on a lab kernel (one boot for the batch)")
    r.add_argument("--kernel", required=True, choices=list(KERNELS))
    r.add_argument("files", nargs="+", help="scenario YAML files")
    r.add_argument("--json", action="store_true", help="one JSON object per scenario (as run --json)")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    r.set_defaults(func=cmd_run)
