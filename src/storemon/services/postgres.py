"""The local PostgreSQL: a private cluster made with Debian's server binaries (the newest
``/usr/lib/postgresql/*/bin``), trust authentication, user and database ``storemon``.

Where the cluster lives: ``initdb`` and ``postgres`` refuse to run as root, so as root the
server runs as the system user ``postgres`` (or ``storemon``, created when neither exists),
and that user must reach its data folder. A state dir under ``/root`` or a ``mktemp -d``
folder (mode 700) is out of its reach, so as root the cluster lives in
``/var/lib/storemon/postgres/<hash of the state dir>/`` instead, owned by the server user;
the state file records the folder and ``services down --purge`` removes it. A non-root user
runs the server as themself, with the cluster in ``<state dir>/postgres/``. Either way no
folder's permissions are changed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import pwd
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from storemon.services.processes import (
    ServiceError,
    clean_env,
    pick_port,
    pid_alive,
    say,
    with_logs,
)
from storemon.services.state import DB_NAME, DB_USER, Paths, PostgresState, State, save_state
from storemon.waiting import poll

PREFERRED_POSTGRES_PORT = 15432
POSTGRES_START_TIMEOUT_S = 60.0
# Clusters of state dirs run by root (see the module's docstring).
ROOT_CLUSTERS_DIR = Path("/var/lib/storemon/postgres")

_POSTGRES_CONF = """
# --- storemon: a private cluster for development and tests (port and sockets on the
# --- command line of `pg_ctl start`, see storemon/services/postgres.py)
shared_buffers = 128MB
max_connections = 100
timezone = 'UTC'
log_timezone = 'UTC'
log_min_messages = warning
log_line_prefix = '%m [%p] '
"""


@dataclass(frozen=True)
class Cluster:
    """One cluster's folder: ``data/`` (PGDATA), ``run/`` (its Unix socket), its log."""

    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def log(self) -> Path:
        return self.root / "postgres.log"


def cluster_of(paths: Paths, record: PostgresState | None) -> Cluster:
    """The state dir's cluster: the recorded one, else one made before clusters were
    recorded (inside the state dir), else a new one where its server user can reach it."""
    if record is not None and record.cluster_dir:
        return Cluster(Path(record.cluster_dir))
    inside = Cluster(paths.legacy_pg_dir)
    if (inside.data / "PG_VERSION").exists() or os.geteuid() != 0:
        return inside
    digest = hashlib.sha256(str(paths.root).encode()).hexdigest()[:16]
    return Cluster(ROOT_CLUSTERS_DIR / digest)


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", path.parent.parent.name) or ["0"])


