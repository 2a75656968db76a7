"""The report body is gzipped once into one ordinary gzip member any reader reads."""

from __future__ import annotations

import gzip
import random
import zlib

import pytest

from storemon.compression import gunzip, gzip_body, gzip_bytes


def report_like(size: int) -> bytes:
    rng = random.Random(7)
    lines = ["store_id,uptime_last_hour,uptime_last_day\n"]
    written = len(lines[0])
    while written < size:
        lines.append(f"{rng.getrandbits(64):x},{rng.randint(0, 6000) / 100:.2f},12.50\n")
        written += len(lines[-1])
    return "".join(lines).encode()[:size]


@pytest.mark.parametrize("size", [0, 1, 1000, 256 * 1024 + 1, 3 * 1024 * 1024 + 17])
async def test_one_gzip_member_that_any_reader_reads(size: int) -> None:
    data = report_like(size)
    zipped = await gzip_body(data)
    assert zipped == gzip_bytes(data)  # the same bytes every time (mtime 0)
    assert gzip.decompress(zipped) == data
    assert gunzip(zipped) == data
    # one member: a reader that stops after the first member gets everything
    reader = zlib.decompressobj(wbits=zlib.MAX_WBITS | 16)
    assert reader.decompress(zipped) == data
    assert reader.eof
    assert reader.unused_data == b""


async def test_a_report_shrinks_at_least_as_well_as_zlib_at_level_1() -> None:
    data = report_like(1024 * 1024)
    assert len(await gzip_body(data)) <= len(gzip.compress(data, 1)) * 1.01


def test_gunzip_refuses_what_is_not_gzip() -> None:
    # isal_zlib.error (its stubs type it as an instance, so it cannot be named here)
    with pytest.raises(Exception, match="Invalid gzip/zlib wrapper"):
        gunzip(b"store_id,uptime_last_hour\n")
