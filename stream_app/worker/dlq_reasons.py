"""The ``reason`` label of ``floorwatch_dead_letters_total``: a dead letter's free-text reason, as one of
a bounded set, so that a metric never gets a label per distinct message (which would grow Prometheus'
series without bound). The full reason stays in the dead letter itself (``floorwatch dlq recent``)."""

from __future__ import annotations

import re

# (label, how the reason starts), first match wins; the prefixes are those decode.py, detector.py and
# app.py write. Pydantic's field errors start with the field's path.
_RULES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (label, re.compile(pattern))
    for label, pattern in (
        ("empty", r"empty message"),
        ("too_large", r"message too large"),
        ("not_json", r"not valid JSON"),
        ("not_object", r"expected a JSON object"),
        ("decoder_error", r"decoder error"),
        ("missing_sensor", r"missing sensor"),
        ("future_timestamp", r"timestamp .* is in the future"),
        ("out_of_order", r"out of order"),
        ("window_error", r"could not be windowed"),
        ("worker_failure", r"the worker failed on this message"),
        ("invalid_field", r"(device_id|ts|values|readings)(\.[^:]*)?: "),
    )
)
REASONS = (*(label for label, _ in _RULES), "other")
_BATCH_ITEM = re.compile(r"readings\[\d+\]: ")


def reason_label(reason: str) -> str:
    """One of ``REASONS`` for a dead letter's reason text."""
    text = _BATCH_ITEM.sub("", reason, count=1) if reason.startswith("readings[") else reason
    for label, pattern in _RULES:
        if pattern.match(text):
            return label
    return "other"
