"""Typed slots of the API's ``web.Application`` that more than one module reads."""

from __future__ import annotations

from typing import TYPE_CHECKING

import asyncpg
from aiohttp import web

from storemon.settings import Settings

if TYPE_CHECKING:
    from storemon.web.app import RequestPublisher

SETTINGS = web.AppKey("settings", Settings)
POOL = web.AppKey("pool", asyncpg.Pool)
PUBLISHER: web.AppKey[RequestPublisher] = web.AppKey("publisher")
