"""The worker: the I/O shell around the pipeline (consumer, batch handler, sinks, metrics, model lifecycle)."""
