"""The real-kernel backend: userfaultfd and friends through ctypes (see :mod:`.sys`)."""
