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
from .snapshot import StepSnapshots, diff, scenario_steps, snapshot, step_title
from .viz.svg import address_space_svg

#: the largest cell a reader may run (characters); the simulator's own limits bound the rest
MAX_SOURCE = 20_000
#: the most output a cell shows (characters, 64 Ki); what is past it is counted, not kept
MAX_OUTPUT = 64 * 1024
#: seconds a cell may run in the reader's browser before the page stops it (the page enforces it:
#: book/_ext/live_static/live/live.js terminates the Web Worker; stated here so the cell can say so)
TIME_LIMIT_S = 10
KINDS = ("yaml", "python")


def _one_line(err: BaseException) -> str:
    """The exception as one line: its type and message, or its type alone when the message cannot
    be had (a snippet's exception whose ``__str__`` or ``code`` raises, or returns no text)."""
    try:
        return _describe(err)
    except BaseException:  # noqa: BLE001 (the snippet's own __str__ raised, exit() included)
        return f"{type(err).__name__} (its message raised an exception)"


def _describe(err: BaseException) -> str:
    if isinstance(err, SystemExit):      # exit(), sys.exit(3): say so, with the code given
        return "SystemExit" + ("" if err.code is None else f" ({' '.join(str(err.code).split())[:200]})")
    text = " ".join(str(err).split()) or type(err).__name__
    if isinstance(err, (ScenarioError, UffdError)):
        return text
    return type(err).__name__ if text == type(err).__name__ else f"{type(err).__name__}: {text}"


class CappedText(io.TextIOBase):
    """A text sink that keeps the first ``limit`` characters and counts the rest (a cell's stdout)."""

    def __init__(self, limit: int = MAX_OUTPUT) -> None:
        super().__init__()
        self.limit = limit
        self.parts: list[str] = []
        self.kept = 0
        self.dropped = 0

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        if not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        room = self.limit - self.kept
        if room > 0:
            self.parts.append(s[:room])
            self.kept += min(len(s), room)
        self.dropped += max(0, len(s) - max(room, 0))
        return len(s)

    def getvalue(self) -> str:
        return cap_text("".join(self.parts), self.limit, self.dropped)


def cap_text(text: str, limit: int = MAX_OUTPUT, dropped: int = 0) -> str:
    """``text`` cut to ``limit`` characters, ending with one line that says how much was cut."""
    dropped += max(0, len(text) - limit)
    if not dropped:
        return text
    text = text[:limit]
    return (text if text.endswith("\n") or not text else text + "\n") + \
        f"... output truncated: {limit:,} characters shown, {dropped:,} more not shown\n"


def _run_steps(scenario: Any) -> tuple[list[dict[str, Any]], list[tuple[Any, str]], Any, StepSnapshots | None]:
    """Run the scenario on the simulator: every step's record and trail, and snapshots of the last step only.

    The picture shows the last step, so only it is snapshotted (before and after): memory follows
    what is drawn, not the length of the scenario.  When a step hangs (the run stops there), the
    scenario is run again up to that step to snapshot it (:func:`~uffdsim.snapshot.scenario_steps`
    with ``only_last``; the simulator is deterministic, so the rerun is the same run).
    """
    from .backends.sim import SimRun
    from .trail import Trail
    from .userfaultfd import UNMODELLED_FEATURES

    for step in scenario.steps:
        unmodelled = [f for f in step.args.get("features", []) if f in UNMODELLED_FEATURES]
        if unmodelled:
            raise ValueError(f"{scenario.name}: the simulator does not model {', '.join(unmodelled)}")
    run = SimRun(Machine())
    sizes = scenario.region_pages()

    def regions() -> dict[str, tuple[int, int]]:
        return {n: (base, sizes.get(n, 1)) for n, base in run.regions.items()}

    records: list[dict[str, Any]] = []
    trails: list[tuple[Any, str]] = []
    last_i = scenario.steps[-1].i if scenario.steps else None
    before = None
    for step in scenario.steps:
        if step.i == last_i:
            before = snapshot(run.machine, regions(), caption=f"before {step_title(step)}")
        run.machine.trail = Trail()
        rec = run.step(step)
        records.append(rec)
        text = str(run.machine.trail)
        if text:
            trails.append((step, text))
        if rec.get("hung"):
            break
    last = None
    if records:
        step = scenario.steps[len(records) - 1]
        if before is not None:
            after = snapshot(run.machine, regions(), caption=f"after {step_title(step)}")
            last = StepSnapshots(step, records[-1], Trail(), before, after)
        else:                                        # hung before the last step: draw the step it hung in
            last = scenario_steps(scenario, upto=step.i, only_last=True)[-1]
    return records, trails, run.machine, last


def run_yaml(source: str) -> dict[str, Any]:
    """Run a scenario given as YAML text: its step table, its trails and a picture of the end state."""
    try:
        scenario = loads_scenario(source, "live.yaml")
    except ScenarioError as err:
        return {"ok": False, "text": f"error: {_one_line(err)}", "svg": None}
    try:
        records, trails, machine, last = _run_steps(scenario)
    except (ValueError, UffdError) as err:
        return {"ok": False, "text": f"error: {_one_line(err)}", "svg": None}
    # the step table is checked from the same run that drew the picture (one run, not two)
    result = finish(scenario, "sim", BackendRun(records, info={"profile": machine.kernel}))
    out = CappedText()
    print_table(result, scenario, out)
    if trails:
        print("\ntrails (the kernel functions each step went through):", file=out)
        for step, text in trails:
            print(f"  {step.i:>3} {step.op}: {text}", file=out)
    svg = None
    if last is not None:
        svg = address_space_svg(last.after, title=f"{scenario.name}: after {step_title(last.step)}",
                                changes=diff(last.before, last.after))
    return {"ok": result.status != "failed", "text": out.getvalue(), "svg": svg}


