"""Operator rules beside the model: parsing, evaluation and settings (their alerts: test_detector.py)."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from stream_app.pipeline.rules import Rule, parse_rules
from stream_app.config.settings import Settings


# --- parsing ---------------------------------------------------------------------------------


def test_parses_comma_and_semicolon_separated_rules() -> None:
    assert parse_rules("temperature<0.09, vibration <= 0.1; motor_rpm>0.03") == [
        Rule("temperature", "<", 0.09),
        Rule("vibration", "<=", 0.1),
        Rule("motor_rpm", ">", 0.03),
    ]


def test_whitespace_and_empty_parts_are_tolerated() -> None:
    assert parse_rules("  temperature   <   0.09 ,, ;\t motor_amps>=-1e-3 ; ") == [
        Rule("temperature", "<", 0.09),
        Rule("motor_amps", ">=", -0.001),
    ]
    assert parse_rules("") == parse_rules(" , ; ") == []


@pytest.mark.parametrize("op", ["<", "<=", ">", ">="])
def test_each_operator(op: str) -> None:
    assert parse_rules(f"x{op}2") == [Rule("x", op, 2.0)]  # type: ignore[arg-type]
    assert parse_rules(f"x {op} 2") == [Rule("x", op, 2.0)]  # type: ignore[arg-type]


def test_a_feature_name_may_hold_spaces() -> None:
    assert parse_rules("Volume Flow RateRMS >= 30") == [Rule("Volume Flow RateRMS", ">=", 30.0)]


@pytest.mark.parametrize(
    ("text", "bad"),
    [
        ("temperature", "temperature"),
        ("temperature<0.09, vibration", "vibration"),
        ("temperature = 1", "temperature = 1"),
        ("temperature == 1", "temperature == 1"),
        ("temperature != 1", "temperature != 1"),
        ("temperature <> 1", "temperature <> 1"),
        ("temperature << 1", "temperature << 1"),
        ("< 1", "< 1"),
        ("temperature <", "temperature <"),
        ("temperature < hot", "temperature < hot"),
        ("temperature < 0.09 0.1", "temperature < 0.09 0.1"),
        ("temperature < nan", "temperature < nan"),
        ("temperature < inf", "temperature < inf"),
    ],
)
def test_bad_syntax_names_the_bad_part(text: str, bad: str) -> None:
    with pytest.raises(ValueError, match=f"bad rule {bad!r}"):
        parse_rules(text)


def test_name_is_the_check_in_check_failures() -> None:
    assert [r.name for r in parse_rules("temperature<0.09, motor_rpm >= 100, vibration<=1e-05")] == [
        "rule:temperature<0.09",
        "rule:motor_rpm>=100",
        "rule:vibration<=1e-05",
    ]


# --- evaluation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "broken"),
    [
        ("<", [False, True, True]),
        ("<=", [False, False, True]),
        (">", [True, True, False]),
        (">=", [True, False, False]),
    ],
)
def test_broken_is_elementwise_with_the_limit_on_the_right_side(op: str, broken: list[bool]) -> None:
    rule = Rule("x", op, 1.0)  # type: ignore[arg-type]
    values = np.array([[0.5, 1.0, 1.5]], np.float32)
    assert rule.broken(values).tolist() == [broken]


# --- settings --------------------------------------------------------------------------------


def test_settings_read_and_parse_floorwatch_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOORWATCH_RULES", "temperature<0.09; vibration<=0.1")
    assert Settings().rule_list() == (Rule("temperature", "<", 0.09), Rule("vibration", "<=", 0.1))
    monkeypatch.delenv("FLOORWATCH_RULES")
    assert Settings().rule_list() == ()


def test_a_bad_rule_is_a_settings_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOORWATCH_RULES", "temperature<0.09, vibration=0.1")
    with pytest.raises(ValidationError, match=r"rules\n.*bad rule 'vibration=0.1'"):
        Settings()
