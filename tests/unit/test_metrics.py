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
