"""``python -m uffdsim draw SCENARIO --step N -o out.png``: the before/after diagram of one step.

``--kind trail`` draws the step's decision path instead.  Errors are one ``error:`` line on
stderr and exit status 2 (bad input, an output that cannot be written), never a traceback.
"""
from __future__ import annotations

import argparse
import sys

HELP = ("draw the before/after diagram (or decision path) of one scenario step as a PNG; the scenario "
        "limits of 'run' apply, and a drawing lists at most 4096 pages per VMA")


def register(subparsers: "argparse._SubParsersAction") -> argparse.ArgumentParser:
    """Add the ``draw`` subcommand; its handler is :func:`run`."""
    p = subparsers.add_parser("draw", help=HELP, description=HELP)
    p.add_argument("scenario", help="a scenario YAML file, or the name of a bundled scenario (a file that exists wins)")
    p.add_argument("--step", "-n", type=int, required=True, metavar="N",
                   help="step index, 0-based as in the `run` table")
    p.add_argument("-o", "--output", required=True, metavar="OUT.png", help="PNG file to write")
    p.add_argument("--kind", choices=("pair", "trail"), default="pair",
                   help="pair: before/after diagram (default); trail: the decision path")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    import matplotlib
    matplotlib.use("Agg")
    from ..scenario import ScenarioError, load_scenario
    from ..textsafe import clean
    from .steps import draw_step, draw_step_trail
    from .style import save_png

    if not str(args.output).lower().endswith(".png"):
        print(f"error: {clean(args.output)}: the output must be a .png file (figures are PNG only)", file=sys.stderr)
        return 2
    try:
        from ..resources import scenario_path
        scenario = load_scenario(scenario_path(args.scenario))
    except (ScenarioError, OSError) as err:
        print(f"error: {clean(str(err))}", file=sys.stderr)
        return 2
    try:
        fig = (draw_step_trail if args.kind == "trail" else draw_step)(scenario, args.step)
    except ValueError as err:
        print(f"error: {clean(str(err))}", file=sys.stderr)
        return 2
    try:
        save_png(fig, args.output)
    except OSError as err:
        print(f"error: cannot write {clean(args.output)}: {err.strerror or err}", file=sys.stderr)
        return 2
    print(f"wrote {clean(args.output)}")
    return 0

