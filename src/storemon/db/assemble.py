"""The report job's reads: a report assembled from the aggregates in PostgreSQL.

No raw poll is scanned. Per window the database adds up whole days (an index range scan of
``store_days``) and whole hours (slices of the days' hour arrays, summed in the database);
the edge hours come with their runs, sliced out of the day's runs, to be clipped exactly; the
stores table gives who is in the report and each store's open tail. Only when the report time
lies before a store's last poll are two polls looked up for it (in one or two of its days).
Then the core finishes every row, with the same code the in-memory state uses.

All reads run in one REPEATABLE READ transaction: one consistent snapshot.
"""

from __future__ import annotations

import time
import uuid
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

import asyncpg
import orjson

from storemon.aggregates.fleet_summary import FleetSummary
from storemon.aggregates.reach import out_of_range_message
from storemon.aggregates.report import StoreWindows, render_csv
from storemon.aggregates.schedule import Schedule, Sessions, WeeklyInterval, sessions_between
from storemon.aggregates.timebase import DAY_US, HOUR_US, floor_to
from storemon.aggregates.windows import (
    AsOfFix,
    WindowPlan,
    as_of_fix,
    finish_store,
    plan_report,
)
from storemon.db.retention import report_range

if TYPE_CHECKING:
    from storemon.db import Connection


class NoData(RuntimeError):
    """Nothing ingested yet, so there is no default report time."""


class OutOfRange(RuntimeError):
    """The requested report time lies outside the supported range in the job's snapshot
    (history it needs was pruned after the request was accepted)."""


@dataclass(frozen=True, slots=True)
class AssembledReport:
    as_of_us: int
    csv_text: str
    row_count: int
    rows: tuple[StoreWindows, ...] = ()
    # Pending reports asked for the same report time and committed before this snapshot:
    # this report answers them too (see assemble_report).
    alike_pending: tuple[uuid.UUID, ...] = ()
    # The aggregates' version the snapshot saw (see migration 0004), and the Complete report
    # of the same report time and version whose CSV is this one (then nothing was computed:
    # ``csv_text`` is empty and ``rows`` too).
    data_version: int | None = None
    reused_from: uuid.UUID | None = None
    # Seconds spent reading (the transaction), finishing the rows and rendering the CSV.
    timings: dict[str, float] = field(default_factory=dict)
    # See schedules_digest(): which schedules and zones the report was computed with.
    schedules_digest: int | None = None
    # The exact sums already packed (the in-memory path has no ``rows``), see pack_sums.
    packed_sums: bytes | None = None
    # What the dashboard's fleet page shows, when the request asked for it (the page does;
    # only the in-memory path computes it, in the same job as the report).
    fleet_summary: FleetSummary | None = None


# One statement text, used by the job (in its snapshot) and by the API (when it adds
# business time to a finished report): a change of any schedule or zone of the report's
# stores changes the sum (barring a 32-bit hash collision).
_DIGEST_SQL = (
    "SELECT coalesce(sum(hashtext(store_id || chr(31) || schedule::text || chr(31) || zone)"
    "::bigint), 0)::bigint FROM stores WHERE "
)


async def schedules_digest(conn: Connection, store_ids: list[str]) -> int:
    value: int = await conn.fetchval(_DIGEST_SQL + "store_id = ANY($1::text[])", store_ids)
    return value


async def report_digest(conn: Connection, as_of_us: int) -> int:
    """:func:`schedules_digest` of the stores in the report at ``as_of_us``."""
    value: int = await conn.fetchval(_DIGEST_SQL + "first_poll_us <= $1", as_of_us)
    return value


async def newest_poll_us(conn: Connection) -> int | None:
    # Kept by the triggers of migration 0019: the scan of every store, without the scan.
    value: int | None = await conn.fetchval("SELECT newest_poll_us FROM aggregates_version")
    return value


async def aggregates_version(conn: Connection) -> int:
    """Raised by every change to the aggregate tables (migration 0004): equal versions in
    two snapshots mean equal aggregates."""
    value: int = await conn.fetchval("SELECT version FROM aggregates_version")
    return value


