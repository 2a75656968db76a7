"""The report body compressed in pieces on threads is one ordinary gzip member."""

from __future__ import annotations

import gzip
import random
import zlib

import pytest

from storemon.compression import PIECE_BYTES, gunzip, gzip_body, gzip_bytes


def report_like(size: int) -> bytes:
    rng = random.Random(7)
    lines = ["store_id,uptime_last_hour,uptime_last_day\n"]
    written = len(lines[0])
    while written < size:
        lines.append(f"{rng.getrandbits(64):x},{rng.randint(0, 6000) / 100:.2f},12.50\n")
        written += len(lines[-1])
    return "".join(lines).encode()[:size]


@pytest.mark.parametrize("size", [0, 1, 1000, PIECE_BYTES, PIECE_BYTES + 1, 3 * PIECE_BYTES + 17])
async def test_pieces_make_one_gzip_member_any_reader_reads(size: int) -> None:
    data = report_like(size)
    threaded = await gzip_body(data)
    assert threaded == gzip_bytes(data)  # the same bytes on one thread or several
    assert gzip.decompress(threaded) == data
    assert gunzip(threaded) == data
    # one member, not several: a reader that stops after the first member gets everything
    reader = zlib.decompressobj(wbits=zlib.MAX_WBITS | 16)
    assert reader.decompress(threaded) == data
    assert reader.eof
    assert reader.unused_data == b""


async def test_a_large_body_shrinks_like_plain_gzip() -> None:
    data = report_like(4 * PIECE_BYTES)
    ours = await gzip_body(data)
    plain = gzip.compress(data, 1)
    assert len(ours) < len(data) // 2 + len(data) // 10
    assert len(ours) < len(plain) * 1.02  # independent pieces cost little


def test_gunzip_refuses_what_is_not_gzip() -> None:
    with pytest.raises(zlib.error):
        gunzip(b"store_id,uptime_last_hour\n")
