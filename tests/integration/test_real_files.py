"""The real (partial) Loop files of ``shared/data`` through the whole stream, one message per
poll as a live poller sends them: the report the API serves must equal the batch command's,
byte for byte. Read where they lie (never copied into the repo); skipped when absent."""

from __future__ import annotations

from pathlib import Path

import pytest

from storemon.aggregates.timebase import HOUR_US, format_utc
from storemon.batch import load_dataset
from storemon.producers.replay import replay
from storemon.streams import messages

from .pipeline import Pipeline, batch_csv

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"

pytestmark = [
    pytest.mark.services,
    pytest.mark.slow,
    pytest.mark.timeout(600),
    pytest.mark.skipif(not DATA.is_dir(), reason=f"real data not present at {DATA}"),
]


def union_partials(folder: Path) -> Path:
    """loop-2023 with its larger status file (the union of the public partial copies) in
    the place of ``store_status``: links, so nothing is copied."""
    source = DATA / "loop-2023"
    folder.mkdir()
    (folder / "store_status.csv.gz").symlink_to(source / "store_status_union_partials.csv.gz")
    for name in ("menu_hours.csv.gz", "timezones.csv.gz"):
        (folder / name).symlink_to(source / name)
    return folder


@pytest.mark.parametrize("which", ["loop-2023", "loop-2023-union", "loop-2024"])
async def test_the_stream_reports_the_real_files_as_the_batch_does(
    pipeline: Pipeline, tmp_path: Path, which: str
) -> None:
    folder = union_partials(tmp_path / which) if which.endswith("union") else DATA / which
    pipeline.start_worker()
    stats = await replay(pipeline.settings, folder, speedup=None, progress=False, pack_hours=0)
    polls_sent = stats.topics[messages.POLLS].sent
    assert polls_sent > 900  # every row of the status file, one message each
    assert stats.poll_messages == polls_sent
    await pipeline.wait_consumed()
    report_id = await pipeline.request_report()
    assert await pipeline.wait_report(report_id) == batch_csv(folder)
    # and at a time inside the data, not on an hour or a second (answered from PostgreSQL)
    newest = load_dataset(folder).newest_poll_us
    assert newest is not None
    as_of = format_utc(newest - 30 * HOUR_US - 1_234_567_891)[:26]
    report_id = await pipeline.request_report(as_of)
    assert await pipeline.wait_report(report_id) == batch_csv(folder, as_of), as_of
    assert await pipeline.dead_letter_reasons() == []
