"""The local services really work: Kafka answers metadata and carries messages through a
consumer group, PostgreSQL answers queries; ``ensure_up`` is idempotent.

The tests at the bottom (not marked ``services``) check the launcher's pure parts.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
import pytest
from aiokafka import (  # type: ignore[import-untyped,unused-ignore]
    AIOKafkaConsumer,
    AIOKafkaProducer,
)
from aiokafka.admin import (  # type: ignore[import-untyped,unused-ignore]
    AIOKafkaAdminClient,
    NewTopic,
)

from storemon import services
from storemon.services import ServiceEndpoints, kafka, postgres, processes, state
from storemon.settings import Settings
from storemon.waiting import poll_async


@pytest.mark.services
async def test_broker_answers_metadata(service_endpoints: ServiceEndpoints) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=service_endpoints.kafka_bootstrap)
    await admin.start()
    try:
        cluster = await admin.describe_cluster()
        topics = await admin.list_topics()
    finally:
        await admin.close()
    assert len(cluster["brokers"]) >= 1
    assert isinstance(topics, list)


@pytest.mark.services
async def test_topic_create_produce_consume(service_endpoints: ServiceEndpoints) -> None:
    bootstrap = service_endpoints.kafka_bootstrap
    topic = f"test.services.{uuid.uuid4().hex[:12]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=4, replication_factor=1)])
        # A new topic's metadata reaches the broker's cache a moment after creation.

        async def described() -> list[object] | None:
            found: list[object] = (await admin.describe_topics([topic]))[0]["partitions"]
            return found or None

        partitions = await poll_async(described, timeout_s=10, on_timeout=TimeoutError, cap_s=0.1)
    finally:
        await admin.close()
    assert len(partitions) == 4

    sent = {f"key-{i}".encode(): f"value-{i}".encode() for i in range(8)}
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for key, value in sent.items():
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"test-group-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    received: dict[bytes, bytes] = {}
    try:
        async with asyncio.timeout(60):
            while len(received) < len(sent):
                batches = await consumer.getmany(timeout_ms=1000)
                for records in batches.values():
                    received.update((r.key, r.value) for r in records)
        await consumer.commit()
    finally:
        await consumer.stop()
    assert received == sent


@pytest.mark.services
async def test_postgres_accepts_queries(service_endpoints: ServiceEndpoints) -> None:
    import asyncpg  # type: ignore[import-untyped,unused-ignore]

    conn = await asyncpg.connect(service_endpoints.database_url, timeout=30)
    try:
        assert await conn.fetchval("SELECT 1 + 1") == 2
        if service_endpoints.postgres_backend != services.EXTERNAL:
            assert await conn.fetchval("SELECT current_database()") == services.DB_NAME
            assert await conn.fetchval("SELECT current_user") == services.DB_USER
        async with conn.transaction():
            await conn.execute("CREATE TEMP TABLE probe (id int PRIMARY KEY, name text)")
            await conn.executemany(
                "INSERT INTO probe VALUES ($1, $2)", [(1, "a"), (2, "b"), (3, "c")]
            )
            assert await conn.fetchval("SELECT string_agg(name, '' ORDER BY id) FROM probe") == (
                "abc"
            )
    finally:
        await conn.close()


@pytest.mark.services
def test_ensure_up_is_idempotent(
    services_base_settings: Settings, service_endpoints: ServiceEndpoints
) -> None:
    again = services.ensure_up(services_base_settings)
    assert again.kafka_bootstrap == service_endpoints.kafka_bootstrap
    assert again.database_url == service_endpoints.database_url
    assert not again.started_any
    report = services.status(services_base_settings)
    assert report.all_running
    resolved = services.resolve_endpoints(services_base_settings)
    assert resolved.kafka_bootstrap == service_endpoints.kafka_bootstrap
    assert resolved.database_url == service_endpoints.database_url


# ---------------------------------------------------------------------------------------------
# Pure parts (no services needed)


def test_pick_port_prefers_and_skips_busy_ports() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        busy_port = busy.getsockname()[1]
        taken: set[int] = set()
        chosen = processes.pick_port([busy_port], taken)
        assert chosen != busy_port
        assert chosen in taken
        second = processes.pick_port([chosen], taken)  # already handed out in this round
        assert second not in {busy_port, chosen}


def test_server_properties_single_node_kraft(tmp_path: Path) -> None:
    paths = state.Paths(tmp_path)
    text = kafka.server_properties(paths, 19092, 19093, partitions=4)
    props = dict(line.split("=", 1) for line in text.splitlines() if "=" in line and line[0] != "#")
    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:19093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["auto.create.topics.enable"] == "false"
    assert props["num.partitions"] == "4"
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["log.dirs"] == str(tmp_path / "kafka" / "data")


def test_state_file_round_trip(tmp_path: Path) -> None:
    paths = state.Paths(tmp_path)
    assert state.load_state(paths) == state.State()
    record = state.State(
        kafka=state.KafkaState("kafka", 19092, 19093, 123, "4.1.1", "abc"),
        postgres=state.PostgresState(
            15432, "/usr/lib/postgresql/15/bin", "postgres", 456, "/var/lib/storemon/postgres/ab"
        ),
    )
    state.save_state(paths, record)
    assert state.load_state(paths) == record
    (tmp_path / "services.json").write_text("{not json")
    assert state.load_state(paths) == state.State()


def test_kafka_answers_is_false_on_a_closed_port() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert not services.kafka_answers(f"127.0.0.1:{port}", timeout_s=1.0)


def test_status_of_an_empty_state_dir(tmp_path: Path) -> None:
    report = services.status(Settings(state_dir=tmp_path))
    assert not report.all_running
    assert report.kafka.backend == "none"
    assert report.postgres.backend == "none"


def test_root_keeps_the_cluster_where_its_server_user_can_reach_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = state.Paths(tmp_path / "private" / ".state")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    as_root = postgres.cluster_of(paths, None)
    assert as_root.root.parent == postgres.ROOT_CLUSTERS_DIR
    # One folder per state dir, the same on every call.
    assert postgres.cluster_of(paths, None) == as_root
    other = postgres.cluster_of(state.Paths(tmp_path / "other"), None)
    assert other != as_root
    # A recorded folder wins over the computed one.
    record = state.PostgresState(15432, "/bin", "postgres", None, str(tmp_path / "elsewhere"))
    assert postgres.cluster_of(paths, record).root == tmp_path / "elsewhere"
    # A cluster made inside the state dir before folders were recorded keeps being used.
    (paths.legacy_pg_dir / "data").mkdir(parents=True)
    (paths.legacy_pg_dir / "data" / "PG_VERSION").write_text("15\n")
    assert postgres.cluster_of(paths, None).root == paths.legacy_pg_dir


def test_a_user_keeps_the_cluster_in_the_state_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = state.Paths(tmp_path / ".state")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert postgres.cluster_of(paths, None).root == tmp_path / ".state" / "postgres"


def test_the_kafka_pom_is_package_data() -> None:
    """Read through importlib.resources, so an installed wheel finds it as a checkout does."""
    text = kafka.pom_text()
    assert "<artifactId>kafka_2.13</artifactId>" in text
    assert kafka.kafka_version() == kafka._pom_kafka_version(text)
    assert kafka.kafka_cache_dir().name == f"kafka-{kafka.kafka_version()}"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_services_up_from_a_checkout_inside_a_private_folder(tmp_path: Path) -> None:
    """`storemon services up` as the README runs it, from a folder only its owner may enter
    (mode 700, like /root or a `mktemp -d` folder), then a query through the database and
    `services down --purge`, which removes the cluster wherever it lived."""
    private = tmp_path / "private"
    checkout = private / "storemon"
    checkout.mkdir(parents=True)
    private.chmod(0o700)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STOREMON_", "PG"))}

    def storemon(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "storemon", "services", *args],
            cwd=checkout, env=env, capture_output=True, text=True, timeout=240, check=False,
        )  # fmt: skip

    up = storemon("up")
    try:
        assert up.returncode == 0, up.stderr
        exports = dict(
            line.removeprefix("export ").split("=", 1)
            for line in up.stdout.splitlines()
            if line.startswith("export ")
        )
        record = state.load_state(state.Paths(checkout / ".state")).postgres
        assert record is not None
        cluster = Path(record.cluster_dir)
        assert (cluster / "data" / "PG_VERSION").is_file()

        async def query() -> tuple[str, int]:
            conn = await asyncpg.connect(exports["STOREMON_DATABASE_URL"], timeout=10)
            try:
                await conn.execute("CREATE TABLE visits (n int); INSERT INTO visits VALUES (41)")
                row = await conn.fetchrow("SELECT current_user AS who, n + 1 AS n FROM visits")
                assert row is not None
                return str(row["who"]), int(row["n"])
            finally:
                await conn.close()

        assert asyncio.run(query()) == (services.DB_USER, 42)
        assert kafka.kafka_answers(exports["STOREMON_KAFKA_BOOTSTRAP"], timeout_s=5.0)
    finally:
        down = storemon("down", "--purge")
    assert down.returncode == 0, down.stderr
    assert not cluster.exists()
    assert private.stat().st_mode & 0o777 == 0o700  # nobody changed the folder's permissions
