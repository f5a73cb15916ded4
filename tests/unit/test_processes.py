"""The supervisor of ``floorwatch worker --processes N``, with small Python children standing in for workers."""

from __future__ import annotations

import io
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from stream_app.worker.processes import READY_MARK, Supervisor, child_ports


def _child(body: str) -> list[str]:
    # Each child: print the ready line (or not), then run ``body``; the env says which port it got.
    return [sys.executable, "-c", f"import os, sys, time, signal\n{body}"]


READY = f"print('{READY_MARK} port', os.environ['FLOORWATCH_METRICS_PORT'], flush=True)\n"


def test_child_ports_are_base_plus_index_or_all_off() -> None:
    assert child_ports(9108, 3) == [9108, 9109, 9110]
    assert child_ports(0, 2) == [0, 0]
    with pytest.raises(ValueError, match="past 65535"):
        child_ports(65535, 2)


def test_a_child_failing_before_ready_stops_the_others_with_its_code() -> None:
    body = ("if os.environ['FLOORWATCH_METRICS_PORT'] == '9001':\n"
            "    print('error: metrics port 9001 is in use', flush=True); sys.exit(3)\n"
            + READY + "time.sleep(60)\n")  # fmt: skip
    out = io.StringIO()
    started = time.monotonic()
    code = Supervisor(2, _child(body), base_port=9000, out=out, grace_s=5).run()
    text = out.getvalue()
    assert code == 3, text
    assert "[worker 1] error: metrics port 9001 is in use" in text
    assert "process 1" in text and "exited with code 3 before it was ready" in text
    assert time.monotonic() - started < 10  # the ready sibling was stopped by SIGTERM, not waited for


def test_a_child_dying_after_ready_is_restarted_until_the_budget_is_spent(tmp_path: Path) -> None:
    starts = tmp_path / "starts"
    body = READY + f"open({str(starts)!r}, 'a').write('x')\ntime.sleep(0.3)\nos.kill(os.getpid(), signal.SIGKILL)\n"
    out = io.StringIO()
    code = Supervisor(1, _child(body), out=out, max_restarts=2, restart_window_s=60, grace_s=5).run()
    text = out.getvalue()
    assert code == 1, text
    assert text.count("was killed by SIGKILL; restarted as pid") == 2
    assert "2 restarts in 60 s already, stopping the others" in text
    assert starts.read_text() == "xxx"


def test_sigterm_to_the_parent_stops_every_child_cleanly(tmp_path: Path) -> None:
    stopped = tmp_path / "stopped"
    body = (READY + "def bye(*_):\n"
            f"    open({str(stopped)!r}, 'a').write(os.environ['FLOORWATCH_METRICS_PORT'] + ' '); sys.exit(0)\n"
            "signal.signal(signal.SIGTERM, bye)\ntime.sleep(60)\n")  # fmt: skip
    out = io.StringIO()
    supervisor = Supervisor(2, _child(body), base_port=7000, out=out, grace_s=10)
    # The signal arrives once both children are ready (as from `kill` or Ctrl-C), in the main thread.
    threading.Thread(target=_signal_when, args=(out, 2), daemon=True).start()
    assert supervisor.run() == 0, out.getvalue()
    assert sorted(stopped.read_text().split()) == ["7000", "7001"]
    assert "[worker 0] " + READY_MARK in out.getvalue() and "[worker 1] " + READY_MARK in out.getvalue()


def _signal_when(out: io.StringIO, ready: int) -> None:
    deadline = time.monotonic() + 30
    while out.getvalue().count(READY_MARK) < ready and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(os.getpid(), signal.SIGTERM)
