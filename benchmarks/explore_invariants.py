"""Explore the invariants' state machine open-ended, with random seeds; print JSON.

Usage: python benchmarks/explore_invariants.py [--examples 20000] [--batch 500] [--seed N]

`make test` runs tests/test_invariants.py::TestMoveMachine derandomized (the same sequences on
every run, see tests/conftest.py).  This script runs the same state machine with fresh random
seeds, in batches of ``--batch`` examples, until ``--examples`` have run.  Each batch's seed is
in the JSON, so a failing batch can be re-run (``--seed``); a failure is reported with the
shrunk sequence Hypothesis prints, and the exploration goes on with the next batch.  Every
failure it finds becomes a corpus scenario and a model fix (issue 18).

The JSON: ``examples`` (state machine runs, shrinking included), ``failures`` (batches that
found a failing sequence), ``seconds``, ``batches`` (their seeds), ``failing`` (seed and
message of each failure).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import sys
import time
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.test_invariants import MoveMachine  # noqa: E402  (the machine the tests run)


class CountingMachine(MoveMachine):
    """The tests' machine, counting how many times Hypothesis starts it."""

    runs = 0

    def __init__(self) -> None:
        super().__init__()
        CountingMachine.runs += 1


def batch(seed: int, examples: int, steps: int) -> str | None:
    """Run one batch with its own seed; the failure's report, or None."""
    random.seed(seed)           # Hypothesis draws its seed from the random module when not derandomized
    config = settings(max_examples=examples, stateful_step_count=steps, derandomize=False,
                      database=None, deadline=None, print_blob=False,
                      suppress_health_check=list(HealthCheck))
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            run_state_machine_as_test(CountingMachine, settings=config)
    except Exception as err:     # a failing sequence: the assertion plus Hypothesis's steps
        return f"{type(err).__name__}: {err}\n{out.getvalue()[-4000:]}"
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--steps", type=int, default=30, help="rules per example (as in the test)")
    parser.add_argument("--seed", type=int, default=None, help="first batch's seed (default: random)")
    args = parser.parse_args()
    if args.examples < 1 or args.batch < 1 or args.steps < 1:
        parser.error("--examples, --batch and --steps must be at least 1")
    seeds = random.Random(args.seed if args.seed is not None else int.from_bytes(os.urandom(8), "little"))
    start = time.perf_counter()
    batches: list[int] = []
    failing: list[dict[str, object]] = []
    while CountingMachine.runs < args.examples:
        seed = seeds.getrandbits(63)
        batches.append(seed)
        report = batch(seed, min(args.batch, args.examples - CountingMachine.runs), args.steps)
        if report is not None:
            failing.append({"seed": seed, "report": report})
            print(f"failure with seed {seed}:\n{report}", file=sys.stderr)
        print(f"{CountingMachine.runs} examples, {len(failing)} failures", file=sys.stderr)
    print(json.dumps({"examples": CountingMachine.runs, "failures": len(failing),
                      "seconds": round(time.perf_counter() - start, 1), "steps_per_example": args.steps,
                      "batch": args.batch, "batches": batches, "failing": failing}))
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
