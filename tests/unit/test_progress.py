"""Progress of long commands: plain periodic lines off a terminal, a bar (no lines) on one."""

from __future__ import annotations

import io

from rich.console import Console

from stream_app.progress import CountProgress, EpochProgress


def _console(tty: bool) -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=tty, width=120), out


def test_counts_off_a_terminal_are_one_line_every_so_often() -> None:
    console, out = _console(False)
    with CountProgress(console, "simulate", "readings", every_s=0.0) as progress:
        for done in range(0, 3001, 1000):
            progress.update(done, 3000)
    lines = out.getvalue().splitlines()
    assert lines[-1].startswith("simulate: 3,000/3,000 readings (100%), ") and lines[-1].endswith("/s"), lines
    assert "\x1b" not in out.getvalue()


def test_counts_are_throttled() -> None:
    console, out = _console(False)
    with CountProgress(console, "replay", "readings", every_s=3600) as progress:
        for done in range(10_000):
            progress.update(done, 10_000)
    assert out.getvalue() == ""  # nothing due within the hour; the command prints its own summary


def test_epochs_off_a_terminal_are_one_line_each_with_losses() -> None:
    console, out = _console(False)
    with EpochProgress(console, 3) as progress:
        progress.epoch(0, {"loss": 0.5, "val_loss": 0.6, "learning_rate": 0.01})
        progress.epoch(1, {"loss": 0.25, "val_loss": 0.3})
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("epoch 1/3: loss 0.5000, val_loss 0.6000 (") and lines[1].startswith("epoch 2/3: loss 0.2500")
    assert len(lines) == 2


def test_on_a_terminal_a_bar_that_leaves_no_lines_behind() -> None:
    console, out = _console(True)
    with EpochProgress(console, 2) as progress:
        progress.epoch(0, {"loss": 0.5})
    with CountProgress(console, "simulate", "readings") as count:
        count.update(10, 20)
    assert "epoch 1/2:" not in out.getvalue() and "simulate: 10" not in out.getvalue()


def test_stages_off_a_terminal_are_lines_of_their_own() -> None:
    console, out = _console(False)
    with CountProgress(console, "evaluate", "readings", every_s=3600) as progress:
        progress.stage("1/2 a.csv: training")
        progress.update(5, 10)
        progress.stage("2/2 b.csv: training")
    assert out.getvalue().splitlines() == ["evaluate: 1/2 a.csv: training", "evaluate: 2/2 b.csv: training"]


def test_on_a_terminal_stages_show_in_the_bar_only() -> None:
    console, out = _console(True)
    with CountProgress(console, "evaluate", "readings") as progress:
        progress.stage("1/2 a.csv: training")
        progress.update(5, 10)
    assert "evaluate: 1/2" not in out.getvalue()


def test_a_stage_brings_the_bar_up_to_the_last_count() -> None:
    console, _ = _console(True)
    with CountProgress(console, "evaluate", "readings") as progress:
        progress.update(1, 10)  # too soon after the start: held back by the throttle
        progress.update(7, 10)
        progress.stage("2/2 b.csv: training")
        assert progress._bar is not None and progress._task is not None
        assert progress._bar.tasks[0].completed == 7
