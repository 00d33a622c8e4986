"""A call that times out after Tango may have resent: docs/how-it-works.md ("Failures") says
the outcome is ambiguous, the window stays held and the retry waits for it. The record shows it: its
attempt_log reads "retrying" then "sent"."""

from __future__ import annotations

import time

import pytest
import redis

from tests.support.calls import resend_calls
from tests.support.processes import WorkerFactory
from tests.support.records import wait_all_final
from tests.support.settings import Configure
from tests.support.waiting import wait_for
from worker import enqueue_resend, get_resend
from worker.sandbox import SandboxControl
from worker.state.keys import RedisKeys

pytestmark = pytest.mark.chaos

WINDOW, READ_TIMEOUT = 2.0, 1.0
ORDER = "RA251202-8001-01"


def window_state(client: redis.Redis, prefix: str) -> tuple[str | None, int]:
    key = RedisKeys(prefix).order_window(ORDER)
    holder, ttl = client.get(key), client.pttl(key)
    return (None if holder is None else str(holder)), int(ttl)


def test_ambiguous_timeout_holds_the_window_then_resolves_to_sent(
    configure: Configure,
    control: SandboxControl,
    start_worker: WorkerFactory,
    test_db: redis.Redis,
) -> None:
    """Tango resends, then answers after our read timeout, and its cooldown answer to our
    probe gives the last-sent time to the minute only: nothing is proved (issue 16), so the
    request falls back to at least once. The window stays held by this request throughout,
    the resend goes after Tango's window, and nothing of the order goes in between."""
    env = configure(
        RESEND_COOLDOWN_SECONDS=str(WINDOW),
        TANGO_TIMEOUT_SECONDS=str(READ_TIMEOUT),
        TANGO_CONNECT_TIMEOUT_SECONDS="0.5",
    )
    control.configure(cooldown_seconds=WINDOW, last_sent_format="iso-minutes")
    control.add_order(ORDER)
    # Tango resends at once, then answers after our read timeout.
    control.inject_fault(ORDER, delay_seconds=READ_TIMEOUT + 1.5, delay_phase="after")
    start_worker(env)

    first = enqueue_resend(ORDER, new_etid="E000001")
    second = enqueue_resend(ORDER, new_etid="E000002")  # same order, queued behind it

    def retrying() -> bool:
        record = get_resend(first)
        return record is not None and record.attempts >= 1 and record.attempt_log != []

    wait_for(retrying, timeout=15, interval=0.01, what="the ambiguous outcome")
    # Until shortly before its resend is due, the window is held by this request, never
    # released (it then lapses at the end of Tango's window, and the resend goes).
    held_samples: list[tuple[str | None, int]] = []
    while True:
        record = get_resend(first)
        assert record is not None
        if record.status.value == "sent" or len(record.attempt_log) >= 2:
            break
        held_samples.append(window_state(test_db, env["REDIS_KEY_PREFIX"]))
        time.sleep(0.02)
    due = record.next_attempt_at
    while record.status.value != "sent" and due is not None and time.time() < due.timestamp() - 0.1:
        held_samples.append(window_state(test_db, env["REDIS_KEY_PREFIX"]))
        time.sleep(0.05)
    assert held_samples, "saw the window while the request waited"
    assert all(holder == first and ttl > 0 for holder, ttl in held_samples), held_samples[:5]

    done = wait_all_final([first, second], timeout=30)
    assert [r.status.value for r in done] == ["sent", "sent"]
    assert done[0].confirmed_by is None
    assert [(e.outcome, e.probe) for e in done[0].attempt_log] == [
        ("retrying", False),
        ("deferred", True),  # the probe: 403.005, last sent "to the minute"
        ("sent", False),
    ]
    assert done[0].reason is None and done[0].attempts == 3

    calls = resend_calls(control, ORDER)
    assert [(c["status"], c["body"], c["probe"]) for c in calls] == [
        (201, {"newEtid": "E000001"}, False),  # acted on, answered too late
        (403, {"newEtid": "E000001"}, True),  # the probe, inside Tango's window
        (201, {"newEtid": "E000001"}, False),  # the resend, after Tango's window
        (201, {"newEtid": "E000002"}, False),
    ]
    retry_gap = calls[2]["received_at"] - calls[0]["received_at"]
    assert retry_gap >= WINDOW - 0.01, "no second resend inside the window"
    assert calls[3]["received_at"] - calls[2]["answered_at"] >= WINDOW - 0.01


def test_ambiguous_timeout_out_of_retries_fails_but_keeps_the_window(
    configure: Configure,
    control: SandboxControl,
    start_worker: WorkerFactory,
    test_db: redis.Redis,
) -> None:
    """Out of retries, the request fails, yet the window it may have opened is kept, so the
    next request of the order waits for it."""
    env = configure(
        RESEND_COOLDOWN_SECONDS=str(WINDOW),
        TANGO_TIMEOUT_SECONDS=str(READ_TIMEOUT),
        TANGO_CONNECT_TIMEOUT_SECONDS="0.5",
        RESEND_MAX_RETRIES="0",
    )
    control.configure(cooldown_seconds=WINDOW)
    control.add_order(ORDER)
    control.inject_fault(ORDER, delay_seconds=READ_TIMEOUT + 1.5, delay_phase="after")
    start_worker(env)

    first = enqueue_resend(ORDER, new_etid="E000001")
    second = enqueue_resend(ORDER, new_etid="E000002")
    done = wait_all_final([first, second], timeout=30)

    assert [r.status.value for r in done] == ["failed", "sent"]
    assert done[0].reason is not None and done[0].reason.startswith("gave up after 1 transient")
    calls = resend_calls(control, ORDER)
    assert [c["body"] for c in calls] == [{"newEtid": "E000001"}, {"newEtid": "E000002"}]
    assert all(c["i18nKey"] != "403.005" for c in calls)
    assert calls[1]["received_at"] - calls[0]["received_at"] >= READ_TIMEOUT + WINDOW - 0.01
