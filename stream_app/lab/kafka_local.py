"""A local Apache Kafka (KRaft) cluster on loopback, from the jars that ``make kafka-jars`` fetches.

No Docker and no kafka.apache.org download: ``kafka/pom.xml`` copies the pinned broker
(``org.apache.kafka:kafka_2.13``) and its runtime dependencies from Maven Central into
``kafka/jars/``, and each node runs as ``java -cp 'kafka/jars/*' kafka.Kafka server-N.properties``.
Every node is broker and controller (combined mode); one node or three (replication 3,
``min.insync.replicas=2``, the production shape). Storage is on disk under ``<dir>``: a node
restarted keeps its log, unlike the embedded broker.

``FLOORWATCH_KAFKA_HOME`` points at another Apache Kafka install (its ``libs/``) or a folder of jars.
"""

from __future__ import annotations

import base64
import logging
import os
import shutil
import signal
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr

from stream_app.lab.embedded import EmbeddedError, ServiceProcess, _alive, _terminate, free_port, port_open

REPO_JARS = Path(__file__).resolve().parents[2] / "kafka" / "jars"
HOW_TO_GET = (
    "run `make kafka-jars` (Maven, from Maven Central) or set FLOORWATCH_KAFKA_HOME to an Apache Kafka install"
)
# Small heaps: a three-node cluster shares a 2-core machine with the workers under test.
DEFAULT_HEAP_MB = 384

_LOG4J2 = """\
Configuration:
  Appenders:
    Console:
      name: STDOUT
      PatternLayout:
        pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Root:
      level: WARN
      AppenderRef:
        - ref: STDOUT
    Logger:
      - name: kafka.server.KafkaRaftServer
        level: INFO
"""


class KafkaUnavailable(EmbeddedError):
    """Java or the Kafka jars are missing: the message says how to get them."""


class SecureListener(BaseModel):
    """A SASL_SSL listener beside the plaintext one: TLS with ``keystore`` (PKCS12), SCRAM users."""

    keystore: Path
    keystore_password: SecretStr
    users: dict[str, SecretStr]  # name -> password, for SCRAM-SHA-256 and SCRAM-SHA-512


class KafkaNode(BaseModel):
    node_id: int
    port: int
    controller_port: int
    config: Path
    log: Path
    pid: int | None = None
    secure_port: int | None = None


class ClusterState(BaseModel):
    host: str
    cluster_id: str
    nodes: list[KafkaNode]

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(f"{self.host}:{n.port}" for n in self.nodes)

    @property
    def secure_bootstrap_servers(self) -> str:
        """The SASL_SSL listeners' addresses (a cluster started with a ``SecureListener``)."""
        return ",".join(f"{self.host}:{n.secure_port}" for n in self.nodes if n.secure_port)

    def node(self, node_id: int) -> KafkaNode:
        return next(n for n in self.nodes if n.node_id == node_id)


def java_binary() -> str:
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home and (Path(home) / "bin" / "java").exists() else shutil.which("java")
    if java is None:
        raise KafkaUnavailable(
            "Java is needed to run Apache Kafka locally: install a JDK 17+ (e.g. apt-get install openjdk-17-jdk-headless), "
            "or point KAFKA_BOOTSTRAP_SERVERS at an existing cluster"
        )
    return java


def kafka_jars(kafka_home: Path | None = None) -> Path:
    """The folder of broker jars: ``kafka_home`` (an install's ``libs/`` or a jar folder), else ``kafka/jars``."""
    candidates = [kafka_home / "libs", kafka_home] if kafka_home else [REPO_JARS]
    for folder in candidates:
        if any(folder.glob("kafka_2.13-*.jar")):
            return folder
    where = kafka_home if kafka_home else REPO_JARS
    raise KafkaUnavailable(f"no Apache Kafka jars (kafka_2.13-*.jar) in {where}: {HOW_TO_GET}")


def kafka_available(kafka_home: Path | None = None) -> str | None:
    """None if a local cluster can start here, else the one-line reason."""
    try:
        java_binary()
        kafka_jars(kafka_home)
    except KafkaUnavailable as exc:
        return str(exc)
    return None


