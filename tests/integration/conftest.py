"""Fixtures of the tests that run the whole pipeline."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from storemon.settings import Settings

from .pipeline import Pipeline


@pytest.fixture
async def pipeline(
    service_settings: Settings, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Pipeline]:
    """A fresh database, topic prefix and worker state for this test (worker not started)."""
    created = await Pipeline.create(
        service_settings, request.node.name[:20].replace("_", "-"), tmp_path
    )
    try:
        yield created
    finally:
        await created.close()
