from stream_app.worker.metrics import Metrics


def test_totals_sums_labelled_counters_and_skips_gauges() -> None:
    metrics = Metrics()
    metrics.readings.inc(5)
    metrics.alerts.labels(state="open").inc()
    metrics.alerts.labels(state="close").inc(2)
    metrics.redis_pending.set(7)
    totals = metrics.totals()
    assert totals["floorwatch_readings_total"] == 5
    assert totals["floorwatch_alerts_total"] == 3
    assert not any("pending" in name for name in totals)


def test_health_endpoints_beside_the_metrics() -> None:
    import urllib.error
    import urllib.request

    import pytest

    from stream_app.lab.embedded import free_port

    metrics, port = Metrics(), free_port()
    server = metrics.serve("127.0.0.1", port)
    assert server is not None
    base = f"http://127.0.0.1:{port}"
    try:
        assert urllib.request.urlopen(f"{base}/healthz").read() == b"ok\n"
        with pytest.raises(urllib.error.HTTPError) as refused:  # no partition yet, Redis not confirmed
            urllib.request.urlopen(f"{base}/readyz")
        assert refused.value.code == 503 and b"no readings partition" in refused.value.read()
        metrics.set_lag({("sensor-readings", 0): 3})
        metrics.redis_available.set(1)
        assert urllib.request.urlopen(f"{base}/readyz").read() == b"ready\n"
        assert b"floorwatch_readings_lag" in urllib.request.urlopen(f"{base}/metrics").read()

        with pytest.raises(OSError, match=f"metrics port 127.0.0.1:{port} is in use"):
            Metrics().serve("127.0.0.1", port)
    finally:
        server.shutdown()
        server.server_close()


def _samples(metrics: Metrics, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in metrics.registry.collect()
        for s in family.samples
        if s.name == name
    }


def test_dead_letters_are_counted_by_a_bounded_reason() -> None:
    from stream_app.worker.dlq_reasons import REASONS, reason_label

    metrics = Metrics()
    for reason in (
        "not valid JSON: unexpected character: line 1 column 1 (char 0)",
        "readings[3]: values.temperature: Input should be a valid number",
        "ts: Input should be a valid datetime",
        "readings[0]: timestamp 2031-01-01T00:00:00.000Z is in the future",
        "message too large (2000000 bytes > 1048576)",
        "the worker failed on this message: RuntimeError: boom",
        "something no rule knows, with a device id dev-4711 in it",
    ):
        metrics.dead_letters.add(reason)
    metrics.dead_letters.inc(2)  # a caller that does not know the reasons
    counted = {dict(k)["reason"]: v for k, v in _samples(metrics, "floorwatch_dead_letters_total").items()}
    assert set(counted) == set(REASONS)  # every series exists from the start, and no other
    assert counted["not_json"] == 1 and counted["invalid_field"] == 2 and counted["future_timestamp"] == 1
    assert counted["too_large"] == 1 and counted["worker_failure"] == 1 and counted["other"] == 3
    assert reason_label("readings[2]: missing sensor(s) vibration required by the model") == "missing_sensor"
    assert metrics.totals()["floorwatch_dead_letters_total"] == 9


def test_committed_lag_per_partition_and_revoked_partitions_removed() -> None:
    metrics = Metrics()
    metrics.set_committed_lag({("sensor-readings", 0): 5, ("sensor-readings", 3): 0})
    assert _samples(metrics, "floorwatch_consumer_lag") == {(("partition", "0"),): 5, (("partition", "3"),): 0}
    metrics.set_committed_lag({("sensor-readings", 3): 7})  # partition 0 revoked
    assert _samples(metrics, "floorwatch_consumer_lag") == {(("partition", "3"),): 7}


def test_model_versions_process_metrics_and_totals_only_of_floorwatch() -> None:
    metrics = Metrics()
    metrics.set_models({"default": "v0003", "pumps": "v0001"})
    metrics.set_models({"pumps": "v0002"})  # a promoted version swapped in
    assert _samples(metrics, "floorwatch_model_info") == {
        (("group", "default"), ("version", "v0003")): 1.0,
        (("group", "pumps"), ("version", "v0002")): 1.0,
    }
    assert _samples(metrics, "process_resident_memory_bytes")[()] > 0
    assert _samples(metrics, "process_cpu_seconds_total")[()] >= 0
    assert not any(name.startswith("process_") for name in metrics.totals())