async def finished_alike(conn: Connection, as_of_us: int, version: int) -> uuid.UUID | None:
    """A Complete report of this report time computed from this version of the aggregates."""
    value: uuid.UUID | None = await conn.fetchval(
        "SELECT report_id FROM reports WHERE status = 'Complete' AND as_of_us = $1"
        " AND data_version = $2 LIMIT 1",
        as_of_us,
        version,
    )
    return value


async def pending_alike(
    conn: Connection, requested_as_of_us: int | None, created_before: datetime | None = None
) -> tuple[uuid.UUID, ...]:
    """The Pending reports that asked for this report time (None: the default), as this
    snapshot sees them: a report read from data at least as new answers them too. With
    ``created_before``, only those stored before then (a job that waited for the input
    published before it started answers no report asked after that: its input may not be
    in, see streams/catch_up.py)."""
    rows = await conn.fetch(
        "SELECT report_id FROM reports WHERE status = 'Pending'"
        " AND requested_as_of_us IS NOT DISTINCT FROM $1"
        " AND ($2::timestamptz IS NULL OR created_at < $2)",
        requested_as_of_us,
        created_before,
    )
    return tuple(r[0] for r in rows)


@dataclass(frozen=True, slots=True)
class AnswerLookups:
    """What a job from memory reads of PostgreSQL, in one statement (one snapshot): the
    retention mark, the Pending reports alike (:func:`pending_alike`) and a finished answer
    to reuse (:func:`finished_alike`)."""

    pruned_before_us: int | None
    alike: tuple[uuid.UUID, ...]
    earlier: uuid.UUID | None


async def answer_lookups(
    conn: Connection,
    requested_as_of_us: int | None,
    as_of_us: int,
    version: int,
    created_before: datetime | None = None,
) -> AnswerLookups:
    """:class:`AnswerLookups` in one round trip (three cost a job about 1-3 ms on a busy
    machine, each waking the server and the worker in turn)."""
    row = await conn.fetchrow(
        "SELECT (SELECT pruned_before_us FROM retention_mark) AS pruned_before,"
        " ARRAY(SELECT report_id FROM reports WHERE status = 'Pending'"
        "       AND requested_as_of_us IS NOT DISTINCT FROM $1"
        "       AND ($4::timestamptz IS NULL OR created_at < $4)) AS alike,"
        " (SELECT report_id FROM reports WHERE status = 'Complete' AND as_of_us = $2"
        "  AND data_version = $3 LIMIT 1) AS earlier",
        requested_as_of_us,
        as_of_us,
        version,
        created_before,
    )
    assert row is not None
    return AnswerLookups(row["pruned_before"], tuple(row["alike"]), row["earlier"])


def reused_answer(
    as_of_us: int,
    alike: tuple[uuid.UUID, ...],
    version: int,
    earlier: uuid.UUID,
    timings: dict[str, float],
) -> AssembledReport:
    """A report that names the finished answer it shares instead of computing one."""
    return AssembledReport(
        as_of_us,
        "",
        0,
        alike_pending=alike,
        data_version=version,
        reused_from=earlier,
        timings=timings,
    )


