"""Static checks of docker-compose.yml and the Dockerfile (no Docker engine needed).

The compose file is read with PyYAML (merge keys ``<<`` included) and checked against the
project itself: environment variables against ``Settings``, commands against the CLI.
``docker compose config`` runs only where a compose plugin is installed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from stream_app.config.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"

FLOORWATCH_SERVICES = ["topics", "trainer", "worker", "simulator"]
ALL_SERVICES = ["kafka", "redis", *FLOORWATCH_SERVICES]
LOOPBACK = ("127.0.0.1", "::1", "[::1]", "localhost")


def _load() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def _services() -> dict[str, dict[str, Any]]:
    return _load()["services"]


_VAR = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}")


def _interpolate(value: object) -> str:
    """Compose-style ``${VAR:-default}`` with no variables set: the default (or empty)."""

    def repl(m: re.Match[str]) -> str:
        return m.group("arg") if m.group("op") in (":-", "-") else ""

    return _VAR.sub(repl, str(value)).replace("$$", "$")


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.split("=", 1) if "=" in item else (item, "") for item in env)
        return {k: _interpolate(v) for k, v in pairs}
    return {k: "" if v is None else _interpolate(v) for k, v in env.items()}


def _argv(value: object) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else str(value).split()


def _runs_floorwatch(service: dict[str, Any]) -> bool:
    """Built from our Dockerfile (ENTRYPOINT floorwatch) or an explicit floorwatch entrypoint."""
    entrypoint = _argv(service.get("entrypoint"))
    if entrypoint:
        return Path(entrypoint[0]).name == "floorwatch"
    return "build" in service or str(service.get("image", "")).startswith("floorwatch")


def _floorwatch_names() -> list[str]:
    try:
        return [name for name, svc in _services().items() if _runs_floorwatch(svc)]
    except Exception:  # reported by test_compose_parses
        return FLOORWATCH_SERVICES


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run(
        [sys.executable, "-m", "stream_app", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


# --- structure -------------------------------------------------------------------------------


def test_compose_parses() -> None:
    data = _load()
    assert isinstance(data, dict) and isinstance(data.get("services"), dict)


def test_expected_services_exist() -> None:
    missing = set(ALL_SERVICES) - set(_services())
    assert not missing, f"services missing from docker-compose.yml: {sorted(missing)}"


def test_kafka_is_apache_kafka_in_kraft_mode_without_zookeeper() -> None:
    services = _services()
    kafka = services["kafka"]
    assert str(kafka["image"]).startswith("apache/kafka:"), kafka["image"]
    roles = {r.strip() for r in _env(kafka)["KAFKA_PROCESS_ROLES"].split(",")}
    assert {"broker", "controller"} <= roles
    for name, svc in services.items():
        assert "zookeeper" not in name.lower()
        assert "zookeeper" not in str(svc.get("image", "")).lower()
        assert not any("ZOOKEEPER" in key.upper() for key in _env(svc)), f"{name} configures ZooKeeper"


def test_kafka_matches_the_tested_local_cluster() -> None:
    """Same Apache Kafka version as kafka/pom.xml, same durability settings as kafka_local's one-node cluster."""
    import xml.etree.ElementTree as ET

    from stream_app.lab.kafka_local import ClusterState, KafkaNode, server_properties

    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    version = ET.parse(ROOT / "kafka" / "pom.xml").getroot().find("m:properties/m:kafka.version", ns)
    assert version is not None
    kafka = _services()["kafka"]
    assert kafka["image"] == f"apache/kafka:{version.text}"
    node = KafkaNode(node_id=1, port=9092, controller_port=9093, config=Path("/x/server.properties"), log=Path("/x/log"))
    tested = server_properties(ClusterState(host="127.0.0.1", cluster_id="x", nodes=[node]), node)
    env = _env(kafka)
    for key in (
        "default.replication.factor", "min.insync.replicas", "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor", "transaction.state.log.min.isr",
        "unclean.leader.election.enable", "auto.create.topics.enable",
    ):  # fmt: skip
        variable = "KAFKA_" + key.upper().replace(".", "_")
        assert env.get(variable) == tested[key], f"{variable}={env.get(variable)!r}, the tested cluster has {tested[key]!r}"


def _listeners(spec: str) -> dict[str, str]:
    """'NAME://host:port,...' -> {NAME: 'host:port'}"""
    out = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, _, address = item.partition("://")
        out[name] = address
    return out


