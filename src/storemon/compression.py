"""A report's body gzip-compressed once, where it is made.

A report CSV is about 1 MB at 14,000 stores and compresses only about 2:1 (it is mostly
digits). zlib at level 1 took 12-15 ms for it here, a fifth of a whole report; ISA-L's
deflate (the ``isal`` package, Intel's library with a zlib-compatible Python binding) takes
5-6 ms at its level 1 and gives 6 % fewer bytes. The result is one ordinary gzip member
that browsers, curl, aiohttp and Python's gzip module read. It runs in a thread: the
binding releases the GIL, so the event loop goes on meanwhile.
"""

from __future__ import annotations

import asyncio

from isal import igzip, isal_zlib

GZIP_LEVEL = 1  # ISA-L's levels are 0-3; 2 and 3 gained under 1 % on a report CSV


def gzip_bytes(data: bytes) -> bytes:
    """``data`` as one gzip member (mtime 0: the same bytes for the same body)."""
    return igzip.compress(data, GZIP_LEVEL, mtime=0)


async def gzip_body(data: bytes) -> bytes:
    """:func:`gzip_bytes` off the event loop."""
    return await asyncio.to_thread(gzip_bytes, data)


def gunzip(data: bytes) -> bytes:
    """The body back (for clients that do not accept gzip, and for the JSON and Parquet
    formats, which are converted from the CSV). Raises ``isal_zlib.error`` for what is
    not gzip."""
    return isal_zlib.decompress(data, wbits=isal_zlib.MAX_WBITS | 16)
