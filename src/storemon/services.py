"""Local Kafka and PostgreSQL for development and tests: ``storemon services up|down|status``.

Everything lives under ``settings.state_dir`` (default ``.state/``)::

    services.json          backends, ports and pids of what was started (see ``_State``)
    kafka/server.properties, kafka/log4j2.properties, kafka/data/   (JVM broker)
    kafka/noida/           (data of the noida-db fallback)
    postgres/data/         private cluster (initdb), postgres/run/ its Unix socket
    logs/kafka.log         broker log (log4j2), logs/kafka.stdout.log JVM stdout/stderr,
    logs/noida-db.log, logs/postgres.log

**Kafka** is real Apache Kafka in KRaft mode (one node, broker and controller), run straight from
its jars: ``services/kafka/pom.xml`` names them and Maven copies them once into
``$XDG_CACHE_HOME/storemon/kafka-<version>/libs`` (default ``~/.cache/storemon/...``). That cache
is outside the state dir on purpose: it survives ``services down --purge``, is shared by every
state dir (the test suite uses ``.state/test``) and by every checkout on the machine. It is
re-fetched only when the POM changes. Without ``java`` (or without ``mvn`` and no cache yet) the
pip package ``noida-db`` serves the Kafka protocol instead.

**PostgreSQL** is a private cluster made with Debian's server binaries (the newest
``/usr/lib/postgresql/*/bin``), trust authentication, user and database ``storemon``. As root it
runs as the system user ``postgres`` (or ``storemon``, created when neither exists), since
``initdb`` and ``postgres`` refuse to run as root.

``STOREMON_KAFKA_BOOTSTRAP`` / ``STOREMON_DATABASE_URL`` (non-empty ``settings.kafka_bootstrap``
/ ``settings.database_url``) mean: use that server, start none.

Python API: :func:`ensure_up`, :func:`down`, :func:`status`, :func:`resolve_endpoints`,
:func:`fetch_kafka_jars`. Each is safe to call from inside a running event loop (the
Kafka readiness probe runs its own loop in a worker thread), and each holds a file lock on the
state dir, so two processes starting the same state dir do not race.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import concurrent.futures
import contextlib
import dataclasses
import fcntl
import functools
import hashlib
import json
import logging
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from storemon.settings import Settings

DB_NAME = "storemon"
DB_USER = "storemon"
PREFERRED_KAFKA_PORT = 19092
PREFERRED_CONTROLLER_PORT = 19093
PREFERRED_POSTGRES_PORT = 15432
# How far above a preferred port to look for a free one before asking the kernel for any.
PORT_SCAN_SPAN = 40

KAFKA_START_TIMEOUT_S = 120.0
POSTGRES_START_TIMEOUT_S = 60.0
KAFKA_STOP_TIMEOUT_S = 30.0
NOIDA_STOP_TIMEOUT_S = 10.0
JVM_OPTIONS = (
    "-Xms128m",
    "-Xmx512m",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-Djava.awt.headless=true",
)
KAFKA_BACKEND_JVM = "kafka"
KAFKA_BACKEND_NOIDA = "noida-db"
EXTERNAL = "external"
KafkaBackendChoice = Literal["auto", "kafka", "noida-db"]

_log = logging.getLogger(__name__)
_T = TypeVar("_T")
# Popen objects of brokers started by this process, so `down` can reap them (no zombies).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class ServiceError(RuntimeError):
    """A service could not be started, reached or stopped; the message carries a log tail."""


# --------------------------------------------------------------------------------------------
# Public data types


@dataclass(frozen=True)
class ServiceEndpoints:
    """Where the services answer, and which of them this call started."""

    kafka_bootstrap: str  # "127.0.0.1:19092"
    database_url: str  # "postgresql://storemon@127.0.0.1:15432/storemon"
    kafka_backend: str  # "kafka-4.1.1", "noida-db" or "external"
    postgres_backend: str  # "postgresql-15" or "external"
    started_kafka: bool = False
    started_postgres: bool = False

    @property
    def started_any(self) -> bool:
        return self.started_kafka or self.started_postgres

    def apply_to(self, settings: Settings) -> Settings:
        """A copy of ``settings`` that points at these endpoints."""
        return dataclasses.replace(
            settings, kafka_bootstrap=self.kafka_bootstrap, database_url=self.database_url
        )


@dataclass(frozen=True)
class ServiceStatus:
    name: str  # "kafka" or "postgres"
    backend: str  # as in ServiceEndpoints, or "none" when never started here
    running: bool
    address: str  # bootstrap servers or database URL; "" when never started
    pid: int | None
    log_files: tuple[Path, ...]


@dataclass(frozen=True)
class ServicesStatus:
    state_dir: Path
    kafka: ServiceStatus
    postgres: ServiceStatus

    @property
    def all_running(self) -> bool:
        return self.kafka.running and self.postgres.running


# --------------------------------------------------------------------------------------------
# Paths and the state file


@dataclass(frozen=True)
class _Paths:
    root: Path

    @classmethod
    def of(cls, settings: Settings) -> _Paths:
        return cls(settings.state_dir.expanduser().resolve())

    @property
    def state_file(self) -> Path:
        return self.root / "services.json"

    @property
    def lock_file(self) -> Path:
        return self.root / ".services.lock"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def kafka_dir(self) -> Path:
        return self.root / "kafka"

    @property
    def kafka_data(self) -> Path:
        return self.kafka_dir / "data"

    @property
    def kafka_props(self) -> Path:
        return self.kafka_dir / "server.properties"

    @property
    def kafka_log4j(self) -> Path:
        return self.kafka_dir / "log4j2.properties"

    @property
    def kafka_log(self) -> Path:
        return self.logs / "kafka.log"

    @property
    def kafka_stdout(self) -> Path:
        return self.logs / "kafka.stdout.log"

    @property
    def noida_data(self) -> Path:
        return self.kafka_dir / "noida"

    @property
    def noida_log(self) -> Path:
        return self.logs / "noida-db.log"

    @property
    def pg_dir(self) -> Path:
        return self.root / "postgres"

    @property
    def pg_data(self) -> Path:
        return self.pg_dir / "data"

    @property
    def pg_run(self) -> Path:
        return self.pg_dir / "run"

    @property
    def pg_log(self) -> Path:
        return self.logs / "postgres.log"


@dataclass
class _KafkaState:
    backend: str  # KAFKA_BACKEND_JVM or KAFKA_BACKEND_NOIDA
    port: int
    controller_port: int = 0
    pid: int | None = None
    version: str = ""
    cluster_id: str = ""

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def label(self) -> str:
        return f"kafka-{self.version}" if self.backend == KAFKA_BACKEND_JVM else self.backend


@dataclass
class _PostgresState:
    port: int
    bin_dir: str
    os_user: str = ""  # the user the server runs as; "" means the current user
    pid: int | None = None

    @property
    def url(self) -> str:
        return f"postgresql://{DB_USER}@127.0.0.1:{self.port}/{DB_NAME}"

    @property
    def label(self) -> str:
        return f"postgresql-{Path(self.bin_dir).parent.name}"


@dataclass
class _State:
    kafka: _KafkaState | None = None
    postgres: _PostgresState | None = None


def _from_dict(cls: type[_T], raw: object) -> _T | None:
    if not isinstance(raw, dict):
        return None
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    try:
        return cls(**{k: v for k, v in raw.items() if k in names})
    except TypeError:
        return None


def _load_state(paths: _Paths) -> _State:
    try:
        raw = json.loads(paths.state_file.read_text())
    except (OSError, ValueError):
        return _State()
    if not isinstance(raw, dict):
        return _State()
    return _State(
        kafka=_from_dict(_KafkaState, raw.get("kafka")),
        postgres=_from_dict(_PostgresState, raw.get("postgres")),
    )


def _save_state(paths: _Paths, state: _State) -> None:
    paths.root.mkdir(parents=True, exist_ok=True)
    data = {
        "kafka": dataclasses.asdict(state.kafka) if state.kafka else None,
        "postgres": dataclasses.asdict(state.postgres) if state.postgres else None,
    }
    tmp = paths.state_file.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(paths.state_file)


@contextlib.contextmanager
def _locked(paths: _Paths) -> Iterator[None]:
    paths.root.mkdir(parents=True, exist_ok=True)
    with paths.lock_file.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --------------------------------------------------------------------------------------------
# Small helpers: output, ports, processes, logs


def _say(message: str) -> None:
    print(f"[services] {message}", file=sys.stderr, flush=True)


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Servers set SO_REUSEADDR, so a port in TIME_WAIT is usable by them: mirror that.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return not _tcp_open("127.0.0.1", port, timeout=0.2)


def _pick_port(preferred: Sequence[int | None], taken: set[int]) -> int:
    """The first free port of ``preferred``, else one just above the last preferred, else any."""
    candidates = [p for p in preferred if p]
    if candidates:
        base = candidates[-1]
        candidates += range(base + 1, base + PORT_SCAN_SPAN)
    for port in candidates:
        if port not in taken and 1024 < port < 65536 and _port_free(port):
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


def _tcp_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _split_hostport(address: str) -> tuple[str, int]:
    first = address.split(",")[0].strip()
    first = first.split("://", 1)[-1]
    host, _, port = first.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


def _reap(pid: int) -> None:
    child = _CHILDREN.pop(pid, None)
    if child is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=1)
        return
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _pid_alive(pid: int | None, marker: str) -> bool:
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
        _reap(pid)
        return False
    return marker in args


def _wait_gone(pid: int, marker: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while _pid_alive(pid, marker):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(pid) == pid:  # started in its own session: signal the whole group
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


def _kill(pid: int, marker: str, timeout_s: float, *, term: bool = True) -> None:
    """SIGTERM, wait up to ``timeout_s``, then SIGKILL."""
    if not _pid_alive(pid, marker):
        return
    if term:
        _signal(pid, signal.SIGTERM)
        if _wait_gone(pid, marker, timeout_s):
            _reap(pid)
            return
        _say(f"pid {pid} still running after {timeout_s:.0f} s: SIGKILL")
    _signal(pid, signal.SIGKILL)
    _wait_gone(pid, marker, 10.0)
    _reap(pid)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            text = handle.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _with_logs(message: str, *logs: Path) -> str:
    parts = [message]
    for path in logs:
        tail = _tail(path)
        if tail:
            parts.append(f"--- last lines of {path} ---\n{tail}")
        else:
            parts.append(f"--- {path}: empty or missing ---")
    return "\n".join(parts)


def _run_async(factory: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    """Run a coroutine on a private loop in a worker thread (works inside a running loop too)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()


