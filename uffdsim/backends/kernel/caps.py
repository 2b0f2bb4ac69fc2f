"""What the running kernel offers the kernel backend, and why anything is missing.

:func:`capabilities` probes once per process (cached): userfaultfd (and the ways to be allowed to
use it), the MOVE feature, THP and the huge zero page, KSM, swap, long-term pins (io_uring), guard
regions, PAGEMAP_SCAN, CPUs.  ``python -m uffdsim doctor`` prints it; the backend uses
:meth:`Capabilities.missing` to skip scenarios whose ``requires`` the kernel cannot meet.
Every probe is wrapped: nothing here raises when a facility is absent.
"""
from __future__ import annotations

import ctypes
import errno as E
import functools
import os
import platform
import shutil
from dataclasses import asdict, dataclass, field
from typing import Any

from ...errors import UffdError
from . import sys as k

CAP_SYS_PTRACE = 19
CAP_SYS_ADMIN = 21


@dataclass
class Facility:
    """One thing the kernel may or may not offer: ``ok``, a one-line ``detail`` and extra facts."""

    ok: bool
    detail: str
    facts: dict[str, Any] = field(default_factory=dict)


@dataclass
class Capabilities:
    kernel: str
    machine: str
    uid: int
    cpus: int
    userfaultfd: Facility
    move: Facility
    thp: Facility
    huge_zero_page: Facility
    ksm: Facility
    swap: Facility
    pin: Facility
    guard: Facility
    pagemap: Facility
    compiler: Facility

    def missing(self, requires: list[str]) -> str | None:
        """Why a scenario with these ``requires`` cannot run here (None when it can)."""
        if not self.userfaultfd.ok:
            return self.userfaultfd.detail
        if not self.move.ok:
            return self.move.detail
        table = {"fork": None, "threads": None, "thp": self.thp, "ksm": self.ksm,
                 "swap": self.swap, "pin": self.pin, "guard": self.guard,
                 "huge_zero_page": self.huge_zero_page}
        for req in requires:
            if req == "root" and self.uid != 0:
                return "needs root: declared in requires"
            fac = table.get(req)
            if fac is not None and not fac.ok:
                return f"{req}: {fac.detail}"
        return None

    @property
    def uffd_via(self) -> str | None:
        """How the backend opens userfaultfd here (``Userfaultfd.via``), None when it cannot."""
        return self.userfaultfd.facts.get("via") if self.userfaultfd.ok else None

    @property
    def user_mode_only(self) -> bool:
        """Only UFFD_USER_MODE_ONLY userfaultfds here: kernel-mode faults cannot be handled."""
        return bool(self.userfaultfd.facts.get("user_mode_only_fd"))

    @property
    def frames_visible(self) -> bool:
        """Can observe tell frames apart (PFNs in pagemap: root or CAP_SYS_ADMIN)?"""
        return bool(self.pagemap.facts.get("pfns"))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _read(path: str, default: str = "") -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return default


def _status_field(name: str) -> str:
    for line in _read("/proc/self/status").splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    return ""


def has_cap(bit: int) -> bool:
    """Is capability ``bit`` in this process's effective set?"""
    try:
        return bool(int(_status_field("CapEff") or "0", 16) >> bit & 1)
    except ValueError:
        return False


def seccomp_mode() -> str:
    return {"0": "none", "1": "strict", "2": "filter"}.get(_status_field("Seccomp"), "unknown")


