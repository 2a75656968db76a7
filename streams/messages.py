"""Message formats on the Kafka topics (orjson-encoded values, UTF-8 keys).

Every input topic is keyed by ``store_id`` with Kafka's default partitioner (murmur2 of the
key bytes), so all messages of one store land in the same partition number of every topic,
which is the partition its table entries live in.

==================  ======================================================================
topic               value
==================  ======================================================================
``polls``           ``{"store_id", "timestamp_utc", "status"}``: the CSV fields as text;
                    or a pack of one store's polls, ``{"store_id", "polls":
                    [[timestamp_utc, status], ...]}`` (the replay sends packs when it
                    runs as fast as possible: one message, one Faust event, many polls)
``hours``           ``{"store_id", "intervals": [{"dayOfWeek", "start_time_local",
                    "end_time_local"}, ...]}``: a store's whole weekly schedule at once;
                    an empty list means "no rows", open 24x7
``timezones``       ``{"store_id", "timezone_str"}``
``report-requests`` ``{"report_id", "as_of"}`` (``as_of`` text or null), keyed by report id
``dead-letters``    ``{"source", "reason", "detail", "record", "partition", "offset"}``
``input-batches``   internal: what the worker's batching stage made of the input records
                    of one partition number (see :func:`input_batch_message`)
==================  ======================================================================

Fields stay text on the wire: validation happens once, in the worker, with the same code
the batch command uses, and a bad record goes to ``dead-letters`` with its reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from storemon.aggregates.records import HoursRow, Rejection, parse_hours

POLLS = "polls"
HOURS = "hours"
TIMEZONES = "timezones"
REPORT_REQUESTS = "report-requests"
DEAD_LETTERS = "dead-letters"
INPUT_BATCHES = "input-batches"
INPUT_TOPICS = (POLLS, HOURS, TIMEZONES)
ALL_TOPICS = (POLLS, HOURS, TIMEZONES, REPORT_REQUESTS, DEAD_LETTERS, INPUT_BATCHES)


def compact_json(value: Any) -> bytes:
    """``value`` as orjson bytes that own no more memory than their length.

    orjson builds its output in a buffer of at least 4 kB and hands that buffer over: a
    300-byte table value or poll message held in a queue pins 4 kB (measured, orjson 3.13).
    Values that wait in numbers (changelog writes in the producer's buffer, messages in
    flight) are copied to their exact size; the copy costs far less than the memory."""
    return memoryview(orjson.dumps(value)).tobytes()


def encode(value: Mapping[str, Any]) -> bytes:
    return compact_json(value)


def decode_object(raw: bytes | None) -> dict[str, Any]:
    """The JSON object of a message; ValueError when it is not one."""
    if raw is None:
        raise ValueError("empty message")
    value = orjson.loads(raw)
    if not isinstance(value, dict):
        raise ValueError("message is not a JSON object")
    return value


def text_fields(value: Mapping[str, Any], names: Iterable[str]) -> dict[str, str]:
    """The named fields as text, as the CSV parsers expect them (missing -> empty)."""
    fields: dict[str, str] = {}
    for name in names:
        item = value.get(name)
        fields[name] = "" if item is None else str(item)
    return fields


def poll_message(store_id: str, timestamp_utc: str, status: str) -> bytes:
    return encode({"store_id": store_id, "timestamp_utc": timestamp_utc, "status": status})


def poll_pack_message(store_id: str, polls: Iterable[tuple[str, str]]) -> bytes:
    return encode({"store_id": store_id, "polls": [list(p) for p in polls]})


def unpack_polls(value: Mapping[str, Any]) -> list[dict[str, str]]:
    """The poll records of a poll message, one or a pack, as the CSV parser expects them.
    An entry of a pack that is not a [timestamp, status] pair keeps its text, so the parser
    rejects it with the record shown."""
    entries = value.get("polls")
    if entries is None:
        return [text_fields(value, ("store_id", "timestamp_utc", "status"))]
    store_id = "" if value.get("store_id") is None else str(value["store_id"])
    if not isinstance(entries, list):
        return [{"store_id": store_id, "timestamp_utc": str(entries), "status": ""}]
    records = []
    for entry in entries:
        if isinstance(entry, list) and len(entry) == 2:
            stamp, status = ("" if x is None else str(x) for x in entry)
        else:
            stamp, status = str(entry), ""
        records.append({"store_id": store_id, "timestamp_utc": stamp, "status": status})
    return records


def hours_message(store_id: str, intervals: Iterable[Mapping[str, str]]) -> bytes:
    return encode({"store_id": store_id, "intervals": [dict(i) for i in intervals]})


def timezone_message(store_id: str, timezone_str: str) -> bytes:
    return encode({"store_id": store_id, "timezone_str": timezone_str})


def parse_hours_message(
    value: Mapping[str, Any],
) -> tuple[str, list[HoursRow], list[Rejection]] | Rejection:
    """A schedule message -> (store_id, good rows, rejected rows). As in the batch path, a
    bad interval is rejected alone and the good ones make the schedule; a message whose
    shape is wrong (no store, no list) is rejected whole."""
    record = {k: str(v) for k, v in value.items() if k != "intervals"}
    intervals = value.get("intervals")
    store_id = str(value.get("store_id") or "").strip()
    if not store_id:
        return Rejection(HOURS, "bad store_id", "empty store_id", record)
    if not isinstance(intervals, list):
        return Rejection(HOURS, "bad schedule", "'intervals' is not a list", record)
    rows: list[HoursRow] = []
    rejected: list[Rejection] = []
    for interval in intervals:
        if not isinstance(interval, dict):
            rejected.append(
                Rejection(
                    HOURS,
                    "bad schedule",
                    "an interval is not an object",
                    {**record, "interval": str(interval)},
                )
            )
            continue
        fields = text_fields(interval, ("dayOfWeek", "day", "start_time_local", "end_time_local"))
        if not fields["dayOfWeek"]:
            fields["dayOfWeek"] = fields.pop("day")
        else:
            fields.pop("day")
        parsed = parse_hours({"store_id": store_id, **fields})
        if isinstance(parsed, Rejection):
            rejected.append(Rejection(HOURS, parsed.reason, parsed.detail, {**record, **fields}))
        else:
            rows.append(parsed)
    return store_id, rows, rejected


def dead_letter(
    rejection: Rejection, partition: int | None = None, offset: int | None = None
) -> bytes:
    return encode(
        {
            "source": rejection.source,
            "reason": rejection.reason,
            "detail": rejection.detail,
            "record": dict(rejection.record),
            "partition": partition,
            "offset": offset,
        }
    )


# A rejected record inside an input batch: (source, reason, detail, record, partition,
# offset) of the input message it came from.
RejectedRow = tuple[str, str, str, dict[str, Any], int | None, int | None]


def input_batch_message(
    polls: Mapping[str, tuple[list[int], list[bool]]],
    schedules: Mapping[str, list[list[int]]],
    zones: Mapping[str, str],
    rejected: Iterable[RejectedRow],
) -> bytes:
    """One internal batch: validated polls per store (timestamps in microseconds and their
    status), the newest schedule and zone of each store that sent one, and the records
    rejected, with where they came from. Every store in it belongs to one partition number,
    the partition the batch is written to."""
    return encode(
        {
            "polls": [[store, ts, active] for store, (ts, active) in polls.items()],
            "schedules": [[store, rows] for store, rows in schedules.items()],
            "zones": [[store, zone] for store, zone in zones.items()],
            "rejected": [list(r) for r in rejected],
        }
    )
