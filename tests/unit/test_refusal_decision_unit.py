"""The refusal proof (RESEND_EXCLUSIVE) as pure functions: a probe's 403.005 proves that our
ambiguous call acted only when all four conditions hold (worker/resend/refusal.py); without
the switch a refusal never records `sent`. Every spelling and precision of Tango's last-sent
time the client parses, built through the client's own error mapping."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from tests.support.policy import PROBING_POLICY, fixed
from worker.resend.decision import CallContext, Deferred, History, Sent, decide
from worker.resend.refusal import (
    last_sent_before_our_call,
    refusal_proves_sent,
    refusal_window_seconds,
)
from worker.sandbox.formats import render_last_sent
from worker.tango.error_mapping import error_for_response
from worker.tango.errors import TangoCooldownError

EXCLUSIVE = dataclasses.replace(PROBING_POLICY, exclusive=True)
# Tango's clock. Our ambiguous call's gate was at GATE (Tango's clock, as near as it matters).
GATE = datetime(2026, 12, 5, 23, 18, 21, 400000, tzinfo=UTC)
FORMATS = [
    "iso",
    "epoch-ms",
    "iso-seconds",
    "iso-seconds-offset",
    "java",
    "iso-minutes",
    "java-messageformat",
]
COARSE = ["iso-seconds", "iso-seconds-offset", "java", "iso-minutes", "java-messageformat"]


def refusal(last_sent: datetime, now: datetime, how: str, window: int = 30) -> TangoCooldownError:
    """Tango's 403.005 as the client maps it, with Tango's "now" in the body (ms)."""
    ms = int(last_sent.timestamp() * 1000)
    body = {
        "httpCode": 403,
        "i18nKey": "403.005",
        "timestamp": render_last_sent(int(now.timestamp() * 1000), "iso"),
        "message": f"Cannot send more than once every {window} seconds. Last sent at "
        + render_last_sent(ms, how),
    }
    error = error_for_response(403, {"Date": format_datetime(now, usegmt=True)}, json.dumps(body))
    assert isinstance(error, TangoCooldownError)
    return error


def probe_context(marker_clear: bool = True) -> CallContext:
    """The probe left 3.0 s after our call's gate and was answered 3.05 s after it."""
    return CallContext(
        0.05, probe_since_seconds=3.0, probe_answer_since_seconds=3.05, marker_clear=marker_clear
    )


def judge(error: TangoCooldownError, policy: object = EXCLUSIVE, **context: bool) -> object:
    assert isinstance(policy, type(EXCLUSIVE))
    return decide(error, History(), policy, fixed(0.0), probe_context(**context))


@pytest.mark.parametrize("how", FORMATS)
def test_our_call_acting_at_once_is_proved_by_the_refusal_at_any_precision(how: str) -> None:
    """Tango acted 20 ms after our gate (a warm connection: the near-tie the cooldown rule
    cannot call even at milliseconds: Tango's age of the resend, 3.0 s, is no younger than
    our 3.0 s from gate to probe), the probe was judged 3.02 s after the gate. Exclusive and
    the marker clear: `sent`, confirmed by the refusal."""
    error = refusal(GATE + timedelta(seconds=0.02), GATE + timedelta(seconds=3.02), how)
    outcome = judge(error)
    assert isinstance(outcome, Sent), outcome
    assert outcome.confirmed_by == "refusal"
    assert outcome.response is None
    # Our window is re-anchored to at most one window from now: our call acted after its
    # gate, and Tango's window is no longer than ours (a minute-precision time alone would
    # keep the order waiting up to two).
    assert 0 < outcome.window_seconds <= EXCLUSIVE.window_seconds


@pytest.mark.parametrize("how", FORMATS)
def test_where_milliseconds_prove_it_the_cooldown_rule_still_does(how: str) -> None:
    """Tango acted 0.3 s into our call: a millisecond time shows it (confirmed by
    "cooldown", switch or not); a coarser one needs the refusal proof."""
    error = refusal(GATE + timedelta(seconds=0.3), GATE + timedelta(seconds=3.02), how)
    outcome = judge(error)
    assert isinstance(outcome, Sent)
    assert outcome.confirmed_by == ("refusal" if how in COARSE else "cooldown")