def _split_by_day(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int, int]]:
    """[a, b) ranges of whole hours -> (day start, first hour index, end hour index)."""
    pieces: list[tuple[int, int, int]] = []
    for lo, hi in ranges:
        while lo < hi:
            day = floor_to(lo, DAY_US)
            end = min(hi, day + DAY_US)
            pieces.append((day, (lo - day) // HOUR_US, (end - day) // HOUR_US))
            lo = end
    return pieces


def _window_columns(plans: list[WindowPlan], edge_hours: list[int]) -> str:
    """The select list of one store: up and down per window, then the runs of each edge
    hour. Every number in it is an integer computed here from the report time (never
    input text), so the statement is written out with them as literals.

    A row (one store-day) adds to a window its totals when the window takes the day whole,
    or hours a to b - 1 (two running sums subtracted) when it takes part of it; each window
    takes a given day at most once. An edge hour's runs are sliced out of its day's flat
    runs; each store has one row for that day, so ``max`` just picks its slice."""
    columns = []
    for plan in plans:
        parts = _split_by_day(plan.hour_ranges)
        if len({day for day, _, _ in parts}) != len(parts):
            raise AssertionError(f"a window takes a day twice: {plan}")
        for total, before in (("up_us", "up_before_us"), ("down_us", "down_before_us")):
            cases = [
                f"WHEN d.day_start_us = {int(day)} THEN d.{before}[{int(b) + 1}]"
                f" - d.{before}[{int(a) + 1}]"
                for day, a, b in parts
            ]
            if plan.day_range is not None:
                lo, hi = (int(v) for v in plan.day_range)
                cases.append(
                    f"WHEN d.day_start_us >= {lo} AND d.day_start_us < {hi} THEN d.{total}"
                )
            columns.append(
                f"coalesce(sum(CASE {' '.join(cases)} END), 0)::bigint" if cases else "0::bigint"
            )
    for hour in edge_hours:
        day = floor_to(hour, DAY_US)
        a = (hour - day) // HOUR_US
        columns.append(
            f"max(CASE WHEN d.day_start_us = {int(day)}"
            f" THEN d.runs[d.run_bounds[{int(a) + 1}] + 1 : d.run_bounds[{int(a) + 2}]] END)"
        )
    return ", ".join(columns)


async def _window_sums(
    conn: Connection, plans: list[WindowPlan], only_store: str | None = None
) -> dict[str, Sequence[int]]:
    """store -> [up_0, down_0, up_1, down_1, ...]: its buckets' sums in each window.

    One statement, one pass over the store-days the windows touch, one row per store: per
    window the database adds whole days (their totals) and whole hours (two running sums of
    their day subtracted); the runs of the at most four hours that windows cut come along,
    and are clipped to their windows here. With ``only_store``, that store's rows alone.
    (A join of the rows with a list of (window, day, hours) pieces did the same in about
    1.5 times the time: every row was matched, hashed and filtered once per piece.)"""
    edge_hours = sorted({hour for plan in plans for hour in plan.edge_hours})
    touched = [
        day
        for plan in plans
        for day in (
            *(d for d, _, _ in _split_by_day(plan.hour_ranges)),
            *((plan.day_range[0], plan.day_range[1] - DAY_US) if plan.day_range else ()),
            *(floor_to(hour, DAY_US) for hour in plan.edge_hours),
        )
    ]
    if not touched:
        return {}
    # A separate statement text per case: a store filter written as "$n IS NULL OR ..."
    # would give the whole-fleet statement a plan made for one store.
    store_filter = " AND d.store_id = $1" if only_store is not None else ""
    rows = await conn.fetch(
        f"SELECT d.store_id, {_window_columns(plans, edge_hours)} FROM store_days d"
        f" WHERE d.day_start_us >= {int(min(touched))} AND d.day_start_us <= {int(max(touched))}"
        + store_filter
        + " GROUP BY d.store_id",
        *([only_store] if only_store is not None else []),
    )
    cuts = [[w for w, plan in enumerate(plans) if hour in plan.edge_hours] for hour in edge_hours]
    bounds = [(plan.lo_us, plan.hi_us) for plan in plans]
    totals: dict[str, Sequence[int]] = {}
    sums_end = 2 * len(plans) + 1
    for row in rows:
        sums: Sequence[int] = row[1:sums_end]
        edge_runs = row[sums_end:]
        if any(edge_runs):
            clipped = list(sums)
            for k, flat in enumerate(edge_runs):
                if not flat:
                    continue
                triples = list(zip(flat[0::3], flat[1::3], flat[2::3], strict=True))
                for w in cuts[k]:
                    lo, hi = bounds[w]
                    for start, end, active in triples:
                        overlap = (end if end < hi else hi) - (start if start > lo else lo)
                        if overlap > 0:
                            clipped[2 * w + (0 if active else 1)] += overlap
            sums = clipped
        totals[row[0]] = sums
    return totals


def _sessions_holding(stores: list[asyncpg.Record], as_of_us: int) -> dict[str, tuple[int, int]]:
    """store -> the session that holds the report time, for the stores whose last poll in
    business hours lies after it. Stores share schedules and zones, so each pair is
    computed once."""
    found: dict[str, tuple[int, int]] = {}
    memo: dict[tuple[str, str], tuple[int, int] | None] = {}
    for row in stores:
        if row["last_poll_us"] is None or row["last_poll_us"] <= as_of_us:
            continue
        key = (row["schedule"], row["zone"])
        if key not in memo:
            schedule: Schedule = tuple(WeeklyInterval(*i) for i in orjson.loads(key[0]))
            sessions = sessions_between(schedule, key[1], as_of_us, as_of_us + 1)
            i = sessions.index_containing(as_of_us)
            memo[key] = (sessions.starts[i], sessions.ends[i]) if i >= 0 else None
        session = memo[key]
        if session is not None:
            found[row["store_id"]] = session
    return found


async def _as_of_fixes(
    conn: Connection, stores: list[asyncpg.Record], as_of_us: int
) -> dict[str, AsOfFix]:
    """Fixes for the stores whose last poll in business hours lies after the report time.

    Each needs the last poll at or before T and the first after it, within T's session. The
    polls of the day before T's day, of that day and of the next are read for all of them in
    one statement; a store whose session reaches past those days with no such poll inside
    them (a long session, sparse polls) is probed again over its whole session."""
    sessions = _sessions_holding(stores, as_of_us)
    if not sessions:
        return {}
    days_lo = floor_to(as_of_us, DAY_US) - DAY_US
    days_hi = days_lo + 3 * DAY_US
    ids = list(sessions)
    rows = await conn.fetch(
        "SELECT store_id, poll_ts_us, poll_active FROM store_days"
        " WHERE store_id = ANY($1::text[]) AND day_start_us >= $2 AND day_start_us < $3"
        " ORDER BY store_id, day_start_us",
        ids,
        days_lo,
        days_hi,
    )
    polls: dict[str, tuple[list[int], list[bool]]] = {}
    for store_id, ts, active in rows:
        kept = polls.setdefault(store_id, ([], []))
        kept[0].extend(ts)
        kept[1].extend(active)
    fixes: dict[str, AsOfFix] = {}
    unresolved: list[str] = []
    for store_id, (lo, hi) in sessions.items():
        ts, active = polls.get(store_id, ([], []))
        q = bisect_right(ts, as_of_us)
        before = q - 1 if q > 0 and ts[q - 1] >= lo else None
        after = q if q < len(ts) and ts[q] < hi else None
        if (before is None and lo < days_lo) or (after is None and hi > days_hi):
            unresolved.append(store_id)
            continue
        chosen = [i for i in (before, after) if i is not None]
        fix = as_of_fix(
            Sessions([lo], [hi]), [ts[i] for i in chosen], [active[i] for i in chosen], as_of_us
        )
        if fix is not None:
            fixes[store_id] = fix
    if unresolved:
        fixes.update(await _probed_fixes(conn, {k: sessions[k] for k in unresolved}, as_of_us))
    return fixes


async def _probed_fixes(
    conn: Connection, sessions: dict[str, tuple[int, int]], as_of_us: int
) -> dict[str, AsOfFix]:
    """The fixes of these stores, each from two lookups over its whole session."""
    # The days searched are those that can hold a poll of the range (a day holds the polls
    # of [day, day + 1 day)); the primary key finds them.
    probes = await conn.fetch(
        "SELECT s.store_id, s.lo, s.hi,"
        " (SELECT ARRAY[p.ts, p.a::int] FROM store_days d,"
        "   unnest(d.poll_ts_us, d.poll_active) AS p(ts, a)"
        "   WHERE d.store_id = s.store_id"
        "   AND d.day_start_us > s.lo - 86400000000 AND d.day_start_us <= $4"
        "   AND p.ts >= s.lo AND p.ts <= $4 ORDER BY p.ts DESC LIMIT 1) AS before,"
        " (SELECT ARRAY[p.ts, p.a::int] FROM store_days d,"
        "   unnest(d.poll_ts_us, d.poll_active) AS p(ts, a)"
        "   WHERE d.store_id = s.store_id"
        "   AND d.day_start_us > $4 - 86400000000 AND d.day_start_us < s.hi"
        "   AND p.ts > $4 AND p.ts < s.hi ORDER BY p.ts LIMIT 1) AS after"
        " FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS s(store_id, lo, hi)",
        list(sessions),
        [lo for lo, _ in sessions.values()],
        [hi for _, hi in sessions.values()],
        as_of_us,
    )
    fixes: dict[str, AsOfFix] = {}
    for probe in probes:
        found = [p for p in (probe["before"], probe["after"]) if p is not None]
        fix = as_of_fix(
            Sessions([probe["lo"]], [probe["hi"]]),
            [p[0] for p in found],
            [p[1] for p in found],
            as_of_us,
        )
        if fix is not None:
            fixes[probe["store_id"]] = fix
    return fixes


async def assemble_report(
    pool: asyncpg.Pool,
    requested_as_of_us: int | None,
    only_store: str | None = None,
    *,
    find_alike: bool = False,
    reuse: bool = False,
    reach: tuple[int, int] | None = None,
    with_digest: bool = False,
    created_before: datetime | None = None,
) -> AssembledReport:
    """The report as of ``requested_as_of_us`` (None: the newest poll), of every store or,
    with ``only_store``, of that one (its row, computed exactly as in the full report).

    With ``find_alike``, also the ids of the Pending reports that asked for the same report
    time and are visible in this snapshot. They were stored before the snapshot began, so
    this report, read from data at least as new as each of their requests, is a right
    answer to them too: under a burst of triggers one job answers many. With
    ``created_before``, only those stored before then (see :func:`pending_alike`).

    With ``reach`` (reach and lead in microseconds), a requested report time is checked
    against the supported range of this very snapshot: data pruned between the request
    and the job makes it fail (:class:`OutOfRange`), never answer from cut history.

    With ``reuse``, a Complete report of the same report time read from the same version of
    the aggregates is returned by reference (``reused_from``) instead of being recomputed:
    the same inputs give the same bytes."""
    began = time.perf_counter()
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        # The statements read every store's days once: JIT compilation (triggered by the
        # planner's guess for generate_series) cost more than the query, and the sorts and
        # hashes of the grouping fit in memory.
        await conn.execute("SET LOCAL jit = off; SET LOCAL work_mem = '64MB'")
        as_of_us = (
            requested_as_of_us if requested_as_of_us is not None else await newest_poll_us(conn)
        )
        if as_of_us is None:
            raise NoData("no poll has been ingested yet")
        if requested_as_of_us is not None and reach is not None:
            allowed = await report_range(conn, *reach)
            if requested_as_of_us not in (allowed or ()):
                raise OutOfRange(out_of_range_message(requested_as_of_us, allowed))
        version = await aggregates_version(conn)
        alike = await pending_alike(conn, requested_as_of_us, created_before) if find_alike else ()
        if reuse and only_store is None:
            earlier = await finished_alike(conn, as_of_us, version)
            if earlier is not None:
                timings = {"read_s": time.perf_counter() - began}
                return reused_answer(as_of_us, alike, version, earlier, timings)
        plans = plan_report(as_of_us)
        # The schedule is needed only where the report time lies before the last poll.
        stores = await conn.fetch(
            "SELECT store_id, first_poll_us, last_poll_us, last_active, tail_end_us,"
            " CASE WHEN last_poll_us > $1 THEN schedule::text END AS schedule, zone"
            " FROM stores WHERE first_poll_us <= $1"
            + (" AND store_id = $2" if only_store is not None else ""),
            as_of_us,
            *([only_store] if only_store is not None else []),
        )
        per_store = await _window_sums(conn, plans, only_store)
        fixes = await _as_of_fixes(conn, list(stores), as_of_us)
        digest = None
        if with_digest:
            digest = await report_digest(conn, as_of_us)
    read = time.perf_counter()
    nothing = [0] * (2 * len(plans))
    rows = [
        finish_store(
            store_id,
            as_of_us,
            per_store.get(store_id, nothing),
            last_poll,
            bool(last_active),
            tail_end if tail_end is not None else 0,
            fixes.get(store_id),
        )
        for store_id, _, last_poll, last_active, tail_end, _, _ in stores
    ]
    finished = time.perf_counter()
    csv_text = render_csv(rows)
    timings = {
        "read_s": read - began,
        "finish_s": finished - read,
        "render_s": time.perf_counter() - finished,
    }
    return AssembledReport(
        as_of_us,
        csv_text,
        len(rows),
        tuple(rows),
        alike,
        version,
        timings=timings,
        schedules_digest=digest,
    )