def postgres_bin_dir() -> Path | None:
    """The newest ``/usr/lib/postgresql/*/bin`` with ``initdb``, else ``initdb`` on PATH."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=_version_key)
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


def server_os_user() -> str:
    """The user the server runs as: "" (ourselves) unless root, who may not run postgres."""
    if os.geteuid() != 0:
        return ""
    for name in ("postgres", "storemon"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    say("postgres: creating system user 'storemon' (postgres refuses to run as root)")
    subprocess.run(
        ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
         "--shell", "/usr/sbin/nologin", "storemon"],
        check=True, capture_output=True,
    )  # fmt: skip
    return "storemon"


def _as_user(user: str, args: Sequence[str]) -> list[str]:
    return ["runuser", "-u", user, "--", *args] if user else list(args)


def _pg_run(
    user: str, args: Sequence[str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _as_user(user, args), capture_output=True, text=True, check=False, timeout=timeout,
        env=clean_env(), cwd="/",
    )  # fmt: skip


def _chown(path: Path, user: str) -> None:
    if user:
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid, follow_symlinks=False)


def _make_cluster_dir(paths: Paths, cluster: Cluster, user: str) -> None:
    """The cluster's folder, owned by the server user; its parents stay as they are, except
    ``ROOT_CLUSTERS_DIR``, made searchable so the server user can reach its own folder."""
    if cluster.root.parent == ROOT_CLUSTERS_DIR:
        ROOT_CLUSTERS_DIR.mkdir(parents=True, exist_ok=True)
        ROOT_CLUSTERS_DIR.chmod(0o755)
        ROOT_CLUSTERS_DIR.parent.chmod(0o755)
    cluster.root.mkdir(parents=True, exist_ok=True)
    for folder in (cluster.root, cluster.run):
        folder.mkdir(exist_ok=True)
        _chown(folder, user)
    # For whoever finds the folder: which state dir it belongs to.
    owner = cluster.root / "state-dir"
    owner.write_text(f"{paths.root}\n")
    _chown(owner, user)


def _init_cluster(paths: Paths, cluster: Cluster, bin_dir: Path, user: str) -> None:
    if (cluster.data / "PG_VERSION").exists():
        return
    _make_cluster_dir(paths, cluster, user)
    shutil.rmtree(cluster.data, ignore_errors=True)  # a half-made cluster from a failed init
    cluster.data.mkdir(mode=0o700)
    _chown(cluster.data, user)
    if user and _pg_run(user, ["test", "-w", str(cluster.data)]).returncode != 0:
        raise ServiceError(
            f"postgres: user {user!r} cannot write {cluster.data} (a parent folder is not "
            "searchable by it)"
        )
    say(f"postgres: initdb {cluster.data} (user {DB_USER}, trust auth)")
    result = _pg_run(user, [str(bin_dir / "initdb"), "-D", str(cluster.data), "-U", DB_USER,
                            "--auth=trust", "-E", "UTF8", "--locale=C", "--no-instructions"])  # fmt: skip
    if result.returncode != 0:
        shutil.rmtree(cluster.data, ignore_errors=True)
        raise ServiceError(f"postgres: initdb failed:\n{result.stdout}{result.stderr}")
    with (cluster.data / "postgresql.conf").open("a") as conf:
        conf.write(_POSTGRES_CONF)


def postmaster(cluster: Cluster) -> tuple[int, int] | None:
    """(pid, port) of the server running on the cluster, from ``postmaster.pid``."""
    try:
        lines = (cluster.data / "postmaster.pid").read_text().splitlines()
        pid, port = int(lines[0]), int(lines[3])
    except (OSError, ValueError, IndexError):
        return None
    return (pid, port) if pid_alive(pid, str(cluster.data)) else None


def _pg_ready(bin_dir: Path, port: int) -> bool:
    result = subprocess.run(
        [str(bin_dir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port), "-t", "2",
         "-U", DB_USER, "-d", "postgres"],
        check=False, env=clean_env(), capture_output=True,
    )  # fmt: skip
    return result.returncode == 0


def _wait_ready(cluster: Cluster, bin_dir: Path, port: int, timeout_s: float) -> None:
    poll(
        lambda: True if _pg_ready(bin_dir, port) else None,
        timeout_s=timeout_s,
        on_timeout=lambda: ServiceError(
            with_logs(f"postgres: not ready in {timeout_s:.0f} s", cluster.log)
        ),
        first_s=0.1,
        cap_s=0.5,
    )


def _ensure_database(bin_dir: Path, port: int) -> None:
    conn = ["-h", "127.0.0.1", "-p", str(port), "-U", DB_USER]
    query = f"SELECT 1 FROM pg_database WHERE datname = '{DB_NAME}'"
    found = subprocess.run(
        [str(bin_dir / "psql"), *conn, "-d", "postgres", "-XtAc", query],
        capture_output=True, text=True, check=False, env=clean_env(),
    )  # fmt: skip
    if found.returncode != 0:
        raise ServiceError(f"postgres: query failed: {found.stderr.strip()}")
    if found.stdout.strip() == "1":
        return
    created = subprocess.run(
        [str(bin_dir / "createdb"), *conn, "-E", "UTF8", DB_NAME],
        capture_output=True, text=True, check=False, env=clean_env(),
    )  # fmt: skip
    if created.returncode != 0 and "already exists" not in created.stderr:
        raise ServiceError(f"postgres: createdb failed: {created.stderr.strip()}")


def _socket_dir(cluster: Cluster) -> str:
    # A Unix socket path is limited to ~107 bytes; a deep checkout gets TCP only.
    return str(cluster.run) if len(str(cluster.run)) < 80 else ""


def _start(cluster: Cluster, bin_dir: Path, user: str, port: int, timeout_s: float) -> None:
    cluster.run.mkdir(exist_ok=True)
    _chown(cluster.run, user)
    cluster.log.touch()
    _chown(cluster.log, user)
    options = f"-p {port} -k {shlex.quote(_socket_dir(cluster))} -c listen_addresses=127.0.0.1"
    say(f"postgres: starting {bin_dir.parent.name} on 127.0.0.1:{port}")
    result = _pg_run(
        user,
        [str(bin_dir / "pg_ctl"), "-D", str(cluster.data), "-l", str(cluster.log), "-w",
         "-t", str(int(timeout_s)), "-o", options, "start"],
        timeout=timeout_s + 30,
    )  # fmt: skip
    if result.returncode != 0:
        raise ServiceError(
            with_logs(f"postgres: pg_ctl start failed: {result.stdout}{result.stderr}", cluster.log)
        )


def ensure_postgres(paths: Paths, state: State, taken: set[int], timeout_s: float) -> bool:
    """Start PostgreSQL unless it runs; returns whether it was started now. Updates ``state``."""
    prev = state.postgres
    began = time.monotonic()
    cluster = cluster_of(paths, prev)
    running = postmaster(cluster)
    if running is not None and prev is not None:
        pid, port = running
        prev_bin = Path(prev.bin_dir)
        _wait_ready(cluster, prev_bin, port, timeout_s)
        _ensure_database(prev_bin, port)
        state.postgres = dataclasses.replace(
            prev, port=port, pid=pid, cluster_dir=str(cluster.root)
        )
        save_state(paths, state)
        say(f"postgres: {state.postgres.label} already running on port {port} (pid {pid})")
        return False
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        raise ServiceError(
            "postgres: no server binaries (initdb); install them: apt-get install -y postgresql"
        )
    if running is not None:  # running, but our state file was lost: adopt it
        say("postgres: found a server on our data dir without a state record; reusing it")
    user = server_os_user()
    _init_cluster(paths, cluster, bin_dir, user)
    if running is None:
        if prev is not None:
            taken.discard(prev.port)
        port = pick_port([prev.port if prev else None, PREFERRED_POSTGRES_PORT], taken)
        _start(cluster, bin_dir, user, port, timeout_s)
    else:
        port = running[1]
    _wait_ready(cluster, bin_dir, port, timeout_s)
    _ensure_database(bin_dir, port)
    now = postmaster(cluster)
    state.postgres = PostgresState(
        port, str(bin_dir), user, now[0] if now else None, str(cluster.root)
    )
    save_state(paths, state)
    if running is None:
        say(f"postgres: ready on port {port} in {time.monotonic() - began:.1f} s")
    return running is None


def stop_postgres(paths: Paths, record: PostgresState) -> None:
    cluster = cluster_of(paths, record)
    running = postmaster(cluster)
    if running is None:
        record.pid = None
        return
    pg_ctl = str(Path(record.bin_dir) / "pg_ctl")
    data = str(cluster.data)
    result = _pg_run(record.os_user, [pg_ctl, "-D", data, "-m", "fast", "-w", "-t", "60", "stop"])
    if result.returncode != 0:
        say(f"postgres: fast stop failed ({result.stderr.strip()}); immediate stop")
        _pg_run(record.os_user, [pg_ctl, "-D", data, "-m", "immediate", "stop"])
    say(f"postgres: stopped (pid {running[0]})")
    record.pid = None


def stop_unrecorded(paths: Paths) -> None:
    """Stop a server running on the state dir's cluster although no state record names it."""
    found = postmaster(cluster_of(paths, None))
    if found is None:
        return
    say(f"postgres: server pid {found[0]} runs without a state record; stopping it")
    record = PostgresState(found[1], str(postgres_bin_dir()), server_os_user())
    stop_postgres(paths, record)


def purge_cluster(paths: Paths, record: PostgresState | None) -> None:
    """Delete the cluster's folder (the server must be stopped)."""
    cluster = cluster_of(paths, record)
    shutil.rmtree(cluster.root, ignore_errors=True)
    shutil.rmtree(paths.legacy_pg_dir, ignore_errors=True)
