"""Checks on the project skeleton: the book's table of contents and the dependency pins."""
from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)$")


def _toc_files(node: object) -> list[str]:
    """Every `root:`/`file:` entry in a (nested) _toc.yml structure."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("root", "file") and isinstance(value, str):
                found.append(value)
            else:
                found.extend(_toc_files(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(_toc_files(item))
    return found


def _existing_source(entry: str) -> Path | None:
    for suffix in (".md", ".ipynb"):
        path = ROOT / (entry + suffix)
        if path.is_file():
            return path
    return None


def test_toc_lists_only_existing_files_and_every_notebook() -> None:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    entries = _toc_files(toc)
    assert entries, "_toc.yml lists no files"
    missing = [e for e in entries if _existing_source(e) is None]
    assert not missing, f"_toc.yml names files that do not exist (as .md or .ipynb): {missing}"
    # only_build_toc_files is on, so a notebook left out of the TOC is silently never built.
    listed = {_existing_source(e) for e in entries}
    unlisted = [p.relative_to(ROOT).as_posix() for p in sorted((ROOT / "notebooks").glob("*.ipynb"))
                if p not in listed]
    assert not unlisted, f"notebooks missing from _toc.yml (they would not be built): {unlisted}"


def _normalize(name: str) -> str:
    """PEP 503 normalized project name: 'PyYAML' and 'pyyaml' are the same package."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(path: Path) -> dict[str, str]:
    pins: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        match = PIN.match(line)
        assert match, f"{path.name}: not an exact '==' pin: {raw!r}"
        name = _normalize(match.group(1))
        assert name not in pins, f"{path.name}: {name} pinned twice"
        pins[name] = match.group(2)
    return pins


def test_requirement_pins_agree_with_the_lock() -> None:
    lock = _pins(ROOT / "constraints.txt")
    for req in ("requirements.txt", "requirements-dev.txt"):
        for name, version in _pins(ROOT / req).items():
            assert name in lock, f"{req}: {name} is not in constraints.txt"
            assert lock[name] == version, f"{req} pins {name}=={version}, constraints.txt has {lock[name]}"


def test_every_uffdsim_folder_is_a_regular_package() -> None:
    """A folder without __init__.py is left out by a normal ``pip install .`` (as on Binder)."""
    root = Path(__file__).resolve().parent.parent / "uffdsim"
    missing = [str(d.relative_to(root.parent)) for d in [root, *root.rglob("*")]
               if d.is_dir() and d.name != "__pycache__" and any(d.glob("*.py"))
               and not (d / "__init__.py").exists()]
    assert missing == []