def run_python(source: str) -> dict[str, Any]:
    """Run a Python snippet with ``uffdsim`` imported; what it prints is the output.

    A snippet that leaves a :class:`~uffdsim.Machine` in a variable called ``machine`` also gets a
    picture of its address space.  An exception ends the output with one line naming it; so do
    ``exit()``, ``SystemExit`` and ``KeyboardInterrupt``, which never leave this function.  The
    snippet gets a fresh namespace, and the builtins and module-level names of ``uffdsim`` it
    rebinds (a limit such as ``uffdsim.scenario.MAX_STEPS``) are put back afterwards, so that no
    cell changes the next one.  (The book's page does more: each Python cell runs in a Web Worker no other
    Python cell ran in.)
    """
    import builtins

    import uffdsim

    namespace: dict[str, Any] = {"__name__": "__live__", "uffdsim": uffdsim}
    out = CappedText()
    failed: BaseException | None = None
    saved = _module_state()
    saved_builtins = dict(vars(builtins))      # exec shares them: ``__builtins__['print'] = None``
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            exec(compile(source, "<live cell>", "exec"), namespace)  # noqa: S102 (the reader's own code)
        except BaseException as err:  # noqa: BLE001 (the reader's snippet, exit() included: one line)
            failed = err
    # builtins and module names first: the error line below is written with them
    _restore_names(vars(builtins), saved_builtins)
    _restore_module_state(saved)         # before drawing: the picture is drawn by uffdsim's own code
    ok = failed is None
    if failed is not None:
        out.write(f"error: {_one_line(failed)}\n")
    svg = None
    machine = namespace.get("machine")
    if isinstance(machine, Machine):
        try:
            svg = address_space_svg(machine_snapshot(machine), title="Address space of `machine`")
        except BaseException as err:  # noqa: BLE001 (a machine the snippet broke: one line, as above)
            ok = False
            out.write(f"error: cannot draw `machine`: {_one_line(err)}\n")
    return {"ok": ok, "text": out.getvalue(), "svg": svg}


def machine_snapshot(machine: Machine) -> Any:
    """A snapshot of a snippet's ``machine`` bounded by what its picture draws: the pages of the
    VMAs drawn, however many the snippet mapped (the same picture as a full snapshot)."""
    from .viz.layout import MAX_VMAS
    return snapshot(machine, vmas_with_pages=MAX_VMAS)


def _module_state() -> dict[str, dict[str, Any]]:
    """The module-level names of every loaded ``uffdsim`` module (what a snippet may rebind)."""
    import sys
    return {name: dict(vars(mod)) for name, mod in list(sys.modules.items())
            if mod is not None and (name == "uffdsim" or name.startswith("uffdsim."))}


def _restore_module_state(saved: dict[str, dict[str, Any]]) -> None:
    """Put back the names :func:`_module_state` saw and drop the ones added since; a ``uffdsim``
    module first imported by the snippet is forgotten (the next import runs it afresh)."""
    import sys
    for name in [n for n in list(sys.modules) if (n == "uffdsim" or n.startswith("uffdsim.")) and n not in saved]:
        del sys.modules[name]
    for name, names in saved.items():
        mod = sys.modules.get(name)
        if mod is not None:
            _restore_names(vars(mod), names)


def _restore_names(current: dict[str, Any], names: dict[str, Any]) -> None:
    """Make the namespace ``current`` hold exactly ``names`` again (the same objects)."""
    for key in [k for k in current if k not in names]:
        del current[key]
    for key, value in names.items():
        if current.get(key, _MISSING) is not value:
            current[key] = value


_MISSING = object()


def run_cell(kind: str, source: str) -> dict[str, Any]:
    """Run one live cell (``kind`` is ``yaml`` or ``python``); the result is plain, JSON-ready data.

    ``text`` is at most :data:`MAX_OUTPUT` characters plus one line saying how much was cut.
    """
    if kind not in KINDS:
        return {"ok": False, "text": f"error: unknown live cell kind {kind!r} (expected yaml or python)", "svg": None}
    if not isinstance(source, str):
        return {"ok": False, "text": f"error: the cell's source must be text, not {type(source).__name__}",
                "svg": None}
    if len(source) > MAX_SOURCE:
        return {"ok": False, "text": f"error: the cell is {len(source)} characters; at most {MAX_SOURCE} run",
                "svg": None}
    return run_yaml(source) if kind == "yaml" else run_python(source)


def run_cell_json(kind: str, source: str) -> str:
    """:func:`run_cell` as JSON, with the SVG's sha256 (what the page's script reads, and the tests compare).

    Nothing escapes: an error of ours is one line for the reader, as the CLI does, and so is an
    ``exit()`` or interrupt (BaseException is caught)."""
    try:
        result = run_cell(kind, source)
    except BaseException as err:  # noqa: BLE001 (a bug of ours, or an exit: one line, never raised)
        result = {"ok": False, "text": f"error: internal error ({_one_line(err)}); please report this cell",
                  "svg": None}
    svg = result.get("svg")
    result["svg_sha256"] = hashlib.sha256(svg.encode()).hexdigest() if svg else None
    return json.dumps(result, sort_keys=True)
