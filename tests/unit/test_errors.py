"""One base class for floorwatch's own user-facing errors: the command line catches that one type."""

from __future__ import annotations

import pytest

from producers.checks import RefusedReadings
from producers.publish import PublishError
from producers.replay import ReplayError
from stream_app.cli import CliError
from stream_app.config.kafka_config import KafkaLoginError
from stream_app.config.secret_urls import UrlError
from stream_app.errors import FloorwatchError
from stream_app.lab.bench_e2e import BenchError
from stream_app.lab.demo import DemoError
from stream_app.lab.embedded import EmbeddedError
from stream_app.models.store import ModelStoreError
from stream_app.worker.feedback import UnknownAlert
from stream_app.worker.preflight import PreflightError

ERRORS = [CliError, KafkaLoginError, UrlError, BenchError, DemoError, EmbeddedError, ModelStoreError, UnknownAlert,
          PreflightError, PublishError, ReplayError, RefusedReadings]  # fmt: skip


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: e.__name__)
def test_user_facing_errors_are_floorwatch_errors(error: type[Exception]) -> None:
    assert issubclass(error, FloorwatchError)


def test_main_prints_a_floorwatch_error_as_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from stream_app import cli

    def fails(**_kwargs: object) -> None:
        raise ModelStoreError("no model in .floorwatch/models:\n train one first")

    monkeypatch.setattr(cli, "app", fails)
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    assert exit_.value.code == 1
    assert capsys.readouterr().err == "error: no model in .floorwatch/models: train one first\n"
