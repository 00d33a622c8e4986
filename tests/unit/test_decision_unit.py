"""Unit tests for worker.resend.decision: the pure choice of what follows one call to Tango."""

from __future__ import annotations

import dataclasses
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.policy import POLICY, fixed
from worker.resend.decision import (
    MIN_DEFER_MARGIN_SECONDS,
    CallContext,
    Deferred,
    Failed,
    History,
    ResendPolicy,
    Retrying,
    Sent,
    backoff_seconds,
    cooldown_remaining_seconds,
    decide,
    defer_jitter,
    delay_for_held_window,
    outage_backoff_seconds,
)
from worker.tango.client import TangoAnswer
from worker.tango.error_mapping import NeverReached, never_reached
from worker.tango.errors import (
    TangoAuthenticationError,
    TangoCooldownError,
    TangoError,
    TangoPermanentError,
    TangoTransientError,
)
from worker.tango.timeparse import ParsedInstant, parse_tango_instant

JITTER_AT_ZERO = MIN_DEFER_MARGIN_SECONDS


def instant(text: str) -> ParsedInstant:
    parsed = parse_tango_instant(text)
    assert parsed is not None
    return parsed


def cooldown(last_sent: str | None, tango_now: str | None) -> TangoCooldownError:
    return TangoCooldownError(
        "Cannot send more than once every 30 seconds.",
        status=403,
        i18n_key="403.005",
        request_id="req-1",
        last_sent_at=instant(last_sent) if last_sent else None,
        tango_now=instant(tango_now) if tango_now else None,
    )


def transient(
    *, ambiguous: bool = False, retry_after: float | None = None, status: int | None = 500
) -> TangoTransientError:
    return TangoTransientError(
        "Internal Server Error",
        status=status,
        request_id="req-t",
        ambiguous=ambiguous,
        retry_after=retry_after,
    )


# --- success --------------------------------------------------------------------------------


def test_an_answer_is_sent_and_starts_a_full_window() -> None:
    answer = TangoAnswer(
        status=201,
        body={"id": 1, "legacyId": "x", "createdAt": "2024-03-25T22:46:39.922Z"},
        request_id="r",
        tango_time=None,
        elapsed_seconds=0.2,
    )

    outcome = decide(answer, History(transient_failures=3, cooldown_deferrals=9), POLICY, fixed(0))

    assert outcome == Sent(response=answer.body, window_seconds=30.0)


def test_an_answer_without_a_body_is_still_sent() -> None:
    answer = TangoAnswer(201, None, None, None, 0.0)

    assert decide(answer, History(), POLICY, fixed(0.5)) == Sent(response=None, window_seconds=30.0)


# --- cooldown -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("last_sent", "tango_now", "remaining"),
    [
        # Millisecond text: latest = .923; 39.923 + 30 - 50 = 19.923.
        ("2024-03-25T22:46:39.922Z", "2024-03-25T22:46:50.000Z", 19.923),
        # Whole-second text could mean any moment up to :40, so the window runs to 23:10.
        ("2024-03-25T22:46:39Z", "2024-03-25T22:46:50Z", 20.0),
        # Minute text: latest 22:47:00, window to 22:47:30.
        ("2024-03-25T22:46Z", "2024-03-25T22:46:50Z", 40.0),
        # Java Date with a zone: 14:46:39 PST = 22:46:39Z, latest :40.
        ("Mon Mar 25 14:46:39 PST 2024", "2024-03-25T22:46:45.5Z", 24.5),
        # Epoch milliseconds.
        ("1711406799922", "2024-03-25T22:46:40Z", 29.923),
        # Tango's "now" is taken at its earliest reading: .at, not .latest.
        ("2024-03-25T22:46:39.000Z", "2024-03-25T22:46:41Z", 28.001),
    ],
)
def test_cooldown_with_readable_times_defers_for_the_rest_of_tangos_window(
    last_sent: str, tango_now: str, remaining: float
) -> None:
    error = cooldown(last_sent, tango_now)

    outcome = decide(error, History(), POLICY, fixed(0.0))

    assert isinstance(outcome, Deferred)
    assert outcome.window_seconds == pytest.approx(remaining, abs=1e-6)
    assert outcome.delay_seconds == pytest.approx(remaining + JITTER_AT_ZERO, abs=1e-6)
    assert outcome.delay_seconds > outcome.window_seconds
    assert "cooldown" in outcome.reason