@pytest.mark.parametrize("how", FORMATS)
def test_without_the_switch_a_refusal_alone_never_records_sent(how: str) -> None:
    """Tango acting at once is a near-tie even at milliseconds; without RESEND_EXCLUSIVE the
    request is resent after Tango's window (at least once). Acting later, only millisecond
    times prove it."""
    prompt = refusal(GATE + timedelta(seconds=0.02), GATE + timedelta(seconds=3.02), how)
    assert isinstance(judge(prompt, PROBING_POLICY), Deferred)
    later = refusal(GATE + timedelta(seconds=0.3), GATE + timedelta(seconds=3.02), how)
    outcome = judge(later, PROBING_POLICY)
    if how in COARSE:
        assert isinstance(outcome, Deferred), outcome
    else:
        assert isinstance(outcome, Sent) and outcome.confirmed_by == "cooldown"


@pytest.mark.parametrize("how", COARSE)
def test_another_call_of_ours_inside_the_window_defeats_the_proof(how: str) -> None:
    """Conditions 2 and 4 (the marker: another call of ours could have acted, or its Redis
    lost writes): nothing proved, the request is resent after Tango's window."""
    error = refusal(GATE + timedelta(seconds=0.02), GATE + timedelta(seconds=3.02), how)
    assert isinstance(judge(error, marker_clear=False), Deferred)


@pytest.mark.parametrize("stated", [None, 31, 3600])
def test_a_refusal_that_states_no_window_or_a_longer_one_than_ours_proves_nothing(
    stated: int | None,
) -> None:
    """Condition 1: Tango's rules must be the ones we know (a window no longer than ours)."""
    error = refusal(GATE, GATE + timedelta(seconds=3.02), "java-messageformat", stated or 30)
    if stated is None:
        error.stated_window_seconds = None
    assert refusal_window_seconds(error, 30.0) is None
    assert isinstance(judge(error), Deferred)
    # The same refusal stating our window proves it.
    error.stated_window_seconds = 30.0
    assert refusal_window_seconds(error, 30.0) == 30.0


@pytest.mark.parametrize("how", ["iso", "epoch-ms", "iso-seconds", "java"])
def test_a_portal_resend_before_our_call_vetoes_the_proof_when_the_time_shows_it(how: str) -> None:
    """Review scenario: a portal resend 5 s before our call, our call answered 502 by a
    gateway (it never reached Tango), the probe refused. Exclusive was promised and broken;
    the last-sent time, precise enough, shows a resend before our call started (condition
    3): no `sent`. At minute precision it cannot show it: the residual risk the promise
    carries (docs/guarantees.md)."""
    portal = GATE - timedelta(seconds=5)
    error = refusal(portal, GATE + timedelta(seconds=3.02), how)
    assert last_sent_before_our_call(error, probe_answer_since_seconds=3.05)
    outcome = judge(error)
    assert isinstance(outcome, Deferred), outcome
    assert not refusal_proves_sent(error, 30.0, True, 3.05)


@pytest.mark.parametrize("how", ["iso-minutes", "java-messageformat"])
def test_minute_precision_cannot_show_a_resend_before_our_call(how: str) -> None:
    error = refusal(GATE - timedelta(seconds=5), GATE + timedelta(seconds=3.02), how)
    assert not last_sent_before_our_call(error, probe_answer_since_seconds=3.05)


def test_the_veto_needs_both_times_and_our_answer_interval() -> None:
    error = refusal(GATE - timedelta(seconds=5), GATE + timedelta(seconds=3.02), "iso")
    assert not last_sent_before_our_call(error, None)
    error.tango_now = None
    assert not last_sent_before_our_call(error, 3.05)


def test_a_refusal_of_a_call_that_is_not_a_probe_is_a_cooldown_of_our_making() -> None:
    """Only a probe's refusal can prove anything: a plain call's is deferred as ever."""
    error = refusal(GATE, GATE + timedelta(seconds=3.02), "java-messageformat")
    outcome = decide(error, History(), EXCLUSIVE, fixed(0.0), CallContext(0.05))
    assert isinstance(outcome, Deferred)
    assert outcome.reason.startswith("cooldown")
