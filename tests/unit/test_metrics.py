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