def test_cooldown_delay_adds_jitter_on_top_of_the_remaining_window() -> None:
    error = cooldown("2024-03-25T22:46:39Z", "2024-03-25T22:46:50Z")

    outcome = decide(error, History(), POLICY, fixed(0.5))

    assert isinstance(outcome, Deferred)
    assert outcome.delay_seconds == pytest.approx(20.0 + 0.001 + 0.025)
    assert outcome.window_seconds == pytest.approx(20.0)


def test_cooldown_uses_tangos_clock_only_even_years_away_from_ours() -> None:
    """Given times from 2020 (years before the local clock), the remaining time is unchanged."""
    error = cooldown("2020-01-01T00:00:00.000Z", "2020-01-01T00:00:10.000Z")

    outcome = decide(error, History(), POLICY, fixed(0.0))

    assert isinstance(outcome, Deferred)
    assert outcome.window_seconds == pytest.approx(20.001)
    assert outcome.delay_seconds == pytest.approx(20.001 + JITTER_AT_ZERO)
    # The same gap with times in the far future gives the very same answer.
    future = cooldown("2099-01-01T00:00:00.000Z", "2099-01-01T00:00:10.000Z")
    assert decide(future, History(), POLICY, fixed(0.0)) == outcome


@pytest.mark.parametrize(
    ("last_sent", "tango_now"),
    [
        (None, "2024-03-25T22:46:50Z"),
        ("2024-03-25T22:46:39Z", None),
        (None, None),
    ],
)
def test_cooldown_with_unreadable_times_holds_a_full_window(
    last_sent: str | None, tango_now: str | None
) -> None:
    outcome = decide(cooldown(last_sent, tango_now), History(), POLICY, fixed(0.0))

    assert outcome == Deferred(
        delay_seconds=30.0 + JITTER_AT_ZERO,
        window_seconds=30.0,
        reason="cooldown: Cannot send more than once every 30 seconds.",
    )


@pytest.mark.parametrize(
    "tango_now",
    [
        "2024-03-25T22:47:10Z",  # exactly at the window's end: remaining 0
        "2024-03-25T22:47:11Z",  # past it
        "2024-03-26T00:00:00Z",  # long past
    ],
)
def test_contradictory_cooldown_times_hold_a_full_window(tango_now: str) -> None:
    """Tango refused, so its window is open; times saying otherwise are misread: full window."""
    outcome = decide(cooldown("2024-03-25T22:46:39Z", tango_now), History(), POLICY, fixed(0.0))

    assert isinstance(outcome, Deferred)
    assert outcome.window_seconds == 30.0
    assert outcome.delay_seconds == pytest.approx(30.0 + JITTER_AT_ZERO)


def test_a_last_sent_time_in_tangos_future_is_capped_at_two_windows() -> None:
    outcome = decide(
        cooldown("2024-03-25T23:00:00Z", "2024-03-25T22:00:00Z"), History(), POLICY, fixed(0.0)
    )

    assert isinstance(outcome, Deferred)
    assert outcome.window_seconds == 60.0
    assert outcome.delay_seconds == pytest.approx(60.0 + JITTER_AT_ZERO)


def test_remaining_just_under_the_cap_is_kept() -> None:
    # last sent (latest 22:47:20) after now (22:46:51): remaining 59 s < 60.
    error = cooldown("2024-03-25T22:47:19Z", "2024-03-25T22:46:51Z")

    assert cooldown_remaining_seconds(error, 30.0) == pytest.approx(59.0)


@pytest.mark.parametrize("deferrals", [0, 1, 8, 9])
def test_cooldown_deferrals_below_the_limit_keep_deferring(deferrals: int) -> None:
    outcome = decide(
        cooldown("2024-03-25T22:46:39Z", "2024-03-25T22:46:50Z"),
        History(cooldown_deferrals=deferrals),
        POLICY,
        fixed(0.0),
    )

    assert isinstance(outcome, Deferred)


