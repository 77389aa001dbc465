"""How the engine reports progress to whoever runs it (a progress bar, Airflow logs, nothing)."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    """Receives progress of a stage; every method must be cheap, it is called per chunk."""

    def start(self, task: str, total: int | None = None) -> None:
        """A step starts (``read``, ``push``); ``total`` when known."""

    def advance(self, task: str, amount: int = 1) -> None:
        """``amount`` more units of the step are done."""

    def finish(self, task: str) -> None:
        """The step is over."""


class NoProgress:
    """Progress that goes nowhere."""

    def start(self, task: str, total: int | None = None) -> None:
        return None

    def advance(self, task: str, amount: int = 1) -> None:
        return None

    def finish(self, task: str) -> None:
        return None
