"""The deterministic scheduler: run one given interleaving, step by step.

An interleaving (a schedule) is a sequence of thread ids, ``"AABAB..."`` or ``["A", "A", ...]``:
at step n the named thread takes its next atomic step.  Naming a thread that cannot run
(asleep, finished) is an error, so every schedule the explorer reports replays exactly.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from .program import THREADS, Program
from .state import State


@dataclass
class Run:
    """A replayed schedule: where it ended and what happened at each step."""

    program: Program
    schedule: str
    final: State
    trace: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.program.finished(self.final)

    def report(self) -> list[str]:
        """The trace plus a closing verdict line (for finished runs)."""
        tail = [self.program.summary(self.final)] if self.complete else \
            [f"(not finished: A {self.program.describe_thread(self.final, 'A')}, "
             f"B {self.program.describe_thread(self.final, 'B')})"]
        return self.trace + tail


def format_step(n: int, tid: str, text: str) -> str:
    return f"{n:3d}. {tid}  {text}"


def run(program: Program, schedule: Iterable[str]) -> Run:
    """Replay ``schedule`` from the initial state; ValueError on an unknown or blocked thread."""
    s = program.initial()
    ids = "".join(schedule)
    trace: list[str] = []
    for n, tid in enumerate(ids, 1):
        if tid not in THREADS:
            raise ValueError(f"step {n}: unknown thread {tid!r}; threads are {', '.join(THREADS)}")
        try:
            s, text = program.step(s, tid)
        except ValueError as e:
            raise ValueError(f"step {n}: {e}") from None
        trace.append(format_step(n, tid, text))
    return Run(program, ids, s, trace)


def run_to_end(program: Program, prefix: Iterable[str] = (), prefer: str = "A") -> Run:
    """Replay ``prefix``, then keep running, preferring thread ``prefer`` whenever it can run,
    until both threads are finished (or nobody can run)."""
    r = run(program, prefix)
    s, ids, trace = r.final, list(r.schedule), r.trace
    while not program.finished(s):
        ready = program.enabled(s)
        if not ready:
            break
        tid = prefer if prefer in ready else ready[0]
        s, text = program.step(s, tid)
        ids.append(tid)
        trace.append(format_step(len(ids), tid, text))
    return Run(program, "".join(ids), s, trace)