@pytest.mark.parametrize("deferrals", [10, 11, 1000])
def test_too_many_cooldown_deferrals_fail_but_hold_the_window(deferrals: int) -> None:
    error = cooldown("2024-03-25T22:46:39Z", "2024-03-25T22:46:50Z")

    outcome = decide(error, History(cooldown_deferrals=deferrals), POLICY, fixed(0.0))

    assert isinstance(outcome, Failed)
    assert outcome.window_seconds == pytest.approx(20.0)
    assert "cooldown" in outcome.reason
    assert "request_id=req-1" in outcome.reason


def test_too_many_deferrals_with_unreadable_times_hold_a_full_window() -> None:
    outcome = decide(cooldown(None, None), History(cooldown_deferrals=10), POLICY, fixed(0.0))

    assert isinstance(outcome, Failed)
    assert outcome.window_seconds == 30.0


def test_transient_failures_do_not_count_against_cooldown_deferrals() -> None:
    outcome = decide(cooldown(None, None), History(transient_failures=100), POLICY, fixed(0.0))

    assert isinstance(outcome, Deferred)


# --- transient ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("earlier_failures", "delay"),
    [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0)],
)
def test_a_transient_failure_retries_with_backoff_and_releases_the_window(
    earlier_failures: int, delay: float
) -> None:
    error = transient()

    outcome = decide(error, History(transient_failures=earlier_failures), POLICY, fixed(0.0))

    assert outcome == Retrying(delay_seconds=delay, window_seconds=None, reason=str(error))


def test_an_ambiguous_failure_waits_past_a_full_window_and_holds_it() -> None:
    """Given a read timeout Tango may have resent, When deciding, Then no retry inside 30 s."""
    error = transient(ambiguous=True, status=None)

    outcome = decide(error, History(), POLICY, fixed(0.0))

    assert isinstance(outcome, Retrying)
    assert outcome.window_seconds == 30.0
    assert outcome.delay_seconds == pytest.approx(30.0 + JITTER_AT_ZERO)
    assert outcome.delay_seconds > 30.0


@pytest.mark.parametrize("rand", [0.0, 0.5, 0.999])
def test_an_ambiguous_failure_is_never_retried_before_window_plus_jitter(rand: float) -> None:
    outcome = decide(transient(ambiguous=True), History(), POLICY, fixed(rand))

    assert isinstance(outcome, Retrying)
    assert outcome.delay_seconds >= 30.0 + defer_jitter(POLICY, fixed(rand))


def test_an_ambiguous_failure_late_in_backoff_keeps_the_longer_backoff() -> None:
    # 7th failure with max_retries 10: ceiling 60, rand 0.999 -> 59.97, more than 30.001.
    policy = dataclasses.replace(POLICY, max_retries=10)

    outcome = decide(transient(ambiguous=True), History(transient_failures=6), policy, fixed(0.999))

    assert isinstance(outcome, Retrying)
    assert outcome.delay_seconds == pytest.approx(59.97)
    assert outcome.window_seconds == 30.0


@pytest.mark.parametrize(("retry_after", "delay"), [(120.0, 120.0), (0.1, 0.5), (0.0, 0.5)])
def test_retry_after_is_honoured_when_larger_than_backoff(retry_after: float, delay: float) -> None:
    outcome = decide(transient(retry_after=retry_after), History(), POLICY, fixed(0.0))

    assert isinstance(outcome, Retrying)
    assert outcome.delay_seconds == delay
    assert outcome.window_seconds is None


def test_retry_after_larger_than_the_window_wins_for_an_ambiguous_failure() -> None:
    outcome = decide(transient(ambiguous=True, retry_after=90.0), History(), POLICY, fixed(0.0))

    assert isinstance(outcome, Retrying)
    assert outcome.delay_seconds == 90.0
    assert outcome.window_seconds == 30.0


