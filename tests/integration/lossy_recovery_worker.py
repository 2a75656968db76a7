"""A worker whose first table recovery loses the records still to read of its ``stores``
changelog partitions, as a consumer that fetched them and then dropped them would: its
position is moved past them, so they are never fetched again unless someone seeks back.
Run as ``python -m tests.integration.lossy_recovery_worker worker ...`` by
``test_faults.py::test_a_table_recovery_that_lost_records_reads_them_again``."""

from __future__ import annotations

import sys
from typing import Any

from faust.tables.recovery import Recovery

from storemon.cli import main

_seek_offsets = Recovery._seek_offsets
_done: list[bool] = []


async def _seek_past_the_records(
    self: Recovery, consumer: Any, tps: Any, offsets: Any, title: str
) -> None:
    await _seek_offsets(self, consumer, tps, offsets, title)
    if _done or title != "active":
        return
    ends = {
        tp: self.active_highwaters[tp] + 1
        for tp in tps
        if tp.topic.endswith("-stores-changelog") and self.active_highwaters[tp] > offsets[tp]
    }
    if ends:
        _done.append(True)
        await consumer.seek_wait(ends)
        print(f"lossy recovery: skipped the records of {sorted(ends)}", flush=True)


Recovery._seek_offsets = _seek_past_the_records  # type: ignore[method-assign]
raise SystemExit(main(sys.argv[1:]))
