"""``conform --kernel SERIES``: the corpus on a lab kernel against the simulator's profile for it."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Iterable, TextIO

from .vm import LabBackend, LabError


def conform_in_lab(series: str, paths: Iterable[str | Path] = (), progress: TextIO | None = None,
                   sim: Any = None) -> Any:
    """The conformance report of the corpus on lab kernel ``series`` (None after printing why not)."""
    from .. import conform as C
    files = C.scenario_files(paths)
    lab = LabBackend(series)
    say = (lambda m: print(f"lab: {m}", file=progress, flush=True)) if progress else None
    try:
        batch = lab.prepare(files, progress=say)
    except LabError as err:
        print(f"error: {err}", file=sys.stderr)
        return None
    if sim is None:
        sim = sim_for_guest(batch.guest)
    report = C.conform(files, progress=None, sim=sim, kernel=lab)
    report.kernel = batch.guest["guest"]
    report.profile = sim.profile_name
    report.lab = {"series": series, "package": batch.guest.get("package"), "seconds": batch.seconds,
                  "move": batch.guest["move"], "features": batch.guest.get("features"),
                  "profile": getattr(sim, "profile_name", None)}
    if progress:
        print(f"lab: {series} ({report.kernel}): boot {batch.seconds['boot']} s, batch {batch.seconds['total']} s; "
              f"MOVE {'offered' if batch.guest['move'] else 'unsupported: ' + batch.guest['move_detail']}; "
              f"simulator profile {report.lab['profile'] or 'default'}", file=progress, flush=True)
    return report


def sim_for_guest(guest: dict[str, Any]) -> Any:
    """The simulator backend for the guest kernel's profile."""
    from ..backends.sim import SimBackend
    try:
        from ..kernels import profile_for_release
    except ImportError:
        return SimBackend()
    profile = profile_for_release(guest["guest"], config=guest.get("config"), move=guest.get("move"))
    return SimBackend(kernel=profile)
