"""floorwatch's stream app: readings in, anomaly alerts out.

A reading's path, one module per step: decode -> windows -> (batch in app) -> scorer ->
thresholds/episodes -> sinks. ``detector`` ties the middle steps together; ``app`` is the Faust
app around it.
"""
