"""A seeded random sample of the book's citations, for an independent reader to judge.

Each item gives the citing sentence (and its table row or glossary term), where it is, the cited
scenario and step, and what the scenario *checks*: the cited step with its expectation, or, for a
citation of a whole scenario, every step that carries an expectation.  The scenario's ``about:``
text is left out on purpose: it never counts as proof.  The reader marks each item "supports",
"partly" or "does not establish" (issue 24's audit).

    python benchmarks/claims_audit.py [--n 40] [--seed 24] [--format json|md] [--root DIR]

The sample is drawn with ``random.Random(seed)`` from the citations in page order, so the same
book and seed give the same sample.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from uffdsim.claims import corpus_index, find_step, scan, show_step  # noqa: E402
from uffdsim.scenario import ScenarioError, load_scenario  # noqa: E402


def item(c: Any, corpus: dict[str, Path]) -> dict[str, Any]:
    """One citation with what its scenario (or step) checks."""
    out: dict[str, Any] = {"page": c.page, "where": c.where, "sentence": c.sentence, "context": c.context,
                           "cites": c.target, "scenario": c.scenario, "step": c.step}
    path = corpus.get(c.scenario)
    if path is None:
        out["checks"] = ["(no such scenario)"]
        return out
    try:
        scenario = load_scenario(path)
    except ScenarioError as err:
        out["checks"] = [f"(does not load: {err})"]
        return out
    if c.step is not None:
        try:
            out["checks"] = [show_step(find_step(scenario, c.step))]
        except LookupError as err:
            out["checks"] = [f"(step {c.step}: {err})"]
    else:
        out["checks"] = [show_step(s) for s in scenario.steps if s.expect is not None or s.expect_by_kernel]
    out["steps"] = [show_step(s).split("; expect", 1)[0] for s in scenario.steps]   # the whole run, for context
    return out


def markdown(items: list[dict[str, Any]], seed: int, total: int) -> str:
    lines = [f"# Claims audit sample: {len(items)} of {total} citations (seed {seed})", "",
             "Judge each sentence against the expectations listed (not against the scenario's `about:`):",
             "supports / partly / does not establish.", ""]
    for n, it in enumerate(items, 1):
        lines += [f"## {n}. {it['page']}, {it['where']}: `{it['cites']}`", "", f"> {it['sentence']}", ""]
        if it["context"] and it["context"] != it["sentence"]:
            lines += [f"Context: {it['context']}", ""]
        lines += ["What the scenario checks:", ""] + [f"- {x}" for x in it["checks"]]
        if "steps" in it:
            lines += ["", "<details><summary>all steps</summary>", ""] + \
                     [f"    {s}" for s in it["steps"]] + ["", "</details>"]
        lines += ["", "Verdict: ", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=40, help="citations to draw (default 40)")
    ap.add_argument("--seed", type=int, default=24)
    ap.add_argument("--format", choices=("json", "md"), default="json")
    ap.add_argument("--root", default=str(ROOT), help="the book's folder")
    args = ap.parse_args(argv)
    cites = scan(Path(args.root))
    sample = random.Random(args.seed).sample(cites, min(max(args.n, 0), len(cites)))
    corpus = corpus_index()
    items = [item(c, corpus) for c in sample]
    if args.format == "md":
        print(markdown(items, args.seed, len(cites)))
    else:
        print(json.dumps({"seed": args.seed, "citations": len(cites), "sample": items}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
