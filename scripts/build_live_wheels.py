"""Build the two wheels the live cells load into Pyodide: uffdsim (this checkout) and a pure-Python PyYAML.

    .venv/bin/python scripts/build_live_wheels.py [OUT]        (default OUT: _live/static/live/wheels)

* ``uffdsim-<version>-py3-none-any.whl``: the package as ``pip wheel .`` would pack it (the same
  files: modules, ``py.typed``, the scenario corpus and the recorded runs), written directly so the
  build needs no network and no build isolation, with fixed timestamps (same tree, same bytes).
* ``PyYAML-<version>-py3-none-any.whl``: PyPI has PyYAML as pure Python only inside its sdist, so
  the sdist (the version pinned in requirements.txt) is fetched once through PyPI's JSON API, its
  sha256 checked, and ``lib/yaml`` packed as a wheel.  The sdist is cached in ``_live/cache``.

Also writes ``manifest.json`` next to the wheels (names and sizes), which the page's script reads.
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import sys
import tarfile
import tomllib
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "_live" / "static" / "live" / "wheels"
CACHE = ROOT / "_live" / "cache"
EPOCH = (1980, 1, 1, 0, 0, 0)
PYPI_JSON = "https://pypi.org/pypi/{name}/json"


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def write_wheel(path: Path, dist: str, version: str, files: dict[str, bytes], requires: list[str]) -> Path:
    """A py3-none-any wheel of ``files`` (archive name -> bytes) with fixed timestamps."""
    info = f"{dist}-{version}.dist-info"
    meta = ["Metadata-Version: 2.1", f"Name: {dist}", f"Version: {version}"]
    meta += [f"Requires-Dist: {r}" for r in requires]
    extra = {f"{info}/METADATA": ("\n".join(meta) + "\n").encode(),
             f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: uffd-move-book build_live_wheels\n"
                              b"Root-Is-Purelib: true\nTag: py3-none-any\n"}
    allfiles = dict(sorted(files.items())) | extra
    record = [_record_line(n, d) for n, d in allfiles.items()] + [f"{info}/RECORD,,"]
    allfiles[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in allfiles.items():
            zi = zipfile.ZipInfo(name, EPOCH)
            zi.external_attr = 0o644 << 16
            zi.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(zi, data)
    tmp.replace(path)
    return path


def uffdsim_files() -> tuple[str, dict[str, bytes]]:
    """The package's files, as setuptools packs them (pyproject's package-data), and its version."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pkg = ROOT / "uffdsim"
    patterns = ("**/*.py", "py.typed", "scenarios/*.yaml", "scenarios/README.md", "data/*.json")
    files: dict[str, bytes] = {}
    for pattern in patterns:
        for f in pkg.glob(pattern):
            if "__pycache__" not in f.parts and f.is_file():
                files[f.relative_to(ROOT).as_posix()] = f.read_bytes()
    return project["version"], files


def pinned(name: str) -> str:
    """The version of ``name`` pinned in requirements.txt."""
    text = (ROOT / "requirements.txt").read_text()
    m = re.search(rf"^{re.escape(name)}==([\w.]+)", text, re.M | re.I)
    if not m:
        raise SystemExit(f"build_live_wheels: {name} is not pinned in requirements.txt")
    return m.group(1)


def pyyaml_sdist(version: str) -> bytes:
    """PyYAML's sdist for ``version``: from the cache, or from PyPI (sha256 checked)."""
    cached = CACHE / f"pyyaml-{version}.tar.gz"
    if cached.exists():
        return cached.read_bytes()
    index = PYPI_JSON.format(name="PyYAML")
    with urllib.request.urlopen(index, timeout=60) as resp:
        doc = json.load(resp)
    sdists = [u for u in doc["releases"].get(version, []) if u["packagetype"] == "sdist"]
    if not sdists:
        raise SystemExit(f"build_live_wheels: PyPI lists no sdist of PyYAML {version}")
    url = urllib.parse.urljoin(index, sdists[0]["url"])
    with urllib.request.urlopen(url, timeout=120) as resp:
        data = resp.read()
    if hashlib.sha256(data).hexdigest() != sdists[0]["digests"]["sha256"]:
        raise SystemExit(f"build_live_wheels: sha256 mismatch for {url}")
    CACHE.mkdir(parents=True, exist_ok=True)
    cached.write_bytes(data)
    return data


def pyyaml_files(sdist: bytes) -> dict[str, bytes]:
    """``lib/yaml/*.py`` of the sdist, as ``yaml/*.py`` (the pure-Python fallback PyYAML ships)."""
    files: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(sdist), mode="r:gz") as tf:
        for member in tf.getmembers():
            parts = member.name.split("/")
            if member.isfile() and len(parts) == 4 and parts[1:3] == ["lib", "yaml"] and parts[3].endswith(".py"):
                fh = tf.extractfile(member)
                assert fh is not None
                files[f"yaml/{parts[3]}"] = fh.read()
    if "yaml/__init__.py" not in files:
        raise SystemExit("build_live_wheels: the PyYAML sdist has no lib/yaml/__init__.py")
    return files


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else DEFAULT_OUT
    version, files = uffdsim_files()
    wheels = [write_wheel(out / f"uffdsim-{version}-py3-none-any.whl", "uffdsim", version, files,
                          ["PyYAML"])]
    yver = pinned("PyYAML")
    wheels.append(write_wheel(out / f"PyYAML-{yver}-py3-none-any.whl", "PyYAML", yver,
                              pyyaml_files(pyyaml_sdist(yver)), []))
    for stale in out.glob("*.whl"):
        if stale not in wheels:
            stale.unlink()
    manifest = {"wheels": [w.name for w in wheels], "bytes": {w.name: w.stat().st_size for w in wheels}}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    print(f"live wheels: {', '.join(f'{w.name} ({w.stat().st_size // 1024} KiB)' for w in wheels)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
