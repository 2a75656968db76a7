"""The report's per-store finishing, written out for speed, equals the reference one."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from storemon.aggregates.state import StoreSummary
from storemon.aggregates.timebase import HOUR_US
from storemon.aggregates.windows import AsOfFix, finish_store, windows_from_buckets

AS_OF = 1_674_670_402_479_220
NEAR = st.integers(min_value=AS_OF - 200 * HOUR_US, max_value=AS_OF + 3 * HOUR_US)
SUM = st.integers(min_value=0, max_value=168 * HOUR_US)
FIX = st.none() | st.builds(AsOfFix, NEAR, st.booleans(), st.none() | st.booleans())


@settings(max_examples=500, deadline=None)
@given(
    sums=st.lists(SUM, min_size=6, max_size=6),
    last_poll=st.none() | NEAR,
    last_active=st.booleans(),
    tail_end=st.one_of(NEAR, st.just(0), st.just(2**62)),
    fix=FIX,
)
def test_finish_store_equals_windows_from_buckets(
    sums: list[int], last_poll: int | None, last_active: bool, tail_end: int, fix: AsOfFix | None
) -> None:
    summary = StoreSummary(None, last_poll, last_active, tail_end)
    pairs = [(sums[0], sums[1]), (sums[2], sums[3]), (sums[4], sums[5])]
    expected = windows_from_buckets("s", AS_OF, pairs, summary, fix)
    assert finish_store("s", AS_OF, sums, last_poll, last_active, tail_end, fix) == expected
