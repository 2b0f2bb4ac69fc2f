"""The exhaustive explorer: every interleaving of A and B, counted exactly.

The reachable states form a directed acyclic graph (every step makes progress: A walks its
program forward, B only restarts an increment after a flip that sends it to a populated page).
Edges are labelled by the thread that stepped, so an interleaving -- a complete schedule -- is
a path from the initial state to a finished state, and two schedules that meet in the same
state share their futures.  The explorer therefore

1. builds the graph once (depth-first, deduplicating states),
2. counts paths with one pass in topological order (``ways[s]`` = number of schedule prefixes
   that reach ``s``), which counts every complete schedule exactly without enumerating them,
3. sums ``ways`` over the finished states by outcome (lost, non-empty source, leak, copy, EBUSY),
4. finds the shortest losing schedule breadth-first (threads tried in the order A, B, so the
   answer is deterministic) and replays it through the scheduler for the trace.
"""
from __future__ import annotations

import json
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Callable

from .program import PIN_CAVEAT, Outcome, Program
from .scheduler import run
from .state import State


@dataclass
class AtomicityResult:
    """What the explorer found for one program."""

    strategy: str
    pages: int
    increments: int
    src_page: str
    hypothetical: bool
    label: str
    interleavings: int
    states: int
    lost: int
    src_nonempty: int
    leaked: int
    copied: int
    ebusy: int
    deadlocks: int
    #: interleavings that end with a pinned frame detached (see :data:`.program.PIN_CAVEAT`)
    detached_pin: int = 0
    #: {increments lost: interleavings}
    lost_histogram: dict[int, int] = field(default_factory=dict)
    counterexample: list[str] = field(default_factory=list)
    counterexample_schedule: str = ""

    @property
    def atomic(self) -> bool:
        return self.lost == 0

    @property
    def caveat(self) -> str:
        """What ``atomic`` does not promise here ("" when nothing): a pinned page copied away."""
        return PIN_CAVEAT if self.detached_pin else ""

    def atomic_text(self) -> str:
        """``yes``, ``NO``, or ``yes, CPU threads only (pinned page copied)``: atomicity, qualified."""
        if not self.atomic:
            return "NO"
        return "yes, for CPU threads only (pinned page copied: device writes go to the old frame)" \
            if self.detached_pin else "yes"

    @property
    def zero_copy(self) -> bool:
        return self.copied == 0

    @property
    def src_empty(self) -> bool:
        return self.src_nonempty == 0

    def promises(self) -> dict[str, bool]:
        """Held in *every* interleaving of this program?"""
        return {"atomicity": self.atomic, "zero_copy": self.zero_copy,
                "empty_source": self.src_empty, "no_leak": self.leaked == 0}

    def to_dict(self) -> dict:
        d = asdict(self)
        d["lost_histogram"] = {str(k): v for k, v in sorted(self.lost_histogram.items())}
        d["zero_copy"] = self.zero_copy
        d["promises"] = self.promises()
        d["caveat"] = self.caveat
        return d

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)


#: the explorer's bound: at most this many distinct states per exploration (a few seconds of work)
MAX_STATES = 20_000


class StateSpaceTooLarge(ValueError):
    """The exploration would pass :data:`MAX_STATES` (one line saying what to lower)."""


