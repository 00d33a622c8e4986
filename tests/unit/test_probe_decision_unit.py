"""The probe's rule (issue 16), as pure functions: when does Tango's cooldown answer prove that
an ambiguous call resent? Every branch, with every spelling and precision of Tango's times the
client parses, built through the client's own error mapping, and under skewed clocks (Tango's
clock off ours by ±5 s changes nothing: only durations are compared)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from tests.support.policy import PROBING_POLICY
from worker.resend.decision import (
    CallContext,
    Deferred,
    Failed,
    History,
    Retrying,
    Sent,
    cooldown_proves_sent,
    decide,
    probe_delay,
)
from worker.resend.run.settle import stamp_final
from worker.state.records import ResendRecord
from worker.tango.error_mapping import error_for_response
from worker.tango.errors import TangoCooldownError, TangoPermanentError, TangoTransientError

# Tango's clock: our first call reached it at T0 + transit; these are Tango-clock readings.
T0 = datetime(2026, 3, 25, 22, 46, 39, 300000, tzinfo=UTC)


def spell(moment: datetime, how: str) -> str:
    ms = int(moment.timestamp() * 1000)
    return {
        "iso": moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z",
        "iso-offset": (moment.astimezone(UTC) + timedelta(hours=2)).strftime(
            "%Y-%m-%dT%H:%M:%S.%f+02:00"
        ),
        "iso-seconds": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "iso-minutes": moment.strftime("%Y-%m-%dT%H:%MZ"),
        "epoch-ms": str(ms),
        "epoch-s": str(ms // 1000),
        "java": moment.strftime("%a %b %d %H:%M:%S UTC %Y"),
    }[how]


def cooldown(
    last_sent: datetime, now: datetime, how: str, now_in: str = "body"
) -> TangoCooldownError:
    """Tango's 403.005 as the client maps it; `now_in` "body" (the error's timestamp, ms) or
    "date" (only the HTTP Date header, whole seconds)."""
    body = {
        "httpCode": 403,
        "i18nKey": "403.005",
        "message": "Cannot send more than once every 30 seconds. Last sent at "
        + spell(last_sent, how),
    }
    if now_in == "body":
        body["timestamp"] = spell(now, "iso")
    headers = {"Date": format_datetime(now, usegmt=True)}
    error = error_for_response(403, headers, json.dumps(body))
    assert isinstance(error, TangoCooldownError)
    return error


PRECISE = ["iso", "iso-offset", "epoch-ms"]
SECONDS = ["iso-seconds", "epoch-s", "java"]
SKEWS = [-5.0, 0.0, 5.0]


@pytest.mark.parametrize("skew", SKEWS)
@pytest.mark.parametrize("how", PRECISE)
def test_a_precise_last_sent_after_our_call_started_proves_it(how: str, skew: float) -> None:
    """Tango resent 0.3 s into our call; the probe left 1.0 s after the call started and Tango
    judged it 10 ms later: Tango's last resend is 0.71 s old, younger than 1.0 s."""
    tango = T0 + timedelta(seconds=skew)
    error = cooldown(tango + timedelta(seconds=0.3), tango + timedelta(seconds=1.01), how)
    assert cooldown_proves_sent(error, since_first_call_seconds=1.0)


@pytest.mark.parametrize("skew", SKEWS)
@pytest.mark.parametrize("how", PRECISE + SECONDS)
def test_a_last_sent_before_our_call_started_proves_nothing(how: str, skew: float) -> None:
    """A resend 0.2 s before our call started (a portal resend, say) is never ours."""
    tango = T0 + timedelta(seconds=skew)
    error = cooldown(tango - timedelta(seconds=0.2), tango + timedelta(seconds=1.01), how)
    assert not cooldown_proves_sent(error, since_first_call_seconds=1.0)


@pytest.mark.parametrize("how", PRECISE)
def test_a_resend_too_close_to_our_calls_start_proves_nothing(how: str) -> None:
    """Tango resent 2 ms into our call, and judged the probe 3 ms after it left: its last
    resend could be older than our call, within the timestamps' precision."""
    error = cooldown(T0 + timedelta(milliseconds=2), T0 + timedelta(seconds=1.003), how)
    assert not cooldown_proves_sent(error, since_first_call_seconds=1.0)


