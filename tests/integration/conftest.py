"""Fixtures of the tests that run the whole pipeline."""

from __future__ import annotations

import re
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
    # The name becomes part of topic and database names: a parametrized test's brackets may not.
    created = await Pipeline.create(
        service_settings, re.sub(r"[^A-Za-z0-9]", "-", request.node.name[:20]), tmp_path
    )
    try:
        yield created
    finally:
        await created.close()
