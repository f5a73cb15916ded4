"""Progress of long commands: a rich progress bar on a terminal, one plain line at a time otherwise.

In a log file or a pipe a bar is escape codes and carriage returns, so there a count goes out as a line
every ``every_s`` seconds (``simulate: 12,000/72,000 readings (17%), 2,400/s``), and training as one
line per epoch. Callers report as often as they like: updates are throttled here. A stage (what a
long run does now: ``3/34 valve1/1: training``) shows beside the bar, or as a line of its own.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class CountProgress:
    """``done`` of ``total`` items (readings, messages); ``update`` as often as wanted."""

    def __init__(self, console: Console, what: str, unit: str, *, every_s: float = 10.0, tty: bool | None = None) -> None:
        self.console, self.what, self.unit, self.every_s = console, what, unit, every_s
        self.tty = console.is_terminal if tty is None else tty
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        self._started = time.monotonic()
        self._next = self._started + (0.1 if self.tty else every_s)
        self.done = 0
        self.total: int | None = None

    def __enter__(self) -> CountProgress:
        if self.tty:
            self._bar = Progress(
                TextColumn(f"{self.what}"), TextColumn("{task.fields[stage]}"), BarColumn(), MofNCompleteColumn(), TextColumn(self.unit),
                TaskProgressColumn(), TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                console=self.console, transient=True,
            )  # fmt: skip
            self._bar.start()
            self._task = self._bar.add_task(self.what, total=None, rate="", stage="")
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.stop()

    def stage(self, what: str) -> None:
        """What the run does now; every stage is shown (they are few, unlike counts)."""
        if self._bar is not None:
            assert self._task is not None
            # The latest count too: the throttle may have held back the last update before this stage.
            self._bar.update(self._task, stage=what, completed=self.done, total=self.total)
        else:
            self.console.print(f"{self.what}: {what}", markup=False, highlight=False)

    def update(self, done: int, total: int | None = None) -> None:
        self.done, self.total = done, total if total is not None else self.total
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + (0.1 if self.tty else self.every_s)
        rate = done / max(now - self._started, 1e-9)
        if self._bar is not None:
            assert self._task is not None
            self._bar.update(self._task, completed=done, total=self.total, rate=f"{rate:,.0f}/s")
        else:
            share = f" ({done / self.total:.0%})" if self.total else ""
            of = f"/{self.total:,}" if self.total else ""
            self.console.print(f"{self.what}: {done:,}{of} {self.unit}{share}, {rate:,.0f}/s", markup=False, highlight=False)


class EpochProgress:
    """Training epochs with their losses: a bar on a terminal, one line per epoch otherwise."""

    def __init__(self, console: Console, epochs: int, *, tty: bool | None = None) -> None:
        self.console, self.epochs = console, epochs
        self.tty = console.is_terminal if tty is None else tty
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        self._started = time.monotonic()

    def __enter__(self) -> EpochProgress:
        if self.tty:
            self._bar = Progress(
                TextColumn("training"), BarColumn(), MofNCompleteColumn(), TextColumn("epochs  {task.fields[losses]}"),
                TimeElapsedColumn(), console=self.console, transient=True,
            )  # fmt: skip
            self._bar.start()
            self._task = self._bar.add_task("training", total=self.epochs, losses="")
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.stop()

    def epoch(self, epoch: int, logs: Mapping[str, float] | None) -> None:
        """Keras' ``on_epoch_end``: ``epoch`` counts from 0."""
        losses = ", ".join(f"{k} {float(v):.4f}" for k, v in (logs or {}).items() if k in ("loss", "val_loss"))
        if self._bar is not None:
            assert self._task is not None
            self._bar.update(self._task, completed=epoch + 1, losses=losses)
        else:
            took = time.monotonic() - self._started
            self.console.print(f"epoch {epoch + 1}/{self.epochs}: {losses} ({took:.0f} s elapsed)", markup=False, highlight=False)
