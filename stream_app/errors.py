"""The base of floorwatch's own user-facing errors.

Each module raises its own kind (``ModelStoreError``, ``PreflightError``, ...), all of them a
``FloorwatchError``, whose message is one line that says what is wrong and, where it can, what to do;
``floorwatch`` (cli.py) prints it as it is, without a traceback.
"""

from __future__ import annotations


class FloorwatchError(Exception):
    """An error for the operator: its message is one line, with no secret in it."""