def test_kafka_listeners_are_consistent() -> None:
    services = _services()
    env = _env(services["kafka"])
    listeners = _listeners(env["KAFKA_LISTENERS"])
    advertised = _listeners(env["KAFKA_ADVERTISED_LISTENERS"])
    protocols = dict(item.split(":", 1) for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    controllers = set(env["KAFKA_CONTROLLER_LISTENER_NAMES"].split(","))

    assert set(listeners) <= set(protocols), "every listener needs a security protocol"
    assert controllers <= set(listeners), "controller listener must be a listener"
    assert set(advertised) <= set(listeners) - controllers, "advertise only broker listeners"
    # The image defaults inter.broker.listener.name to PLAINTEXT; it must name an advertised listener.
    assert env.get("KAFKA_INTER_BROKER_LISTENER_NAME", "PLAINTEXT") in advertised
    node_id = env["KAFKA_NODE_ID"]
    voters = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")
    assert any(v.startswith(f"{node_id}@") for v in voters)
    for key in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
    ):
        assert env[key] == "1", key
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert int(env["KAFKA_NUM_PARTITIONS"]) >= 1

    # Containers reach Kafka on an advertised address; the host's advertised port is published.
    for name in _floorwatch_names():
        bootstrap = _env(services[name])["KAFKA_BOOTSTRAP_SERVERS"]
        assert bootstrap in advertised.values(), f"{name}: {bootstrap} is not advertised by kafka"
    published = {str(p).rsplit(":", 1)[-1] for p in services["kafka"].get("ports", [])}
    host_ports = {a.rsplit(":", 1)[1] for a in advertised.values() if a.split(":")[0] in LOOPBACK}
    assert host_ports <= published, "a localhost-advertised listener must be published"


def test_kafka_and_redis_have_healthchecks_and_volumes() -> None:
    services = _services()
    for name in ("kafka", "redis"):
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        assert services[name].get("volumes"), f"{name} keeps no data on a volume"
    assert "redis-cli" in " ".join(_argv(services["redis"]["healthcheck"]["test"]))
    assert "--appendonly" in _argv(services["redis"].get("command"))
    assert str(services["redis"]["image"]).startswith("redis:7")


# --- floorwatch services -----------------------------------------------------------------------


@pytest.mark.parametrize("name", _floorwatch_names())
def test_floorwatch_service_environment(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    env = _env(_services()[name])
    assert "KAFKA_BOOTSTRAP_SERVERS" in env and "REDIS_URL" in env, f"{name} lacks Kafka/Redis addresses"
    fields = set(Settings.model_fields)
    unknown = [k for k in env if k.startswith("FLOORWATCH_") and k.removeprefix("FLOORWATCH_").lower() not in fields]
    assert not unknown, f"{name} sets variables that are no Settings field: {unknown}"
    # And the values (with compose defaults) are valid settings.
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.kafka_profile == "kafka"
    assert settings.kafka_bootstrap_servers == env["KAFKA_BOOTSTRAP_SERVERS"]
    assert str(settings.model_dir) == "/models"


def test_worker_dependencies_replicas_and_metrics() -> None:
    services = _services()
    worker = services["worker"]
    deps = worker["depends_on"]
    assert isinstance(deps, dict), "depends_on needs the long form to carry conditions"
    for name in ("kafka", "redis"):
        assert deps[name]["condition"] == "service_healthy", name
    for name in ("topics", "trainer"):
        assert deps[name]["condition"] == "service_completed_successfully", name
    assert int(worker["deploy"]["replicas"]) >= 2
    # Metrics: reachable inside the network, never published (replicas would collide on the host).
    assert _env(worker).get("FLOORWATCH_METRICS_HOST") == "0.0.0.0"
    assert "9108" in [str(p).split("/")[0] for p in worker.get("expose", [])]
    assert not worker.get("ports")
    for name in FLOORWATCH_SERVICES:
        if name != "worker":
            assert "FLOORWATCH_METRICS_HOST" not in _env(services[name]), f"{name}: 0.0.0.0 is for the worker only"


def test_models_volume_shared_by_trainer_and_worker() -> None:
    services = _services()

    def mount(svc: dict[str, Any]) -> str | None:
        for v in svc.get("volumes", []):
            source, target = (v.get("source"), v.get("target")) if isinstance(v, dict) else str(v).split(":")[:2]
            if target == "/models":
                return source
        return None

    assert mount(services["trainer"]) is not None
    assert mount(services["trainer"]) == mount(services["worker"])
    assert mount(services["trainer"]) in (_load().get("volumes") or {})


def test_simulator_is_demo_profile_only() -> None:
    services = _services()
    assert "demo" in services["simulator"].get("profiles", [])
    for name in ("kafka", "redis", "topics", "trainer", "worker"):
        assert not services[name].get("profiles"), f"{name} must start by default"


def test_published_ports_bind_to_loopback() -> None:
    for name, svc in _services().items():
        for port in svc.get("ports", []):
            if isinstance(port, dict):
                assert port.get("host_ip") in LOOPBACK, f"{name}: {port}"
                continue
            spec = _interpolate(port)
            host = spec.rsplit(":", 2)[0] if spec.count(":") >= 2 else ""
            assert host in LOOPBACK, f"{name}: port {port!r} is published on every interface"


def test_build_contexts_and_dockerfiles_exist() -> None:
    builds = 0
    for name, svc in _services().items():
        build = svc.get("build")
        if build is None:
            continue
        builds += 1
        context = ROOT / (build if isinstance(build, str) else build.get("context", "."))
        dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
        assert context.is_dir(), f"{name}: build context {context} does not exist"
        assert (context / dockerfile).is_file(), f"{name}: {context / dockerfile} does not exist"
    assert builds, "no service builds the floorwatch image"


def test_dockerfile_entrypoint_runs_floorwatch() -> None:
    text = DOCKERFILE.read_text()
    # Join continuation lines, then look at the last stage's instructions.
    lines = re.sub(r"\\\n", " ", text).splitlines()
    instructions = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    last_from = max(i for i, line in enumerate(instructions) if line.upper().startswith("FROM "))
    final = instructions[last_from:]
    assert final[0].split()[1].startswith("python:") or "PYTHON_VERSION" in final[0]
    entrypoints = [line[len("ENTRYPOINT") :].strip() for line in final if line.upper().startswith("ENTRYPOINT")]
    assert entrypoints, "the final stage has no ENTRYPOINT"
    argv = json.loads(entrypoints[-1])  # exec form, so signals reach the process
    assert Path(argv[0]).name == "floorwatch"
    users = [line.split()[1] for line in final if line.upper().startswith("USER ")]
    assert users and users[-1] not in ("root", "0"), "the image must not run as root"
    assert re.search(r"^ENV\b.*FLOORWATCH_MODEL_DIR=/models", re.sub(r"\\\n", " ", text), re.M)
    assert re.search(r'^VOLUME\s+\[?"?/models', text, re.M)


def test_dockerignore_excludes_local_state() -> None:
    ignored = {line.strip().rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {".venv", ".git", ".floorwatch"} <= ignored


# --- commands ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", _floorwatch_names())
def test_service_command_is_a_floorwatch_subcommand(name: str) -> None:
    svc = _services()[name]
    argv = _argv(svc.get("command"))
    entrypoint = _argv(svc.get("entrypoint"))
    argv = entrypoint[1:] + argv if entrypoint else argv
    assert argv, f"{name} runs no command (the image's default is --help)"
    subcommand = [a for a in argv if not a.startswith("-")][:1]
    if subcommand == ["topics"] and _cli("topics", "--help").returncode != 0:
        pytest.skip("floorwatch topics not implemented yet")
    # The whole command plus --help: the subcommand must exist and every option must be known
    # (click rejects an unknown option before it prints the help).
    result = _cli(*argv, "--help")
    assert result.returncode == 0, f"{name}: floorwatch {' '.join(argv)} --help failed:\n{result.stderr}"


# --- docker compose itself, where available ------------------------------------------------------


def _compose_available() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def test_docker_compose_config_is_valid() -> None:
    if not _compose_available():
        pytest.skip("no docker compose plugin here (`docker compose version` fails); static checks only")
    result = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE), "config", "-q"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    # The demo and monitoring profiles must be valid as well.
    result = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE), "--profile", "demo", "--profile", "monitoring", "config", "-q"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


