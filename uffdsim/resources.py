"""Files shipped inside the package: the scenario corpus and the recorded runs.

They live in ``uffdsim/scenarios/`` and ``uffdsim/data/`` (a source checkout also has
``scenarios`` and ``data`` links at its root), so a wheel, a Binder image and an editable
checkout find the same files through :mod:`importlib.resources`.
"""
from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def package_dir() -> Path:
    """The installed ``uffdsim`` package folder."""
    return Path(str(files("uffdsim")))


def corpus_dir() -> Path:
    """The bundled scenario corpus (``uffdsim/scenarios``)."""
    return package_dir() / "scenarios"


def corpus_files() -> list[Path]:
    """Every bundled scenario file, sorted by name."""
    return sorted(corpus_dir().glob("*.yaml"))


def data_file(name: str) -> Path:
    """A recorded run shipped with the package (``kernel_bench.json``, ``conformance.json``, ...)."""
    return package_dir() / "data" / name
