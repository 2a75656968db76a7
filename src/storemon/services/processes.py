"""Ports, child processes and log tails: the operating-system helpers of the launcher."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import shlex
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

from storemon.waiting import poll

# How far above a preferred port to look for a free one before asking the kernel for any.
PORT_SCAN_SPAN = 40

_T = TypeVar("_T")
# Popen objects of servers started by this process, so `down` can reap them (no zombies).
CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class ServiceError(RuntimeError):
    """A service could not be started, reached or stopped; the message carries a log tail."""


def say(message: str) -> None:
    """Progress of the launcher, on stderr (stdout is for results)."""
    print(f"[services] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------- ports


def tcp_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Servers set SO_REUSEADDR, so a port in TIME_WAIT is usable by them: mirror that.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return not tcp_open("127.0.0.1", port, timeout=0.2)


def pick_port(preferred: Sequence[int | None], taken: set[int]) -> int:
    """The first free port of ``preferred``, else one just above the last preferred, else any."""
    candidates = [p for p in preferred if p]
    if candidates:
        base = candidates[-1]
        candidates += range(base + 1, base + PORT_SCAN_SPAN)
    for port in candidates:
        if port not in taken and 1024 < port < 65536 and port_free(port):
            taken.add(port)
            return port
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in taken:
            taken.add(port)
            return port
    raise ServiceError("no free TCP port on 127.0.0.1")


def split_hostport(address: str) -> tuple[str, int]:
    first = address.split(",")[0].strip()
    first = first.split("://", 1)[-1]
    host, _, port = first.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


# ----------------------------------------------------------------------------- processes


def reap(pid: int) -> None:
    child = CHILDREN.pop(pid, None)
    if child is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=1)
        return
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def pid_alive(pid: int | None, marker: str) -> bool:
    """Whether ``pid`` runs with ``marker`` as one of its arguments (guards against pid reuse)."""
    if not pid:
        return False
    proc = Path(f"/proc/{pid}")
    if not Path("/proc/self").exists():  # not Linux: trust the pid
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    try:
        stat = (proc / "stat").read_text()
        args = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return False
    if stat.rsplit(")", 1)[-1].split()[0] in {"Z", "X"}:
        reap(pid)
        return False
    return marker in args


def wait_gone(pid: int, marker: str, timeout_s: float) -> bool:
    try:
        return poll(
            lambda: True if not pid_alive(pid, marker) else None,
            timeout_s=timeout_s,
            on_timeout=TimeoutError,
            first_s=0.1,
            cap_s=0.5,
        )
    except TimeoutError:
        return False


def send_signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(pid) == pid:  # started in its own session: signal the whole group
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


def kill(pid: int, marker: str, timeout_s: float, *, term: bool = True) -> None:
    """SIGTERM, wait up to ``timeout_s``, then SIGKILL."""
    if not pid_alive(pid, marker):
        return
    if term:
        send_signal(pid, signal.SIGTERM)
        if wait_gone(pid, marker, timeout_s):
            reap(pid)
            return
        say(f"pid {pid} still running after {timeout_s:.0f} s: SIGKILL")
    send_signal(pid, signal.SIGKILL)
    wait_gone(pid, marker, 10.0)
    reap(pid)


def spawn_logged(cmd: list[str], log: Path, cwd: Path) -> subprocess.Popen[bytes]:
    """Start ``cmd`` in its own session, its output appended to ``log`` after the command line."""
    with log.open("ab") as out:
        out.write(f"\n$ {shlex.join(cmd)}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            cwd=cwd, start_new_session=True,
        )  # fmt: skip
    CHILDREN[proc.pid] = proc
    return proc


def run_async(factory: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    """Run a coroutine on a private loop in a worker thread (works inside a running loop too)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()


def clean_env() -> dict[str, str]:
    """The environment minus libpq's PG* variables, which would redirect our client tools."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


# ---------------------------------------------------------------------------------- logs


def tail(path: Path, lines: int = 40) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            text = handle.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def with_logs(message: str, *logs: Path) -> str:
    parts = [message]
    for path in logs:
        last = tail(path)
        if last:
            parts.append(f"--- last lines of {path} ---\n{last}")
        else:
            parts.append(f"--- {path}: empty or missing ---")
    return "\n".join(parts)
