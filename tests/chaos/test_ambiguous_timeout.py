"""A call that times out after Tango may have resent: README "Failures" says the outcome is
ambiguous, the window stays held and the retry waits for it. The record shows it: its
attempt_log reads "retrying" then "sent"."""

from __future__ import annotations

import time

import pytest
import redis

from tests.chaos.fixtures import Configure, WorkerFactory
from tests.chaos.system import resend_calls, wait_all_final
from tests.integration.harness import wait_for
from worker import enqueue_resend, get_resend
from worker.keys import RedisKeys
from worker.sandbox import SandboxControl

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
    env = configure(
        RESEND_COOLDOWN_SECONDS=str(WINDOW),
        TANGO_TIMEOUT_SECONDS=str(READ_TIMEOUT),
        TANGO_CONNECT_TIMEOUT_SECONDS="0.5",
    )
    control.configure(cooldown_seconds=WINDOW)
    control.add_order(ORDER)
    # Tango resends at once, then answers after our read timeout.
    control.inject_fault(ORDER, delay_seconds=READ_TIMEOUT + 1.5, delay_phase="after")
    start_worker(env)

    first = enqueue_resend(ORDER, new_etid="E000001")
    second = enqueue_resend(ORDER, new_etid="E000002")  # same order, queued behind it

    def retrying() -> bool:
        record = get_resend(first)
        return record is not None and record.status.value == "retrying"

    wait_for(retrying, timeout=15, interval=0.01, what="the ambiguous outcome")
    record = get_resend(first)
    assert record is not None
    assert [e.outcome for e in record.attempt_log] == ["retrying"]
    assert record.reason is not None and "Timeout" in record.reason
    assert record.next_attempt_at is not None
    # The window was re-anchored when the outcome was recorded (Redis's clock, this host's):
    # until one window after that, it must be held by this request, never released.
    window_end = record.updated_at.timestamp() + WINDOW
    assert record.next_attempt_at.timestamp() >= window_end
    held_samples: list[tuple[str | None, int]] = []
    while time.time() < window_end - 0.05:
        held_samples.append(window_state(test_db, env["REDIS_KEY_PREFIX"]))
        time.sleep(0.05)
    assert held_samples, "saw the window while the request waited"
    assert all(holder == first and ttl > 0 for holder, ttl in held_samples), held_samples[:5]

    done = wait_all_final([first, second], timeout=30)
    assert [r.status.value for r in done] == ["sent", "sent"]
    assert [e.outcome for e in done[0].attempt_log] == ["retrying", "sent"]
    assert (done[0].attempts, done[0].transient_failures) == (2, 1)

    calls = resend_calls(control, ORDER)
    assert [(c["status"], c["body"]) for c in calls] == [
        (201, {"newEtid": "E000001"}),  # acted on, answered too late
        (201, {"newEtid": "E000001"}),  # the retry, one window after the timeout
        (201, {"newEtid": "E000002"}),
    ]
    assert all(c["i18nKey"] != "403.005" for c in calls)
    retry_gap = calls[1]["received_at"] - calls[0]["received_at"]
    assert retry_gap >= READ_TIMEOUT + WINDOW - 0.01, "no second call inside the held window"
    assert calls[2]["received_at"] - calls[1]["answered_at"] >= WINDOW - 0.01


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