@pytest.mark.parametrize("how", SECONDS)
def test_whole_seconds_prove_only_with_a_second_to_spare(how: str) -> None:
    error = cooldown(T0 + timedelta(seconds=0.3), T0 + timedelta(seconds=1.01), how)
    assert not cooldown_proves_sent(error, since_first_call_seconds=1.0)  # 0.71 s, ±1 s
    error = cooldown(T0 + timedelta(seconds=2.3), T0 + timedelta(seconds=5.01), how)
    assert cooldown_proves_sent(error, since_first_call_seconds=5.0)


@pytest.mark.parametrize("skew", SKEWS)
def test_minute_precision_never_proves_anything_inside_a_window(skew: float) -> None:
    tango = T0 + timedelta(seconds=skew)
    error = cooldown(tango + timedelta(seconds=5), tango + timedelta(seconds=25), "iso-minutes")
    assert not cooldown_proves_sent(error, since_first_call_seconds=29.0)


def test_tangos_now_from_the_date_header_only_is_read_to_the_second() -> None:
    error = cooldown(T0 + timedelta(seconds=0.3), T0 + timedelta(seconds=1.01), "iso", "date")
    assert not cooldown_proves_sent(error, since_first_call_seconds=1.0)
    error = cooldown(T0 + timedelta(seconds=2.3), T0 + timedelta(seconds=5.01), "iso", "date")
    assert cooldown_proves_sent(error, since_first_call_seconds=5.0)


def test_missing_unreadable_or_contradictory_times_prove_nothing() -> None:
    no_time = TangoCooldownError("Cannot send more than once every 30 seconds.")
    assert not cooldown_proves_sent(no_time, since_first_call_seconds=10.0)
    garbage = error_for_response(
        403,
        {},
        json.dumps({"i18nKey": "403.005", "message": "Last sent at sometime recently"}),
    )
    assert isinstance(garbage, TangoCooldownError)
    assert not cooldown_proves_sent(garbage, since_first_call_seconds=10.0)
    future = cooldown(T0 + timedelta(seconds=3), T0 + timedelta(seconds=1), "iso")
    assert not cooldown_proves_sent(future, since_first_call_seconds=10.0)
    fine = cooldown(T0 + timedelta(seconds=0.3), T0 + timedelta(seconds=1.01), "iso")
    assert not cooldown_proves_sent(fine, since_first_call_seconds=0.0)


def probe_call(since: float) -> CallContext:
    return CallContext(elapsed_seconds=0.01, probe_since_seconds=since)


def test_a_proving_probe_is_sent_confirmed_by_cooldown_and_keeps_tangos_window() -> None:
    error = cooldown(T0 + timedelta(seconds=0.3), T0 + timedelta(seconds=10.01), "iso")
    outcome = decide(error, History(1, 0), PROBING_POLICY, lambda: 0.0, probe_call(10.0))
    assert isinstance(outcome, Sent) and outcome.confirmed_by == "cooldown"
    assert outcome.response is None
    assert outcome.window_seconds == pytest.approx(30 - 9.71, abs=0.002)


def test_an_inconclusive_probe_waits_out_tangos_window_without_counting_a_cooldown() -> None:
    error = cooldown(T0 + timedelta(seconds=0.3), T0 + timedelta(seconds=10.01), "iso-minutes")
    history = History(1, PROBING_POLICY.max_cooldown_deferrals)  # a cooldown budget already spent
    outcome = decide(error, history, PROBING_POLICY, lambda: 0.0, probe_call(10.0))
    assert isinstance(outcome, Deferred), "not a cooldown of ours: the budget is not used"
    assert outcome.delay_seconds >= outcome.window_seconds > 0
    assert outcome.reason.startswith("probe inconclusive")


def test_a_probes_201_is_the_resend() -> None:
    from worker.tango.client import TangoAnswer

    answer = TangoAnswer(201, {"id": 1}, "t-1", None, 0.01)
    outcome = decide(answer, History(1, 0), PROBING_POLICY, lambda: 0.0, probe_call(10.0))
    assert outcome == Sent({"id": 1}, 30)


