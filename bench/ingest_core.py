"""The worker's ingestion alone, no broker or database: CPU per poll against the number of
polls per store in a batch (live traffic is about one; a backlog many).

    PYTHONPATH=. .venv/bin/python bench/ingest_core.py bench/work/stream-2000x8/data 5000 [--profile]
        [--limit N] [--warm N] [--mirror] [--runs R] [--python-gc]

Feeds the real :class:`Ingestor` the data set's polls in time order, as internal batches of
N polls (what the batching stage writes), with dictionaries for the Faust tables and a
database write that does nothing; prints polls/s, table writes and bytes, and with
``--profile`` the cProfile top by own time. ``--limit`` times only the first N polls (after
every store's settings). ``--warm N`` feeds the first N polls before the clock starts (in
one batch, packed: every store's first contact and history, so the timed part is the steady
state). ``--mirror`` does in the database write what the worker does around it besides
PostgreSQL itself: the rows the sink hands to COPY, and the in-memory report index updated
with the batch (``streams.report_index.apply_batch``). ``--runs R`` times R segments of
``--limit`` polls one after the other (one warm-up; each segment continues the stream) and
prints their median. The cyclic collector runs
with the worker's thresholds (``storemon.streams.worker.GC_THRESHOLDS``), or Python's
defaults with ``--python-gc``.

The script runs against any checkout: ``cd <checkout> && PYTHONPATH=. <venv>/bin/python
/path/to/ingest_core.py ...`` measures that checkout's code (A/B in one session).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import pstats
import statistics
import time
from pathlib import Path
from typing import Any

from storemon.batch import load_dataset
from storemon.db import sink as db_sink
from storemon.db.sink import SinkBatch
from storemon.streams import messages
from storemon.streams.fence import Licence
from storemon.streams.report_index import ReportIndex
from storemon.streams.worker import GC_THRESHOLDS
from tests.unit.test_input_batches import CountingTable, Event, Message, Sink, make_ingestor

WARM_BATCH_POLLS = 2_000_000


def sink_rows(batch: SinkBatch) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The records the sink hands to COPY (checkouts from session 7 on: ``sink_records``;
    the session's A/B against older ones built them as ``write_batch`` did then)."""
    stores, days = db_sink.sink_records(batch)
    return stores, days


def batches(polls: list[tuple[int, str, bool]], per_batch: int, first_offset: int) -> list[Event]:
    events = []
    for n in range(0, len(polls), per_batch):
        group: dict[str, tuple[list[int], list[bool]]] = {}
        for ts, store, active in polls[n : n + per_batch]:
            entry = group.setdefault(store, ([], []))
            entry[0].append(ts)
            entry[1].append(active)
        value = messages.input_batch_message(group, {}, {}, [])
        events.append(Event(Message("x", 0, first_offset + n, None), value))
    return events


ROWS = [0]  # sink rows of the segment being timed


def run_once(
    data: Any,
    polls: list[tuple[int, str, bool]],
    per_batch: int,
    warm: int,
    limit: int | None,
    runs: int,
    mirror: bool,
    profile: bool,
    python_gc: bool,
) -> list[float]:
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    stores, store_polls = CountingTable(), CountingTable()
    ingestor = make_ingestor(stores, store_polls, Sink())
    index = ReportIndex(reach_us=ingestor.horizon_us, lead_us=0)

    async def write_nothing(batch: SinkBatch, licence: Licence) -> None:
        return None

    async def write_mirrored(batch: SinkBatch, licence: Licence) -> None:
        store_rows, day_rows = sink_rows(batch)
        ROWS[0] += len(store_rows) + len(day_rows)
        index.written(batch, 1)

    ingestor.write_sink = write_mirrored if mirror else write_nothing
    if mirror:
        # what start_loading leaves behind on an empty database: an empty, complete index
        from storemon.aggregates.hour_index import HourIndex
        from storemon.streams.report_index import hours_to_keep

        index.index = HourIndex(hours_to_keep(index.reach_us))
    settings = messages.input_batch_message(
        {}, {s: [list(i) for i in rows] for s, rows in data.schedules.items()}, data.zones, []
    )
    asyncio.run(ingestor.process([Event(Message("x", 0, 0, None), settings)], lambda e: None))
    for event in batches(polls[:warm], WARM_BATCH_POLLS, 1):
        asyncio.run(ingestor.process([event], lambda e: None))
    per_poll: list[float] = []
    size = len(polls) - warm if limit is None else limit
    for segment in range(runs):
        timed = polls[warm + segment * size : warm + (segment + 1) * size]
        per_poll.append(
            time_segment(
                ingestor,
                stores,
                store_polls,
                index,
                timed,
                per_batch,
                warm + segment * size,
                profile,
                python_gc,
            )
        )
    return per_poll


