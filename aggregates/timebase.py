"""Units and conversions of time.

All instants are integer microseconds since 1970-01-01 00:00 UTC (``*_us``). Intervals are
half-open ``[start, end)`` everywhere in the core: an instant equal to ``end`` is outside.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

US_PER_SECOND = 1_000_000
MINUTE_US = 60 * US_PER_SECOND
HOUR_US = 60 * MINUTE_US
DAY_US = 24 * HOUR_US
WEEK_US = 7 * DAY_US
SECONDS_PER_DAY = 86_400

# Stand-ins for "no end" of a session that never closes (a store open 24x7).
FOREVER_US = 2**62
NEVER_US = -(2**62)

_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_ONE_US = timedelta(microseconds=1)

# `2023-01-25 18:13:22.47922 UTC`: the real files' form, 0-6 fraction digits.
_UTC_SUFFIX_FORM = re.compile(
    r"(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))? UTC", re.ASCII
)
# ISO 8601 with a `T` or space, optional fraction, and a mandatory `Z` or offset.
_ISO_FORM = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?(?:Z|[+-]\d{2}:?\d{2})", re.ASCII
)


def floor_to(ts_us: int, unit_us: int) -> int:
    """Start of the ``unit_us``-long bucket that holds ``ts_us`` (epoch-aligned)."""
    return ts_us - ts_us % unit_us


def ceil_to(ts_us: int, unit_us: int) -> int:
    return -floor_to(-ts_us, unit_us)


def days_from_civil(year: int, month: int, day: int) -> int:
    """Days since the epoch of a calendar date; raises ValueError on an impossible date."""
    return date(year, month, day).toordinal() - _EPOCH_ORDINAL


_day_cache: dict[str, int] = {}


def _cached_days(date_text: str) -> int:
    days = _day_cache.get(date_text)
    if days is None:
        days = days_from_civil(int(date_text[0:4]), int(date_text[5:7]), int(date_text[8:10]))
        if len(_day_cache) < 100_000:
            _day_cache[date_text] = days
    return days


_hour_cache: dict[str, int] = {}


def _hour_base_us(prefix: str) -> int | None:
    """Microseconds at "YYYY-MM-DD HH", cached: polls share their hours."""
    base = _hour_cache.get(prefix)
    if base is None:
        if prefix[4] != "-" or prefix[7] != "-" or prefix[10] != " ":
            return None
        if not (prefix[0:4] + prefix[5:7] + prefix[8:10] + prefix[11:13]).isdigit():
            return None
        hour = int(prefix[11:13])
        if hour > 23:
            return None
        try:
            days = _cached_days(prefix[:10])
        except ValueError:
            return None
        base = (days * SECONDS_PER_DAY + hour * 3600) * US_PER_SECOND
        if len(_hour_cache) < 200_000:
            _hour_cache[prefix] = base
    return base


def _parse_utc_suffix_form(text: str) -> int | None:
    """The common case by slicing (a fraction of the regex's cost); None means "not this
    simple", and the caller takes the general path, which also explains any error."""
    n = len(text)
    if not (23 <= n <= 30 and text.endswith(" UTC") and text.isascii()):
        return None
    if text[13] != ":" or text[16] != ":":
        return None
    base = _hour_base_us(text[:13])
    if base is None:
        return None
    minutes, seconds, fraction = text[14:16], text[17:19], text[19:-4]
    if not (minutes + seconds).isdigit():
        return None
    m, sec = int(minutes), int(seconds)
    if m > 59 or sec > 59:
        return None
    micros = 0
    if fraction:
        digits = fraction[1:]
        if fraction[0] != "." or not digits.isdigit() or len(digits) > 6:
            return None
        micros = int(digits.ljust(6, "0"))
    return base + (m * 60 + sec) * US_PER_SECOND + micros


def parse_poll_timestamp(text: str) -> int:
    """Parse a poll timestamp into epoch microseconds.

    Accepts the real files' ``YYYY-MM-DD HH:MM:SS[.f] UTC`` and ISO 8601 with ``Z`` or an
    offset. Raises ValueError with a reason for anything else (including naive ISO times).
    """
    text = text.strip()
    fast = _parse_utc_suffix_form(text)
    if fast is not None:
        return fast
    match = _UTC_SUFFIX_FORM.fullmatch(text)
    if match is not None:
        _year, _month, _day, hour, minute, second, fraction = match.groups()
        h, m, s = int(hour), int(minute), int(second)
        if h > 23 or m > 59 or s > 59:
            raise ValueError(f"time of day out of range in {text!r}")
        days = _cached_days(text[:10])
        micros = int(fraction.ljust(6, "0")) if fraction else 0
        return (days * SECONDS_PER_DAY + h * 3600 + m * 60 + s) * US_PER_SECOND + micros
    if _ISO_FORM.fullmatch(text) is None:
        raise ValueError(f"unrecognised timestamp {text!r}")
    parsed = datetime.fromisoformat(text)
    return datetime_to_us(parsed)


def datetime_to_us(moment: datetime) -> int:
    """Epoch microseconds of an aware datetime (naive ones are refused)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("naive datetime: an offset or zone is required")
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // _ONE_US


def us_to_datetime(ts_us: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ts_us)


def format_utc(ts_us: int) -> str:
    """``YYYY-MM-DD HH:MM:SS.ffffff UTC``, the form reports and logs use."""
    return us_to_datetime(ts_us).strftime("%Y-%m-%d %H:%M:%S.%f UTC")


def parse_as_of(text: str) -> int:
    """An ``as_of`` given by a user: the poll forms, or a plain ``YYYY-MM-DD HH:MM:SS[.f]`` as UTC."""
    text = text.strip()
    try:
        return parse_poll_timestamp(text)
    except ValueError:
        pass
    try:
        return parse_poll_timestamp(text + " UTC")
    except ValueError:
        raise ValueError(
            f"as_of {text!r} is not 'YYYY-MM-DD HH:MM:SS[.ffffff]' (UTC) or ISO 8601 with an offset"
        ) from None