def _clean_env() -> dict[str, str]:
    """The environment minus libpq's PG* variables, which would redirect our client tools."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


# --------------------------------------------------------------------------------------------
# Kafka


def _find_pom() -> Path:
    here = Path(__file__).resolve()
    for candidate in (
        here.parents[2] / "services/kafka/pom.xml",
        Path.cwd() / "services/kafka/pom.xml",
    ):
        if candidate.is_file():
            return candidate
    raise ServiceError(
        "services/kafka/pom.xml not found (is storemon installed from its checkout?)"
    )


def _pom_kafka_version(pom: Path) -> str:
    match = re.search(r"<kafka\.version>\s*([^<\s]+)\s*</kafka\.version>", pom.read_text())
    if not match:
        raise ServiceError(f"{pom}: no <kafka.version> property")
    return match.group(1)


def kafka_version() -> str:
    """The Kafka version that ``services/kafka/pom.xml`` pins."""
    return _pom_kafka_version(_find_pom())


def kafka_cache_dir(version: str | None = None) -> Path:
    """``$XDG_CACHE_HOME/storemon/kafka-<version>`` (default ``~/.cache/...``); jars in ``libs/``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "storemon" / f"kafka-{version or kafka_version()}"


def _kafka_cache_ready(pom: Path) -> Path | None:
    cache = kafka_cache_dir(_pom_kafka_version(pom))
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()[:16]
    marker = cache / ".complete"
    libs = cache / "libs"
    try:
        complete = marker.read_text().strip() == digest
    except OSError:
        complete = False
    if complete and any(libs.glob("kafka_2.13-*.jar")):
        return libs
    return None


