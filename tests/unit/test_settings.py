"""One frozen settings model: explicit > env > defaults, secrets masked."""

from __future__ import annotations

import dataclasses

import pytest

from streams.settings import Settings, env_var

pytestmark = pytest.mark.unit


def test_environment_sets_fields_and_explicit_arguments_win():
    environ = {
        "MLSENTRY_BOOTSTRAP_SERVERS": "kafka-1:9092,kafka-2:9092",
        "MLSENTRY_BATCH_SIZE": "500",
        "MLSENTRY_CONTAINMENT_KILL_SWITCH": "true",
        "MLSENTRY_DETECTORS": "score_drift, label_shift",
    }
    settings = Settings.load(environ, batch_size=64)
    assert settings.bootstrap_servers == "kafka-1:9092,kafka-2:9092"
    assert settings.batch_size == 64
    assert settings.containment_kill_switch is True
    assert settings.detectors == ("score_drift", "label_shift")


def test_settings_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings().batch_size = 3  # type: ignore[misc]


def test_secrets_are_masked_when_printed():
    settings = Settings.load({}, clickhouse_password="hunter2", clickhouse_dsn="http://analyst:s3cret@ch:8123")
    shown = settings.describe()
    assert "hunter2" not in str(shown) and "s3cret" not in str(shown)
    assert shown["clickhouse_password"] == "********"
    assert shown["clickhouse_dsn"] == "http://analyst:********@ch:8123"


def test_every_field_has_an_environment_variable():
    assert env_var("clickhouse_dsn") == "MLSENTRY_CLICKHOUSE_DSN"


@pytest.mark.parametrize("environ", [{"MLSENTRY_CONTAINMENT_MODE": "yolo"}, {"MLSENTRY_BATCH_SIZE": "0"},
                                     {"MLSENTRY_CONTAINMENT_KILL_SWITCH": "maybe"}])
def test_invalid_values_fail_loudly(environ):
    with pytest.raises(ValueError):
        Settings.load(environ)


def test_default_clickhouse_is_embedded_under_the_data_dir(tmp_path):
    settings = Settings.load({}, data_dir=str(tmp_path))
    assert settings.resolved_clickhouse_dsn == f"chdb://{tmp_path}/clickhouse"


def test_to_environ_is_read_back_unchanged() -> None:
    from streams.settings import Settings

    settings = Settings.load(environ={}, batch_size=77, detectors=("score_drift", "extraction"), containment_kill_switch=True,
                             session_timeout_s=3.5, group_instance_id="pod-1", snapshot_key="secret")
    assert Settings.load(environ=settings.to_environ()) == settings
    assert Settings.load(environ=Settings().to_environ()) == Settings()
