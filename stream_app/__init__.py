"""floorwatch's stream app: readings in, anomaly alerts out.

The folders are layers (README, "Development"); a reading's path is in the README's table, step by step.
"""

from stream_app.quiet import install as _quiet_tensorflow

_quiet_tensorflow()  # before any module of ours can import TensorFlow: no start-up banners
