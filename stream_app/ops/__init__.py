"""Operator tools that talk to a running fleet: retraining from the topic, the automatic policy, following alerts."""