def test_the_last_allowed_retry_still_retries() -> None:
    outcome = decide(transient(), History(transient_failures=4), POLICY, fixed(0.0))

    assert isinstance(outcome, Retrying)


@pytest.mark.parametrize("earlier_failures", [5, 6, 50])
def test_an_exhausted_retry_budget_fails_with_the_last_error(earlier_failures: int) -> None:
    error = transient()

    outcome = decide(error, History(transient_failures=earlier_failures), POLICY, fixed(0.0))

    assert isinstance(outcome, Failed)
    assert outcome.window_seconds is None
    assert f"gave up after {earlier_failures + 1} transient failures" in outcome.reason
    assert str(error) in outcome.reason
    assert "request_id=req-t" in outcome.reason


def test_an_exhausted_budget_after_an_ambiguous_failure_holds_the_window() -> None:
    outcome = decide(transient(ambiguous=True), History(transient_failures=5), POLICY, fixed(0.0))

    assert isinstance(outcome, Failed)
    assert outcome.window_seconds == 30.0


def test_max_retries_zero_fails_the_first_transient_failure() -> None:
    policy = dataclasses.replace(POLICY, max_retries=0)

    outcome = decide(transient(), History(), policy, fixed(0.0))

    assert isinstance(outcome, Failed)
    assert "gave up after 1 transient failures" in outcome.reason
    assert outcome.window_seconds is None


def test_cooldown_deferrals_do_not_count_against_the_retry_budget() -> None:
    outcome = decide(transient(), History(cooldown_deferrals=100), POLICY, fixed(0.0))

    assert isinstance(outcome, Retrying)


# --- final refusals -----------------------------------------------------------------------


def never_reached_errors() -> list[TangoError]:
    """One of each call that provably never reached Tango."""
    refused = TangoTransientError("ConnectionError: no answer from Tango", ambiguous=False)
    refused.url = "http://tango.example/raas/v2/orders/RA1-2-3/resends"
    return [
        refused,
        TangoAuthenticationError("Unauthorized", status=401, i18n_key="401.001"),
        TangoPermanentError("Authentication failed", status=403),
        TangoTransientError("Service Unavailable", status=503),
        TangoTransientError("Too Many Requests", status=429, retry_after=2.0),
    ]


@pytest.mark.parametrize("error", never_reached_errors(), ids=lambda e: str(e.status))
def test_a_call_that_never_reached_tango_waits_with_capped_backoff_and_keeps_its_retries(
    error: TangoError,
) -> None:
    """Given a call that never reached Tango, with retries long spent (transient failures
    past the budget); Then the request waits (never fails for it) with backoff capped at
    TANGO_OUTAGE_RETRY_MAX_SECONDS, and the window is released."""
    policy = replace(POLICY, outage_retry_max_seconds=30.0, outage_patience_seconds=3600.0)
    spent = History(transient_failures=99, outage_failures=40, since_first_try_seconds=600.0)

    outcome = decide(error, spent, policy, fixed(0.999))

    assert isinstance(outcome, Retrying)
    assert outcome.waiting_on is never_reached(error)
    assert outcome.window_seconds is None
    assert 29.9 < outcome.delay_seconds <= 30.0


def test_the_outage_backoff_grows_from_the_base_and_is_jittered() -> None:
    """Equal jitter: half fixed, half random, doubling per call, capped."""
    policy = replace(POLICY, backoff_base_seconds=1.0, outage_retry_max_seconds=30.0)

    assert [outage_backoff_seconds(n, policy, fixed(0.0)) for n in (1, 2, 3, 6, 7)] == [
        0.5,
        1.0,
        2.0,
        15.0,
        15.0,
    ]
    assert outage_backoff_seconds(3, policy, fixed(0.5)) == 3.0


def test_the_last_try_before_patience_runs_out_lands_on_its_end() -> None:
    """Given 10 s of patience left and a backoff of 30 s; Then the next try is in 10 s."""
    policy = replace(POLICY, outage_retry_max_seconds=30.0, outage_patience_seconds=100.0)
    error = TangoTransientError("Service Unavailable", status=503)

    outcome = decide(
        error, History(outage_failures=9, since_first_try_seconds=90.0), policy, fixed(0.9)
    )

    assert isinstance(outcome, Retrying)
    assert outcome.delay_seconds == pytest.approx(10.0, abs=0.01)


