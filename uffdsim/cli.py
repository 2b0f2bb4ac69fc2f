"""``python -m uffdsim``: run scenarios, and the subcommands other modules plug in."""
from __future__ import annotations

import argparse
import errno
import importlib
import io
import json
import os
import sys
from pathlib import Path
from typing import Any, NoReturn, Sequence

from .report import clean, fmt_args, fmt_result, page_text, print_table  # noqa: F401 (the CLI's table; kept importable from here)
from .resources import corpus_files, find_scenario, path_exists, scenario_path  # noqa: F401 (scenario_path: kept importable)
from .runner import compare, finish, get_backend
from .scenario import (MAX_FILE_BYTES, MAX_MAPPED_PAGES, MAX_OBSERVE_PAGES, MAX_STEPS, MAX_WORK_PAGES,
                       ScenarioError, load_scenario)

#: modules that add subcommands through ``register(subparsers)`` (each optional)
PLUGINS = ("uffdsim.backends.kernel.cli", "uffdsim.concurrency.cli", "uffdsim.viz.cli", "uffdsim.claims",
           "uffdsim.lab.cli")


def list_corpus(out: Any = None) -> int:
    """``run --list``: the bundled corpus, one ``name  about`` line per scenario."""
    out = out or sys.stdout
    files = corpus_files()
    for path in files:
        try:
            about = " ".join(str(load_scenario(path).about or "").split())
        except ScenarioError as err:
            about = f"(does not load: {err})"
        print(clean(f"{path.stem:<48} {about[:100]}"), file=out)
    print(f"{len(files)} bundled scenarios in {files[0].parent if files else 'uffdsim/scenarios'}", file=out)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Run scenario files; exit 1 if any fails (or, with --backend both, if the backends differ)."""
    if args.list:
        return list_corpus()
    if not args.files:
        print("error: run: name a scenario file or a bundled scenario (see `run --list`)", file=sys.stderr)
        return 2
    bad = 0          # the exit status: the worst of 1 (an expectation failed), 2 (bad input), 70 (our bug)
    kernel_ran, kernel_skips = 0, []
    for path in map(scenario_path, args.files):     # a path, or a bundled scenario's name
        if not path_exists(path):
            print(f"error: {clean(path) or repr(path)}: no such file, and no bundled scenario of that name (see `run --list`)",
                  file=sys.stderr)
            bad = worst(bad, 2)
            continue
        try:
            scenario = load_scenario(path)
        except ScenarioError as err:
            print(f"error: {clean(str(err))}", file=sys.stderr)
            bad = worst(bad, 2)
            continue
        names = ["sim", "kernel"] if args.backend == "both" else [args.backend]
        try:
            results = [finish(scenario, n, get_backend(n).run(scenario)) for n in names]
        except Exception as err:  # a bug of ours: say so in one line, go on with the next file
            print(f"error: {clean(path)}: internal error while running it ({type(err).__name__}: "
                  f"{clean(' '.join(str(err).split())[:200])}); please report this scenario", file=sys.stderr)
            bad = worst(bad, 70)
            continue
        diffs = compare(*results) if len(results) == 2 and all(r.status != "skipped" for r in results) else []
        for r in results:
            if r.backend == "kernel":
                kernel_ran += r.status != "skipped"
                kernel_skips += [r.reason] if r.status == "skipped" else []
        if any(r.status == "failed" for r in results) or diffs:
            bad = worst(bad, 1)
        if args.json:
            if len(results) == 1:
                print(json.dumps(results[0].to_json()))
            else:
                status = "failed" if diffs or any(r.status == "failed" for r in results) else \
                    ("skipped" if any(r.status == "skipped" for r in results) else "passed")
                print(json.dumps({"name": scenario.name, "backend": "both", "status": status,
                                  "divergences": diffs, "sim": results[0].to_json(),
                                  "kernel": results[1].to_json()}))
        else:
            for r in results:
                print_table(r, scenario)
            for d in diffs:
                print(clean(f"  DIFFERS at step {d['i']} ({d['op']}) {d['field']}: sim={d.get('sim')!r} "
                            f"kernel={d.get('kernel')!r}"))
    if kernel_skips and not kernel_ran:
        print(f"error: the kernel backend ran none of the {len(kernel_skips)} scenario(s): "
              f"{kernel_skips[0]}", file=sys.stderr)
        return 2
    return bad


EXIT_CODES = ("Exit status: 0 ok, 1 an expectation failed (or the backends differ), 2 bad input (one error "
              "line), 70 internal error.")


def worst(status: int, new: int) -> int:
    """The exit status that says more: 70 (our bug) over 2 (bad input) over 1 (an expectation failed) over 0."""
    order = {0: 0, 1: 1, 2: 2, 70: 3}
    return max(status, new, key=lambda s: order.get(s, 0))


class Parser(argparse.ArgumentParser):
    """argparse, but a refused command line is one ``error:`` line (no usage block) and exit status 2."""

    def error(self, message: str) -> "NoReturn":  # type: ignore[override]
        self.exit(2, f"error: {clean(self.prog)}: {clean(' '.join(message.split()))} (see --help)\n")


LIMITS = (f"Limits: a file is at most {MAX_FILE_BYTES // 1024} KiB of UTF-8 text without duplicate keys and "
          f"at most {MAX_STEPS} steps; numbers are unsigned 64-bit; regions map at most {MAX_MAPPED_PAGES} pages in "
          f"all; observe shows at most {MAX_OBSERVE_PAGES} pages per step; all steps together touch at most "
          f"{MAX_WORK_PAGES} pages. A file past them is one error line and exit status 2. " + EXIT_CODES)


def version() -> str:
    """The installed package's version (``unknown`` when it runs from a tree that is not installed)."""
    from importlib.metadata import PackageNotFoundError, version as dist_version
    try:
        return dist_version("uffdsim")
    except PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    prog = "uffdsim" if Path(sys.argv[0]).name == "uffdsim" else "python -m uffdsim"
    parser = Parser(prog=prog, description="Simulate (and check on the kernel) what UFFDIO_MOVE does.",
                    epilog=EXIT_CODES)
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run scenario files or bundled scenarios",
                         description="Run scenario files or bundled scenarios. " + LIMITS)
    run.add_argument("files", nargs="*", metavar="SCENARIO",
                     help="a scenario YAML file, or the name of a bundled scenario (a file that exists wins)")
    run.add_argument("--list", action="store_true", help="list the bundled scenario corpus")
    run.add_argument("--backend", choices=("sim", "kernel", "both"), default="sim")
    run.add_argument("--json", action="store_true", help="one JSON object per scenario")
    run.set_defaults(func=cmd_run)
    for name in PLUGINS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name and name.startswith(err.name):
                continue
            raise
        module.register(sub)
    return parser


