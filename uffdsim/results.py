"""What a backend hands back to the runner: :class:`BackendRun`, and the :class:`Backend` protocol.

Kept apart from :mod:`uffdsim.runner` so that the backends (which produce these) and the runner
(which consumes them and picks a backend) import it without importing each other.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from .scenario import Scenario


class Backend(Protocol):
    name: str

    def run(self, scenario: Scenario) -> "BackendRun": ...


@dataclass
class BackendRun:
    """What a backend hands back: raw step records, or the reason it could not run the scenario."""

    steps: list[dict[str, Any]] = field(default_factory=list)
    skipped: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
