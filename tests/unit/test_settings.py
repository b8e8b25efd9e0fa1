from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from adapters.settings import Settings, env_documentation


def test_defaults_when_nothing_is_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings.from_env({})
    assert settings.database_url is None
    assert settings.kafka_bootstrap is None
    assert settings.data_dir == tmp_path / ".oms-data"
    assert settings.postgres_dir == tmp_path / ".oms-data" / "postgres"
    assert settings.kafka_dir == tmp_path / ".oms-data" / "tansu"
    assert settings.topic_partitions == 4
    assert settings.consumer_session_timeout_ms == 6000
    assert settings.fetch_max_wait_ms == 20
    assert settings.api_host == "127.0.0.1"
    assert settings.api_port == 8080
    assert settings.api_workers == 0 and settings.api_processes == (os.cpu_count() or 1)
    assert settings.api_threads == 8
    assert settings.metrics_public is False
    assert settings.log_level == "INFO"


def test_every_variable_is_read(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "OMS_DATABASE_URL": "postgresql://oms:secret@db.internal:5433/oms",
            "OMS_KAFKA_BOOTSTRAP": " k1:9092 , k2:9093 ",
            "OMS_DATA_DIR": str(tmp_path / "state"),
            "OMS_TOPIC_PARTITIONS": "12",
            "OMS_CONSUMER_SESSION_TIMEOUT_MS": "10000",
            "OMS_FETCH_MAX_WAIT_MS": "50",
            "OMS_API_HOST": "0.0.0.0",
            "OMS_API_PORT": "9000",
            "OMS_API_WORKERS": "3",
            "OMS_API_THREADS": "12",
            "OMS_METRICS_PUBLIC": "true",
            "OMS_LOG_LEVEL": "debug",
            "UNRELATED": "ignored",
        }
    )
    assert settings.database_url == "postgresql://oms:secret@db.internal:5433/oms"
    assert settings.kafka_bootstrap == "k1:9092,k2:9093"
    assert settings.data_dir == tmp_path / "state"
    assert settings.topic_partitions == 12
    assert settings.consumer_session_timeout_ms == 10000
    assert settings.fetch_max_wait_ms == 50
    assert settings.api_host == "0.0.0.0"
    assert settings.api_port == 9000
    assert settings.api_processes == 3
    assert settings.api_threads == 12
    assert settings.metrics_public is True
    assert settings.log_level == "DEBUG"


def test_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMS_TOPIC_PARTITIONS", "7")
    assert Settings.from_env().topic_partitions == 7


def test_empty_variables_count_as_unset() -> None:
    settings = Settings.from_env({"OMS_DATABASE_URL": "", "OMS_API_PORT": "  "})
    assert settings.database_url is None
    assert settings.api_port == 8080


def test_relative_data_dir_is_made_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert Settings.from_env({"OMS_DATA_DIR": "var/oms"}).data_dir == tmp_path / "var" / "oms"


def test_a_relative_policy_file_is_made_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert Settings.from_env({"OMS_POLICY_FILE": "policy.toml"}).policy_file == (
        tmp_path / "policy.toml"
    )
    assert Settings.from_env({}).policy_file is None


def test_warn_is_accepted_as_warning() -> None:
    assert Settings.from_env({"OMS_LOG_LEVEL": "warn"}).log_level == "WARNING"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("OMS_DATABASE_URL", "mysql://root@localhost/oms"),
        ("OMS_DATABASE_URL", "not a url"),
        ("OMS_KAFKA_BOOTSTRAP", "localhost"),
        ("OMS_KAFKA_BOOTSTRAP", "localhost:port"),
        ("OMS_KAFKA_BOOTSTRAP", "k1:9092,:9093"),
        ("OMS_KAFKA_BOOTSTRAP", "k1:70000"),
        ("OMS_TOPIC_PARTITIONS", "four"),
        ("OMS_TOPIC_PARTITIONS", "0"),
        ("OMS_CONSUMER_SESSION_TIMEOUT_MS", "-1"),
        ("OMS_FETCH_MAX_WAIT_MS", "1.5"),
        ("OMS_API_PORT", "65536"),
        ("OMS_LOG_LEVEL", "loud"),
    ],
)
def test_invalid_values_name_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ValueError, match=variable) as caught:
        Settings.from_env({variable: value})
    assert repr(value) in str(caught.value)


def test_every_invalid_variable_is_reported_at_once() -> None:
    with pytest.raises(ValueError) as caught:
        Settings.from_env({"OMS_API_PORT": "x", "OMS_TOPIC_PARTITIONS": "y"})
    assert "OMS_API_PORT" in str(caught.value)
    assert "OMS_TOPIC_PARTITIONS" in str(caught.value)


def test_unknown_oms_variables_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    Settings.from_env({"OMS_DATABSE_URL": "postgresql://x@h/db"})
    assert "OMS_DATABSE_URL" in caplog.text


def test_settings_are_frozen() -> None:
    settings = Settings.from_env({})
    with pytest.raises(ValidationError):
        settings.api_port = 1  # type: ignore[misc]


def test_documentation_lists_every_field_with_its_default() -> None:
    rows = env_documentation()
    assert [name for name, _, _ in rows] == [
        "OMS_" + field.upper() for field in Settings.model_fields
    ]
    assert all(description for _, _, description in rows)
    documented = {name: default for name, default, _ in rows}
    assert documented["OMS_TOPIC_PARTITIONS"] == "4"
    assert documented["OMS_DATA_DIR"] == ".oms-data"
    assert documented["OMS_DATABASE_URL"] == "(unset)"
