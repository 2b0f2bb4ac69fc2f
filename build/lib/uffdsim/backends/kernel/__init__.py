"""The real-kernel backend: userfaultfd and friends through ctypes (see :mod:`.sys`)."""
from .backend import KernelBackend

__all__ = ["KernelBackend"]
