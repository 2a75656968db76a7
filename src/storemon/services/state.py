"""The state dir's layout, its state file (``services.json``) and its lock."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from storemon.settings import Settings

DB_NAME = "storemon"
DB_USER = "storemon"
KAFKA_BACKEND_JVM = "kafka"
KAFKA_BACKEND_NOIDA = "noida-db"
EXTERNAL = "external"

_T = TypeVar("_T")


@dataclass(frozen=True)
class Paths:
    """Where one state dir keeps what the launcher writes (the PostgreSQL cluster may live
    elsewhere: see :mod:`storemon.services.postgres`)."""

    root: Path

    @classmethod
    def of(cls, settings: Settings) -> Paths:
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
    def legacy_pg_dir(self) -> Path:
        """The cluster's place inside the state dir (where a non-root user keeps it)."""
        return self.root / "postgres"


@dataclass
class KafkaState:
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
class PostgresState:
    port: int
    bin_dir: str
    os_user: str = ""  # the user the server runs as; "" means the current user
    pid: int | None = None
    # The cluster's folder (data/, run/, postgres.log); "" in state files written before it
    # was recorded, which kept it in <state dir>/postgres.
    cluster_dir: str = ""

    @property
    def url(self) -> str:
        return f"postgresql://{DB_USER}@127.0.0.1:{self.port}/{DB_NAME}"

    @property
    def label(self) -> str:
        return f"postgresql-{Path(self.bin_dir).parent.name}"


@dataclass
class State:
    kafka: KafkaState | None = None
    postgres: PostgresState | None = None


def _from_dict(cls: type[_T], raw: object) -> _T | None:
    if not isinstance(raw, dict):
        return None
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    try:
        return cls(**{k: v for k, v in raw.items() if k in names})
    except TypeError:
        return None


def load_state(paths: Paths) -> State:
    try:
        raw = json.loads(paths.state_file.read_text())
    except (OSError, ValueError):
        return State()
    if not isinstance(raw, dict):
        return State()
    return State(
        kafka=_from_dict(KafkaState, raw.get("kafka")),
        postgres=_from_dict(PostgresState, raw.get("postgres")),
    )


def save_state(paths: Paths, state: State) -> None:
    paths.root.mkdir(parents=True, exist_ok=True)
    data = {
        "kafka": dataclasses.asdict(state.kafka) if state.kafka else None,
        "postgres": dataclasses.asdict(state.postgres) if state.postgres else None,
    }
    tmp = paths.state_file.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(paths.state_file)


@contextlib.contextmanager
def locked(paths: Paths) -> Iterator[None]:
    """Hold the state dir's lock: two processes starting the same state dir do not race."""
    paths.root.mkdir(parents=True, exist_ok=True)
    with paths.lock_file.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
