"""floorwatch's stream app: readings in, anomaly alerts out.

The folders are layers (README, "Development"); a reading's path is in the README's table, step by step.
"""