@pytest.mark.parametrize("error", never_reached_errors(), ids=lambda e: str(e.status))
def test_patience_run_out_fails_naming_the_url_and_the_last_error(error: TangoError) -> None:
    policy = replace(POLICY, outage_patience_seconds=60.0)

    outcome = decide(error, History(since_first_try_seconds=60.0), policy, fixed(0.0))

    assert isinstance(outcome, Failed)
    assert outcome.window_seconds is None
    assert str(error) in outcome.reason
    assert "TANGO_OUTAGE_PATIENCE_SECONDS" in outcome.reason
    if error.url:
        assert error.url in outcome.reason


def test_a_probe_that_never_reached_tango_waits_and_keeps_the_window() -> None:
    """An earlier call's outcome is unknown: a refused probe waits, holding the window."""
    error = TangoTransientError("ConnectionError: no answer from Tango", ambiguous=False)

    outcome = decide(error, History(), POLICY, fixed(0.0), CallContext(0.1, 5.0))

    assert isinstance(outcome, Retrying)
    assert outcome.waiting_on is NeverReached.UNREACHABLE
    assert outcome.window_seconds == POLICY.window_seconds


@pytest.mark.parametrize(
    "error",
    [
        TangoPermanentError("Unknown order", status=404, i18n_key="404.017"),
        TangoPermanentError("sendEmail=false", status=403, i18n_key="403.003"),
        TangoPermanentError("newEtid: invalid", status=400, i18n_key="400.010"),
    ],
    ids=["404", "403.003", "400"],
)
def test_permanent_answers_still_fail_at_once(error: TangoError) -> None:
    outcome = decide(error, History(), POLICY, fixed(0.0))

    assert isinstance(outcome, Failed)
    assert never_reached(error) is None


@pytest.mark.parametrize(
    "error",
    [
        TangoPermanentError("Unknown order", status=404, i18n_key="404.017", request_id="r-p"),
        TangoPermanentError("sendEmail=false", status=403, i18n_key="403.003"),
        TangoError("something else"),
    ],
)
def test_a_permanent_refusal_fails_and_releases_the_window(error: TangoError) -> None:
    outcome = decide(error, History(), POLICY, fixed(0.0))

    assert outcome == Failed(reason=f"Tango refused the resend: {error}", window_seconds=None)


# --- backoff_seconds ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rand", "sequence"),
    [
        (0.0, [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]),
        (0.5, [0.75, 1.5, 3.0, 6.0, 12.0, 24.0, 45.0, 45.0]),
        (0.999, [0.9995, 1.999, 3.998, 7.996, 15.992, 31.984, 59.97, 59.97]),
    ],
)
def test_backoff_sequence_with_pinned_randomness(rand: float, sequence: list[float]) -> None:
    delays = [backoff_seconds(failures, POLICY, fixed(rand)) for failures in range(1, 9)]

    assert delays == pytest.approx(sequence, abs=1e-9)


def test_backoff_follows_the_policys_base_and_cap() -> None:
    policy = dataclasses.replace(
        POLICY, backoff_base_seconds=2.0, backoff_max_seconds=10.0, defer_jitter_seconds=0.0
    )

    delays = [backoff_seconds(failures, policy, fixed(0.0)) for failures in range(1, 6)]

    assert delays == [1.0, 2.0, 4.0, 5.0, 5.0]


@settings(max_examples=200, database=None, deadline=None)
@given(
    failures=st.integers(min_value=1, max_value=101),
    rand=st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
)
def test_backoff_stays_within_half_and_all_of_its_ceiling(failures: int, rand: float) -> None:
    ceiling = min(60.0, 2.0 ** (failures - 1))

    delay = backoff_seconds(failures, POLICY, fixed(rand))

    assert ceiling / 2 <= delay <= ceiling


