"""``lab fetch``: download Debian's guest kernels and prepare vmlinuz + the few modules a boot needs.

For each lab kernel (:data:`KERNELS`) the pinned ``linux-image`` package is fetched with
``apt-get download`` (falling back to the newest one of the same series the archive offers, and
saying so: Debian replaces point releases over time), unpacked with ``dpkg-deb -x``; only
``vmlinuz`` and the modules for 9p over virtio and zram (with their dependencies, from
``depmod``) are kept, decompressed, with an initramfs built from ``busybox-static``.  Everything
lives in :func:`cache_dir` (``$UFFDSIM_LAB_CACHE`` or ``~/.cache/uffdsim-lab``), never in git;
``manifest.json`` there records package names, versions and sha256 sums.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import lzma
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .initramfs import build_initramfs


@dataclass(frozen=True)
class LabKernel:
    """A guest kernel: the series name used on the command line and the Debian package to fetch."""

    series: str           #: "6.12", "6.1"
    pinned: str           #: the package tried first
    pattern: str          #: regex of acceptable packages (fallback: the newest match)


KERNELS: dict[str, LabKernel] = {
    "6.12": LabKernel("6.12", "linux-image-6.12.118+deb12-amd64", r"^linux-image-6\.12\.\d+\+deb12-amd64$"),
    "6.1": LabKernel("6.1", "linux-image-6.1.0-57-amd64", r"^linux-image-6\.1\.0-\d+-amd64$"),
}

#: the modules a boot needs (their dependencies are added from modules.dep)
WANTED = ("9p", "9pnet_virtio", "virtio_pci", "zram")
#: Debian packages the lab needs on the host
HOST_PACKAGES = {"qemu-system-x86_64": "qemu-system-x86", "busybox": "busybox-static",
                 "depmod": "kmod", "xz": "xz-utils", "cpio": "cpio", "dpkg-deb": "dpkg"}


class FetchError(Exception):
    """A one-line reason the lab kernels could not be prepared."""


def cache_dir() -> Path:
    """Where the lab keeps kernels (``$UFFDSIM_LAB_CACHE`` or ``~/.cache/uffdsim-lab``)."""
    env = os.environ.get("UFFDSIM_LAB_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "uffdsim-lab"


def manifest() -> dict:
    """The recorded manifest (empty when nothing was fetched)."""
    path = cache_dir() / "manifest.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def missing_tools() -> list[str]:
    """Debian packages providing host tools the lab needs that are absent."""
    return sorted({pkg for tool, pkg in HOST_PACKAGES.items()
                   if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists()})


def install_tools(say: Callable[[str], None]) -> None:
    """Install missing host tools with apt-get (root only); FetchError when that is impossible."""
    pkgs = missing_tools()
    if not pkgs:
        return
    if os.geteuid() != 0:
        raise FetchError(f"missing Debian packages {' '.join(pkgs)} (install them: apt-get install {' '.join(pkgs)})")
    say(f"installing {' '.join(pkgs)} with apt-get")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], env=env, check=False, timeout=600,
                   stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    r = subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *pkgs], env=env,
                       timeout=1200, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if r.returncode != 0 or missing_tools():
        raise FetchError(f"apt-get install {' '.join(pkgs)} failed: {r.stderr.strip()[-300:]}")


def _version_key(name: str) -> list[int]:
    return [int(x) for x in re.findall(r"\d+", name)]


def choose_package(k: LabKernel) -> tuple[str, str | None]:
    """(package, note): the pinned package if the archive has it, else the newest match and why."""
    r = subprocess.run(["apt-cache", "search", "--names-only", k.pattern.replace(r"\d", "[0-9]")],
                       capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    names = sorted({line.split(" - ")[0] for line in r.stdout.splitlines()
                    if re.match(k.pattern, line.split(" - ")[0])}, key=_version_key)
    if k.pinned in names:
        return k.pinned, None
    if not names:
        raise FetchError(f"the Debian archive offers no package matching {k.pattern} "
                         "(is bookworm-security in the apt sources? run apt-get update)")
    return names[-1], f"pinned {k.pinned} is no longer offered; using the newest {k.series}: {names[-1]}"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _modules_closure(root: Path, release: str) -> list[str]:
    """The module files (relative paths) for :data:`WANTED`, dependencies first."""
    moddir = root / "lib/modules" / release
    subprocess.run(["depmod", "-b", str(root), release], check=True, timeout=300,
                   capture_output=True)
    deps: dict[str, list[str]] = {}
    for line in (moddir / "modules.dep").read_text().splitlines():
        mod, _, rest = line.partition(":")
        deps[mod] = rest.split()
    by_name = {re.sub(r"\.ko(\.xz|\.zst|\.gz)?$", "", Path(m).name).replace("-", "_"): m for m in deps}
    order: list[str] = []

    def visit(m: str) -> None:
        if m in order:
            return
        for d in deps.get(m, []):
            visit(d)
        order.append(m)
    for want in WANTED:
        if want in by_name:          # absent means built in
            visit(by_name[want])
    return order


def _decompress(src: Path) -> bytes:
    data = src.read_bytes()
    if src.name.endswith(".xz"):
        return lzma.decompress(data)
    if src.name.endswith(".gz"):
        return gzip.decompress(data)
    return data


def prepare(k: LabKernel, say: Callable[[str], None]) -> dict:
    """Download, unpack and trim one kernel into the cache; its manifest entry."""
    package, note = choose_package(k)
    if note:
        say(note)
    out = cache_dir() / k.series
    with tempfile.TemporaryDirectory(prefix="uffdsim-lab-") as tmp:
        say(f"apt-get download {package}")
        r = subprocess.run(["apt-get", "download", package], cwd=tmp, capture_output=True, text=True,
                           timeout=1200, stdin=subprocess.DEVNULL)
        debs = list(Path(tmp).glob("*.deb"))
        if r.returncode != 0 or not debs:
            raise FetchError(f"apt-get download {package} failed: {r.stderr.strip()[-300:]}")
        deb = debs[0]
        version = subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], capture_output=True, text=True,
                                 check=True, timeout=60).stdout.strip()
        root = Path(tmp) / "root"
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True, timeout=600)
        kernels = sorted((root / "boot").glob("vmlinuz-*"))
        if not kernels:
            raise FetchError(f"{package} has no /boot/vmlinuz-*")
        release = kernels[0].name[len("vmlinuz-"):]
        config = root / "boot" / f"config-{release}"
        mods = _modules_closure(root, release)
        if out.exists():
            shutil.rmtree(out)
        (out / "modules").mkdir(parents=True)
        shutil.copy2(kernels[0], out / "vmlinuz")
        if config.exists():
            (out / "config.gz").write_bytes(gzip.compress(config.read_bytes(), mtime=0))
        names = []
        for m in mods:
            name = re.sub(r"\.ko(\.xz|\.zst|\.gz)?$", ".ko", Path(m).name)
            (out / "modules" / name).write_bytes(_decompress(root / "lib/modules" / release / m))
            names.append(name)
        (out / "modules" / "order").write_text("\n".join(names) + "\n")
        entry = {"series": k.series, "package": package, "version": version, "release": release,
                 "deb_sha256": sha256(deb), "vmlinuz_sha256": sha256(out / "vmlinuz"),
                 "modules": names, "note": note}
    build_initramfs(out)
    entry["initramfs_sha256"] = sha256(out / "initramfs.cpio.gz")
    entry["bytes"] = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return entry


def fetch(series: list[str] | None = None, say: Callable[[str], None] = print) -> dict:
    """Prepare the lab kernels (default: all of :data:`KERNELS`); the manifest written."""
    install_tools(say)
    cache_dir().mkdir(parents=True, exist_ok=True)
    doc = manifest()
    doc.setdefault("kernels", {})
    for s in series or list(KERNELS):
        if s not in KERNELS:
            raise FetchError(f"unknown lab kernel {s!r} (known: {', '.join(KERNELS)})")
        try:
            doc["kernels"][s] = prepare(KERNELS[s], say)
        except FetchError:
            if os.geteuid() != 0:
                raise
            say("refreshing the package lists (apt-get update) and trying again")
            subprocess.run(["apt-get", "update", "-qq"], check=False, timeout=600,
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
            doc["kernels"][s] = prepare(KERNELS[s], say)
        (cache_dir() / "manifest.json").write_text(json.dumps(doc, indent=1) + "\n")
        e = doc["kernels"][s]
        say(f"{s}: {e['package']} {e['version']} ({e['release']}), {e['bytes'] / 1e6:.1f} MB kept, "
            f"sha256 {e['deb_sha256'][:16]}...")
    return doc
