"""The settings object: every variable read, secrets never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from storemon import settings as settings_module
from storemon.settings import Settings, usable_cores


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
    # The batching stage in a child process where the worker has a second core.
    assert settings.batcher_process is (usable_cores() >= 2)


@pytest.mark.parametrize(("cores", "expected"), [(1, False), (2, True), (16, True)])
def test_the_batching_process_is_on_by_default_from_two_cores(
    monkeypatch: pytest.MonkeyPatch, cores: int, expected: bool
) -> None:
    monkeypatch.setattr(settings_module, "usable_cores", lambda: cores)
    assert Settings.from_env({}).batcher_process is expected
    assert Settings().batcher_process is expected
    # The variable wins either way.
    assert Settings.from_env({"STOREMON_BATCHER_PROCESS": "0"}).batcher_process is False
    assert Settings.from_env({"STOREMON_BATCHER_PROCESS": "1"}).batcher_process is True


def test_the_batching_process_is_switched_by_its_variable() -> None:
    assert Settings.from_env({"STOREMON_BATCHER_PROCESS": "1"}).batcher_process is True
    assert Settings.from_env({"STOREMON_BATCHER_PROCESS": "off"}).batcher_process is False
    assert Settings.from_env({"STOREMON_BATCHER_PROCESS": "0"}).batcher_process is False


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


def test_the_agent_batch_and_its_read_ahead_are_bounded_in_polls() -> None:
    settings = Settings.from_env({})
    assert settings.batch_size * settings.worker_batch_messages <= settings.worker_batch_polls
    for batch_size, polls in ((5000, 80_000), (625, 80_000), (250, 40_000), (7, 100)):
        chosen = Settings.from_env(
            {"STOREMON_BATCH_SIZE": str(batch_size), "STOREMON_WORKER_BATCH_POLLS": str(polls)}
        )
        # As many full messages as fit the polls; the read-ahead is two agent batches.
        assert chosen.worker_batch_messages == polls // batch_size
        assert chosen.read_ahead_messages == max(8, 2 * (polls // batch_size))
        assert chosen.read_ahead_messages * batch_size <= max(2 * polls, 8 * batch_size)


def test_smaller_messages_mean_more_of_them_per_agent_batch() -> None:
    packed = Settings.from_env({"STOREMON_BATCH_SIZE": "5000"})
    assert packed.worker_batch_messages == 48
    assert Settings.from_env({}).worker_batch_messages == 384


def test_a_message_larger_than_the_agent_batch_is_refused() -> None:
    with pytest.raises(ValueError, match="STOREMON_WORKER_BATCH_POLLS"):
        Settings.from_env({"STOREMON_BATCH_SIZE": "5000", "STOREMON_WORKER_BATCH_POLLS": "4999"})
    with pytest.raises(ValueError, match="STOREMON_BATCH_SIZE"):
        Settings.from_env({"STOREMON_BATCH_SIZE": "0"})


def test_the_old_count_of_messages_is_refused_rather_than_ignored() -> None:
    with pytest.raises(ValueError, match="STOREMON_WORKER_BATCH_POLLS"):
        Settings.from_env({"STOREMON_WORKER_BATCH_MESSAGES": "16"})


def test_the_recovery_stall_is_read_from_its_variable() -> None:
    assert Settings.from_env({}).recovery_stall_s == 30.0
    assert Settings.from_env({"STOREMON_RECOVERY_STALL_S": "3"}).recovery_stall_s == 3.0
