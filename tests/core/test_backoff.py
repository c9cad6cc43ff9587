import random
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from automate.core.backoff import compute_delay, retry_after_seconds
from automate.core.errors import SpecError
from automate.core.specs import BackoffPolicy

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


class FakeRng:
    """Returns the upper bound, or a fixed fraction of it, and records the calls."""

    def __init__(self, fraction: float = 1.0) -> None:
        self.fraction = fraction
        self.calls: list[tuple[float, float]] = []

    def uniform(self, a: float, b: float) -> float:
        self.calls.append((a, b))
        return a + (b - a) * self.fraction


def test_exponential_without_jitter_doubles_up_to_the_cap():
    policy = BackoffPolicy(base_seconds=1.0, max_seconds=10.0, jitter="none")
    assert [compute_delay(policy, n) for n in range(1, 7)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_full_jitter_draws_uniformly_below_the_exponential_ceiling():
    rng = FakeRng(0.5)
    policy = BackoffPolicy(base_seconds=2.0, max_seconds=100.0)
    assert compute_delay(policy, 3, rng) == 4.0
    assert rng.calls == [(0.0, 8.0)]
    compute_delay(policy, 10, rng)
    assert rng.calls[-1] == (0.0, 100.0)


def test_fixed_kind_ignores_the_attempt_number():
    policy = BackoffPolicy(kind="fixed", base_seconds=5.0, jitter="none")
    assert {compute_delay(policy, n) for n in (1, 2, 10, 500)} == {5.0}
    rng = FakeRng(0.25)
    assert compute_delay(BackoffPolicy(kind="fixed", base_seconds=8.0), 7, rng) == 2.0
    assert rng.calls == [(0.0, 8.0)]


def test_seeded_rng_is_deterministic_and_default_policy_is_used_for_none():
    first = [compute_delay(None, n, random.Random(42)) for n in range(1, 10)]
    second = [compute_delay(None, n, random.Random(42)) for n in range(1, 10)]
    assert first == second
    assert all(0.0 <= d <= 300.0 for d in first)


def test_params_mapping_is_validated_like_a_policy():
    assert compute_delay({"kind": "fixed", "base_seconds": 3, "jitter": "none"}, 4) == 3.0
    with pytest.raises(SpecError, match=r"^retry\.base_seconds: Input should be greater than 0$"):
        compute_delay({"base_seconds": -1}, 1)
    with pytest.raises(SpecError, match=r"^retry\.max_seconds: must be >= base_seconds$"):
        compute_delay({"base_seconds": 10, "max_seconds": 5}, 1)
    with pytest.raises(SpecError, match=r"^retry\.kind: Input should be 'exponential' or 'fixed'$"):
        compute_delay({"kind": "linear"}, 1)


@pytest.mark.parametrize("attempt", [0, -1, 1.5, True, "2"])
def test_attempt_must_be_a_positive_int(attempt):
    with pytest.raises(ValueError, match="attempt"):
        compute_delay(None, attempt)


def test_huge_attempt_numbers_do_not_overflow():
    policy = BackoffPolicy(base_seconds=1e-9, max_seconds=60.0, jitter="none")
    assert compute_delay(policy, 10_000) == 60.0
    assert compute_delay(policy, 2) == 2e-9


def test_retry_after_is_a_floor_without_jitter_and_capped_by_max_seconds():
    policy = BackoffPolicy(base_seconds=1.0, max_seconds=30.0)
    rng = FakeRng(0.0)
    assert compute_delay(policy, 1, rng, retry_after=12.0) == 12.0
    assert compute_delay(policy, 1, rng, retry_after=3600.0) == 30.0
    # a smaller Retry-After does not shorten the computed backoff
    no_jitter = BackoffPolicy(base_seconds=1.0, max_seconds=30.0, jitter="none")
    assert compute_delay(no_jitter, 4, retry_after=2.0) == 8.0
    # nonsense values are ignored
    assert compute_delay(no_jitter, 1, retry_after=float("nan")) == 1.0
    assert compute_delay(no_jitter, 1, retry_after=-5.0) == 1.0


policies = st.builds(
    BackoffPolicy,
    kind=st.sampled_from(["exponential", "fixed"]),
    base_seconds=st.floats(min_value=1e-6, max_value=1000.0),
    max_seconds=st.floats(min_value=1000.0, max_value=86400.0),
    jitter=st.sampled_from(["full", "none"]),
)


@given(
    policy=policies,
    attempt=st.integers(min_value=1, max_value=5000),
    seed=st.integers(),
    retry_after=st.none() | st.floats(allow_nan=True, allow_infinity=True),
)
def test_delay_is_always_within_zero_and_the_cap(policy, attempt, seed, retry_after):
    delay = compute_delay(policy, attempt, random.Random(seed), retry_after=retry_after)
    assert 0.0 <= delay <= policy.max_seconds
    if retry_after is not None and 0 <= retry_after <= policy.max_seconds:
        assert delay >= retry_after


@given(policy=policies, attempt=st.integers(min_value=1, max_value=60))
def test_unjittered_exponential_delay_never_decreases(policy, attempt):
    policy = policy.model_copy(update={"jitter": "none"})
    assert compute_delay(policy, attempt + 1) >= compute_delay(policy, attempt)


# --- Retry-After ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [("120", 120.0), (" 7 ", 7.0), ("0", 0.0), ("1.5", 1.5), (b"30", 30.0), ("000", 0.0)],
)
def test_delta_seconds(value, expected):
    assert retry_after_seconds(value, now=NOW) == expected