def new_cluster_id() -> str:
    """A random cluster id as Kafka writes them (a UUID, URL-safe base64, no padding), never starting with
    "-": ``kafka-storage format -t -xyz`` reads that as an option and fails ("expected one argument"), which
    one cluster in 64 met before; Kafka's own ``random-uuid`` skips such ids the same way."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


class KafkaCluster:
    """One or three KRaft nodes on loopback; the layout (ports, cluster id) is kept in ``<dir>/cluster.json``
    so that ``start`` after ``stop`` brings back the same cluster with its data."""

    def __init__(
        self,
        directory: Path,
        *,
        nodes: int = 1,
        host: str = "127.0.0.1",
        port: int | None = None,
        kafka_home: Path | None = None,
        heap_mb: int = DEFAULT_HEAP_MB,
        extra_config: dict[str, str] | None = None,
        secure: SecureListener | None = None,
    ) -> None:
        if nodes not in (1, 3):
            raise ValueError("a local Kafka cluster has 1 or 3 nodes")
        self.dir = Path(directory)
        self.nodes = nodes
        self.host = host
        self.port = port
        self.kafka_home = kafka_home
        self.heap_mb = heap_mb
        self.extra_config = extra_config or {}
        self.secure = secure
        self._state_file = self.dir / "cluster.json"

    # --- state ---------------------------------------------------------------------------------

    def state(self) -> ClusterState | None:
        """The recorded cluster, if every node's process is alive."""
        state = self._recorded()
        if state is None or not all(n.pid and _alive(n.pid) for n in state.nodes):
            return None
        return state

    def _recorded(self) -> ClusterState | None:
        try:
            return ClusterState.model_validate_json(self._state_file.read_bytes())
        except (OSError, ValueError):
            return None

    def _save(self, state: ClusterState) -> None:
        self._state_file.write_text(state.model_dump_json(indent=2))

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self, *, timeout_s: float = 120.0) -> ClusterState:
        """Start every node (formatting storage the first time) and wait until all brokers are registered."""
        running = self.state()
        if running is not None:
            return running
        java, jars = java_binary(), kafka_jars(self.kafka_home)
        state = self._recorded()
        if state is None or len(state.nodes) != self.nodes:
            state = self._layout()
            self._write_configs(state)
            self._format(state, java, jars)
        else:
            self._write_configs(state)
        for node in state.nodes:
            if port_open(self.host, node.port) or port_open(self.host, node.controller_port):
                raise EmbeddedError(f"Kafka port {self.host}:{node.port} or {node.controller_port} is already in use")
        try:
            for node in state.nodes:
                node.pid = self._spawn(node, java, jars)
            self._save(state)
            self._wait_ready(state, [n.node_id for n in state.nodes], timeout_s)
        except BaseException:
            self._stop_nodes(state.nodes, kill=True)
            raise
        return state

    def stop(self, *, wipe: bool = False) -> bool:
        """Stop every node (controlled shutdown, SIGKILL after 30 s); False if none was recorded.
        ``wipe`` also deletes the data, so the next ``start`` formats a new cluster."""
        state = self._recorded()
        if state is None:
            return False
        self._stop_nodes(state.nodes, kill=False)
        self._save(state)
        if wipe:
            shutil.rmtree(self.dir, ignore_errors=True)
        return True

    def stop_node(self, node_id: int, *, kill: bool = False) -> None:
        """Stop one node: SIGTERM (controlled shutdown, leadership moves first) or ``kill`` -9 (a crash)."""
        state = self._require()
        self._stop_nodes([state.node(node_id)], kill=kill)
        self._save(state)

    def start_node(self, node_id: int, *, timeout_s: float = 90.0) -> ClusterState:
        """Start one stopped node again with its data, and wait until it is registered."""
        state = self._require()
        node = state.node(node_id)
        if node.pid and _alive(node.pid):
            return state
        node.pid = self._spawn(node, java_binary(), kafka_jars(self.kafka_home))
        self._save(state)
        self._wait_ready(state, [node_id], timeout_s)
        return state

    def _require(self) -> ClusterState:
        state = self._recorded()
        if state is None:
            raise EmbeddedError(f"no local Kafka cluster recorded in {self._state_file}")
        return state

    # --- setup ---------------------------------------------------------------------------------

    def _layout(self) -> ClusterState:
        cluster_id = new_cluster_id()
        nodes = []
        for i in range(1, self.nodes + 1):
            port = self.port + 2 * (i - 1) if self.port else free_port(self.host)
            controller = port + 1 if self.port else free_port(self.host)
            nodes.append(
                KafkaNode(
                    node_id=i,
                    port=port,
                    controller_port=controller,
                    config=self.dir / f"node-{i}" / "server.properties",
                    log=self.dir / f"node-{i}" / "kafka.log",
                    secure_port=free_port(self.host) if self.secure else None,
                )
            )
        return ClusterState(host=self.host, cluster_id=cluster_id, nodes=nodes)

    def _write_configs(self, state: ClusterState) -> None:
        (self.dir).mkdir(parents=True, exist_ok=True)
        (self.dir / "log4j2.yaml").write_text(_LOG4J2)
        for node in state.nodes:
            node.config.parent.mkdir(parents=True, exist_ok=True)
            config = server_properties(state, node, self.extra_config, self.secure)
            node.config.write_text("".join(f"{k}={v}\n" for k, v in config.items()))

    def _format(self, state: ClusterState, java: str, jars: Path) -> None:
        def format_node(node: KafkaNode) -> subprocess.CompletedProcess[str]:
            shutil.rmtree(node.config.parent / "data", ignore_errors=True)
            command = [java, "-Xmx128m", "-XX:+UseSerialGC", "-cp", f"{jars}/*", "kafka.tools.StorageTool",
                       "format", "-t", state.cluster_id, "-c", str(node.config)]  # fmt: skip
            for name, password in (self.secure.users.items() if self.secure else ()):
                for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
                    command += ["--add-scram", f"{mechanism}=[name={name},password={password.get_secret_value()}]"]
            return subprocess.run(command, capture_output=True, text=True, timeout=120)

        with ThreadPoolExecutor(len(state.nodes)) as pool:
            for node, result in zip(state.nodes, pool.map(format_node, state.nodes)):
                if result.returncode != 0:
                    last = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
                    raise EmbeddedError(f"formatting Kafka node {node.node_id} failed: {last[0]}")

    def _spawn(self, node: KafkaNode, java: str, jars: Path) -> int:
        command = [
            java, f"-Xmx{self.heap_mb}m", "-Xms64m", "-XX:+UseSerialGC", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.dir / 'log4j2.yaml'}",
            "-cp", f"{jars}/*", "kafka.Kafka", str(node.config),
        ]  # fmt: skip
        with open(node.log, "ab") as out:
            process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        return process.pid

    def _wait_ready(self, state: ClusterState, node_ids: list[int], timeout_s: float) -> None:
        """Until each node's listener is open and the cluster's metadata lists it as a broker."""
        from confluent_kafka.admin import AdminClient

        deadline = time.monotonic() + timeout_s
        for node_id in node_ids:
            node = state.node(node_id)
            while not port_open(self.host, node.port):
                if node.pid is None or not _alive(node.pid):
                    raise EmbeddedError(f"Kafka node {node_id} exited at start; see {node.log}")
                if time.monotonic() > deadline:
                    raise EmbeddedError(f"Kafka node {node_id} did not open {self.host}:{node.port} in {timeout_s:.0f}s")
                time.sleep(0.1)
        config: dict[str, Any] = {"bootstrap.servers": state.bootstrap_servers, "log.connection.close": False,
                                  "logger": _quiet_logger()}  # librdkafka takes a Python logger here  # fmt: skip
        admin = AdminClient(config)
        while True:
            try:
                brokers = admin.list_topics(timeout=2).brokers
                if all(i in brokers for i in node_ids):
                    return
            except Exception:  # noqa: BLE001 - not up yet: retried until the deadline
                pass
            if time.monotonic() > deadline:
                raise EmbeddedError(f"Kafka nodes {node_ids} did not register in {timeout_s:.0f}s; see {self.dir}")
            time.sleep(0.2)

    def _stop_nodes(self, nodes: list[KafkaNode], *, kill: bool) -> None:
        live = [n.pid for n in nodes if n.pid and _alive(n.pid)]
        if kill:
            for pid in live:
                os.kill(pid, signal.SIGKILL)
        # A controlled shutdown moves partition leadership away first: it takes a few seconds.
        with ThreadPoolExecutor(max(1, len(live))) as pool:
            list(pool.map(lambda pid: _terminate(pid, timeout_s=30.0), live))
        for node in nodes:
            node.pid = None


