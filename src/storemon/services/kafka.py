"""The local Kafka broker: real Apache Kafka 4 in KRaft mode run from its jars, or the
``noida-db`` fallback when there is no JDK.

The jars: ``kafka-pom.xml`` (package data beside this module) names them, and Maven copies them
once into ``$XDG_CACHE_HOME/storemon/kafka-<version>/libs`` (default ``~/.cache/storemon``).
That cache is outside the state dir on purpose: it survives ``services down --purge`` and is
shared by every state dir and checkout on the machine; it is re-fetched only when the POM
changes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import hashlib
import importlib.resources
import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

from storemon.services.processes import (
    ServiceError,
    kill,
    pick_port,
    pid_alive,
    reap,
    run_async,
    say,
    spawn_logged,
    split_hostport,
    tcp_open,
    wait_gone,
    with_logs,
)
from storemon.services.state import (
    KAFKA_BACKEND_JVM,
    KAFKA_BACKEND_NOIDA,
    KafkaState,
    Paths,
    State,
    save_state,
)
from storemon.waiting import poll

PREFERRED_KAFKA_PORT = 19092
PREFERRED_CONTROLLER_PORT = 19093
KAFKA_START_TIMEOUT_S = 120.0
KAFKA_STOP_TIMEOUT_S = 30.0
NOIDA_STOP_TIMEOUT_S = 10.0
JVM_OPTIONS = (
    "-Xms128m",
    "-Xmx512m",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-Djava.awt.headless=true",
)
POM_RESOURCE = "kafka-pom.xml"
KafkaBackendChoice = Literal["auto", "kafka", "noida-db"]


# ------------------------------------------------------------------------- jars (Maven)


def pom_text() -> str:
    """The POM shipped with the package (works from a checkout and from an installed wheel)."""
    return (
        importlib.resources.files(__package__ or "storemon.services") / POM_RESOURCE
    ).read_text()


def _pom_kafka_version(text: str) -> str:
    match = re.search(r"<kafka\.version>\s*([^<\s]+)\s*</kafka\.version>", text)
    if not match:
        raise ServiceError(f"{POM_RESOURCE}: no <kafka.version> property")
    return match.group(1)


def _pom_digest(text: str) -> str:
    # Over the POM without its comments: rewording a comment does not re-fetch the jars.
    return hashlib.sha256(re.sub(r"<!--.*?-->", "", text, flags=re.S).encode()).hexdigest()[:16]


def kafka_version() -> str:
    """The Kafka version the shipped POM pins."""
    return _pom_kafka_version(pom_text())


def kafka_cache_dir(version: str | None = None) -> Path:
    """``$XDG_CACHE_HOME/storemon/kafka-<version>`` (default ``~/.cache/...``); jars in ``libs/``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "storemon" / f"kafka-{version or kafka_version()}"


def _kafka_cache_ready(text: str) -> Path | None:
    cache = kafka_cache_dir(_pom_kafka_version(text))
    libs = cache / "libs"
    try:
        complete = (cache / ".complete").read_text().strip() == _pom_digest(text)
    except OSError:
        complete = False
    if complete and any(libs.glob("kafka_2.13-*.jar")):
        return libs
    return None


def fetch_kafka_jars(*, quiet: bool = False) -> Path:
    """Download the broker's jars once (Maven); returns the ``libs`` folder. No-op when cached."""
    text = pom_text()
    cached = _kafka_cache_ready(text)
    if cached is not None:
        return cached
    version = _pom_kafka_version(text)
    cache = kafka_cache_dir(version)
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        cached = _kafka_cache_ready(text)  # another process may have fetched meanwhile
        if cached is not None:
            return cached
        mvn = shutil.which("mvn")
        if mvn is None:
            raise ServiceError("Maven (mvn) is needed once to fetch the Kafka jars; not on PATH")
        if not quiet:
            say(f"fetching Apache Kafka {version} jars with Maven into {cache / 'libs'}")
        tmp = cache / f"libs.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        started = time.monotonic()
        pom = cache / "pom.xml"  # Maven wants a file; the packaged one may sit in a zip
        pom.write_text(text)
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
        (cache / ".complete").write_text(_pom_digest(text) + "\n")
        if not quiet:
            took = time.monotonic() - started
            say(f"fetched {len(list(libs.glob('*.jar')))} jars in {took:.1f} s")
        return libs


