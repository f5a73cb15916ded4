"""``floorwatch worker --processes N``: N worker processes in one consumer group, from one command.

Each child is an ordinary ``floorwatch worker`` (its own interpreter, model and event loop: Python and
TensorFlow's per-batch work use one core each), with the same ``FLOORWATCH_APP_ID``, so Kafka's group
protocol spreads the readings partitions between them. Child ``i`` (0-based) serves its metrics on the
base port + i (``FLOORWATCH_METRICS_PORT``; 0 keeps them all off). Their output comes through the parent,
each line prefixed with ``[worker i]``; the ready line each prints names its own metrics address. With JSON
logs (a ``formatter``) the parent's own lines are JSON too, and each child line gets a ``worker`` field
instead of the prefix (a line that is not JSON, from a C library say, is wrapped in one).

Policy (the parent imports no TensorFlow and holds no partition):
- SIGTERM or SIGINT to the parent: SIGTERM to every child (each commits and leaves the group), wait up to
  ``grace_s``, then SIGKILL what is left; exit 0. The children run in their own process group, so a
  Ctrl-C on the terminal reaches them once, through the parent; each also asks the kernel for SIGTERM
  should the parent die without a word (``die_with_parent``).
- A child that exits before its ready line is a start failure (no model, a busy port, Kafka refusing):
  its own one-line error is shown, the others are stopped and the parent exits with its code. Restarting
  would only print the same error again.
- A child that dies after it was ready (a crash, the OOM killer) is reported in one line and restarted; its
  partitions go to the others meanwhile. More than ``max_restarts`` restarts within ``restart_window_s``
  is a crash loop: everything is stopped and the parent exits 1.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import IO

from stream_app.worker.logs import JsonLogFormatter

READY_MARK = "floorwatch worker ready:"
# Set in each child's environment: the parent's pid, for ``die_with_parent``.
PARENT_ENV = "FLOORWATCH_SUPERVISOR_PID"
_PR_SET_PDEATHSIG = 1


def default_processes() -> int:
    """One per core this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def child_ports(base_port: int, n: int) -> list[int]:
    """Each child's metrics port: ``base + i``, or all 0 (off) when the base is 0."""
    if base_port == 0:
        return [0] * n
    if base_port + n - 1 > 65535:
        raise ValueError(f"metrics ports {base_port}..{base_port + n - 1} run past 65535: lower FLOORWATCH_METRICS_PORT")
    return [base_port + i for i in range(n)]


def worker_command(*args: str) -> list[str]:
    """The command line of one child: ``floorwatch worker`` in this interpreter."""
    return [sys.executable, "-m", "stream_app", "worker", *args]


def die_with_parent() -> None:
    """In a supervised child: have the kernel send SIGTERM when the supervisor dies (Linux only)."""
    parent = os.environ.get(PARENT_ENV)
    if not parent or not sys.platform.startswith("linux"):
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != int(parent):  # it died before prctl: nobody would send the signal
        os.kill(os.getpid(), signal.SIGTERM)


@dataclass
class _Child:
    index: int
    port: int
    process: subprocess.Popen[bytes]
    ready: threading.Event = field(default_factory=threading.Event)
    reader: threading.Thread | None = None