def server_properties(
    state: ClusterState, node: KafkaNode, extra: dict[str, str] | None = None, secure: SecureListener | None = None
) -> dict[str, str]:
    """One node's broker settings: Kafka's production defaults, sized to the cluster.

    The few departures are for a local cluster on a small machine: fewer partitions of the
    internal topics (50 each by default) and threads, and no initial group-rebalance delay.
    """
    n = len(state.nodes)
    host = state.host
    replicas = min(3, n)
    voters = ",".join(f"{m.node_id}@{host}:{m.controller_port}" for m in state.nodes)
    config = {
        "process.roles": "broker,controller",
        "node.id": str(node.node_id),
        "controller.quorum.voters": voters,
        "listeners": f"PLAINTEXT://{host}:{node.port},CONTROLLER://{host}:{node.controller_port}",
        "advertised.listeners": f"PLAINTEXT://{host}:{node.port}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(node.config.parent / "data"),
        # Durability: every topic replicated to all three nodes, a write needs two of them.
        "default.replication.factor": str(replicas),
        "min.insync.replicas": str(min(2, n)),
        "offsets.topic.replication.factor": str(replicas),
        "transaction.state.log.replication.factor": str(replicas),
        "transaction.state.log.min.isr": str(min(2, n)),
        "unclean.leader.election.enable": "false",
        # Topics are created up front (`floorwatch topics`); a typo must not create one.
        "auto.create.topics.enable": "false",
        # Local cluster: small internal topics, few threads, groups form at once.
        "offsets.topic.num.partitions": "8",
        "transaction.state.log.num.partitions": "8",
        "num.network.threads": "2",
        "num.io.threads": "4",
        "group.initial.rebalance.delay.ms": "0",
    }
    if secure is not None and node.secure_port:
        jaas = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        password = secure.keystore_password.get_secret_value()
        config["listeners"] += f",SASL_SSL://{host}:{node.secure_port}"
        config["advertised.listeners"] += f",SASL_SSL://{host}:{node.secure_port}"
        config["listener.security.protocol.map"] += ",SASL_SSL:SASL_SSL"
        config.update({
            "sasl.enabled.mechanisms": "SCRAM-SHA-256,SCRAM-SHA-512",
            "listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config": jaas,
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": jaas,
            "ssl.keystore.type": "PKCS12",
            "ssl.keystore.location": str(secure.keystore),
            "ssl.keystore.password": password,
            "ssl.key.password": password,
        })  # fmt: skip
    config.update(extra or {})
    return config


