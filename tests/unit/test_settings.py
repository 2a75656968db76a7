"""The settings object: every variable read, secrets never shown."""

from __future__ import annotations

from pathlib import Path

from storemon.settings import Settings


def test_every_variable_is_read() -> None:
    settings = Settings.from_env(
        {
            "STOREMON_STATE_DIR": "/srv/storemon",
            "STOREMON_KAFKA_BOOTSTRAP": "kafka:9092",
            "STOREMON_DATABASE_URL": "postgresql://app:pw@db:5432/storemon",
            "STOREMON_PARTITIONS": "8",
            "STOREMON_API_PORT": "9000",
            "STOREMON_API_TOKEN": "t0ken",
            "STOREMON_BATCH_SIZE": "123",
            "STOREMON_MAX_OPEN_REPORTS": "7",
            "STOREMON_REPORT_TIMEOUT_S": "2.5",
        }
    )
    assert settings.state_dir == Path("/srv/storemon")
    assert settings.reports_dir == Path("/srv/storemon/reports")
    assert settings.kafka_bootstrap == "kafka:9092"
    assert settings.partitions == 8
    assert settings.api_port == 9000
    assert settings.batch_size == 123
    assert settings.max_open_reports == 7
    assert settings.report_timeout_s == 2.5
    assert settings.worker_web_host == "127.0.0.1"  # loopback unless configured otherwise


def test_defaults_without_environment() -> None:
    settings = Settings.from_env({})
    assert settings == Settings()
    assert settings.kafka_bootstrap == ""  # start local services
    assert settings.api_token == ""
    assert settings.batcher_process is False  # the batching stage on the worker's loop


def test_the_batching_process_is_switched_on_by_its_variable() -> None:
    assert Settings.from_env({"STOREMON_BATCHER_PROCESS": "1"}).batcher_process is True
    assert Settings.from_env({"STOREMON_BATCHER_PROCESS": "off"}).batcher_process is False


def test_secrets_never_appear_in_repr_or_str() -> None:
    settings = Settings.from_env(
        {
            "STOREMON_DATABASE_URL": "postgresql://app:hunter2-pw@db:5432/storemon",
            "STOREMON_API_TOKEN": "very-secret-token",
        }
    )
    for shown in (repr(settings), str(settings), f"{settings}", f"{settings!r}"):
        assert "hunter2-pw" not in shown
        assert "very-secret-token" not in shown
        assert "postgresql://app:***@db:5432/storemon" in shown
        assert "api_token='***'" in shown
