"""Exactly once at any timestamp precision for a sole sender (RESEND_EXCLUSIVE), and the
probe landing inside the window whatever the rate limiter's backlog.

Real worker processes, the sandbox over loopback. The sandbox's "act, then answer late" fault
resends at once and stalls past our read timeout; its `last_sent_format` spells Tango's
last-sent time at milliseconds, seconds (ISO, Java's Date) or minutes (ISO, Java's
MessageFormat default, `12/5/26, 11:18 PM`).
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import redis
from click.testing import CliRunner

from tests.support.calls import accepted_sends, resend_calls
from tests.support.processes import WorkerFactory
from tests.support.records import wait_all_final
from tests.support.settings import Configure
from tests.support.waiting import wait_for
from worker import enqueue_resend
from worker.cli.entry import cli
from worker.sandbox import SandboxControl

pytestmark = pytest.mark.chaos

READ_TIMEOUT, CONNECT_TIMEOUT = 0.5, 0.25
# Tango stalls this long after acting: well past our read timeout.
STALL = 2.5
MS = ["iso", "epoch-ms"]
COARSE = ["iso-seconds", "iso-seconds-offset", "java", "iso-minutes", "java-messageformat"]


def settings(configure: Configure, window: float, **overrides: str) -> dict[str, str]:
    return configure(
        **{
            "RESEND_COOLDOWN_SECONDS": str(window),
            "TANGO_TIMEOUT_SECONDS": str(READ_TIMEOUT),
            "TANGO_CONNECT_TIMEOUT_SECONDS": str(CONNECT_TIMEOUT),
            "RESEND_STALL_BOUND_SECONDS": "1",
            **overrides,
        }
    )


def answered_calls(control: SandboxControl, order: str, count: int) -> list[dict[str, Any]]:
    def answered() -> list[dict[str, Any]] | None:
        calls = resend_calls(control, order)
        done = len(calls) >= count and all(c["answered_at"] is not None for c in calls)
        return calls if done else None

    return wait_for(answered, timeout=20, what=f"{count} answered calls of {order}")


@pytest.mark.parametrize("precision", MS + COARSE)
def test_exclusive_acting_then_answering_late_resends_once_at_every_precision(
    configure: Configure,
    control: SandboxControl,
    start_worker: WorkerFactory,
    precision: str,
) -> None:
    """Given RESEND_EXCLUSIVE=true and Tango acting at once, then answering after our read
    timeout, for three orders (on main before: 1 duplicate per order at seconds or minutes,
    and a coin flip at milliseconds), When the requests run, Then each order is resent once,
    each request `sent` and known from the probe's refusal (or, where milliseconds show it,
    from the cooldown's time), and `history` says which."""
    window = 3.0
    env = settings(configure, window, RESEND_EXCLUSIVE="true")
    control.configure(cooldown_seconds=window, last_sent_format=precision)
    orders = [f"RA251206-2710-{n:02d}" for n in range(3)]
    for order in orders:
        control.add_order(order)
        control.inject_fault(order, delay_seconds=STALL, delay_phase="after")
    start_worker(env)

    ids = [enqueue_resend(order, new_etid="E000001") for order in orders]
    done = wait_all_final(ids, timeout=40)

    for order, record in zip(orders, done, strict=True):
        assert record.status.value == "sent", record.reason
        assert record.confirmed_by in ("refusal", "cooldown")
        if precision in COARSE:
            assert record.confirmed_by == "refusal"
        assert [(e.outcome, e.probe) for e in record.attempt_log] == [
            ("retrying", False),
            ("confirmed", True),
        ]
        calls = answered_calls(control, order, 2)
        assert len(accepted_sends(calls)) == 1, f"{order}: a duplicate resend"
        assert [c["probe"] for c in calls] == [False, True]
    runner = CliRunner()
    shown = runner.invoke(cli, ["status", ids[0], "--json"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["confirmed_by"] == done[0].confirmed_by
    history = runner.invoke(cli, ["history", orders[0]])
    assert history.exit_code == 0, history.output
    assert f"confirmed by {done[0].confirmed_by}" in history.output


@pytest.mark.parametrize("precision", ["iso-seconds-offset", "java-messageformat"])
def test_without_the_switch_a_coarse_time_proves_nothing_and_the_order_is_resent_after_the_window(
    configure: Configure, control: SandboxControl, start_worker: WorkerFactory, precision: str
) -> None:
    """Without RESEND_EXCLUSIVE, nothing changes: a refusal alone is never `sent`. At
    seconds or minutes the probe proves nothing, and the request is resent after Tango's
    window (at least once: the duplicate the switch is there to prevent)."""
    window = 3.0
    env = settings(configure, window)
    control.configure(cooldown_seconds=window, last_sent_format=precision)
    order = "RA251206-2711-01"
    control.add_order(order)
    control.inject_fault(order, delay_seconds=STALL, delay_phase="after")
    start_worker(env)

    [record] = wait_all_final([enqueue_resend(order, new_etid="E000001")], timeout=40)
    assert record.status.value == "sent" and record.confirmed_by is None
    assert [(e.outcome, e.probe) for e in record.attempt_log] == [
        ("retrying", False),
        ("deferred", True),
        ("sent", False),
    ]
    sends = accepted_sends(answered_calls(control, order, 3))
    assert len(sends) == 2
    assert sends[1]["received_at"] - sends[0]["received_at"] >= window


@pytest.mark.parametrize("exclusive", [False, True])
def test_a_portal_resend_then_our_502_then_a_refused_probe_ends_resent_to_the_address_asked_for(
    configure: Configure, control: SandboxControl, start_worker: WorkerFactory, exclusive: bool
) -> None:
    """Review scenario: someone resends the order in Tango's portal; our call is answered
    502 by a gateway (it never reached Tango); the probe is refused, by the portal's window.
    Without the switch a refusal never proves anything; with it (the promise broken), the
    millisecond last-sent time shows a resend before our call started (condition 3). Either
    way the request ends resent after Tango's window, to the address it asked for."""
    window = 3.0
    env = settings(configure, window, RESEND_EXCLUSIVE=str(exclusive).lower())
    control.configure(cooldown_seconds=window, last_sent_format="iso")
    order = "RA251206-2712-01"
    control.add_order(order)
    control.inject_fault(order, status=502)
    start_worker(env)

    control.portal_resend(order)
    portal_at = time.time()
    time.sleep(0.3)  # the portal's resend comes well before our call
    request = enqueue_resend(order, new_email="asked-for@example.com")
    [record] = wait_all_final([request], timeout=40)

    assert record.status.value == "sent", record.reason
    assert record.confirmed_by is None
    assert [(e.outcome, e.probe) for e in record.attempt_log] == [
        ("retrying", False),
        ("deferred", True),
        ("sent", False),
    ]
    calls = answered_calls(control, order, 3)
    [sent] = accepted_sends(calls)
    assert sent["body"]["newEmail"] == "asked-for@example.com"
    assert sent["received_at"] >= portal_at + window - 0.05
    history = CliRunner().invoke(cli, ["history", order])
    assert history.exit_code == 0, history.output
    assert "sent (Tango's 201)" in history.output


def backlog_and_ambiguous_order(
    control: SandboxControl, ambiguous: str, backlog: int, process_seconds: float
) -> tuple[list[str], str]:
    """The ambiguous order first (Tango acts after `process_seconds`, then answers late), and
    `backlog` plain orders right behind it, each holding a rate-limit reservation."""
    control.add_order(ambiguous)
    control.inject_fault(
        ambiguous, process_seconds=process_seconds, delay_seconds=STALL, delay_phase="after"
    )
    first = enqueue_resend(ambiguous, new_etid="E000001")
    others = []
    for n in range(backlog):
        order = f"RA251206-2714-{n:02d}"
        control.add_order(order)
        others.append(enqueue_resend(order, new_etid="E000001"))
    return others, first


@pytest.mark.parametrize(
    ("exclusive", "precision", "process_seconds"),
    [(False, "iso", 0.3), (True, "java-messageformat", 0.0), (True, "iso-seconds-offset", 0.0)],
)
def test_the_probe_lands_inside_the_window_behind_a_backlog_of_30_rate_limited_requests(
    configure: Configure,
    control: SandboxControl,
    start_worker: WorkerFactory,
    test_db: redis.Redis,
    exclusive: bool,
    precision: str,
    process_seconds: float,
) -> None:
    """Given an ambiguous call (Tango acts, then answers late) followed by 30 requests that
    hold rate-limit reservations reaching 6 s ahead (5 calls/s), When the probe is due, Then
    it goes ahead of them and is answered inside the window counted from our call's gate;
    the order is resent once; no call is over Tango's rate limit (no 429). On main before,
    the probe waited behind the reservations, reached Tango after the window, got a 201 and
    the order was resent twice."""
    window = 3.0
    rate = 5.0
    env = settings(
        configure,
        window,
        RESEND_EXCLUSIVE=str(exclusive).lower(),
        RESEND_PROBE_DELAY_SECONDS="0.3",
        TANGO_RATE_LIMIT=str(rate),
    )
    control.configure(cooldown_seconds=window, last_sent_format=precision, rate_limit=rate)
    start_worker(env, concurrency=16)

    ambiguous = "RA251206-2713-01"
    others, request = backlog_and_ambiguous_order(control, ambiguous, 30, process_seconds)
    done = wait_all_final([request, *others], timeout=90)

    record = done[0]
    assert record.status.value == "sent", record.reason
    assert record.confirmed_by == ("refusal" if exclusive else "cooldown")
    calls = answered_calls(control, ambiguous, 2)
    assert len(accepted_sends(calls)) == 1, "the probe came after the window: a second resend"
    first, probe = calls[0], calls[1]
    assert probe["probe"]
    # Tango's clock is the sandbox's (this host's): answer minus our call's arrival bounds
    # the probe's answer minus our gate from above by the first call's transit.
    assert probe["answered_at"] - first["received_at"] < window
    assert all(r.status.value == "sent" for r in done), [r.reason for r in done]
    assert control.stats()["rate_limited"] == 0


def test_an_earlier_request_that_acted_and_got_a_500_keeps_a_refusal_from_proving_the_next(
    configure: Configure, control: SandboxControl, start_worker: WorkerFactory
) -> None:
    """Review scenario, end to end, with RESEND_EXCLUSIVE and minute-precision times (so the
    last-sent time can veto nothing): an earlier request of the order is resent by Tango but
    answered 500 (its retry gets a 500 too, and it fails), releasing the window; the next
    request's call is answered 502 by a gateway (it never reached Tango) and its probe is
    refused, because of the earlier request's resend. The order's call marker still holds
    that call (answered, never released): the refusal proves nothing, and the request is
    resent after Tango's window instead of being recorded `sent` for a resend that never
    happened."""
    window = 3.0
    env = settings(
        configure,
        window,
        RESEND_EXCLUSIVE="true",
        RESEND_MAX_RETRIES="1",
        RESEND_BACKOFF_BASE_SECONDS="0.2",
        RESEND_PROBE_DELAY_SECONDS="0.3",
    )
    control.configure(cooldown_seconds=window, last_sent_format="java-messageformat")
    order = "RA251206-2715-01"
    control.add_order(order)
    control.inject_fault(order, status=500, delay_phase="after")  # acts, then a 500
    control.inject_fault(order, status=500)  # its retry: a 500 before acting
    control.inject_fault(order, status=502)  # never reaches Tango
    start_worker(env)

    earlier = enqueue_resend(order, new_email="first@example.com")
    ours = enqueue_resend(order, new_email="second@example.com")
    failed, record = wait_all_final([earlier, ours], timeout=40)

    assert failed.status.value == "failed", failed.reason
    assert record.status.value == "sent", record.reason
    assert record.confirmed_by is None, "a refusal explained by our own earlier call"
    assert [(e.outcome, e.probe) for e in record.attempt_log] == [
        ("retrying", False),
        ("deferred", True),
        ("sent", False),
    ]
    calls = answered_calls(control, order, 5)
    assert [(c["status"], c["probe"]) for c in calls] == [
        (500, False),
        (500, False),
        (502, False),
        (403, True),
        (201, False),
    ]
    assert calls[4]["body"]["newEmail"] == "second@example.com"
    assert calls[4]["received_at"] - calls[0]["received_at"] >= window
