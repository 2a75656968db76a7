"""Where the ingestor's memory goes, no broker or database: the real :class:`Ingestor` fed a
data set's polls in time order (internal batches of N polls), then a tracemalloc snapshot
of what stays allocated, by the line that allocated it.

    PYTHONPATH=. .venv/bin/python bench/ingest_memory.py bench/work/stream-14000x8/data 14000

With dictionaries as the Faust tables (their bytes are counted apart, as RocksDB holds them
outside Python in the worker) and a database write that keeps nothing.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import time
import tracemalloc
from pathlib import Path

from storemon.batch import load_dataset
from storemon.db.sink import SinkBatch
from storemon.streams import messages
from storemon.streams.fence import Licence
from tests.unit.test_input_batches import CountingTable, Event, Message, Sink, make_ingestor


async def write_nothing(batch: SinkBatch, licence: Licence) -> None:
    return None


def main(data_dir: Path, per_batch: int, top: int = 20) -> None:
    data = load_dataset(data_dir)
    polls = sorted((ts, s, a) for s, ps in data.polls_by_store().items() for ts, a in ps)
    schedules = {s: [list(i) for i in rows] for s, rows in data.schedules.items()}
    settings = messages.input_batch_message({}, schedules, data.zones, [])
    del data
    gc.collect()
    stores, store_polls = CountingTable(), CountingTable()
    tracemalloc.start(1)
    ingestor = make_ingestor(stores, store_polls, Sink())
    ingestor.write_sink = write_nothing
    began = time.perf_counter()
    asyncio.run(ingestor.process([Event(Message("x", 0, 0, None), settings)], lambda e: None))
    for n in range(0, len(polls), per_batch):
        group: dict[str, tuple[list[int], list[bool]]] = {}
        for ts, store, active in polls[n : n + per_batch]:
            entry = group.setdefault(store, ([], []))
            entry[0].append(ts)
            entry[1].append(active)
        event = Event(Message("x", 0, n + 1, None), messages.input_batch_message(group, {}, {}, []))
        asyncio.run(ingestor.process([event], lambda e: None))
    elapsed = time.perf_counter() - began
    del polls, settings
    gc.collect()
    snapshot = tracemalloc.take_snapshot()
    tables = sum(len(k) + len(v) for t in (stores, store_polls) for k, v in t.items())
    snapshot = snapshot.filter_traces(
        [tracemalloc.Filter(False, __file__), tracemalloc.Filter(False, "*/test_input_batches.py")]
    )
    total = sum(s.size for s in snapshot.statistics("filename"))
    print(
        f"{len(ingestor.cache)} stores, {ingestor.stats.polls} polls in {elapsed:.1f} s;"
        f" ingestor Python heap {total / 2**20:.1f} MiB"
        f" ({total / max(1, len(ingestor.cache)):.0f} B per store);"
        f" table bytes (RocksDB in the worker) {tables / 2**20:.1f} MiB"
    )
    for stat in snapshot.statistics("lineno")[:top]:
        frame = stat.traceback[0]
        print(f"{stat.size / 2**20:8.1f} MiB {stat.count:9d}  {frame.filename}:{frame.lineno}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
