"""``python -m uffdsim``: run scenarios, and the subcommands other modules plug in."""
from __future__ import annotations

import argparse
import importlib
import json
import sys
from typing import Any, Sequence

from .runner import ScenarioResult, compare, finish, get_backend
from .scenario import Scenario, ScenarioError, load_scenario

#: modules that add subcommands through ``register(subparsers)`` (each optional)
PLUGINS = ("uffdsim.backends.kernel.cli", "uffdsim.concurrency.cli", "uffdsim.viz.cli",
           "uffdsim.lab.cli")


def fmt_args(raw: dict[str, Any], op: str) -> str:
    fields = raw.get(op) or {}
    return ", ".join(f"{k}={v}" for k, v in fields.items()) if isinstance(fields, dict) else ""


def fmt_result(rec: dict[str, Any]) -> str:
    if rec.get("not_run"):
        return "not run"
    if rec.get("hung"):
        return "HUNG"
    parts = ["ok" if rec.get("errno") is None else rec["errno"]]
    for key in ("move", "copy", "zeropage"):
        if key in rec:
            parts.append(f"{key}={'unwritten' if rec[key] is None else rec[key]}")
    if "blocked" in rec:
        parts.append(f"blocked={rec['blocked']}")
    if "pages" in rec:
        parts.append(" ".join(page_text(p) for p in rec["pages"]))
    if "events" in rec:
        parts.append(" ".join(f"{e['type']}@{e['at']}{'(w)' if e['write'] else ''}" for e in rec["events"]) or "no events")
    return " ".join(parts)


def page_text(p: dict[str, Any]) -> str:
    """``present:0x41@f0`` / ``zero`` / ``none``: one page in a table cell."""
    if p["state"] == "present":
        return f"present:{p['value']:#04x}@{p['frame']}{'(thp)' if p.get('thp') else ''}"
    return p["state"]


def print_table(result: ScenarioResult, scenario: Scenario, out: Any = sys.stdout) -> None:
    """One row per step: index, op, arguments, outcome, expectation."""
    head = f"{result.name} [{result.backend}]: {result.status}"
    if result.reason:
        head += f" ({result.reason})"
    print(head, file=out)
    for step, rec in zip(scenario.steps, result.steps):
        mark = "" if "expect" not in rec else ("  ok" if rec["expect"] == "met" else "  ✗ " + rec["expect"])
        print(f"  {rec['i']:>3} {step.op:<12} {fmt_args(step.raw, step.op)[:60]:<60} {fmt_result(rec)}{mark}", file=out)


def cmd_run(args: argparse.Namespace) -> int:
    """Run scenario files; exit 1 if any fails (or, with --backend both, if the backends differ)."""
    bad = 0
    for path in args.files:
        try:
            scenario = load_scenario(path)
        except ScenarioError as err:
            print(f"error: {err}", file=sys.stderr)
            bad = 1
            continue
        names = ["sim", "kernel"] if args.backend == "both" else [args.backend]
        try:
            results = [finish(scenario, n, get_backend(n).run(scenario)) for n in names]
        except Exception as err:  # a bug of ours: say so in one line, go on with the next file
            print(f"error: {path}: internal error while running it ({type(err).__name__}: {err}); "
                  "please report this scenario", file=sys.stderr)
            bad = 1
            continue
        diffs = compare(*results) if len(results) == 2 and all(r.status != "skipped" for r in results) else []
        if any(r.status == "failed" for r in results) or diffs:
            bad = 1
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
                print(f"  DIFFERS at step {d['i']} ({d['op']}) {d['field']}: sim={d.get('sim')!r} kernel={d.get('kernel')!r}")
    return bad


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m uffdsim",
                                     description="Simulate (and check on the kernel) what UFFDIO_MOVE does.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run scenario files")
    run.add_argument("files", nargs="+", help="scenario YAML files")
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        sys.stderr.close()
        return 0
