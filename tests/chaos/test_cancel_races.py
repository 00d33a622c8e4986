"""A cancel racing a real worker whose call to Tango (the sandbox) timed out after Tango had
resent: while the probe is owed, the cancel answers `in_flight`, and the request ends `sent`,
never `cancelled` (Tango did resend to the new address)."""

from __future__ import annotations

import pytest
import redis

from tests.support.calls import resend_calls
from tests.support.processes import WorkerFactory
from tests.support.records import wait_all_final
from tests.support.settings import Configure
from tests.support.waiting import wait_for
from worker import cancel_resend, enqueue_resend, get_resend
from worker.sandbox import SandboxControl

pytestmark = pytest.mark.chaos

WINDOW, READ_TIMEOUT = 4.0, 1.0
ORDER = "RA251202-8101-01"


def test_a_cancel_while_the_probe_is_owed_answers_in_flight_and_the_request_ends_sent(
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
    # Tango resends at once, then answers after our read timeout: the outcome is unknown.
    control.inject_fault(ORDER, delay_seconds=READ_TIMEOUT + 1.0, delay_phase="after")
    start_worker(env)

    request_id = enqueue_resend(ORDER, new_email="new@example.com")

    def probe_owed() -> bool:
        record = get_resend(request_id)
        return record is not None and record.unresolved_call_started_at is not None

    wait_for(probe_owed, timeout=15, interval=0.01, what="the ambiguous outcome stored")
    assert cancel_resend(request_id) == "in_flight"

    [done] = wait_all_final([request_id], timeout=30)
    assert done.status.value == "sent", done.reason
    first_call = resend_calls(control, ORDER)[0]
    assert first_call["status"] == 201, "Tango acted at once (we timed out reading it)"
