"""The report in the formats people use: the CSV of the contract (stored as is), JSON, and
Parquet. JSON and Parquet are converted from the stored CSV, so every format carries the
same two-decimal numbers; Parquet columns are typed (``store_id`` string, the six windows
float64) and the file's metadata holds the report id and its time."""

from __future__ import annotations

import csv
import io
import uuid
from typing import Any

import orjson

from storemon.aggregates.report import REPORT_HEADER

FORMATS = ("csv", "json", "parquet")
CONTENT_TYPES = {
    "csv": "text/csv",
    "json": "application/json",
    "parquet": "application/vnd.apache.parquet",
}


def _rows(csv_text: str) -> list[list[str]]:
    lines = list(csv.reader(io.StringIO(csv_text)))
    if not lines or tuple(lines[0]) != REPORT_HEADER:
        raise ValueError("stored report does not start with the report header")
    return lines[1:]


def report_json(report_id: uuid.UUID, as_of: str, csv_text: str) -> bytes:
    """``{"report_id", "as_of", "columns", "rows": [{"store_id": ..., "uptime_last_hour":
    12.5, ...}]}``."""
    numeric = REPORT_HEADER[1:]
    rows: list[dict[str, Any]] = []
    for fields in _rows(csv_text):
        row: dict[str, Any] = {"store_id": fields[0]}
        row.update(zip(numeric, map(float, fields[1:]), strict=True))
        rows.append(row)
    return orjson.dumps(
        {"report_id": str(report_id), "as_of": as_of, "columns": list(REPORT_HEADER), "rows": rows}
    )


def report_parquet(report_id: uuid.UUID, as_of: str, csv_text: str) -> bytes:
    import pyarrow as pa  # imported on first use: it takes a while to load
    import pyarrow.parquet as pq

    rows = _rows(csv_text)
    columns: dict[str, Any] = {"store_id": pa.array([r[0] for r in rows], type=pa.string())}
    for i, name in enumerate(REPORT_HEADER[1:], start=1):
        columns[name] = pa.array([float(r[i]) for r in rows], type=pa.float64())
    table = pa.table(columns).replace_schema_metadata(
        {"storemon.report_id": str(report_id), "storemon.as_of": as_of}
    )
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()
