"""Threads as atomic steps, a deterministic scheduler and an exhaustive explorer: why
COPY + DONTNEED can lose a concurrent write and UFFDIO_MOVE cannot (issue 4).

Layers, each importing only the ones above it:

* :mod:`.state`      the machine as one immutable, hashable value
* :mod:`.steps`      the atomic steps, named after the kernel functions they mirror
* :mod:`.strategies` the mover's programs (three Linux ones, two hypothetical)
* :mod:`.program`    the two-thread program and its verdict (defined in its docstring)
* :mod:`.scheduler`  replay one interleaving deterministically
* :mod:`.explorer`   every interleaving, counted exactly, with the shortest counterexample
* :mod:`.kernel_race` the same race on the running kernel (C writer compiled at run time)
* :mod:`.cli`        ``python -m uffdsim atomicity`` (``python -m uffdsim.concurrency`` until wired)
"""
from .explorer import AtomicityResult, explore, explore_strategy
from .program import Outcome, Program
from .scheduler import Run, run, run_to_end
from .strategies import STRATEGIES, Strategy, get_strategy

__all__ = ["AtomicityResult", "Outcome", "Program", "Run", "STRATEGIES", "Strategy",
           "explore", "explore_strategy", "get_strategy", "run", "run_to_end"]
