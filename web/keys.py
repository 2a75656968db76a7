"""Typed slots of the API's ``web.Application`` that more than one module reads."""

from __future__ import annotations

import asyncpg
from aiohttp import web

from storemon.settings import Settings

SETTINGS = web.AppKey("settings", Settings)
POOL = web.AppKey("pool", asyncpg.Pool)
