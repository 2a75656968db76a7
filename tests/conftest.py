"""Shared fixtures.

Tests marked ``@pytest.mark.services`` get a real Kafka broker and PostgreSQL: the session
starts them once (``storemon.services.ensure_up``) in their own state dir, ``.state/test``, so a
developer's ``storemon services up`` under ``.state`` is left alone, and stops and purges them
at the end of the session only if it started them itself. With ``STOREMON_KAFKA_BOOTSTRAP`` /
``STOREMON_DATABASE_URL`` set, those servers are used and nothing is started.

Fixtures:

* ``service_endpoints`` (session): :class:`storemon.services.ServiceEndpoints`.
* ``service_settings`` (session): ``Settings.from_env()`` pointed at those endpoints, with the
  test state dir; what integration tests should build their clients and apps from.
* ``services_base_settings`` (session): the same settings before the endpoints are filled in
  (what ``ensure_up`` was given).

Run without the services: ``pytest -m "not services"``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from storemon import services
from storemon.services import ServiceEndpoints
from storemon.settings import Settings

REPO_ROOT = Path(__file__).resolve().parent.parent
TEST_STATE_DIR = REPO_ROOT / ".state" / "test"


@pytest.fixture(scope="session")
def services_base_settings() -> Settings:
    base = Settings.from_env()
    return dataclasses.replace(
        base, state_dir=TEST_STATE_DIR, reports_dir=TEST_STATE_DIR / "reports"
    )


@pytest.fixture(scope="session")
def service_endpoints(services_base_settings: Settings) -> Iterator[ServiceEndpoints]:
    endpoints = services.ensure_up(services_base_settings)
    try:
        yield endpoints
    finally:
        if endpoints.started_any:
            services.down(
                services_base_settings,
                purge=True,
                kafka=endpoints.started_kafka,
                postgres=endpoints.started_postgres,
            )


@pytest.fixture(scope="session")
def service_settings(
    services_base_settings: Settings, service_endpoints: ServiceEndpoints
) -> Settings:
    return service_endpoints.apply_to(services_base_settings)


@pytest.fixture(autouse=True)
def _services_for_marked_tests(request: pytest.FixtureRequest) -> None:
    """Start the services before the first test marked ``services`` (and only then)."""
    if request.node.get_closest_marker("services") is not None:
        request.getfixturevalue("service_endpoints")
