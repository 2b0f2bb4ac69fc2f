"""What a live cell of the book runs, in the reader's browser (Pyodide) or natively: same answers.

A live cell holds a scenario (YAML, the corpus format) or a short Python snippet against
``uffdsim``.  :func:`run_cell` runs it on the simulator and returns plain data:

* ``text``: for a scenario, the step table ``python -m uffdsim run`` prints, then the explanation
  trail of every step that has one; for a snippet, what it printed;
* ``svg``: the address space after the last step (:func:`uffdsim.viz.svg.address_space_svg`,
  the same layout as the book's PNG figures), or ``None``;
* ``ok``: False when the input was rejected or raised; ``text`` is then one line, never a traceback.

Nothing here reads the clock or the file system, so the output is byte-identical under any
Python that runs uffdsim (the book's tests compare CPython 3.11 with Pyodide's build).
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
from typing import Any

from .errors import UffdError
from .mm.machine import Machine
from .report import print_table
from .results import BackendRun
from .runner import finish
from .scenario import ScenarioError, loads_scenario
from .snapshot import diff, scenario_steps, snapshot, step_title
from .viz.svg import address_space_svg

#: the largest cell a reader may run (characters); the simulator's own limits bound the rest
MAX_SOURCE = 20_000
KINDS = ("yaml", "python")


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if isinstance(err, (ScenarioError, UffdError)) else f"{type(err).__name__}: {text}"


def run_yaml(source: str) -> dict[str, Any]:
    """Run a scenario given as YAML text: its step table, its trails and a picture of the end state."""
    try:
        scenario = loads_scenario(source, "live.yaml")
    except ScenarioError as err:
        return {"ok": False, "text": f"error: {_one_line(err)}", "svg": None}
    try:
        steps = scenario_steps(scenario)
    except (ValueError, UffdError) as err:
        return {"ok": False, "text": f"error: {_one_line(err)}", "svg": None}
    # the step table is checked from the same run that drew the pictures (one run, not two)
    result = finish(scenario, "sim", BackendRun([s.record for s in steps], info={"profile": steps.machine.kernel}))
    out = io.StringIO()
    print_table(result, scenario, out)
    trails = [(s, str(s.trail)) for s in steps if str(s.trail)]
    if trails:
        print("\ntrails (the kernel functions each step went through):", file=out)
        for s, text in trails:
            print(f"  {s.step.i:>3} {s.step.op}: {text}", file=out)
    svg = None
    if steps:
        last = steps[-1]
        svg = address_space_svg(last.after, title=f"{scenario.name}: after {step_title(last.step)}",
                                changes=diff(last.before, last.after))
    return {"ok": result.status != "failed", "text": out.getvalue(), "svg": svg}


def run_python(source: str) -> dict[str, Any]:
    """Run a Python snippet with ``uffdsim`` imported; what it prints is the output.

    A snippet that leaves a :class:`~uffdsim.Machine` in a variable called ``machine`` also gets a
    picture of its address space.  An exception ends the output with one line naming it.
    """
    import uffdsim

    namespace: dict[str, Any] = {"__name__": "__live__", "uffdsim": uffdsim}
    out = io.StringIO()
    ok = True
    with contextlib.redirect_stdout(out):
        try:
            exec(compile(source, "<live cell>", "exec"), namespace)  # noqa: S102 (the reader's own code)
        except Exception as err:  # the reader's snippet: report it in one line, as the notebook would
            ok = False
            print(f"error: {_one_line(err)}")
    svg = None
    machine = namespace.get("machine")
    if isinstance(machine, Machine):
        svg = address_space_svg(snapshot(machine), title="Address space of `machine`")
    return {"ok": ok, "text": out.getvalue(), "svg": svg}


def run_cell(kind: str, source: str) -> dict[str, Any]:
    """Run one live cell (``kind`` is ``yaml`` or ``python``); the result is plain, JSON-ready data."""
    if kind not in KINDS:
        return {"ok": False, "text": f"error: unknown live cell kind {kind!r} (expected yaml or python)", "svg": None}
    if len(source) > MAX_SOURCE:
        return {"ok": False, "text": f"error: the cell is {len(source)} characters; at most {MAX_SOURCE} run",
                "svg": None}
    return run_yaml(source) if kind == "yaml" else run_python(source)


def run_cell_json(kind: str, source: str) -> str:
    """:func:`run_cell` as JSON, with the SVG's sha256 (what the page's script reads, and the tests compare)."""
    try:
        result = run_cell(kind, source)
    except Exception as err:  # a bug of ours: one line for the reader, as the CLI does
        result = {"ok": False, "text": f"error: internal error ({_one_line(err)}); please report this cell",
                  "svg": None}
    svg = result.get("svg")
    result["svg_sha256"] = hashlib.sha256(svg.encode()).hexdigest() if svg else None
    return json.dumps(result, sort_keys=True)