def safe_output() -> None:
    """Whatever the terminal's encoding (``PYTHONIOENCODING=ascii``, latin-1), print what cannot be encoded escaped."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            try:
                reconfigure(errors="backslashreplace")
            except (ValueError, OSError):
                pass


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns the exit status (0 ok, 1 expectation failed, 2 bad input, 70 internal error)."""
    safe_output()
    try:
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as stop:          # --help, --version (0) or a refused command line (2, one line)
            sys.stdout.flush()
            return stop.code if isinstance(stop.code, int) else 2
        status = int(args.func(args) or 0)
        sys.stdout.flush()                  # a full disk or a closed pipe shows here, not at exit
        return status
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        drop_stdout()
        sys.stderr.close()
        return 0
    except ScenarioError as err:
        print(f"error: {clean(str(err))}", file=sys.stderr)
        return 2
    except OSError as err:
        if err.errno in (errno.ENOSPC, errno.EIO, errno.EDQUOT, errno.EFBIG) and err.filename is None:
            # writing a stream failed (stdout on a full disk, /dev/full): not a bug of ours
            drop_stdout()
            print(f"error: cannot write the output: {err.strerror}", file=sys.stderr)
            return 2
        return internal_error(err)
    except Exception as err:  # a bug of ours: one line, never a traceback
        return internal_error(err)


def internal_error(err: BaseException) -> int:
    print(f"error: internal error ({type(err).__name__}: {clean(' '.join(str(err).split())[:200])}); "
          "please report the command line", file=sys.stderr)
    return 70


def drop_stdout() -> None:
    """Point standard output at /dev/null, so that the interpreter's final flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        pass