def test_a_probes_own_failure_never_gives_the_window_back() -> None:
    """The earlier call may still have resent: a 503 or a 404 answering the probe holds the
    window (one window from now), where a plain call's would release it."""
    unavailable = TangoTransientError("HTTP 503", status=503)
    plain = decide(unavailable, History(1, 0), PROBING_POLICY, lambda: 0.0)
    assert isinstance(plain, Retrying) and plain.window_seconds is None
    probed = decide(unavailable, History(1, 0), PROBING_POLICY, lambda: 0.0, probe_call(10.0))
    assert isinstance(probed, Retrying) and probed.window_seconds == 30
    missing = TangoPermanentError("Order not found", status=404)
    failed = decide(missing, History(1, 0), PROBING_POLICY, lambda: 0.0, probe_call(10.0))
    assert isinstance(failed, Failed) and failed.window_seconds == 30


def test_an_ambiguous_outcome_is_probed_soon_inside_the_window() -> None:
    timeout = TangoTransientError("ReadTimeout: no answer", ambiguous=True)
    outcome = decide(timeout, History(), PROBING_POLICY, lambda: 0.0, CallContext(10.0))
    assert isinstance(outcome, Retrying)
    assert outcome.window_seconds == 30, "the window stays held"
    assert outcome.delay_seconds == pytest.approx(3.0 + 0.001)
    without_context = decide(timeout, History(), PROBING_POLICY, lambda: 0.0)
    assert isinstance(without_context, Retrying) and without_context.delay_seconds > 30


def test_the_probe_delay_is_capped_so_the_probe_lands_inside_the_window() -> None:
    """Sent after the first call's elapsed time plus the delay, and taking at most one send,
    the probe must reach Tango less than a window after the first call started."""
    assert probe_delay(10.0, PROBING_POLICY) == 3.0  # 30 - 10 - 13.05 = 6.95 of room
    assert probe_delay(15.0, PROBING_POLICY) == pytest.approx(1.95)
    assert probe_delay(20.0, PROBING_POLICY) == 0.0  # no room: at once (never worse than waiting)
    assert probe_delay(1.0, PROBING_POLICY) == 3.0


@pytest.mark.parametrize("skew", SKEWS)
def test_a_proving_probe_dates_the_resend_when_it_happened_not_when_it_was_proved(
    skew: float,
) -> None:
    """sent_at is the resend's moment: Tango's last resend was 9.71 s before its answer (a
    duration on Tango's clock alone, whatever its skew), so the record says so, not the
    probe's time; a refusal's proof, which dates nothing, keeps the cut-off call's start."""
    shift = timedelta(seconds=skew)
    error = cooldown(
        T0 + shift + timedelta(seconds=0.3), T0 + shift + timedelta(seconds=10.01), "iso"
    )
    outcome = decide(error, History(1, 0), PROBING_POLICY, lambda: 0.0, probe_call(10.0))
    assert isinstance(outcome, Sent) and outcome.sent_seconds_before == pytest.approx(9.71)

    probed_at = datetime(2026, 3, 25, 22, 46, 50, tzinfo=UTC)  # our clock, at the answer
    record = ResendRecord(
        id="0123456789ab.RA180426-1401-64",
        reference_order_id="RA180426-1401-64",
        created_at=probed_at - timedelta(seconds=40),
        updated_at=probed_at,
        unresolved_call_started_at=(probed_at - timedelta(seconds=26)).timestamp(),
    )
    stamp_final(record, outcome, probed_at)
    assert record.sent_at == probed_at - timedelta(seconds=9.71)
    assert record.confirmed_by == "cooldown" and record.unresolved_call_started_at is None

    refused = ResendRecord(
        id="0123456789ab.RA180426-1401-65",
        reference_order_id="RA180426-1401-65",
        created_at=probed_at - timedelta(seconds=40),
        updated_at=probed_at,
        unresolved_call_started_at=(probed_at - timedelta(seconds=26)).timestamp(),
    )
    stamp_final(refused, Sent(None, 4.0, confirmed_by="refusal"), probed_at)
    assert refused.sent_at == probed_at - timedelta(seconds=26)
    answered = ResendRecord(
        id="0123456789ab.RA180426-1401-66",
        reference_order_id="RA180426-1401-66",
        created_at=probed_at - timedelta(seconds=1),
        updated_at=probed_at,
    )
    stamp_final(answered, Sent({"ok": True}, 30.0), probed_at)
    assert answered.sent_at == probed_at, "Tango's 201: now"