def fetch_kafka_jars(*, quiet: bool = False) -> Path:
    """Download the broker's jars once (Maven); returns the ``libs`` folder. No-op when cached."""
    pom = _find_pom()
    cached = _kafka_cache_ready(pom)
    if cached is not None:
        return cached
    version = _pom_kafka_version(pom)
    cache = kafka_cache_dir(version)
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        cached = _kafka_cache_ready(pom)  # another process may have fetched meanwhile
        if cached is not None:
            return cached
        mvn = shutil.which("mvn")
        if mvn is None:
            raise ServiceError("Maven (mvn) is needed once to fetch the Kafka jars; not on PATH")
        if not quiet:
            _say(f"fetching Apache Kafka {version} jars with Maven into {cache / 'libs'}")
        tmp = cache / f"libs.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        started = time.monotonic()
        result = subprocess.run(
            [mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
             f"-DoutputDirectory={tmp}", "-DincludeScope=runtime"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            output = "\n".join((result.stdout + result.stderr).splitlines()[-40:])
            raise ServiceError(f"mvn dependency:copy-dependencies failed:\n{output}")
        libs = cache / "libs"
        shutil.rmtree(libs, ignore_errors=True)
        tmp.rename(libs)
        digest = hashlib.sha256(pom.read_bytes()).hexdigest()[:16]
        (cache / ".complete").write_text(digest + "\n")
        if not quiet:
            _say(
                f"fetched {len(list(libs.glob('*.jar')))} jars in {time.monotonic() - started:.1f} s"
            )
        return libs


def _noida_binary() -> str | None:
    beside = Path(sys.executable).parent / "noida-db"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("noida-db")


def _jvm_usable() -> bool:
    if shutil.which("java") is None:
        return False
    try:
        pom = _find_pom()
    except ServiceError:
        return False
    return shutil.which("mvn") is not None or _kafka_cache_ready(pom) is not None


def _choose_kafka_backend(choice: KafkaBackendChoice) -> str:
    if choice == KAFKA_BACKEND_JVM or (choice == "auto" and _jvm_usable()):
        if shutil.which("java") is None:
            raise ServiceError("the Kafka JVM backend needs `java` (JDK 17+) on PATH")
        return KAFKA_BACKEND_JVM
    if _noida_binary() is None:
        raise ServiceError(
            "no Kafka backend: install a JDK 17+ and Maven, or `pip install noida-db` "
            "(extra `fallback`), or set STOREMON_KAFKA_BOOTSTRAP"
        )
    return KAFKA_BACKEND_NOIDA


def _server_properties(paths: _Paths, port: int, controller_port: int, partitions: int) -> str:
    return f"""\
# Written by `storemon services up`; rewritten on every start (ports may change).
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller_port}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs={paths.kafka_data}
num.partitions={partitions}
auto.create.topics.enable=false
delete.topic.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=4
log.retention.hours=168
"""


def _log4j_properties(paths: _Paths) -> str:
    log = paths.kafka_log
    return f"""\
# Written by `storemon services up`: the broker logs to {log} (INFO for kafka.*, WARN else).
status = warn
name = storemon-kafka
appender.file.type = RollingFile
appender.file.name = file
appender.file.fileName = {log}
appender.file.filePattern = {log}.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 20MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 2
rootLogger.level = WARN
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
logger.requestlog.name = kafka.request.logger
logger.requestlog.level = WARN
"""


def _new_cluster_id() -> str:
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def _format_kafka_storage(paths: _Paths, libs: Path, java: str, cluster_id: str) -> None:
    if (paths.kafka_data / "meta.properties").exists():
        return
    paths.kafka_data.mkdir(parents=True, exist_ok=True)
    cmd = [java, "-Xmx256m", f"-Dlog4j2.configurationFile={paths.kafka_log4j}",
           "-cp", f"{libs}/*", "kafka.tools.StorageTool", "format", "--ignore-formatted",
           f"--cluster-id={cluster_id}", "-c", str(paths.kafka_props)]  # fmt: skip
    # (one token: a random id may start with "-", which a separate argument would turn
    # into an unknown option)
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    with paths.kafka_stdout.open("a") as out:
        out.write(f"$ {shlex.join(cmd)}\n{result.stdout}{result.stderr}")
    if result.returncode != 0:
        raise ServiceError(_with_logs("Kafka storage format failed", paths.kafka_stdout))


def _start_kafka_jvm(
    paths: _Paths, prev: _KafkaState | None, taken: set[int], partitions: int
) -> tuple[_KafkaState, subprocess.Popen[bytes]]:
    java = shutil.which("java")
    if java is None:
        raise ServiceError("`java` not on PATH")
    libs = fetch_kafka_jars()
    version = _pom_kafka_version(_find_pom())
    same = prev is not None and prev.backend == KAFKA_BACKEND_JVM
    port = _pick_port([prev.port if same and prev else None, PREFERRED_KAFKA_PORT], taken)
    cport = _pick_port(
        [prev.controller_port if same and prev else None, PREFERRED_CONTROLLER_PORT], taken
    )
    cluster_id = prev.cluster_id if same and prev and prev.cluster_id else _new_cluster_id()
    paths.kafka_dir.mkdir(parents=True, exist_ok=True)
    paths.logs.mkdir(parents=True, exist_ok=True)
    paths.kafka_props.write_text(_server_properties(paths, port, cport, partitions))
    paths.kafka_log4j.write_text(_log4j_properties(paths))
    _format_kafka_storage(paths, libs, java, cluster_id)
    cmd = [java, *JVM_OPTIONS, f"-Dlog4j2.configurationFile={paths.kafka_log4j}",
           "-cp", f"{libs}/*", "kafka.Kafka", str(paths.kafka_props)]  # fmt: skip
    _say(f"kafka: starting Apache Kafka {version} (JVM, KRaft) on 127.0.0.1:{port}")
    proc = _spawn_logged(cmd, paths.kafka_stdout, paths.kafka_dir)
    state = _KafkaState(KAFKA_BACKEND_JVM, port, cport, proc.pid, version, cluster_id)
    return state, proc


def _spawn_logged(cmd: list[str], log: Path, cwd: Path) -> subprocess.Popen[bytes]:
    """Start ``cmd`` in its own session, its output appended to ``log`` after the command line."""
    with log.open("ab") as out:
        out.write(f"\n$ {shlex.join(cmd)}\n".encode())
        out.flush()
        return subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            cwd=cwd, start_new_session=True,
        )  # fmt: skip


def _start_kafka_noida(
    paths: _Paths, prev: _KafkaState | None, taken: set[int]
) -> tuple[_KafkaState, subprocess.Popen[bytes]]:
    binary = _noida_binary()
    if binary is None:
        raise ServiceError("noida-db not installed")
    same = prev is not None and prev.backend == KAFKA_BACKEND_NOIDA
    port = _pick_port([prev.port if same and prev else None, PREFERRED_KAFKA_PORT], taken)
    paths.noida_data.mkdir(parents=True, exist_ok=True)
    paths.logs.mkdir(parents=True, exist_ok=True)
    cmd = [binary, "start", "--only", "kafka", "--kafka-port", str(port),
           "--data-dir", str(paths.noida_data)]  # fmt: skip
    _say(f"kafka: starting noida-db (Kafka protocol, fallback backend) on 127.0.0.1:{port}")
    proc = _spawn_logged(cmd, paths.noida_log, paths.kafka_dir)
    return _KafkaState(KAFKA_BACKEND_NOIDA, port, 0, proc.pid), proc


def _kafka_marker(paths: _Paths, state: _KafkaState) -> str:
    return str(paths.kafka_props if state.backend == KAFKA_BACKEND_JVM else paths.noida_data)


def _kafka_logs(paths: _Paths, state: _KafkaState | None) -> tuple[Path, ...]:
    if state is not None and state.backend == KAFKA_BACKEND_NOIDA:
        return (paths.noida_log,)
    return (paths.kafka_log, paths.kafka_stdout)


async def _kafka_metadata(bootstrap: str, timeout_s: float) -> list[str]:
    from aiokafka.admin import (  # type: ignore[import-untyped,unused-ignore]
        AIOKafkaAdminClient,
    )

    client = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000)
    )
    try:
        await asyncio.wait_for(client.start(), timeout_s)
        topics = await asyncio.wait_for(client.list_topics(), timeout_s)
    finally:
        with contextlib.suppress(Exception):
            await client.close()
    return sorted(str(t) for t in topics)


