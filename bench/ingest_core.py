"""The worker's ingestion alone, no broker or database: CPU per poll against the number of
polls per store in a batch (live traffic is about one; a backlog many).

    PYTHONPATH=. .venv/bin/python bench/ingest_core.py bench/work/stream-2000x8/data 5000 [--profile]
        [--limit N] [--python-gc]

Feeds the real :class:`Ingestor` the data set's polls in time order, as internal batches of
N polls (what the batching stage writes), with dictionaries for the Faust tables and a
database write that does nothing; prints polls/s, table writes and bytes, and with
``--profile`` the cProfile top by own time. ``--limit`` times only the first N polls (after
every store's settings). The cyclic collector runs with the worker's thresholds
(``storemon.streams.worker.GC_THRESHOLDS``), or Python's defaults with ``--python-gc``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import pstats
import time
from pathlib import Path

from storemon.batch import load_dataset
from storemon.db.sink import SinkBatch
from storemon.streams import messages
from storemon.streams.worker import GC_THRESHOLDS
from tests.unit.test_input_batches import CountingTable, Event, Message, Sink, make_ingestor


async def write_nothing(batch: SinkBatch) -> None:
    return None


def main(data_dir: Path, per_batch: int, profile: bool, limit: int | None, python_gc: bool) -> None:
    data = load_dataset(data_dir)
    polls = sorted((ts, s, a) for s, ps in data.polls_by_store().items() for ts, a in ps)
    polls = polls[:limit] if limit is not None else polls
    stores, store_polls = CountingTable(), CountingTable()
    ingestor = make_ingestor(stores, store_polls, Sink())
    ingestor.write_sink = write_nothing
    settings = messages.input_batch_message(
        {}, {s: [list(i) for i in rows] for s, rows in data.schedules.items()}, data.zones, []
    )
    events = [Event(Message("x", 0, 0, None), settings)]
    for n in range(0, len(polls), per_batch):
        group: dict[str, tuple[list[int], list[bool]]] = {}
        for ts, store, active in polls[n : n + per_batch]:
            entry = group.setdefault(store, ([], []))
            entry[0].append(ts)
            entry[1].append(active)
        value = messages.input_batch_message(group, {}, {}, [])
        events.append(Event(Message("x", 0, n + 1, None), value))
    asyncio.run(ingestor.process(events[:1], lambda event: None))  # settings: not timed
    events = events[1:]
    if not python_gc:
        gc.collect()
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
    profiler = cProfile.Profile() if profile else None
    began = time.perf_counter()
    if profiler is not None:
        profiler.enable()
    for event in events:
        asyncio.run(ingestor.process([event], lambda event: None))
    if profiler is not None:
        profiler.disable()
    elapsed = time.perf_counter() - began
    writes = stores.writes + store_polls.writes
    written = stores.bytes_written + store_polls.bytes_written
    print(
        f"{len(polls)} polls in {len(events)} batches of {per_batch}: {elapsed:.2f} s,"
        f" {len(polls) / elapsed:.0f} polls/s; table writes {writes}"
        f" ({writes / len(polls):.2f} per poll), {written / len(polls):.0f} table bytes per poll;"
        f" collector {'Python defaults' if python_gc else f'thresholds {GC_THRESHOLDS}'}"
    )
    if profiler is not None:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("per_batch", type=int)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--limit", type=int, default=None, help="time the first N polls only")
    parser.add_argument("--python-gc", action="store_true", help="Python's default thresholds")
    args = parser.parse_args()
    main(args.data, args.per_batch, args.profile, args.limit, args.python_gc)
