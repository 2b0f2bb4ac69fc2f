"""The explanation trail: which kernel functions an operation went through and what ended it."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Trail:
    """Functions entered (in first-call order, with call counts) and the decision that ended the call.

    ``str(trail)`` reads like ``move_pages > move_pages_ptes > move_present_pte: folio not
    anon-exclusive -> EBUSY``; ``notes`` keeps the intermediate decisions worth telling a reader.
    """

    op: str = ""
    path: list[str] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)
    decision: str = ""
    notes: list[str] = field(default_factory=list)
    #: what threads woken by this operation did afterwards, each its own trail (never part of
    #: this one's path: that work ran in another thread, after the wake-up)
    woken: list["Trail"] = field(default_factory=list)

    def enter(self, func: str) -> None:
        """Record that ``func`` ran: functions keep the order they first ran in, repeats are counted."""
        if self.path and self.path[-1] == func:
            self.counts[-1] += 1
            return
        try:
            self.counts[self.path.index(func)] += 1
        except ValueError:
            self.path.append(func)
            self.counts.append(1)

    def note(self, text: str) -> None:
        """Keep a decision taken on the way (deduplicated, in order)."""
        if text not in self.notes:
            self.notes.append(text)

    def end(self, decision: str) -> None:
        """The decision that ended the operation (the first one recorded wins)."""
        if not self.decision:
            self.decision = decision

    def chain(self) -> str:
        """``a > b x512 > c``: the path with folded repeats."""
        return " > ".join(f if n == 1 else f"{f} x{n}" for f, n in zip(self.path, self.counts))

    def __str__(self) -> str:
        tail = f": {self.decision}" if self.decision else ""
        after = "".join(f" || then, in its own trail, {w.op}: {w if w.path or w.decision else 'no fault'}"
                        for w in self.woken)
        return f"{self.chain()}{tail}{after}"

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"op": self.op, "path": [[f, n] for f, n in zip(self.path, self.counts)],
                                  "decision": self.decision, "notes": list(self.notes)}
        if self.woken:
            out["woken"] = [t.to_dict() for t in self.woken]
        return out