# ------------------------------------------------------------------------------ backends


def _noida_binary() -> str | None:
    beside = Path(sys.executable).parent / "noida-db"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("noida-db")


def _jvm_usable() -> bool:
    if shutil.which("java") is None:
        return False
    return shutil.which("mvn") is not None or _kafka_cache_ready(pom_text()) is not None


def _choose_backend(choice: KafkaBackendChoice) -> str:
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


def server_properties(paths: Paths, port: int, controller_port: int, partitions: int) -> str:
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


def _log4j_properties(paths: Paths) -> str:
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


def _format_storage(paths: Paths, libs: Path, java: str, cluster_id: str) -> None:
    if (paths.kafka_data / "meta.properties").exists():
        return
    paths.kafka_data.mkdir(parents=True, exist_ok=True)
    # The id in one token: a random id may start with "-", which a separate argument would
    # turn into an unknown option.
    cmd = [java, "-Xmx256m", f"-Dlog4j2.configurationFile={paths.kafka_log4j}",
           "-cp", f"{libs}/*", "kafka.tools.StorageTool", "format", "--ignore-formatted",
           f"--cluster-id={cluster_id}", "-c", str(paths.kafka_props)]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    with paths.kafka_stdout.open("a") as out:
        out.write(f"$ {shlex.join(cmd)}\n{result.stdout}{result.stderr}")
    if result.returncode != 0:
        raise ServiceError(with_logs("Kafka storage format failed", paths.kafka_stdout))


def _start_jvm(
    paths: Paths, prev: KafkaState | None, taken: set[int], partitions: int
) -> tuple[KafkaState, subprocess.Popen[bytes]]:
    java = shutil.which("java")
    if java is None:
        raise ServiceError("`java` not on PATH")
    libs = fetch_kafka_jars()
    version = kafka_version()
    same = prev if prev is not None and prev.backend == KAFKA_BACKEND_JVM else None
    port = pick_port([same.port if same else None, PREFERRED_KAFKA_PORT], taken)
    cport = pick_port([same.controller_port if same else None, PREFERRED_CONTROLLER_PORT], taken)
    cluster_id = same.cluster_id if same and same.cluster_id else _new_cluster_id()
    paths.kafka_dir.mkdir(parents=True, exist_ok=True)
    paths.logs.mkdir(parents=True, exist_ok=True)
    paths.kafka_props.write_text(server_properties(paths, port, cport, partitions))
    paths.kafka_log4j.write_text(_log4j_properties(paths))
    _format_storage(paths, libs, java, cluster_id)
    cmd = [java, *JVM_OPTIONS, f"-Dlog4j2.configurationFile={paths.kafka_log4j}",
           "-cp", f"{libs}/*", "kafka.Kafka", str(paths.kafka_props)]  # fmt: skip
    say(f"kafka: starting Apache Kafka {version} (JVM, KRaft) on 127.0.0.1:{port}")
    proc = spawn_logged(cmd, paths.kafka_stdout, paths.kafka_dir)
    return KafkaState(KAFKA_BACKEND_JVM, port, cport, proc.pid, version, cluster_id), proc


def _start_noida(
    paths: Paths, prev: KafkaState | None, taken: set[int]
) -> tuple[KafkaState, subprocess.Popen[bytes]]:
    binary = _noida_binary()
    if binary is None:
        raise ServiceError("noida-db not installed")
    same = prev if prev is not None and prev.backend == KAFKA_BACKEND_NOIDA else None
    port = pick_port([same.port if same else None, PREFERRED_KAFKA_PORT], taken)
    paths.noida_data.mkdir(parents=True, exist_ok=True)
    paths.logs.mkdir(parents=True, exist_ok=True)
    cmd = [binary, "start", "--only", "kafka", "--kafka-port", str(port),
           "--data-dir", str(paths.noida_data)]  # fmt: skip
    say(f"kafka: starting noida-db (Kafka protocol, fallback backend) on 127.0.0.1:{port}")
    proc = spawn_logged(cmd, paths.noida_log, paths.kafka_dir)
    return KafkaState(KAFKA_BACKEND_NOIDA, port, 0, proc.pid), proc


def _marker(paths: Paths, state: KafkaState) -> str:
    return str(paths.kafka_props if state.backend == KAFKA_BACKEND_JVM else paths.noida_data)