def build_graph(program: Program, max_states: int | None = None) -> tuple[State, dict[State, list[tuple[str, State]]]]:
    """All reachable states and their labelled successors; RuntimeError on a cycle.

    Past ``max_states`` (default :data:`MAX_STATES`) it stops with :class:`StateSpaceTooLarge`."""
    limit = MAX_STATES if max_states is None else max_states
    init = program.initial()
    succ: dict[State, list[tuple[str, State]]] = {}
    on_stack: set[State] = set()
    stack: list[tuple[State, int]] = [(init, 0)]
    on_stack.add(init)
    while stack:
        s, i = stack.pop()
        if s not in succ:
            if len(succ) >= limit:
                raise StateSpaceTooLarge(
                    f"strategy {program.strategy.name} with {program.pages} page(s) and {program.increments} "
                    f"increment(s) needs more states than are left of the explorer's limit ({MAX_STATES} states "
                    "in all); use fewer pages, increments or strategies")
            succ[s] = [(t, program.step(s, t)[0]) for t in program.enabled(s)]
        edges = succ[s]
        if i < len(edges):
            stack.append((s, i + 1))
            nxt = edges[i][1]
            if nxt in on_stack:
                raise RuntimeError("the state graph has a cycle: some interleaving never ends")
            if nxt not in succ:
                on_stack.add(nxt)
                stack.append((nxt, 0))
        else:
            on_stack.discard(s)
    return init, succ


def topological_order(init: State, succ: dict[State, list[tuple[str, State]]]) -> list[State]:
    """Reverse post-order of a depth-first walk (parents before children)."""
    order: list[State] = []
    seen = {init}
    stack: list[tuple[State, int]] = [(init, 0)]
    while stack:
        s, i = stack.pop()
        edges = succ[s]
        if i < len(edges):
            stack.append((s, i + 1))
            nxt = edges[i][1]
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, 0))
        else:
            order.append(s)
    order.reverse()
    return order


def shortest_schedule(program: Program, init: State,
                      succ: dict[State, list[tuple[str, State]]],
                      want: Callable[[Outcome], bool]) -> str | None:
    """Breadth-first: the shortest schedule ending in a finished state satisfying ``want``."""
    parent: dict[State, tuple[State, str] | None] = {init: None}
    queue = deque([init])
    while queue:
        s = queue.popleft()
        if program.finished(s) and want(program.outcome(s)):
            path: list[str] = []
            node = s
            while parent[node] is not None:
                prev, tid = parent[node]
                path.append(tid)
                node = prev
            return "".join(reversed(path))
        for tid, nxt in succ[s]:
            if nxt not in parent:
                parent[nxt] = (s, tid)
                queue.append(nxt)
    return None


def explore(program: Program, max_states: int | None = None) -> AtomicityResult:
    """Enumerate every interleaving of ``program`` and summarise them (StateSpaceTooLarge past the limit)."""
    init, succ = build_graph(program, max_states)
    ways: dict[State, int] = {s: 0 for s in succ}
    ways[init] = 1
    for s in topological_order(init, succ):
        for _, nxt in succ[s]:
            ways[nxt] += ways[s]
    total = lost = nonempty = leaked = copied = ebusy = deadlocks = detached = 0
    hist: dict[int, int] = {}
    for s, edges in succ.items():
        if edges:
            continue
        w = ways[s]
        if not program.finished(s):
            deadlocks += w
            continue
        o = program.outcome(s)
        total += w
        hist[o.lost_increments] = hist.get(o.lost_increments, 0) + w
        lost += w * o.lost
        nonempty += w * o.src_nonempty
        leaked += w * o.leaked
        copied += w * o.copied
        ebusy += w * o.ebusy
        detached += w * o.detached_pin
    schedule = shortest_schedule(program, init, succ, lambda o: o.lost) if lost else None
    trace = run(program, schedule).report() if schedule else []
    st = program.strategy
    return AtomicityResult(
        strategy=st.name, pages=program.pages, increments=program.increments,
        src_page=program.src_page, hypothetical=st.hypothetical, label=st.label,
        interleavings=total, states=len(succ), lost=lost, src_nonempty=nonempty,
        leaked=leaked, copied=copied, ebusy=ebusy, deadlocks=deadlocks, detached_pin=detached,
        lost_histogram=hist, counterexample=trace, counterexample_schedule=schedule or "",
    )


def explore_strategy(strategy: str, pages: int = 1, increments: int = 3,
                     src_page: str | None = None) -> AtomicityResult:
    """Convenience: validate the arguments, build the program, explore it."""
    return explore(Program.build(strategy, pages, increments, src_page))