def make_keystore(directory: Path, password: str, host: str = "127.0.0.1") -> tuple[Path, Path]:
    """A self-signed broker certificate for ``host`` with keytool: (PKCS12 keystore, its certificate as a
    PEM CA file for clients). For local tests; a real cluster has certificates from its own CA."""
    directory.mkdir(parents=True, exist_ok=True)
    keystore, cafile = directory / "broker.p12", directory / "ca.pem"
    keytool = str(Path(java_binary()).resolve().parent / "keytool")
    common = ["-alias", "broker", "-keystore", str(keystore), "-storetype", "PKCS12", "-storepass", password]
    subprocess.run(
        [keytool, "-genkeypair", *common, "-keypass", password, "-keyalg", "RSA", "-keysize", "2048", "-validity", "30",
         "-dname", "CN=localhost", "-ext", f"SAN=ip:{host},dns:localhost"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    subprocess.run([keytool, "-exportcert", "-rfc", *common, "-file", str(cafile)], check=True, capture_output=True, timeout=60)
    return keystore, cafile


def _quiet_logger() -> logging.Logger:
    logger = logging.getLogger("stream_app.lab.kafka_local.librdkafka")
    logger.addHandler(logging.NullHandler())
    logger.propagate = False
    return logger


class LocalKafkaServices:
    """``floorwatch up --broker kafka``: a local Kafka cluster (``<state_dir>/kafka``) and redis-server.

    Redis is recorded in ``<state_dir>/kafka-redis.json``, apart from the embedded services' state.
    """

    def __init__(self, state_dir: Path, *, nodes: int = 1, kafka_port: int = 9092, redis_port: int = 6379,
                 kafka_home: Path | None = None) -> None:  # fmt: skip
        self.state_dir = Path(state_dir)
        self.cluster = KafkaCluster(self.state_dir / "kafka", nodes=nodes, port=kafka_port, kafka_home=kafka_home)
        self.redis_port = redis_port
        self._redis_file = self.state_dir / "kafka-redis.json"

    def start(self) -> tuple[ClusterState, ServiceProcess]:
        from stream_app.lab.embedded import _redis_command, _wait_for_port

        state = self.cluster.start()
        redis = self.redis()
        if redis is None:
            if port_open(self.cluster.host, self.redis_port):
                self.cluster.stop()
                raise EmbeddedError(f"Redis port {self.cluster.host}:{self.redis_port} is already in use by another process")
            log = self.state_dir / "logs" / "redis.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            with open(log, "ab") as out:
                process = subprocess.Popen(
                    _redis_command(self.cluster.host, self.redis_port, self.state_dir),
                    stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                )  # fmt: skip
            redis = ServiceProcess(name="redis", pid=process.pid, host=self.cluster.host, port=self.redis_port, log=log)
            _wait_for_port(redis, 15.0)
            self._redis_file.write_text(redis.model_dump_json())
        return state, redis

    def redis(self) -> ServiceProcess | None:
        try:
            redis = ServiceProcess.model_validate_json(self._redis_file.read_bytes())
        except (OSError, ValueError):
            return None
        return redis if _alive(redis.pid) else None

    def stop(self) -> bool:
        stopped = self.cluster.stop()
        redis = self.redis()
        if redis is not None:
            _terminate(redis.pid)
            stopped = True
        self._redis_file.unlink(missing_ok=True)
        return stopped