def probe_userfaultfd() -> tuple[Facility, Facility]:
    """(userfaultfd facility, MOVE facility): can we open one, how, and what does UFFDIO_API say."""
    facts: dict[str, Any] = {
        "vm.unprivileged_userfaultfd": _read("/proc/sys/vm/unprivileged_userfaultfd", "absent"),
        "/dev/userfaultfd": _dev_userfaultfd(),
        "CAP_SYS_PTRACE": has_cap(CAP_SYS_PTRACE),
        "seccomp": seccomp_mode(),
    }
    try:
        uffd = k.Userfaultfd.open()
    except UffdError as e:
        facts["errno"] = e.name
        facts["user_mode_only"] = _try_user_mode_only()
        detail = _why_no_userfaultfd(e, facts)
        return Facility(False, detail, facts), Facility(False, "userfaultfd unavailable")
    except Exception as e:   # noqa: BLE001 - a probe never crashes the doctor
        return Facility(False, f"userfaultfd probe failed: {e}", facts), Facility(False, "unknown")
    try:
        facts["via"] = uffd.via
        features, ioctls = uffd.api(0)
        facts["features"] = sorted(n for n, b in k.UFFD_FEATURES.items() if features & b)
        facts["features_mask"] = hex(features)
        facts["user_mode_only"] = _try_user_mode_only()
    except UffdError as e:
        uffd.close()
        return Facility(False, f"UFFDIO_API failed: {e}", facts), Facility(False, "UFFDIO_API failed")
    uffd.close()
    facts["user_mode_only_fd"] = uffd.user_mode_only
    if uffd.user_mode_only:
        detail = (f"usable via {facts['via']} (vm.unprivileged_userfaultfd = "
                  f"{facts['vm.unprivileged_userfaultfd']}, not root): faults raised by user-space "
                  "accesses only; a syscall touching a registered missing page gets EFAULT")
    else:
        detail = f"usable via {facts['via']}"
    ok = Facility(True, detail, facts)
    if features & k.UFFD_FEATURE_MOVE:
        return ok, Facility(True, "UFFD_FEATURE_MOVE offered (UFFDIO_MOVE works)")
    return ok, Facility(False, f"kernel {platform.release()} does not offer UFFD_FEATURE_MOVE "
                               "(UFFDIO_MOVE needs Linux 6.8 or later)")


def _dev_userfaultfd() -> str:
    path = "/dev/userfaultfd"
    if not os.path.exists(path):
        return "absent (Linux < 6.1 or no devtmpfs node)"
    st = os.stat(path)
    access = "read/write for us" if os.access(path, os.R_OK | os.W_OK) else "no access for us"
    return f"present, mode {st.st_mode & 0o777:o}, uid {st.st_uid} gid {st.st_gid}: {access}"


def _try_user_mode_only() -> str:
    try:
        k.Userfaultfd.open(user_mode_only=True).close()
        return "works"
    except UffdError as e:
        return f"fails ({e.name})"
    except Exception as e:   # noqa: BLE001
        return f"fails ({e})"


def _why_no_userfaultfd(err: UffdError, facts: dict[str, Any]) -> str:
    if (err.errno in (E.EPERM, E.EACCES, E.ENOSYS) and facts.get("seccomp") == "filter"
            and str(facts.get("user_mode_only", "")).startswith("fails")):
        return (f"{err.name}: userfaultfd(2) is refused even with UFFD_USER_MODE_ONLY under a "
                "seccomp filter: the container's seccomp profile blocks the syscall (Docker's "
                "default profile does, and so, typically, does Binder). Nothing can run on this "
                "kernel from here; the simulator and the recorded results work as everywhere")
    if err.errno in (E.EPERM, E.EACCES):
        return ("EPERM: this process may not create a userfaultfd. vm.unprivileged_userfaultfd is "
                f"{facts['vm.unprivileged_userfaultfd']}; ways in: sysctl vm.unprivileged_userfaultfd=1, "
                "open with UFFD_USER_MODE_ONLY (user-space faults only; "
                f"here: {facts.get('user_mode_only')}), read/write access to /dev/userfaultfd "
                "(e.g. a group owning it), or CAP_SYS_PTRACE")
    if err.errno == E.ENOSYS:
        return ("ENOSYS: the userfaultfd syscall is blocked (seccomp mode "
                f"{facts['seccomp']}: Docker's default profile and Binder do this) or the kernel "
                "lacks CONFIG_USERFAULTFD")
    return f"userfaultfd unavailable: {err}"


def probe_thp() -> tuple[Facility, Facility]:
    mode = k.thp_enabled()
    facts = {"enabled": mode or "absent", "defrag": _read(f"{k._THP}/defrag") or "absent",
             "use_zero_page": _read(f"{k._THP}/use_zero_page") or "absent",
             "pmd_size": k.PMD_SIZE}
    if not mode:
        thp = Facility(False, "kernel without transparent huge pages", facts)
    elif mode == "never":
        thp = Facility(False, "THP disabled (transparent_hugepage/enabled = never)", facts)
    else:
        thp = Facility(True, f"THP {mode} (scenarios use MADV_HUGEPAGE on 2 MiB aligned regions)", facts)
    if thp.ok and k.thp_use_zero_page():
        hz = Facility(True, "huge zero page on read faults (use_zero_page = 1)")
    else:
        hz = Facility(False, "no huge zero page (THP off or use_zero_page = 0)")
    return thp, hz