# --- never early ----------------------------------------------------------------------------


@pytest.mark.parametrize("remaining", [0.0, 0.001, 1.0, 29.999, 30.0])
def test_delay_for_a_held_window_is_strictly_after_it(remaining: float) -> None:
    no_jitter = ResendPolicy(30.0, 5, 1.0, 60.0, 0.0, 10)

    for policy in (POLICY, no_jitter):
        delay = delay_for_held_window(remaining, policy, fixed(0.0))
        assert delay > remaining
        assert delay == pytest.approx(remaining + MIN_DEFER_MARGIN_SECONDS)


@pytest.mark.parametrize("remaining", [30.001, 45.0, 90.0, 3600.0])
def test_a_hold_longer_than_a_window_is_waited_out_in_window_sized_hops(remaining: float) -> None:
    """A holder mid-call holds window + call time; the waker wakes after one window, re-checks."""
    delay = delay_for_held_window(remaining, POLICY, fixed(0.0))

    assert delay == pytest.approx(30.0 + MIN_DEFER_MARGIN_SECONDS)
    assert delay > POLICY.window_seconds


def test_delay_for_a_window_already_over_is_just_the_margin() -> None:
    assert delay_for_held_window(-5.0, POLICY, fixed(0.0)) == MIN_DEFER_MARGIN_SECONDS


@pytest.mark.parametrize("rand", [0.0, 0.25, 0.999])
def test_defer_jitter_is_strictly_positive_and_bounded(rand: float) -> None:
    jitter = defer_jitter(POLICY, fixed(rand))

    assert jitter > 0
    assert jitter == pytest.approx(MIN_DEFER_MARGIN_SECONDS + 0.05 * rand)
    assert jitter < MIN_DEFER_MARGIN_SECONDS + POLICY.defer_jitter_seconds


@settings(max_examples=200, database=None, deadline=None)
@given(
    sent_ms=st.integers(min_value=0, max_value=10**6),
    gap_ms=st.integers(min_value=-60_000, max_value=60_000),
    rand=st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
)
def test_a_cooldown_deferral_never_lands_before_tangos_window_ends(
    sent_ms: int, gap_ms: int, rand: float
) -> None:
    """Given any last-sent/now pair, the wake-up comes after last_sent.latest + window."""
    base = datetime(2024, 3, 25, tzinfo=UTC) + timedelta(milliseconds=sent_ms)
    last_sent = ParsedInstant(at=base, resolution=timedelta(milliseconds=1))
    now = ParsedInstant(at=base + timedelta(milliseconds=gap_ms), resolution=timedelta(seconds=1))
    error = TangoCooldownError("cooldown", last_sent_at=last_sent, tango_now=now)

    outcome = decide(error, History(), POLICY, fixed(rand))

    assert isinstance(outcome, Deferred)
    window_end_from_now = (last_sent.latest - now.at).total_seconds() + 30.0
    assert outcome.delay_seconds > min(window_end_from_now, 60.0)
    assert outcome.delay_seconds > outcome.window_seconds > 0


def test_a_window_setting_shorter_than_the_one_tango_states_never_calls_inside_tangos() -> None:
    """Given RESEND_COOLDOWN_SECONDS set shorter than Tango's real window (1.5 s against the
    4 s its message states), the deferral runs to the end of Tango's window: calling at the
    end of ours would only earn another 403.005 (three of them, before this change)."""
    short = dataclasses.replace(POLICY, window_seconds=1.5)
    error = TangoCooldownError(
        "Cannot send more than once every 4 seconds. Last sent at 2024-03-25T22:46:39.500Z",
        status=403,
        i18n_key="403.005",
        last_sent_at=instant("2024-03-25T22:46:39.500Z"),
        tango_now=instant("2024-03-25T22:46:40.000Z"),
        stated_window_seconds=4.0,
    )

    outcome = decide(error, History(), short, fixed(0.0))

    assert isinstance(outcome, Deferred)
    assert outcome.window_seconds == pytest.approx(3.501, abs=1e-6)  # .501 latest + 4 - 40.0
