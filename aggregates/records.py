"""The three kinds of input record, and their validation.

Each ``parse_*`` function turns raw text fields into a typed record or a :class:`Rejection`
that names the reason; none of them raises on bad input, so one bad row never stops a run.
Store ids stay strings: the 2023 ids have 19 digits, more than a float holds exactly.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple
from zoneinfo import ZoneInfo

from storemon.aggregates.timebase import SECONDS_PER_DAY, parse_poll_timestamp

DEFAULT_ZONE = "America/Chicago"
MAX_STORE_ID_LENGTH = 128

# What a spreadsheet leaves of a long numeric id: `2.57E+14`, `8.13992624246019E+018`.
_SCIENTIFIC_ID = re.compile(r"[+-]?\d+(?:\.\d+)?[eE][+-]?\d+", re.ASCII)
_TIME_OF_DAY = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?", re.ASCII)


class Poll(NamedTuple):
    store_id: str
    ts_us: int
    active: bool


class HoursRow(NamedTuple):
    """One row of weekly business hours, local wall-clock seconds since midnight."""

    store_id: str
    weekday: int  # 0 = Monday ... 6 = Sunday
    start_s: int
    end_s: int


class ZoneRow(NamedTuple):
    store_id: str
    zone_name: str


class BadField(ValueError):
    """A field that fails validation: ``reason`` is a short category, the message the detail."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Rejection:
    """A record that could not be used, kept with why (it goes to the dead-letter place)."""

    source: str  # "polls", "hours" or "timezones"
    reason: str  # short category, for counting: "bad timestamp", "unknown zone", ...
    detail: str
    record: Mapping[str, str]


Record = Poll | HoursRow | ZoneRow


def parse_store_id(raw: str | None) -> str:
    store_id = (raw or "").strip()
    if not store_id:
        raise BadField("bad store_id", "empty store_id")
    if len(store_id) > MAX_STORE_ID_LENGTH:
        raise BadField("bad store_id", f"store_id longer than {MAX_STORE_ID_LENGTH} characters")
    if _SCIENTIFIC_ID.fullmatch(store_id):
        raise BadField(
            "bad store_id", f"store_id {store_id!r} is in scientific notation (spreadsheet-mangled)"
        )
    return store_id


def parse_status(raw: str | None) -> bool:
    """True for active. Case and surrounding blanks do not matter."""
    if raw == "active":
        return True
    if raw == "inactive":
        return False
    status = (raw or "").strip().lower()
    if status == "active":
        return True
    if status == "inactive":
        return False
    raise BadField("bad status", f"status {raw!r} is neither 'active' nor 'inactive'")


def parse_timestamp(raw: str | None) -> int:
    try:
        return parse_poll_timestamp(raw or "")
    except ValueError as error:
        raise BadField("bad timestamp", str(error)) from None


def parse_time_of_day(raw: str | None, *, is_end: bool) -> int:
    """``HH:MM`` or ``HH:MM:SS`` as seconds after local midnight; ``24:00`` only as an end."""
    text = (raw or "").strip()
    match = _TIME_OF_DAY.fullmatch(text)
    if match is None:
        raise BadField("bad time", f"time {raw!r} is not HH:MM or HH:MM:SS")
    hours, minutes = int(match.group(1)), int(match.group(2))
    seconds = int(match.group(3) or 0)
    total = hours * 3600 + minutes * 60 + seconds
    too_late = total > SECONDS_PER_DAY or (total == SECONDS_PER_DAY and not is_end)
    if minutes > 59 or seconds > 59 or too_late:
        raise BadField("bad time", f"time {raw!r} out of range")
    return total


@lru_cache(maxsize=1024)
def load_zone(name: str) -> ZoneInfo:
    """The zone of an IANA name; raises BadField for a name the database does not know."""
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError, OSError):  # ZoneInfoNotFoundError is a KeyError
        raise BadField("unknown zone", f"unknown time zone {name!r}") from None


_known_ids: dict[str, str] = {}


def poll_from_fields(store_id: str, timestamp: str, status: str) -> Poll:
    """Raises BadField; the fast path of the CSV reader (an id is checked once per process)."""
    valid_id = _known_ids.get(store_id)
    if valid_id is None:
        valid_id = parse_store_id(store_id)
        if len(_known_ids) < 1_000_000:
            _known_ids[store_id] = valid_id
    return Poll(valid_id, parse_timestamp(timestamp), parse_status(status))


def parse_poll(fields: Mapping[str, str]) -> Poll | Rejection:
    try:
        return poll_from_fields(
            fields.get("store_id") or "",
            fields.get("timestamp_utc") or "",
            fields.get("status") or "",
        )
    except BadField as error:
        return Rejection("polls", error.reason, str(error), dict(fields))


def parse_hours(fields: Mapping[str, str]) -> HoursRow | Rejection:
    """A business-hours row; the weekday column is ``dayOfWeek`` (2024 files) or ``day`` (2023)."""
    try:
        store_id = parse_store_id(fields.get("store_id"))
        day_text = fields.get("dayOfWeek")
        if day_text is None:
            day_text = fields.get("day")
        day_text = (day_text or "").strip()
        if not (day_text.isascii() and day_text.isdigit()) or int(day_text) > 6:
            raise BadField("bad day", f"day of week {day_text!r} is not 0 (Monday) to 6 (Sunday)")
        start_s = parse_time_of_day(fields.get("start_time_local"), is_end=False)
        end_s = parse_time_of_day(fields.get("end_time_local"), is_end=True)
        return HoursRow(store_id, int(day_text), start_s, end_s)
    except BadField as error:
        return Rejection("hours", error.reason, str(error), dict(fields))


def parse_zone(fields: Mapping[str, str]) -> ZoneRow | Rejection:
    try:
        store_id = parse_store_id(fields.get("store_id"))
        name = (fields.get("timezone_str") or "").strip()
        if not name:
            raise BadField("unknown zone", "empty timezone_str")
        load_zone(name)
        return ZoneRow(store_id, name)
    except BadField as error:
        return Rejection("timezones", error.reason, str(error), dict(fields))
