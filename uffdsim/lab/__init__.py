"""The kernel lab: Debian's 6.12 and 6.1 kernels in qemu (TCG) micro-VMs, running the kernel backend.

:mod:`.fetch` downloads and prepares the guest kernels into a cache outside git,
:mod:`.vm` boots one and runs a batch of scenarios in it (one boot per batch), :mod:`.guest` is
what runs inside, and :mod:`.cli` adds ``python -m uffdsim lab fetch|run|status``.
"""
from .fetch import KERNELS, cache_dir, manifest
from .vm import LabBackend, LabError, run_batch

__all__ = ["KERNELS", "LabBackend", "LabError", "cache_dir", "manifest", "run_batch"]
