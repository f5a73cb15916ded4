"""TensorFlow's import banners are filtered in one place (stream_app/quiet.py) for every command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from stream_app.quiet import without_banners

ROOT = Path(__file__).resolve().parents[2]


def test_only_the_known_banner_lines_are_dropped() -> None:
    captured = (
        b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
        b"I0000 00:00:1795698958.468741   21539 port.cc:153] oneDNN custom operations are on. You may see ...\n"
        b"I0000 00:00:1795699001.403506   22320 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use "
        b"available CPU instructions in performance-critical operations.\n"
        b"To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow with the appropriate compiler flags.\n"
        b"E0000 something really went wrong\n"
        b"[2026-11-26 13:11:17,835] a log line of another thread\n"
    )
    assert without_banners(captured) == b"E0000 something really went wrong\n[2026-11-26 13:11:17,835] a log line of another thread\n"


def test_importing_tensorflow_through_the_package_prints_no_banner() -> None:
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"} | {"PYTHONPATH": str(ROOT)}
    code = "import stream_app, sys; import keras; sys.stderr.write('after\\n')"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=240)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stderr.decode() == "after\n"
