"""Inside the lab VM: run scenario files on the kernel backend, one JSON line per scenario.

``python -m uffdsim.lab.guest OUT FILE...``: the first line describes the guest kernel
(release, UFFD features, whether MOVE is offered), then one line per file with the backend's raw
run (``steps``, ``skipped``, ``info``), which the host turns into results with
:func:`uffdsim.runner.finish` exactly as for a local run.
"""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from dataclasses import replace
import platform
import sys


def uses_move(scenario) -> bool:
    """Does the scenario call UFFDIO_MOVE or ask UFFDIO_API for the MOVE feature?"""
    return any(s.op == "move" or "move" in (s.args.get("features") or []) for s in scenario.steps)


@contextmanager
def move_not_needed(caps):
    """On a kernel without MOVE, let the backend run a scenario that does not move (the backend
    otherwise skips every scenario there); its capability check is pointed at a copy that says so."""
    from ..backends.kernel import backend as kb
    if caps.move.ok:
        yield
        return
    from ..backends.kernel.caps import Facility
    fake = replace(caps, move=Facility(True, "not needed by this scenario"))
    saved = kb.capabilities
    kb.capabilities = lambda: fake
    try:
        yield
    finally:
        kb.capabilities = saved


#: seconds a step may take in the guest (the host's limit is 5 s)
GUEST_STEP_TIMEOUT = 60.0


def main(argv: list[str]) -> int:
    from ..backends.kernel import KernelBackend
    from ..backends.kernel.caps import capabilities
    from ..scenario import ScenarioError, load_scenario
    out, files = argv[0], argv[1:]
    caps = capabilities()
    # TCG runs the guest many times slower than the host: a step that touches 32 MiB (the ported
    # kernel selftests' size) needs far longer than the host's STEP_TIMEOUT
    from ..backends.kernel import procstate
    procstate.slow_machine()                       # qemu TCG: the timings of an emulated machine
    from .vm import PER_PAGE, PER_THREAD
    # a scenario's own limit grows with its work at TCG's pace, as its share of the batch does
    # (the real-size selftest port stopped at step 10,282 of 65,544 under the host's pace)
    backend = KernelBackend(step_timeout=GUEST_STEP_TIMEOUT, per_page=PER_PAGE, per_thread=PER_THREAD)
    with open(out, "w") as f:
        def emit(doc: dict) -> None:
            f.write(json.dumps(doc) + "\n")
            f.flush()
            os.fsync(f.fileno())
        from ..kernels import read_config
        emit({"guest": platform.release(), "config": read_config(), "features": caps.userfaultfd.facts.get("features_mask"),
              "move": caps.move.ok, "move_detail": caps.move.detail, "uffd": caps.userfaultfd.detail})
        for path in files:
            try:
                scenario = load_scenario(path)
            except ScenarioError as err:
                emit({"path": path, "error": str(err)})
                continue
            if not caps.move.ok and uses_move(scenario):
                emit({"path": path, "steps": [], "skipped": f"MOVE unsupported: {caps.move.detail}", "info": {}})
                continue
            try:
                with move_not_needed(caps):
                    run = backend.run(scenario)
                emit({"path": path, "steps": run.steps, "skipped": run.skipped, "info": run.info})
            except Exception as err:  # noqa: BLE001 - one scenario's bug must not end the batch
                emit({"path": path, "error": f"{type(err).__name__}: {err}"})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