def kafka_answers(bootstrap: str, timeout_s: float = 5.0) -> bool:
    """Whether a Kafka broker at ``bootstrap`` answers a metadata request."""
    host, port = _split_hostport(bootstrap)
    if not _tcp_open(host, port, timeout=min(timeout_s, 1.0)):
        return False
    quiet = logging.getLogger("aiokafka")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)  # connection errors while the broker starts are expected
    try:
        _run_async(lambda: _kafka_metadata(bootstrap, timeout_s))
    except Exception:
        return False
    finally:
        quiet.setLevel(level)
    return True


def _wait_kafka(
    bootstrap: str, timeout_s: float, alive: Callable[[], bool], logs: Sequence[Path]
) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if not alive():
            raise ServiceError(_with_logs("kafka: the broker exited during start-up", *logs))
        if kafka_answers(bootstrap, timeout_s=5.0):
            return
        if time.monotonic() > deadline:
            raise ServiceError(
                _with_logs(
                    f"kafka: no metadata answer from {bootstrap} in {timeout_s:.0f} s", *logs
                )
            )
        time.sleep(0.5)


def _always() -> bool:
    return True


def _kafka_running(paths: _Paths, state: _KafkaState | None) -> bool:
    return state is not None and _pid_alive(state.pid, _kafka_marker(paths, state))


