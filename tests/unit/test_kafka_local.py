"""The local Apache Kafka cluster's settings and its one-line errors (no JVM started here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream_app.lab.kafka_local import ClusterState, KafkaNode, KafkaUnavailable, kafka_jars, server_properties


def _state(n: int, tmp_path: Path) -> ClusterState:
    nodes = [KafkaNode(node_id=i, port=9000 + 2 * i, controller_port=9001 + 2 * i,
                       config=tmp_path / f"node-{i}" / "server.properties", log=tmp_path / f"node-{i}.log")
             for i in range(1, n + 1)]  # fmt: skip
    return ClusterState(host="127.0.0.1", cluster_id="x", nodes=nodes)


def test_three_nodes_replicate_everything_three_times_and_need_two_in_sync(tmp_path: Path) -> None:
    state = _state(3, tmp_path)
    config = server_properties(state, state.nodes[1])
    assert config["node.id"] == "2"
    assert config["controller.quorum.voters"] == "1@127.0.0.1:9003,2@127.0.0.1:9005,3@127.0.0.1:9007"
    assert config["default.replication.factor"] == config["offsets.topic.replication.factor"] == "3"
    assert config["min.insync.replicas"] == config["transaction.state.log.min.isr"] == "2"
    assert config["unclean.leader.election.enable"] == "false"
    assert state.bootstrap_servers == "127.0.0.1:9002,127.0.0.1:9004,127.0.0.1:9006"


def test_one_node_cannot_ask_for_more_replicas_than_it_has(tmp_path: Path) -> None:
    state = _state(1, tmp_path)
    config = server_properties(state, state.nodes[0])
    assert config["default.replication.factor"] == config["min.insync.replicas"] == "1"


def test_missing_jars_say_how_to_get_them(tmp_path: Path) -> None:
    with pytest.raises(KafkaUnavailable, match="make kafka-jars.*FLOORWATCH_KAFKA_HOME"):
        kafka_jars(tmp_path)


def test_an_install_s_libs_folder_is_found(tmp_path: Path) -> None:
    (tmp_path / "libs").mkdir()
    (tmp_path / "libs" / "kafka_2.13-4.1.1.jar").touch()
    assert kafka_jars(tmp_path) == tmp_path / "libs"


def test_a_new_cluster_id_never_starts_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    import base64
    import uuid

    from stream_app.lab import kafka_local

    # The first draw encodes to "-..." (0xf8 -> "-" in URL-safe base64), which kafka-storage reads as an option.
    draws = iter([uuid.UUID(bytes=b"\xf8" + b"\x00" * 15), uuid.UUID(bytes=b"\x01" * 16)])
    monkeypatch.setattr(kafka_local.uuid, "uuid4", lambda: next(draws))
    assert base64.urlsafe_b64encode(b"\xf8" + b"\x00" * 15).decode().startswith("-")
    cluster_id = kafka_local.new_cluster_id()
    assert cluster_id == base64.urlsafe_b64encode(b"\x01" * 16).decode().rstrip("=") and len(cluster_id) == 22
