"""The limits' building blocks: the JSON depth check and the failed-authentication counter."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from graven.errors import ValidationError
from graven.server.limits import FailureLimiter, address_subject, check_depth

TRICKY = st.text(alphabet='[]{}"\\ab\u00e9\n', max_size=8)
JSON = st.recursive(st.none() | st.booleans() | st.integers(-(2**53), 2**53) | TRICKY,
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TRICKY, inner, max_size=3),
                    max_leaves=30)  # fmt: skip


def depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    return 0


@settings(max_examples=300)
@given(value=JSON, limit=st.integers(0, 8))
def test_depth_check_agrees_with_a_walk(value: Any, limit: int) -> None:
    """The text-level check refuses exactly the values nested deeper than the limit (brackets in strings too)."""
    raw = orjson.dumps(value)
    if depth(value) > limit:
        with pytest.raises(ValidationError) as caught:
            check_depth(raw, limit)
        assert f"<{depth(value)} levels>" == caught.value.given
    else:
        check_depth(raw, limit)


class TestFailureLimiter:
    def test_throttles_after_the_limit_and_reports_once_per_window(self) -> None:
        """N failures are allowed; then each attempt waits until the window ends; one report per window."""
        now = [100.0]
        limiter = FailureLimiter(3, 60, clock=lambda: now[0])
        subject = [("ip", "203.0.113.7")]
        for _ in range(3):
            assert (0.0, []) == limiter.throttled(subject)
            limiter.failed(subject)
        now[0] = 110.0
        assert (50.0, [(("ip", "203.0.113.7"), 4)]) == limiter.throttled(subject)
        assert (50.0, []) == limiter.throttled(subject)
        now[0] = 160.0
        assert (0.0, []) == limiter.throttled(subject)
        assert (0.0, []) == limiter.throttled([("ip", "198.51.100.1")])

    def test_memory_is_bounded(self) -> None:
        """Past max_subjects, expired windows and then the oldest are forgotten."""
        now = [0.0]
        limiter = FailureLimiter(1, 10, clock=lambda: now[0], max_subjects=100)
        for i in range(1000):
            now[0] = i / 10
            limiter.failed([("ip", f"10.0.{i // 256}.{i % 256}")])
        assert len(limiter._windows) <= 100

    def test_a_full_table_forgets_quiet_windows_before_throttled_ones(self) -> None:
        """Filling the table with fresh subjects does not free a throttled address."""
        now = [0.0]
        limiter = FailureLimiter(2, 60, clock=lambda: now[0], max_subjects=10)
        limiter.failed([("ip", "203.0.113.7")] * 2)
        for i in range(100):
            now[0] = 1 + i / 10
            limiter.failed([("key", f"{i:012x}")])
        assert limiter.throttled([("ip", "203.0.113.7")])[0] > 0

    def test_failed_reports_a_subject_once_when_it_passes_the_limit(self) -> None:
        limiter = FailureLimiter(2, 60, clock=lambda: 0.0)
        assert [[], [], [(("user", "frank"), 3)], []] == [limiter.failed([("user", "frank")]) for _ in range(4)]
        assert limiter.over(("user", "frank"))
        assert not limiter.over(("user", "grace"))


@pytest.mark.parametrize(("ip", "subject"), [
    ("203.0.113.7", "203.0.113.7"),
    ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
    ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
    ("::ffff:198.51.100.4", "198.51.100.4"),
    (None, "unknown"),
])  # fmt: skip
def test_addresses_are_counted_by_what_a_client_cannot_vary(ip: str | None, subject: str) -> None:
    """An IPv6 client picks the low 64 bits of its address at will: it is counted by its /64."""
    assert ("ip", subject) == address_subject(ip)