class Supervisor:
    """Start, watch and stop N worker processes; ``run`` returns the parent's exit code."""

    def __init__(
        self,
        n: int,
        command: Sequence[str],
        *,
        base_port: int = 0,
        env: dict[str, str] | None = None,
        out: IO[str] | None = None,
        grace_s: float = 60.0,
        max_restarts: int = 5,
        restart_window_s: float = 600.0,
        formatter: JsonLogFormatter | None = None,
    ) -> None:
        if n < 1:
            raise ValueError("--processes must be at least 1")
        self.n = n
        self.command = list(command)
        self.ports = child_ports(base_port, n)
        self.env = dict(os.environ if env is None else env)
        self.out = out or sys.stderr
        self.grace_s = grace_s
        self.max_restarts = max_restarts
        self.restart_window_s = restart_window_s
        self.formatter = formatter
        self._children: list[_Child] = []
        self._restarts: deque[float] = deque()
        self._stop = threading.Event()
        self._write = threading.Lock()

    def say(self, line: str, level: int = logging.INFO) -> None:
        """One line of the parent's own (JSON when it has a formatter)."""
        if self.formatter is not None:
            line = self.formatter.line(level, __name__, line.rstrip("\n"))
        self._emit(line)

    def _emit(self, line: str) -> None:
        with self._write:
            self.out.write(line.rstrip("\n") + "\n")
            self.out.flush()

    def _child_line(self, index: int, line: str) -> str:
        if self.formatter is None:
            return f"[worker {index}] {line}"
        text = line.rstrip("\n")
        try:
            fields = json.loads(text)
        except ValueError:
            fields = None
        if isinstance(fields, dict):
            return self.formatter.scrub(json.dumps({**fields, "worker": index}, default=str))
        return self.formatter.line(logging.WARNING, f"{__name__}.output", text, worker=index)

    def run(self) -> int:
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.say(f"floorwatch worker: starting {self.n} processes in one consumer group"
                     + (f", metrics on ports {self.ports[0]}-{self.ports[-1]}" if self.ports[0] else ""))  # fmt: skip
            self._children = [self._start(i) for i in range(self.n)]
            return self._watch()
        finally:
            self._stop_all()
            for s, handler in previous.items():
                signal.signal(s, handler)

    def _on_signal(self, signum: int, _frame: object) -> None:
        self._stop.set()

    def _watch(self) -> int:
        while not self._stop.wait(0.2):
            for k, child in enumerate(self._children):
                code = child.process.poll()
                if code is None:
                    continue
                if child.reader is not None:
                    child.reader.join(timeout=2)  # its last lines (the error) before ours
                what = _describe_exit(code)
                if not child.ready.is_set():
                    self.say(f"floorwatch worker: process {child.index} (pid {child.process.pid}) {what} before it was "
                             "ready; stopping the others", logging.ERROR)  # fmt: skip
                    return code if code > 0 else 1
                now = time.monotonic()
                while self._restarts and now - self._restarts[0] > self.restart_window_s:
                    self._restarts.popleft()
                if len(self._restarts) >= self.max_restarts:
                    self.say(f"floorwatch worker: process {child.index} (pid {child.process.pid}) {what}; "
                             f"{len(self._restarts)} restarts in {self.restart_window_s:.0f} s already, stopping the others",
                             logging.ERROR)  # fmt: skip
                    return 1
                self._restarts.append(now)
                self._children[k] = self._start(child.index)
                self.say(f"floorwatch worker: process {child.index} (pid {child.process.pid}) {what}; "
                         f"restarted as pid {self._children[k].process.pid}", logging.ERROR)  # fmt: skip
        return 0

    def _start(self, index: int) -> _Child:
        env = {**self.env, "FLOORWATCH_METRICS_PORT": str(self.ports[index]), PARENT_ENV: str(os.getpid())}
        process = subprocess.Popen(
            self.command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            process_group=0,  # Ctrl-C on the terminal reaches the parent only; it stops the children once
        )  # fmt: skip
        child = _Child(index, self.ports[index], process)
        child.reader = threading.Thread(target=self._forward, args=(child,), name=f"worker-{index}-output", daemon=True)
        child.reader.start()
        return child

    def _forward(self, child: _Child) -> None:
        assert child.process.stdout is not None
        for raw in child.process.stdout:
            line = raw.decode(errors="replace")
            if READY_MARK in line:
                child.ready.set()
            self._emit(self._child_line(child.index, line))

    def _stop_all(self) -> None:
        live = [c for c in self._children if c.process.poll() is None]
        for child in live:
            child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.grace_s
        for child in live:
            try:
                child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.say(f"floorwatch worker: process {child.index} (pid {child.process.pid}) did not stop within "
                         f"{self.grace_s:.0f} s; killed", logging.WARNING)  # fmt: skip
                child.process.kill()
                child.process.wait()
        for child in self._children:
            if child.reader is not None:
                child.reader.join(timeout=5)


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"