def time_segment(
    ingestor: Any,
    stores: CountingTable,
    store_polls: CountingTable,
    index: ReportIndex | None,
    timed: list[tuple[int, str, bool]],
    per_batch: int,
    first: int,
    profile: bool,
    python_gc: bool,
) -> float:
    events = batches(timed, per_batch, first + 1)
    stores.writes = store_polls.writes = 0
    stores.bytes_written = store_polls.bytes_written = 0
    ROWS[0] = 0
    gc.collect()
    if not python_gc:
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
    profiler = cProfile.Profile() if profile else None
    began = time.perf_counter()
    cpu_began = time.process_time()
    if profiler is not None:
        profiler.enable()
    for event in events:
        asyncio.run(ingestor.process([event], lambda event: None))
    if profiler is not None:
        profiler.disable()
    elapsed = time.perf_counter() - began
    cpu = time.process_time() - cpu_began
    gc.unfreeze()
    writes = stores.writes + store_polls.writes
    written = stores.bytes_written + store_polls.bytes_written
    mirrored = index is not None and index.index is not None
    print(
        f"{len(timed)} polls (after {first} untimed) in {len(events)} batches of {per_batch}:"
        f" {elapsed:.2f} s, {len(timed) / elapsed:.0f} polls/s, {cpu / len(timed) * 1e6:.1f} us"
        f" CPU per poll; table writes {writes} ({writes / len(timed):.2f} per poll),"
        f" {written / len(timed):.0f} table bytes per poll"
        + (
            f"; mirrored: {ROWS[0]} sink rows, {len(index.index or ())} stores in the index"
            if mirrored and index is not None
            else ""
        )
        + f"; collector {'Python defaults' if python_gc else f'thresholds {GC_THRESHOLDS}'}",
        flush=True,
    )
    if profiler is not None:
        stats = pstats.Stats(profiler)
        stats.sort_stats("tottime").print_stats(30)
        stats.sort_stats("cumulative").print_stats(30)
    return cpu / len(timed) * 1e6


def main(
    data_dir: Path,
    per_batch: int,
    profile: bool,
    limit: int | None,
    warm: int,
    mirror: bool,
    runs: int,
    python_gc: bool,
) -> None:
    data = load_dataset(data_dir)
    polls = sorted((ts, s, a) for s, ps in data.polls_by_store().items() for ts, a in ps)
    if limit is not None:
        polls = polls[: warm + runs * limit]
    per_poll = run_once(data, polls, per_batch, warm, limit, runs, mirror, profile, python_gc)
    print(f"median of {runs}: {statistics.median(per_poll):.1f} us CPU per poll")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("per_batch", type=int)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--limit", type=int, default=None, help="time N polls (per segment)")
    parser.add_argument("--warm", type=int, default=0, help="feed N polls first, untimed")
    parser.add_argument("--mirror", action="store_true", help="sink rows and report index too")
    parser.add_argument("--runs", type=int, default=1, help="timed segments of --limit polls")
    parser.add_argument("--python-gc", action="store_true", help="Python's default thresholds")
    args = parser.parse_args()
    main(
        args.data,
        args.per_batch,
        args.profile,
        args.limit,
        args.warm,
        args.mirror,
        args.runs,
        args.python_gc,
    )
