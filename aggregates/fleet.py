"""The report of every store at once, on arrays: what the batch command computes.

The rules are those of :mod:`~storemon.aggregates.timeline` and
:func:`~storemon.aggregates.windows.windows_from_polls`, applied to all polls in a few
array operations instead of a loop per poll: each poll covers the stretch of its session
from the midpoint with the poll before it (or the session start) to the midpoint with the
poll after it (or the session end), and each window sums what of that stretch lies in it.
Every number is an exact integer of microseconds; the property tests hold the result equal
to :func:`~storemon.aggregates.windows.windows_from_polls`, store by store.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from storemon.aggregates.report import LONGEST_WINDOW_US, WINDOWS, StoreWindows
from storemon.aggregates.schedule import Sessions

Int64s = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]


def sorted_unique_polls(
    store: Int64s, ts_us: Int64s, active: Bools
) -> tuple[Int64s, Int64s, Bools]:
    """The polls sorted by store and time, one per store and timestamp (inactive winning,
    as in :func:`~storemon.aggregates.timeline.dedupe_polls`)."""
    if len(ts_us) == 0:
        return store, ts_us, active
    first_ts = int(ts_us.min())
    ts_bits = (int(ts_us.max()) - first_ts).bit_length()
    store_bits = int(store.max()).bit_length()
    if ts_bits + store_bits + 1 <= 62:
        # One integer key per poll (store, time, status) sorts faster than three columns;
        # built and taken apart in place, as each fresh array costs its pages.
        key = ts_us - first_ts
        key <<= 1
        key |= active
        key |= store << (ts_bits + 1)
        key.sort()
        # one per (store, time): the first, inactive (status bit 0) where both are there
        place = key >> 1
        keep = np.ones(len(key), dtype=np.bool_)
        np.not_equal(place[1:], place[:-1], out=keep[1:])
        del place
        if not keep.all():
            key = key[keep]
        active = (key & 1).astype(np.bool_)
        key >>= 1
        ts_us = key & ((1 << ts_bits) - 1)
        ts_us += first_ts
        key >>= ts_bits
        return key, ts_us, active
    order = np.lexsort((active, ts_us, store))
    store, ts_us, active = store[order], ts_us[order], active[order]
    keep = np.ones(len(ts_us), dtype=np.bool_)
    keep[1:] = (store[1:] != store[:-1]) | (ts_us[1:] != ts_us[:-1])
    return store[keep], ts_us[keep], active[keep]


def fleet_windows(
    store_ids: Sequence[str],
    store: Int64s,
    ts_us: Int64s,
    active: Bools,
    sessions_of: Callable[[Int64s], tuple[Int64s, Sequence[Sessions]]],
    as_of_us: int,
) -> list[StoreWindows]:
    """One report row per store with a poll at or before ``as_of_us``.

    ``store[i]`` indexes ``store_ids`` for poll ``i``; polls may come in any order and
    repeat. ``sessions_of(stores)`` gives, for the store numbers asked, the index of each
    one's sessions (overlapping the longest window) in the list it returns beside: stores
    with the same schedule and zone share them.
    """
    reported, sums = fleet_sums(store, ts_us, active, len(store_ids), sessions_of, as_of_us)
    return [
        StoreWindows(store_ids[number], (s[0], s[1], s[2]), (s[3], s[4], s[5]))
        for number, s in zip(reported.tolist(), sums.tolist(), strict=True)
    ]


def fleet_sums(
    store: Int64s,
    ts_us: Int64s,
    active: Bools,
    n_stores: int,
    sessions_of: Callable[[Int64s], tuple[Int64s, Sequence[Sessions]]],
    as_of_us: int,
) -> tuple[Int64s, Int64s]:
    """:func:`fleet_windows` as arrays: the numbers of the reported stores (ascending) and
    their exact sums, one row each: uptime in the hour, day and week windows, then
    downtime in the same windows, in microseconds."""
    used = ts_us <= as_of_us
    store, ts_us, active = sorted_unique_polls(store[used], ts_us[used], active[used])
    return sorted_fleet_sums(store, ts_us, active, n_stores, sessions_of, as_of_us)


def sorted_fleet_sums(
    store: Int64s,
    ts_us: Int64s,
    active: Bools,
    n_stores: int,
    sessions_of: Callable[[Int64s], tuple[Int64s, Sequence[Sessions]]],
    as_of_us: int,
) -> tuple[Int64s, Int64s]:
    """:func:`fleet_sums` of polls already at or before ``as_of_us`` and as
    :func:`sorted_unique_polls` leaves them."""
    reported = store[np.r_[True, store[1:] != store[:-1]]] if len(store) else store
    # The sessions of the reported stores, flat and sorted by (store, start): each store's
    # shared list in turn (the lists are sorted and the stores ascending).
    which, shared = sessions_of(reported)
    counts = np.array([len(sessions.starts) for sessions in shared], dtype=np.int64)
    firsts = np.cumsum(counts) - counts
    flat_starts = _flat([sessions.starts for sessions in shared])
    flat_ends = _flat([sessions.ends for sessions in shared])
    store_counts = counts[which] if len(which) else np.zeros(0, dtype=np.int64)
    store_offsets = np.cumsum(store_counts) - store_counts
    s_store = np.repeat(reported, store_counts)
    # index into the flat lists: the store's list start plus the place within its list
    taken = np.repeat(firsts[which] - store_offsets, store_counts)
    taken += np.arange(len(taken), dtype=np.int64)
    s_start, s_end = flat_starts[taken], flat_ends[taken]
    sums = np.zeros((n_stores, 2 * len(WINDOWS)), dtype=np.int64)
    if len(ts_us) == 0 or len(s_start) == 0:
        return reported, sums[reported]
    # The session holding each poll: the last session of its store that starts at or
    # before it, if the poll lies before that session's end.
    session = _last_at_or_before(s_store, s_start, store, ts_us)
    store_first = np.zeros(n_stores, dtype=np.int64)
    store_first[reported] = store_offsets
    inside = session >= store_first[store]  # else -1 or a session of an earlier store
    inside &= ts_us < s_end[session]
    if not inside.all():
        store, ts_us, active, session = (
            store[inside],
            ts_us[inside],
            active[inside],
            session[inside],
        )
    if len(ts_us) == 0:
        return reported, sums[reported]
    # Each poll covers its session from the midpoint with the poll before it to the one
    # with the poll after it, or to the session's edge where it is the first or the last.
    # Midpoints rounded down: the later poll wins the odd half microsecond.
    same = session[1:] == session[:-1]
    midpoints = ts_us[:-1] + ts_us[1:]
    midpoints //= 2
    cover_lo = s_start[session]
    np.copyto(cover_lo[1:], midpoints, where=same)
    cover_hi = s_end[session]
    np.copyto(cover_hi[:-1], midpoints, where=same)
    np.minimum(cover_hi, as_of_us, out=cover_hi)
    del midpoints, same, session, ts_us
    # The windows nest and end at as_of: each shorter window looks only at the polls whose
    # cover reaches into the window before it.
    for w in reversed(range(len(WINDOWS))):
        window_start = as_of_us - WINDOWS[w][0]
        if w < len(WINDOWS) - 1:
            reaching = np.flatnonzero(cover_hi > window_start)
            store, active = store[reaching], active[reaching]
            cover_lo, cover_hi = cover_lo[reaching], cover_hi[reaching]
        if len(store) == 0:
            break
        covered = np.maximum(cover_lo, window_start)
        np.subtract(cover_hi, covered, out=covered)
        np.maximum(covered, 0, out=covered)
        group_starts = np.flatnonzero(np.r_[True, store[1:] != store[:-1]])
        groups = store[group_starts]
        both = np.add.reduceat(covered, group_starts)
        covered *= active
        up = np.add.reduceat(covered, group_starts)
        sums[groups, w] = up
        sums[groups, len(WINDOWS) + w] = both - up
    return reported, sums[reported]


def _flat(lists: list[list[int]]) -> Int64s:
    return np.fromiter(itertools.chain.from_iterable(lists), dtype=np.int64)


def _last_at_or_before(s_store: Int64s, s_start: Int64s, store: Int64s, ts_us: Int64s) -> Int64s:
    """For each (store, ts), the index of the last session starting at or before it in the
    order (store, start), or -1: a session of an earlier store when the poll's own store
    has none by then (the caller checks). Sessions are sorted by (store, start); polls by
    (store, ts)."""
    # Starts before the first poll all behave alike: clamping them keeps their order (a tie
    # resolves to the later session, the only one that can still hold a poll).
    lowest = int(ts_us.min()) - 1
    starts = np.maximum(s_start, lowest) - lowest
    span = int(max(int(starts.max()), int(ts_us.max()) - lowest)) + 1
    if (max(int(store.max()), int(s_store.max())) + 1) * span < 2**62:
        # Both lists are sorted on one integer key: each session's place among the polls,
        # then, per poll, how many sessions come at or before it.
        poll_keys = store * span
        poll_keys += ts_us
        poll_keys -= lowest
        places = np.searchsorted(poll_keys, s_store * span + starts, side="left")
        del poll_keys
        found = np.cumsum(np.bincount(places, minlength=len(ts_us) + 1)[:-1])
        found -= 1
        return found
    # too wide for one integer key: merge sessions and polls in one sort
    times = np.concatenate([starts, ts_us - lowest])
    stores = np.concatenate([s_store, store])
    kinds = np.r_[np.zeros(len(starts), np.int64), np.ones(len(ts_us), np.int64)]
    order = np.lexsort((kinds, times, stores))
    marks = np.r_[np.arange(len(starts), dtype=np.int64), np.full(len(ts_us), -1, np.int64)]
    running = np.maximum.accumulate(marks[order])
    found = np.empty(len(ts_us), dtype=np.int64)
    is_poll = order >= len(starts)
    found[order[is_poll] - len(starts)] = running[is_poll]
    return found


__all__ = [
    "LONGEST_WINDOW_US",
    "fleet_sums",
    "fleet_windows",
    "sorted_fleet_sums",
    "sorted_unique_polls",
]
