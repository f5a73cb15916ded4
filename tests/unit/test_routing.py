"""Asset groups: parsing FLOORWATCH_ASSET_GROUPS, routing device ids, and each group's model store."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from stream_app.models.store import ModelStore, ModelStoreError, stored_groups
from stream_app.pipeline.routing import DEFAULT_GROUP, AssetGroup, GroupRouter, parse_asset_groups
from stream_app.config.settings import Settings


def test_parse_groups_with_several_patterns_and_loose_spacing() -> None:
    groups = parse_asset_groups(" pumps = pump-*, valve-* ; presses=press-?? ;")
    assert groups == (AssetGroup("pumps", ("pump-*", "valve-*")), AssetGroup("presses", ("press-??",)))


@pytest.mark.parametrize("spec", ["", "  ", ";", " ; ; "])
def test_an_empty_spec_means_no_groups(spec: str) -> None:
    assert parse_asset_groups(spec) == ()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("pumps", "expected name=pattern"),
        ("pumps=", "no device-id pattern"),
        ("pumps= , ", "no device-id pattern"),
        ("pumps=pump-*; pumps=valve-*", "defined twice"),
        ("Pumps=pump-*", "lowercase"),
        ("big pumps=pump-*", "lowercase"),
        ("../x=pump-*", "lowercase"),
        ("=pump-*", "lowercase"),
        ("default=pump-*", "reserved"),
    ],
)
def test_bad_specs_say_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_asset_groups(spec)


def test_first_matching_group_wins_and_unmatched_devices_go_to_default() -> None:
    router = GroupRouter(parse_asset_groups("pumps=pump-*,valve-*; special=pump-9*; presses=press-??"))
    assert router.group_of("pump-01") == "pumps"
    assert router.group_of("pump-99") == "pumps"  # "special" comes later: never reached
    assert router.group_of("valve-a") == "pumps"
    assert router.group_of("press-07") == "presses"
    assert router.group_of("press-007") == DEFAULT_GROUP  # ?? is exactly two characters
    assert router.group_of("xpump-01") == DEFAULT_GROUP  # patterns match the whole id
    assert router.group_of("PUMP-01") == DEFAULT_GROUP  # case-sensitive, whatever the OS


def test_no_groups_routes_everything_to_default() -> None:
    assert GroupRouter(()).group_of("anything") == DEFAULT_GROUP


def test_routing_is_cached_per_device() -> None:
    router = GroupRouter(parse_asset_groups("pumps=pump-*"))
    assert router.group_of("pump-1") == "pumps"
    router._matchers.clear()  # a cached device no longer consults the patterns
    assert router.group_of("pump-1") == "pumps"
    assert router.group_of("pump-2") == DEFAULT_GROUP


# --- settings ---------------------------------------------------------------------------------


def test_settings_read_and_parse_the_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOORWATCH_ASSET_GROUPS", "pumps=pump-*; presses=press-*")
    settings = Settings()
    assert [g.name for g in settings.asset_group_list()] == ["pumps", "presses"]


def test_settings_default_to_no_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLOORWATCH_ASSET_GROUPS", raising=False)
    assert Settings().asset_group_list() == ()


def test_a_bad_group_spec_fails_at_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOORWATCH_ASSET_GROUPS", "pumps=pump-*; pumps=valve-*")
    with pytest.raises(ValidationError, match="asset_groups[\\s\\S]*defined twice"):
        Settings()


# --- each group's model store -------------------------------------------------------------------


def test_group_stores_live_under_groups(tmp_path: Path) -> None:
    assert ModelStore.for_group(tmp_path).root == tmp_path
    assert ModelStore.for_group(tmp_path, DEFAULT_GROUP).root == tmp_path
    pumps = ModelStore.for_group(tmp_path, "pumps")
    assert pumps.root == tmp_path / "groups" / "pumps"
    assert pumps.group == "pumps"
    with pytest.raises(ValueError, match="lowercase"):
        ModelStore.for_group(tmp_path, "../elsewhere")


def test_a_group_without_a_model_names_its_train_command(tmp_path: Path) -> None:
    with pytest.raises(ModelStoreError, match="asset group 'pumps'.*`floorwatch train --group pumps`"):
        ModelStore.for_group(tmp_path, "pumps").load()
    with pytest.raises(ModelStoreError, match="run `floorwatch train` first"):
        ModelStore.for_group(tmp_path).load()


def test_stored_groups_lists_group_folders(tmp_path: Path) -> None:
    assert stored_groups(tmp_path) == []
    for name in ("presses", "pumps"):
        (tmp_path / "groups" / name).mkdir(parents=True)
    assert stored_groups(tmp_path) == ["presses", "pumps"]
    assert ModelStore(tmp_path).versions() == []  # groups/ is not a version of the default model