def _begin_kafka(
    paths: _Paths, state: _State, choice: KafkaBackendChoice, taken: set[int],
    partitions: int, timeout_s: float,
) -> tuple[bool, Callable[[], None]]:  # fmt: skip
    """Launch Kafka unless it runs (updates ``state``); returns (started now, wait for ready).

    The wait is separate so PostgreSQL can start while the JVM boots.
    """
    prev = state.kafka
    if prev is not None and _kafka_running(paths, prev) and (choice in ("auto", prev.backend)):
        running = prev

        def wait_running() -> None:
            logs = _kafka_logs(paths, running)
            _wait_kafka(running.bootstrap, timeout_s, lambda: _kafka_running(paths, running), logs)
            _say(
                f"kafka: {running.label} already running on {running.bootstrap} (pid {running.pid})"
            )

        return False, wait_running
    if prev is not None and _kafka_running(paths, prev):
        _stop_kafka(paths, prev)  # another backend was asked for
    backend = _choose_kafka_backend(choice)
    if prev is not None:
        taken.difference_update((prev.port, prev.controller_port))
    if backend == KAFKA_BACKEND_JVM:
        new, proc = _start_kafka_jvm(paths, prev, taken, partitions)
    else:
        new, proc = _start_kafka_noida(paths, prev, taken)
    _CHILDREN[proc.pid] = proc
    state.kafka = new
    _save_state(paths, state)
    started = time.monotonic()

    def wait_started() -> None:
        try:
            _wait_kafka(
                new.bootstrap, timeout_s, lambda: proc.poll() is None, _kafka_logs(paths, new)
            )
        except ServiceError:
            _stop_kafka(paths, new)
            raise
        took = time.monotonic() - started
        _say(f"kafka: ready on {new.bootstrap} in {took:.1f} s (pid {new.pid})")

    return True, wait_started


def _stop_kafka(paths: _Paths, state: _KafkaState) -> None:
    marker = _kafka_marker(paths, state)
    if state.pid is None or not _pid_alive(state.pid, marker):
        state.pid = None
        return
    if state.backend == KAFKA_BACKEND_NOIDA:
        binary = _noida_binary()
        if binary is not None:  # noida-db ignores SIGTERM; its own `down` stops it
            subprocess.run(
                [binary, "down", "--data-dir", str(paths.noida_data)],
                capture_output=True, check=False, timeout=30,
            )  # fmt: skip
        if not _wait_gone(state.pid, marker, NOIDA_STOP_TIMEOUT_S):
            _kill(state.pid, marker, 0, term=False)
    else:
        _kill(state.pid, marker, KAFKA_STOP_TIMEOUT_S)
    _reap(state.pid)
    _say(f"kafka: stopped (pid {state.pid})")
    state.pid = None


# --------------------------------------------------------------------------------------------
# PostgreSQL


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", path.parent.parent.name) or ["0"])


