"""Files shipped inside the package: the scenario corpus, the recorded runs, the C example.

They live in ``uffdsim/scenarios/``, ``uffdsim/data/`` and ``uffdsim/examples/`` (a source
checkout also has ``scenarios``, ``data`` and ``book/examples`` links to them), so a wheel, a
Binder image and an editable checkout find the same files through :mod:`importlib.resources`.
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


def example_file(name: str) -> Path:
    """An example program shipped with the package (``uffd_move_example.c``)."""
    return package_dir() / "examples" / name


def find_scenario(name: str) -> Path | None:
    """A bundled scenario by name (``move-after-fork`` or ``move-after-fork.yaml``), or None."""
    stem = name[:-5] if name.endswith(".yaml") else name
    if not stem or "/" in stem or stem.startswith(".") or len(stem) > 200:
        return None
    path = corpus_dir() / f"{stem}.yaml"
    try:
        return path if path.is_file() else None
    except (OSError, ValueError):
        return None


def path_exists(path: str | Path) -> bool:
    """Does ``path`` exist (a dangling symlink counts)?  False for a name the system refuses (too long...)."""
    if not str(path):                   # "" is not "." (the current folder)
        return False
    try:
        p = Path(path)
        return p.is_symlink() or p.exists()
    except (OSError, ValueError):
        return False


def scenario_path(arg: str) -> str:
    """A scenario argument as a file: an existing path wins, else a bundled scenario's name."""
    if arg and path_exists(arg):
        return arg
    bundled = find_scenario(arg) if arg else None
    return str(bundled) if bundled else arg
