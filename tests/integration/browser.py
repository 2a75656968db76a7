"""Real headless Chromium (Debian's ``chromium``) driven over the DevTools protocol with
aiohttp's websocket client: open a page with extra request headers, wait for a condition,
read the DOM, take a screenshot. No browser-automation package is needed."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

LISTENING = re.compile(rb"DevTools listening on (ws://[^\s]+)")


def chromium_binary() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


class Page:
    def __init__(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        self._socket = socket
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self._socket:
            data = message.json()
            if "id" in data and data["id"] in self._waiting:
                future = self._waiting.pop(data["id"])
                if "error" in data:
                    future.set_exception(RuntimeError(f"CDP error: {data['error']}"))
                else:
                    future.set_result(data.get("result", {}))
            elif "method" in data:
                await self._events.put(data)

    async def send(self, method: str, **params: Any) -> Any:
        command_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[command_id] = future
        await self._socket.send_json({"id": command_id, "method": method, "params": params})
        async with asyncio.timeout(30):
            return await future

    async def wait_event(self, method: str, timeout_s: float = 30.0) -> dict[str, Any]:
        async with asyncio.timeout(timeout_s):
            while True:
                event = await self._events.get()
                if event["method"] == method:
                    return event

    async def open(self, url: str, headers: dict[str, str] | None = None) -> None:
        await self.send("Page.enable")
        await self.send("Network.enable")
        await self.send("Network.setExtraHTTPHeaders", headers=headers or {})
        while not self._events.empty():
            self._events.get_nowait()
        await self.send("Page.navigate", url=url)
        await self.wait_event("Page.loadEventFired")

    async def evaluate(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout_s: float = 20.0) -> Any:
        async with asyncio.timeout(timeout_s):
            while True:
                value = await self.evaluate(expression)
                if value:
                    return value
                await asyncio.sleep(0.1)

    async def screenshot(self, path: Path) -> Path:
        shot = await self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        data = base64.b64decode(shot["data"])
        await asyncio.to_thread(_write, path, data)
        return path

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


@contextlib.asynccontextmanager
async def headless_chromium(
    profile: Path, width: int = 1280, height: int = 900
) -> AsyncIterator[Page]:
    binary = chromium_binary()
    if binary is None:
        raise RuntimeError("no chromium found (scripts/setup installs Debian's chromium)")
    process = await asyncio.create_subprocess_exec(
        binary,
        "--headless=new",
        "--no-sandbox",  # CI runs as root, where Chromium's sandbox cannot start
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--hide-scrollbars",
        f"--window-size={width},{height}",
        f"--user-data-dir={profile}",
        "--remote-debugging-port=0",
        "--remote-debugging-address=127.0.0.1",
        "about:blank",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stderr is not None
        seen = b""
        async with asyncio.timeout(60):
            while (match := LISTENING.search(seen)) is None:
                line = await process.stderr.readline()
                if not line:
                    raise RuntimeError(f"chromium exited: {seen.decode(errors='replace')}")
                seen += line
        port = int(match.group(1).decode().split(":")[2].split("/")[0])
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/json/list") as response:
                targets = await response.json()
            page_target = next(t for t in targets if t.get("type") == "page")
            async with session.ws_connect(
                page_target["webSocketDebuggerUrl"], max_msg_size=64 * 1024 * 1024
            ) as socket:
                page = Page(socket)
                try:
                    yield page
                finally:
                    await page.close()
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()