def postgres_bin_dir() -> Path | None:
    """The newest ``/usr/lib/postgresql/*/bin`` with ``initdb``, else ``initdb`` on PATH."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=_version_key)
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


def _postgres_os_user() -> str:
    """The user the server runs as: "" (ourselves) unless root, who may not run postgres."""
    if os.geteuid() != 0:
        return ""
    for name in ("postgres", "storemon"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    _say("postgres: creating system user 'storemon' (postgres refuses to run as root)")
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
        env=_clean_env(), cwd="/",
    )  # fmt: skip


def _chown_tree(path: Path, user: str) -> None:
    if not user:
        return
    entry = pwd.getpwnam(user)
    for root, dirs, files in os.walk(path):
        os.chown(root, entry.pw_uid, entry.pw_gid)
        for name in dirs + files:
            os.chown(os.path.join(root, name), entry.pw_uid, entry.pw_gid, follow_symlinks=False)


_POSTGRES_CONF = """
# --- storemon: a private cluster for development and tests (port and sockets on the
# --- command line of `pg_ctl start`, see storemon/services.py)
shared_buffers = 128MB
max_connections = 100
timezone = 'UTC'
log_timezone = 'UTC'
log_min_messages = warning
log_line_prefix = '%m [%p] '
"""


def _init_postgres(paths: _Paths, bin_dir: Path, user: str) -> None:
    if (paths.pg_data / "PG_VERSION").exists():
        return
    shutil.rmtree(paths.pg_data, ignore_errors=True)  # a half-made cluster from a failed init
    paths.pg_data.mkdir(parents=True, mode=0o700)
    _chown_tree(paths.pg_dir, user)
    if user and _pg_run(user, ["test", "-w", str(paths.pg_data)]).returncode != 0:
        raise ServiceError(
            f"postgres: user {user!r} cannot write {paths.pg_data}; every parent folder must be "
            "searchable by it (chmod o+x), or set STOREMON_STATE_DIR elsewhere"
        )
    _say(f"postgres: initdb {paths.pg_data} (user {DB_USER}, trust auth)")
    result = _pg_run(user, [str(bin_dir / "initdb"), "-D", str(paths.pg_data), "-U", DB_USER,
                            "--auth=trust", "-E", "UTF8", "--locale=C", "--no-instructions"])  # fmt: skip
    if result.returncode != 0:
        shutil.rmtree(paths.pg_data, ignore_errors=True)
        raise ServiceError(f"postgres: initdb failed:\n{result.stdout}{result.stderr}")
    with (paths.pg_data / "postgresql.conf").open("a") as conf:
        conf.write(_POSTGRES_CONF)


def _postmaster(paths: _Paths) -> tuple[int, int] | None:
    """(pid, port) of the server running on our data dir, from ``postmaster.pid``."""
    try:
        lines = (paths.pg_data / "postmaster.pid").read_text().splitlines()
        pid, port = int(lines[0]), int(lines[3])
    except (OSError, ValueError, IndexError):
        return None
    return (pid, port) if _pid_alive(pid, str(paths.pg_data)) else None


def _pg_ready(bin_dir: Path, port: int) -> bool:
    result = subprocess.run(
        [str(bin_dir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port), "-t", "2",
         "-U", DB_USER, "-d", "postgres"],
        check=False, env=_clean_env(), capture_output=True,
    )  # fmt: skip
    return result.returncode == 0


def _wait_postgres(paths: _Paths, bin_dir: Path, port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not _pg_ready(bin_dir, port):
        if time.monotonic() > deadline:
            raise ServiceError(
                _with_logs(f"postgres: not ready in {timeout_s:.0f} s", paths.pg_log)
            )
        time.sleep(0.3)


def _ensure_database(paths: _Paths, bin_dir: Path, port: int) -> None:
    conn = ["-h", "127.0.0.1", "-p", str(port), "-U", DB_USER]
    query = f"SELECT 1 FROM pg_database WHERE datname = '{DB_NAME}'"
    found = subprocess.run(
        [str(bin_dir / "psql"), *conn, "-d", "postgres", "-XtAc", query],
        capture_output=True, text=True, check=False, env=_clean_env(),
    )  # fmt: skip
    if found.returncode != 0:
        raise ServiceError(f"postgres: query failed: {found.stderr.strip()}")
    if found.stdout.strip() == "1":
        return
    created = subprocess.run(
        [str(bin_dir / "createdb"), *conn, "-E", "UTF8", DB_NAME],
        capture_output=True, text=True, check=False, env=_clean_env(),
    )  # fmt: skip
    if created.returncode != 0 and "already exists" not in created.stderr:
        raise ServiceError(f"postgres: createdb failed: {created.stderr.strip()}")


def _socket_dir(paths: _Paths) -> str:
    # A Unix socket path is limited to ~107 bytes; a deep checkout gets TCP only.
    return str(paths.pg_run) if len(str(paths.pg_run)) < 80 else ""


def _start_postgres(paths: _Paths, bin_dir: Path, user: str, port: int, timeout_s: float) -> None:
    paths.logs.mkdir(parents=True, exist_ok=True)
    paths.pg_run.mkdir(parents=True, exist_ok=True)
    paths.pg_log.touch()
    _chown_tree(paths.pg_run, user)
    if user:
        entry = pwd.getpwnam(user)
        os.chown(paths.pg_log, entry.pw_uid, entry.pw_gid)
    options = f"-p {port} -k {shlex.quote(_socket_dir(paths))} -c listen_addresses=127.0.0.1"
    _say(f"postgres: starting {bin_dir.parent.name} on 127.0.0.1:{port}")
    result = _pg_run(
        user,
        [str(bin_dir / "pg_ctl"), "-D", str(paths.pg_data), "-l", str(paths.pg_log), "-w",
         "-t", str(int(timeout_s)), "-o", options, "start"],
        timeout=timeout_s + 30,
    )  # fmt: skip
    if result.returncode != 0:
        raise ServiceError(
            _with_logs(
                f"postgres: pg_ctl start failed: {result.stdout}{result.stderr}", paths.pg_log
            )
        )


def _ensure_postgres(paths: _Paths, state: _State, taken: set[int], timeout_s: float) -> bool:
    """Start PostgreSQL unless it runs; returns whether it was started now. Updates ``state``."""
    prev = state.postgres
    started = time.monotonic()
    running = _postmaster(paths)
    if running is not None and prev is not None:
        pid, port = running
        prev_bin = Path(prev.bin_dir)
        _wait_postgres(paths, prev_bin, port, timeout_s)
        _ensure_database(paths, prev_bin, port)
        state.postgres = dataclasses.replace(prev, port=port, pid=pid)
        _save_state(paths, state)
        _say(f"postgres: {state.postgres.label} already running on port {port} (pid {pid})")
        return False
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        raise ServiceError(
            "postgres: no server binaries (initdb); install them: apt-get install -y postgresql"
        )
    if running is not None:  # running, but our state file was lost: adopt it
        _say("postgres: found a server on our data dir without a state record; reusing it")
    user = _postgres_os_user()
    _init_postgres(paths, bin_dir, user)
    if running is None:
        if prev is not None:
            taken.discard(prev.port)
        port = _pick_port([prev.port if prev else None, PREFERRED_POSTGRES_PORT], taken)
        _start_postgres(paths, bin_dir, user, port, timeout_s)
    else:
        port = running[1]
    _wait_postgres(paths, bin_dir, port, timeout_s)
    _ensure_database(paths, bin_dir, port)
    now = _postmaster(paths)
    state.postgres = _PostgresState(port, str(bin_dir), user, now[0] if now else None)
    _save_state(paths, state)
    if running is None:
        _say(f"postgres: ready on port {port} in {time.monotonic() - started:.1f} s")
    return running is None


def _stop_postgres(paths: _Paths, state: _PostgresState) -> None:
    running = _postmaster(paths)
    if running is None:
        state.pid = None
        return
    pg_ctl = str(Path(state.bin_dir) / "pg_ctl")
    result = _pg_run(state.os_user, [pg_ctl, "-D", str(paths.pg_data), "-m", "fast", "-w",
                                     "-t", "60", "stop"])  # fmt: skip
    if result.returncode != 0:
        _say(f"postgres: fast stop failed ({result.stderr.strip()}); immediate stop")
        _pg_run(state.os_user, [pg_ctl, "-D", str(paths.pg_data), "-m", "immediate", "stop"])
    _say(f"postgres: stopped (pid {running[0]})")
    state.pid = None


# --------------------------------------------------------------------------------------------
# Public API


def ensure_up(
    settings: Settings,
    *,
    kafka_backend: KafkaBackendChoice = "auto",
    timeout_s: float | None = None,
) -> ServiceEndpoints:
    """Start (or reuse) the local Kafka and PostgreSQL of ``settings.state_dir``.

    A service configured in ``settings`` (``kafka_bootstrap`` / ``database_url``) is only
    checked, never started. Raises :class:`ServiceError` with the log tail when a start fails.
    """
    paths = _Paths.of(settings)
    external_kafka = settings.kafka_bootstrap
    external_db = settings.database_url
    with _locked(paths):
        state = _load_state(paths)
        taken: set[int] = set()
        wait_kafka: Callable[[], None]
        # Ports of the other service stay reserved for it even while it is down.
        if state.kafka is not None and not external_kafka:
            taken.update(p for p in (state.kafka.port, state.kafka.controller_port) if p)
        if state.postgres is not None and not external_db:
            taken.add(state.postgres.port)
        if external_kafka:
            _say(f"kafka: using {external_kafka} (STOREMON_KAFKA_BOOTSTRAP), starting none")
            started_kafka = False
            wait_kafka = functools.partial(
                _wait_kafka, external_kafka, timeout_s or 30.0, _always, ()
            )
        else:
            started_kafka, wait_kafka = _begin_kafka(
                paths, state, kafka_backend, taken, settings.partitions,
                timeout_s or KAFKA_START_TIMEOUT_S,
            )  # fmt: skip
        started_pg = False
        try:
            if external_db:
                _say("postgres: using STOREMON_DATABASE_URL, starting none")
            else:
                pg_timeout = timeout_s or POSTGRES_START_TIMEOUT_S
                started_pg = _ensure_postgres(paths, state, taken, pg_timeout)
            wait_kafka()
        except BaseException:
            # Leave nothing half-started behind: stop what this call started.
            if started_kafka and state.kafka is not None:
                _stop_kafka(paths, state.kafka)
            if started_pg and state.postgres is not None:
                _stop_postgres(paths, state.postgres)
            _save_state(paths, state)
            raise
    kafka_state, pg_state = state.kafka, state.postgres
    return ServiceEndpoints(
        kafka_bootstrap=external_kafka or (kafka_state.bootstrap if kafka_state else ""),
        database_url=external_db or (pg_state.url if pg_state else ""),
        kafka_backend=EXTERNAL if external_kafka else (kafka_state.label if kafka_state else ""),
        postgres_backend=EXTERNAL if external_db else (pg_state.label if pg_state else ""),
        started_kafka=started_kafka,
        started_postgres=started_pg,
    )


async def ensure_up_async(
    settings: Settings, *, kafka_backend: KafkaBackendChoice = "auto"
) -> ServiceEndpoints:
    """:func:`ensure_up` for async code (runs in a worker thread, the loop keeps going)."""
    return await asyncio.to_thread(ensure_up, settings, kafka_backend=kafka_backend)


def down(
    settings: Settings, *, purge: bool = False, kafka: bool = True, postgres: bool = True
) -> None:
    """Stop the services of ``settings.state_dir`` (``purge``: and delete their data).

    Kafka gets SIGTERM, then SIGKILL after 30 s (noida-db: its own ``down``); PostgreSQL gets
    ``pg_ctl stop -m fast``. Services given by the environment are never touched. Logs and the
    Kafka jar cache are kept.
    """
    paths = _Paths.of(settings)
    if not paths.root.exists():
        return
    with _locked(paths):
        state = _load_state(paths)
        if kafka and not settings.kafka_bootstrap:
            if state.kafka is not None:
                _stop_kafka(paths, state.kafka)
            if purge:
                shutil.rmtree(paths.kafka_dir, ignore_errors=True)
                state.kafka = None
        if postgres and not settings.database_url:
            if state.postgres is not None:
                _stop_postgres(paths, state.postgres)
            elif (found := _postmaster(paths)) is not None:
                _say(f"postgres: server pid {found[0]} runs without a state record; stopping it")
                user = _postgres_os_user()
                _stop_postgres(paths, _PostgresState(found[1], str(postgres_bin_dir()), user))
            if purge:
                shutil.rmtree(paths.pg_dir, ignore_errors=True)
                state.postgres = None
        _save_state(paths, state)
        if purge:
            _say(f"purged data under {paths.root} (logs kept in {paths.logs})")


def status(settings: Settings) -> ServicesStatus:
    """What runs for ``settings.state_dir`` (environment-given services: reachability only)."""
    paths = _Paths.of(settings)
    state = _load_state(paths)
    if settings.kafka_bootstrap:
        host, port = _split_hostport(settings.kafka_bootstrap)
        kafka = ServiceStatus("kafka", EXTERNAL, _tcp_open(host, port),
                              settings.kafka_bootstrap, None, ())  # fmt: skip
    elif state.kafka is not None:
        ks = state.kafka
        up = _kafka_running(paths, ks) and _tcp_open("127.0.0.1", ks.port)
        kafka = ServiceStatus("kafka", ks.label, up, ks.bootstrap, ks.pid if up else None,
                              _kafka_logs(paths, ks))  # fmt: skip
    else:
        kafka = ServiceStatus("kafka", "none", False, "", None, ())
    if settings.database_url:
        parts = settings.database_url.split("@")[-1].split("/")[0]
        host, port = _split_hostport(parts if ":" in parts else parts + ":5432")
        pg = ServiceStatus("postgres", EXTERNAL, _tcp_open(host, port),
                           _mask(settings.database_url), None, ())  # fmt: skip
    elif state.postgres is not None:
        running = _postmaster(paths)
        ps = state.postgres
        pg = ServiceStatus("postgres", ps.label, running is not None,
                           ps.url, running[0] if running else None, (paths.pg_log,))  # fmt: skip
    else:
        pg = ServiceStatus("postgres", "none", False, "", None, ())
    return ServicesStatus(paths.root, kafka, pg)


def _mask(url: str) -> str:
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


def resolve_endpoints(settings: Settings) -> ServiceEndpoints:
    """Endpoints to connect to without starting anything: the environment's, else the running
    local services of ``settings.state_dir``. Raises :class:`ServiceError` when neither."""
    paths = _Paths.of(settings)
    state = _load_state(paths)
    kafka = settings.kafka_bootstrap
    kafka_backend = EXTERNAL
    if not kafka:
        if state.kafka is None or not _kafka_running(paths, state.kafka):
            raise ServiceError(
                "no Kafka: run `storemon services up` or set STOREMON_KAFKA_BOOTSTRAP"
            )
        kafka, kafka_backend = state.kafka.bootstrap, state.kafka.label
    db = settings.database_url
    db_backend = EXTERNAL
    if not db:
        if state.postgres is None or _postmaster(paths) is None:
            raise ServiceError(
                "no PostgreSQL: run `storemon services up` or set STOREMON_DATABASE_URL"
            )
        db, db_backend = state.postgres.url, state.postgres.label
    return ServiceEndpoints(kafka, db, kafka_backend, db_backend)


# --------------------------------------------------------------------------------------------
# The `storemon services` command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    up = actions.add_parser("up", help="start (or reuse) Kafka and PostgreSQL; prints exports")
    up.add_argument(
        "--kafka-backend", choices=["auto", KAFKA_BACKEND_JVM, KAFKA_BACKEND_NOIDA],
        default="auto", help="auto: the real broker when java (and mvn or cached jars) exist",
    )  # fmt: skip
    up.add_argument("--timeout", type=float, default=None, help="readiness timeout, seconds")
    dn = actions.add_parser("down", help="stop them (SIGTERM/SIGKILL, pg_ctl stop -m fast)")
    dn.add_argument("--purge", action="store_true", help="also delete their data")
    actions.add_parser("status", help="backend, address, pid, up/down; exit 3 if not all up")
    actions.add_parser("fetch", help="only download the Kafka jars into the cache")


def _print_status(report: ServicesStatus) -> None:
    print(f"state dir: {report.state_dir}")
    for item in (report.kafka, report.postgres):
        word = "up" if item.running else "down"
        pid = f"pid {item.pid}" if item.pid else ""
        print(f"{item.name:<9} {word:<5} {item.backend:<14} {item.address:<50} {pid}".rstrip())
        for log in item.log_files:
            print(f"{'':<9} log   {log}")


def run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    try:
        if args.action == "up":
            started = time.monotonic()
            endpoints = ensure_up(
                settings, kafka_backend=args.kafka_backend, timeout_s=args.timeout
            )
            _say(f"all up in {time.monotonic() - started:.1f} s")
            print(f"kafka     {endpoints.kafka_backend:<14} {endpoints.kafka_bootstrap}")
            print(f"postgres  {endpoints.postgres_backend:<14} {_mask(endpoints.database_url)}")
            # For the shell: `eval "$(storemon services up | grep ^export)"`.
            if endpoints.kafka_backend != EXTERNAL:
                print(f"export STOREMON_KAFKA_BOOTSTRAP={shlex.quote(endpoints.kafka_bootstrap)}")
            if endpoints.postgres_backend != EXTERNAL:
                print(f"export STOREMON_DATABASE_URL={shlex.quote(endpoints.database_url)}")
            return 0
        if args.action == "down":
            down(settings, purge=args.purge)
            return 0
        if args.action == "fetch":
            print(fetch_kafka_jars())
            return 0
        report = status(settings)
        _print_status(report)
        return 0 if report.all_running else 3
    except ServiceError as exc:
        print(f"storemon services {args.action}: {exc}", file=sys.stderr)
        return 1
