"""The report in the formats people use: the CSV of the contract (stored as is), JSON, and
Parquet. JSON and Parquet are converted from the stored CSV, so every format carries the
same two-decimal numbers; Parquet columns are typed (``store_id`` string, the windows
float64) and the file's metadata holds the report id and its time.

JSON and Parquet also give, per window, the business time and its unobserved part
(:mod:`storemon.aggregates.coverage`), computed when the body is first rendered from the
report's exact sums and the stores' schedules; when they cannot be given exactly (a
schedule changed since the report, or a report older than these columns) they are left
out and the body says why."""

from __future__ import annotations

import csv
import io
import uuid
from typing import Any

import orjson

from storemon.aggregates.coverage import COVERAGE_HEADER, Coverage, coverage_values
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


def store_ids(csv_text: str) -> list[str]:
    return [fields[0] for fields in _rows(csv_text)]


def _numbers(csv_text: str, extra: Extra) -> tuple[list[str], list[list[str]], list[list[float]]]:
    """(column names, CSV rows, numeric values per row: the CSV's, then the extra ones)."""
    rows = _rows(csv_text)
    header = list(REPORT_HEADER)
    values = [[float(v) for v in fields[1:]] for fields in rows]
    if isinstance(extra, list):
        if len(extra) != len(rows):
            raise ValueError("business time does not match the report's rows")
        header.extend(COVERAGE_HEADER)
        for numbers, found in zip(values, extra, strict=True):
            numbers.extend(coverage_values(found))
    return header, rows, values


# Business and unobserved time per row (aligned with the CSV), or why they are left out.
Extra = list[Coverage] | str | None


def report_json(report_id: uuid.UUID, as_of: str, csv_text: str, extra: Extra = None) -> bytes:
    """``{"report_id", "as_of", "columns", "rows": [{"store_id": ..., "uptime_last_hour":
    12.5, ..., "business_last_hour": 60.0, ..., "unobserved_last_week": 3.25}]}``; without
    business time, ``"coverage_missing"`` says why."""
    header, rows, values = _numbers(csv_text, extra)
    numeric = header[1:]
    out: list[dict[str, Any]] = []
    for fields, numbers in zip(rows, values, strict=True):
        row: dict[str, Any] = {"store_id": fields[0]}
        row.update(zip(numeric, numbers, strict=True))
        out.append(row)
    body: dict[str, Any] = {
        "report_id": str(report_id),
        "as_of": as_of,
        "columns": header,
        "rows": out,
    }
    if isinstance(extra, str):
        body["coverage_missing"] = extra
    return orjson.dumps(body)


def report_parquet(report_id: uuid.UUID, as_of: str, csv_text: str, extra: Extra = None) -> bytes:
    import pyarrow as pa  # imported on first use: it takes a while to load
    import pyarrow.parquet as pq

    header, rows, values = _numbers(csv_text, extra)
    columns: dict[str, Any] = {"store_id": pa.array([r[0] for r in rows], type=pa.string())}
    for i, name in enumerate(header[1:]):
        columns[name] = pa.array([v[i] for v in values], type=pa.float64())
    metadata = {"storemon.report_id": str(report_id), "storemon.as_of": as_of}
    if isinstance(extra, str):
        metadata["storemon.coverage_missing"] = extra
    table = pa.table(columns).replace_schema_metadata(metadata)
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()
