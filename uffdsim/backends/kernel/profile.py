"""The simulator profile that answers as the running kernel: its release and config, and what userfaultfd can do here."""
from __future__ import annotations

import platform

from ...kernels import KernelProfile, profile_for_release, read_config, remember_running
from .caps import capabilities


def running_profile() -> KernelProfile:
    """The profile for the running kernel (version from uname, config from /proc/config.gz, MOVE as probed)."""
    move = None
    try:
        caps = capabilities()
        if caps.userfaultfd.ok:
            move = caps.move.ok
    except Exception:  # noqa: BLE001 - no userfaultfd here: decide from the version alone
        move = None
    return profile_for_release(platform.release(), read_config(), move)


_RUNNING: list[KernelProfile] = []


def running_profile_cached() -> KernelProfile:
    """:func:`running_profile`, probed once per process."""
    if not _RUNNING:
        _RUNNING.append(running_profile())
        remember_running(_RUNNING[0])
    return _RUNNING[0]