def probe_ksm() -> Facility:
    ok, why = k.ksm_available()
    facts: dict[str, Any] = {}
    if os.path.isdir(k.KSM_DIR):
        facts = {n: v for n, v in k.ksm_save().items()}
    if ok:
        why = f"KSM usable (run = {facts.get('run')}; a ksm_merge step runs it briefly and restores the settings)"
    return Facility(ok, why, facts)


#: the active swap devices and files (/proc/swaps); one reader for the whole backend
active_swaps = k.swaps_active


def probe_swap() -> Facility:
    active = active_swaps()
    facts: dict[str, Any] = {"active": active}
    if active:
        return Facility(True, f"swap active: {', '.join(active)}", facts)
    if os.geteuid() != 0:
        return Facility(False, "no swap, and setting one up (zram or a swap file) needs root", facts)
    if os.path.exists("/sys/class/zram-control/hot_add"):
        facts["setup"] = "zram"
        return Facility(True, "no swap now; a small zram swap device is set up for scenarios that "
                              "require swap and removed afterwards", facts)
    facts["setup"] = "swapfile"
    return Facility(True, "no swap now and no zram; a small swap file is set up for scenarios that "
                          "require swap and removed afterwards", facts)


def probe_pin() -> Facility:
    disabled = _read("/proc/sys/kernel/io_uring_disabled", "0")
    facts = {"kernel.io_uring_disabled": disabled}
    if disabled == "2":
        return Facility(False, "io_uring disabled (kernel.io_uring_disabled = 2): no long-term pins", facts)
    try:
        params = (ctypes.c_char * k._IO_URING_PARAMS_SIZE)()
        ring = k.syscall(k.NR_IO_URING_SETUP, 1, ctypes.addressof(params))
        os.close(ring)
    except UffdError as e:
        why = "seccomp?" if e.errno == E.ENOSYS else "kernel.io_uring_disabled or permissions?"
        return Facility(False, f"io_uring_setup fails with {e.name} ({why}): no long-term pins", facts)
    return Facility(True, "long-term pins through io_uring fixed buffers", facts)


def probe_guard() -> Facility:
    try:
        addr = k.mmap(k.PAGE_SIZE)
    except UffdError as e:
        return Facility(False, f"mmap failed: {e}")
    try:
        k.madvise(addr, k.PAGE_SIZE, k.MADV_GUARD_INSTALL)
        return Facility(True, "MADV_GUARD_INSTALL works (guard regions, Linux 6.13+)")
    except UffdError as e:
        return Facility(False, f"MADV_GUARD_INSTALL fails with {e.name} (needs Linux 6.13+)")
    finally:
        k.munmap(addr, k.PAGE_SIZE)


def probe_pagemap() -> Facility:
    facts = {"pfns": os.geteuid() == 0 or has_cap(CAP_SYS_ADMIN),
             "kpageflags": os.access("/proc/kpageflags", os.R_OK)}
    try:
        addr = k.mmap(k.PAGE_SIZE)
        try:
            k.pagemap_scan(addr, k.PAGE_SIZE)
            facts["pagemap_scan"] = True
        finally:
            k.munmap(addr, k.PAGE_SIZE)
    except UffdError:
        facts["pagemap_scan"] = False
    parts = ["PFNs visible" if facts["pfns"] else "PFNs hidden (not root: frames are not labelled)",
             "kpageflags readable" if facts["kpageflags"] else "no /proc/kpageflags",
             "PAGEMAP_SCAN works" if facts["pagemap_scan"] else "no PAGEMAP_SCAN (Linux < 6.7)"]
    return Facility(bool(facts["pfns"]), "; ".join(parts), facts)


def probe_compiler() -> Facility:
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc:
        return Facility(True, f"C compiler {cc} (bench compiles a tiny per-page ioctl loop)", {"cc": cc})
    return Facility(False, "no C compiler: bench falls back to ctypes loops (Python overhead included)")


@functools.cache
def capabilities() -> Capabilities:
    """Probe everything once per process."""
    uffd, move = probe_userfaultfd()
    thp, hz = probe_thp()
    try:
        cpus = len(os.sched_getaffinity(0))
    except OSError:
        cpus = os.cpu_count() or 1
    return Capabilities(kernel=platform.release(), machine=platform.machine(), uid=os.geteuid(),
                        cpus=cpus, userfaultfd=uffd, move=move, thp=thp, huge_zero_page=hz,
                        ksm=probe_ksm(), swap=probe_swap(), pin=probe_pin(), guard=probe_guard(),
                        pagemap=probe_pagemap(), compiler=probe_compiler())