def kafka_logs(paths: Paths, state: KafkaState | None) -> tuple[Path, ...]:
    if state is not None and state.backend == KAFKA_BACKEND_NOIDA:
        return (paths.noida_log,)
    return (paths.kafka_log, paths.kafka_stdout)


# ----------------------------------------------------------------------------- readiness


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
    host, port = split_hostport(bootstrap)
    if not tcp_open(host, port, timeout=min(timeout_s, 1.0)):
        return False
    quiet = logging.getLogger("aiokafka")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)  # connection errors while the broker starts are expected
    try:
        run_async(lambda: _kafka_metadata(bootstrap, timeout_s))
    except Exception:
        return False
    finally:
        quiet.setLevel(level)
    return True


def wait_kafka(
    bootstrap: str, timeout_s: float, alive: Callable[[], bool], logs: Sequence[Path]
) -> None:
    def answered() -> bool | None:
        if not alive():
            raise ServiceError(with_logs("kafka: the broker exited during start-up", *logs))
        return True if kafka_answers(bootstrap, timeout_s=5.0) else None

    def too_late() -> ServiceError:
        message = f"kafka: no metadata answer from {bootstrap} in {timeout_s:.0f} s"
        return ServiceError(with_logs(message, *logs))

    poll(answered, timeout_s=timeout_s, on_timeout=too_late, first_s=0.2, cap_s=1.0)


def always() -> bool:
    return True


def kafka_running(paths: Paths, state: KafkaState | None) -> bool:
    return state is not None and pid_alive(state.pid, _marker(paths, state))


# ------------------------------------------------------------------------- start and stop


def begin_kafka(
    paths: Paths, state: State, choice: KafkaBackendChoice, taken: set[int],
    partitions: int, timeout_s: float,
) -> tuple[bool, Callable[[], None]]:  # fmt: skip
    """Launch Kafka unless it runs (updates ``state``); returns (started now, wait for ready).

    The wait is separate so PostgreSQL can start while the JVM boots.
    """
    prev = state.kafka
    if prev is not None and kafka_running(paths, prev) and (choice in ("auto", prev.backend)):
        running = prev

        def wait_running() -> None:
            logs = kafka_logs(paths, running)
            wait_kafka(running.bootstrap, timeout_s, lambda: kafka_running(paths, running), logs)
            say(
                f"kafka: {running.label} already running on {running.bootstrap} (pid {running.pid})"
            )

        return False, wait_running
    if prev is not None and kafka_running(paths, prev):
        stop_kafka(paths, prev)  # another backend was asked for
    backend = _choose_backend(choice)
    if prev is not None:
        taken.difference_update((prev.port, prev.controller_port))
    if backend == KAFKA_BACKEND_JVM:
        new, proc = _start_jvm(paths, prev, taken, partitions)
    else:
        new, proc = _start_noida(paths, prev, taken)
    state.kafka = new
    save_state(paths, state)
    started = time.monotonic()

    def wait_started() -> None:
        try:
            wait_kafka(
                new.bootstrap, timeout_s, lambda: proc.poll() is None, kafka_logs(paths, new)
            )
        except ServiceError:
            stop_kafka(paths, new)
            raise
        took = time.monotonic() - started
        say(f"kafka: ready on {new.bootstrap} in {took:.1f} s (pid {new.pid})")

    return True, wait_started


def stop_kafka(paths: Paths, state: KafkaState) -> None:
    marker = _marker(paths, state)
    if state.pid is None or not pid_alive(state.pid, marker):
        state.pid = None
        return
    if state.backend == KAFKA_BACKEND_NOIDA:
        binary = _noida_binary()
        if binary is not None:  # noida-db ignores SIGTERM; its own `down` stops it
            subprocess.run(
                [binary, "down", "--data-dir", str(paths.noida_data)],
                capture_output=True, check=False, timeout=30,
            )  # fmt: skip
        if not wait_gone(state.pid, marker, NOIDA_STOP_TIMEOUT_S):
            kill(state.pid, marker, 0, term=False)
    else:
        kill(state.pid, marker, KAFKA_STOP_TIMEOUT_S)
    reap(state.pid)
    say(f"kafka: stopped (pid {state.pid})")
    state.pid = None
