"""Record what /proc/kpageflags and /proc/kpagecount show through fork on each kernel (Appendix A2).

Runs ``scenarios/fork-anon-exclusive-observed.yaml`` (no userfaultfd call, so 6.1 runs it too) on
the running kernel and in the lab's 6.12 and 6.1 (``python -m uffdsim lab fetch`` first; root),
and writes ``data/anon-exclusive-by-kernel.json``: per kernel, the observe steps with each page's
``anon_exclusive``, ``mapcount``, ``order`` and whether the run met the scenario's expectations.

    python scripts/record_anon_exclusive.py [--kernels host,6.12,6.1]
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "scenarios" / "fork-anon-exclusive-observed.yaml"
OUT = ROOT / "data" / "anon-exclusive-by-kernel.json"
FIELDS = ("state", "anon_exclusive", "mapcount", "order")


def summarise(kernel: str, result: object) -> dict:
    steps = [{"i": s["i"], "pages": [{k: p.get(k) for k in FIELDS} for p in s["pages"]]}
             for s in result.steps if s.get("op") == "observe" and "pages" in s]
    return {"kernel": kernel, "status": result.status, "reason": result.reason, "observe": steps}


def main() -> int:
    sys.path.insert(0, str(ROOT))
    from uffdsim.runner import finish
    from uffdsim.scenario import load_scenario
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kernels", default="host,6.12,6.1")
    a = ap.parse_args()
    scenario = load_scenario(SCENARIO)
    runs = []
    for name in a.kernels.split(","):
        if name == "host":
            from uffdsim.backends.kernel import KernelBackend
            runs.append(summarise(platform.release(), finish(scenario, "kernel", KernelBackend().run(scenario))))
        else:
            from uffdsim.lab.vm import LabBackend
            backend = LabBackend(name)
            raw = backend.run(scenario)
            guest = backend.batch.guest.get("guest", name) if backend.batch else name
            runs.append(summarise(guest, finish(scenario, "kernel", raw)))
    OUT.write_text(json.dumps({"scenario": SCENARIO.stem, "runs": runs}, indent=1) + "\n")
    print(OUT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
