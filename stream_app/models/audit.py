"""The model store's audit log: every promote, rollback, shadow and refit, one JSON line each.

Each store (the default model's and each asset group's) keeps its own ``HISTORY.jsonl`` beside its
``CURRENT`` pointer. Lines are appended with one ``write`` on a file opened in append mode, so two
operators promoting at once interleave whole lines, never halves.
"""

from __future__ import annotations

import getpass
import logging
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

log = logging.getLogger(__name__)

Action = Literal["train", "promote", "rollback", "shadow", "shadow-off", "refit", "refused", "policy"]
HISTORY_FILE = "HISTORY.jsonl"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _who() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no user database entry (a container)
        return f"uid {os.getuid()}"


class AuditEntry(BaseModel):
    at: str = Field(default_factory=_now)
    action: Action
    group: str
    version: str | None = None
    # The version that was current (or shadowed) before this step.
    previous: str | None = None
    by: str = Field(default_factory=_who)
    note: str = ""


class AuditLog:
    def __init__(self, store_root: Path) -> None:
        self.path = Path(store_root) / HISTORY_FILE

    def append(self, entry: AuditEntry) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as out:
            out.write(entry.model_dump_json() + "\n")
            out.flush()
            os.fsync(out.fileno())

    def entries(self) -> list[AuditEntry]:
        """Oldest first; a line that cannot be read (a crash mid-write) is skipped with a warning."""
        if not self.path.is_file():
            return []
        out: list[AuditEntry] = []
        for number, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                out.append(AuditEntry.model_validate_json(line))
            except ValidationError:
                log.warning("%s line %d unreadable; skipped", self.path, number)
        return out
