"""TensorFlow's start-up banners, silenced in one place for every command and worker process.

TensorFlow 2.21 writes its banners (``All log messages before absl::InitializeLog() is called...``,
``oneDNN custom operations are on...``, the CPU-feature notice) from C++ while ``import tensorflow``
runs, before absl's logging is set up, so ``TF_CPP_MIN_LOG_LEVEL`` cannot stop them (measured: each of
0-3 still prints them, twice). So the first import of ``tensorflow``, by whichever module makes it
(Keras, training, the scorer), runs with file descriptor 2 captured; what it wrote is written back
without the known banner lines, so anything else (an error, another thread's log line) still shows.
``install`` is called from ``stream_app/__init__.py``: before any of our modules can import TensorFlow.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import re
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib.machinery import ModuleSpec
from types import ModuleType

# C++ log lines after absl's set-up: INFO, WARNING and ERROR off (as the CLI always had it).
_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3"}
BANNERS = re.compile(
    rb"All log messages before absl::InitializeLog\(\) is called"
    rb"|oneDNN custom operations are on"
    rb"|This TensorFlow binary is optimized to use available CPU instructions"
    rb"|^To enable the following instructions: .* rebuild TensorFlow"
)


def install() -> None:
    """Set TensorFlow's environment defaults and filter its import-time banners (once per process)."""
    for key, value in _ENV.items():
        os.environ.setdefault(key, value)
    if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietImport())


def without_banners(text: bytes) -> bytes:
    """``text`` less the lines that are TensorFlow's import banners."""
    return b"".join(line for line in text.splitlines(keepends=True) if not BANNERS.search(line))


class _QuietImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: Sequence[str] | None, target: ModuleType | None = None) -> ModuleSpec | None:
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)  # once: later imports are plain
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader: importlib.abc.Loader) -> None:
        self.loader = loader

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        try:
            with _banners_filtered():
                self.loader.exec_module(module)
        finally:  # TensorFlow's own loader again, for importlib.resources and the like
            module.__loader__ = self.loader
            if module.__spec__ is not None:
                module.__spec__.loader = self.loader


@contextmanager
def _banners_filtered() -> Iterator[None]:
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no file descriptor 2 to capture
        yield
        return
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            try:
                sys.stderr.flush()
            except (OSError, ValueError):
                pass
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            if rest := without_banners(capture.read()):
                os.write(2, rest)