# --- the monitoring profile: Prometheus and Grafana, checked against the worker's own metrics ---------

DEPLOY = ROOT / "deploy"


def _known_metric_names() -> set[str]:
    """Every series name a worker can export, from a fresh Metrics registry (suffixes included)."""
    from stream_app.worker.metrics import Metrics

    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "info": ["_info"], "summary": ["_sum", "_count"]}
    names: set[str] = set()
    for family in Metrics().registry.collect():
        names.add(family.name)
        names.update(family.name + s for s in suffixes.get(family.type, []))
        names.update(sample.name for sample in family.samples)
    return names


def test_monitoring_services_are_monitoring_profile_only_and_mount_files_that_exist() -> None:
    services = _services()
    for name in ("prometheus", "grafana"):
        assert services[name].get("profiles") == ["monitoring"], name
        for volume in services[name].get("volumes", []):
            source = str(volume).split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name}: {source} does not exist"


def test_prometheus_scrapes_every_worker_replica_on_its_metrics_port() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "floorwatch-worker"]
    (sd,) = job["dns_sd_configs"]
    worker = _services()["worker"]
    assert sd["names"] == ["worker"] and sd["type"] == "A"
    assert str(sd["port"]) == _env(worker)["FLOORWATCH_METRICS_PORT"]
    assert _env(worker)["FLOORWATCH_METRICS_HOST"] == "0.0.0.0"  # reachable from the Prometheus container
    assert job.get("metrics_path", "/metrics") == "/metrics"


def test_grafana_provisions_the_data_source_and_the_dashboard() -> None:
    grafana = _services()["grafana"]
    mounts = {str(v).split(":")[0]: str(v).split(":")[1] for v in grafana["volumes"]}
    sources = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    (source,) = sources["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    providers = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "dashboards" / "floorwatch.yml").read_text())
    (provider,) = providers["providers"]
    assert mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "floorwatch.json").read_text())
    assert dashboard["panels"] and len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == source["uid"], panel["title"]


def test_every_metric_the_dashboard_queries_is_one_the_worker_exports() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "floorwatch.json").read_text())
    known = _known_metric_names()
    queried = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\b(?:floorwatch|process)_[a-z_]+\b", target["expr"])
    }
    assert {"floorwatch_consumer_lag", "floorwatch_dead_letters_total", "floorwatch_model_info"} <= queried
    assert not queried - known, f"the dashboard queries metrics no worker exports: {sorted(queried - known)}"
