"""A scenario run as a text table: what ``python -m uffdsim run`` prints, for the CLI, widgets and notebooks."""
from __future__ import annotations

import sys
from typing import Any

from .runner import ScenarioResult
from .scenario import Scenario
from .textsafe import clean


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
        order = p.get("order")
        mthp = f"(order {order})" if isinstance(order, int) and 0 < order < 9 else ""
        return f"present:{p['value']:#04x}@{p['frame']}{'(thp)' if p.get('thp') else ''}{mthp}"
    return p["state"]


def print_table(result: ScenarioResult, scenario: Scenario, out: Any = None) -> None:
    """One row per step: index, op, arguments, outcome, expectation."""
    out = out or sys.stdout
    head = f"{result.name} [{result.backend}]: {result.status}"
    if result.reason:
        head += f" ({result.reason})"
    if result.info.get("uffd"):
        head += f" [userfaultfd via {result.info['uffd']}]"
    if result.not_observable:
        head += (f" [partial observation: {len(result.not_observable)} page field(s) not "
                 "observable without root, not checked]")
    print(clean(head), file=out)
    for step, rec in zip(scenario.steps, result.steps):
        mark = "" if "expect" not in rec else ("  ok" if rec["expect"] == "met" else "  ✗ " + rec["expect"])
        print(clean(f"  {rec['i']:>3} {step.op:<12} {fmt_args(step.raw, step.op)[:60]:<60} {fmt_result(rec)}{mark}"),
              file=out)