@pytest.mark.parametrize(
    "value",
    [None, "", "   ", "-1", "+5", "abc", "1e3", "5s", "nan", "inf", "9" * 16, "1.", ".5", "12 13", "Mon"],
)
def test_garbage_and_negatives_are_rejected(value):
    assert retry_after_seconds(value, now=NOW) is None


def test_http_date_forms_are_seconds_from_now():
    later = "Wed, 01 May 2024 12:01:30 GMT"
    assert retry_after_seconds(later, now=NOW) == 90.0
    assert retry_after_seconds("Wednesday, 01-May-24 12:00:10 GMT", now=NOW) == 10.0  # RFC 850
    assert retry_after_seconds("Wed May  1 12:00:05 2024", now=NOW) == 5.0  # asctime, read as UTC


def test_http_date_in_the_past_means_now():
    assert retry_after_seconds("Wed, 01 May 2024 11:00:00 GMT", now=NOW) == 0.0


def test_now_may_be_naive_aware_in_another_zone_or_a_timestamp():
    value = "Wed, 01 May 2024 12:00:20 GMT"
    assert retry_after_seconds(value, now=NOW.replace(tzinfo=None)) == 20.0
    paris = NOW.astimezone(timezone(timedelta(hours=2)))
    assert retry_after_seconds(value, now=paris) == 20.0
    assert retry_after_seconds(value, now=NOW.timestamp()) == 20.0


def test_http_date_without_now_uses_the_clock():
    future = datetime.now(UTC) + timedelta(hours=1)
    seconds = retry_after_seconds(future.strftime("%a, %d %b %Y %H:%M:%S GMT"))
    assert seconds is not None
    assert 3500 < seconds <= 3600


@pytest.mark.parametrize("value", ["Wed, 32 May 2024 12:00:00 GMT", "Wed, 01 Foo 2024 12:00:00 GMT"])
def test_invalid_dates_are_rejected(value):
    assert retry_after_seconds(value, now=NOW) is None


def test_parsed_header_feeds_compute_delay():
    policy = BackoffPolicy(max_seconds=600.0)
    seconds = retry_after_seconds("Wed, 01 May 2024 12:02:00 GMT", now=NOW)
    assert compute_delay(policy, 1, FakeRng(0.0), retry_after=seconds) == 120.0
