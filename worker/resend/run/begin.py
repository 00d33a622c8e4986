"""Begin: take the request with a fencing token, so of two task messages of one request alive
at once only the newest run changes it; pass the gate in the same round trip when it can."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import timedelta

from worker.resend.decision import ResendPolicy
from worker.runtime import Runtime
from worker.state.gate import GateVerdict
from worker.state.record_model import order_in_request_id
from worker.state.records import Begun, ResendRecord, ResendStatus
from worker.tango.errors import TangoError

# A wake-up this close to its due time is treated as due (timer granularity, not earliness:
# the gate, not this check, is what keeps calls out of Tango's window).
DUE_TOLERANCE = timedelta(milliseconds=2)


@dataclass(frozen=True)
class Done:
    """Nothing more to do for this message (finished, parked, or waiting for its turn)."""

    status: ResendStatus | None


@dataclass(frozen=True)
class HeldRun:
    """The request this run holds, and the token that fences its writes."""

    record: ResendRecord
    token: str


def policy_from(runtime: Runtime) -> ResendPolicy:
    settings = runtime.settings
    return ResendPolicy(
        window_seconds=settings.resend_window_seconds,
        max_retries=settings.resend_max_retries,
        backoff_base_seconds=settings.resend_backoff_base_seconds,
        backoff_max_seconds=settings.resend_backoff_max_seconds,
        defer_jitter_seconds=settings.resend_defer_jitter_seconds,
        max_cooldown_deferrals=settings.resend_max_cooldown_deferrals,
        probe_delay_seconds=settings.resend_probe_delay_seconds,
        exclusive=settings.resend_exclusive,
        longest_send_seconds=(
            settings.tango_connect_timeout_seconds + settings.tango_timeout_seconds
        ),
    )


def begin_run(
    runtime: Runtime, policy: ResendPolicy, request_id: str, dispatch: int | None
) -> tuple[Begun, GateVerdict | None, str | None]:
    """Begin the run; when its id names its order and the authorization is at hand, pass the
    gate in the same round trip if the run needs no look first (start.lua). Returns the run,
    the gate's verdict (None: not passed yet) and the authorization (None: to be had, or to
    fail, on the usual path)."""
    lease = runtime.settings.resend_lease_seconds
    order = order_in_request_id(request_id)
    if order is not None:
        # Authorise before the gate: waiting for the fleet's shared OAuth token (or fetching
        # it) then never eats into the window hold.
        with contextlib.suppress(TangoError):  # the usual path asks again, and reports it
            authorization = runtime.tango.authorization()
            call_seconds = runtime.tango.longest_call_seconds
            begun, verdict = runtime.gate.begin_and_try_start(
                order,
                request_id,
                lease,
                dispatch,
                policy.window_seconds + call_seconds,
                call_seconds=call_seconds,
                due_tolerance_seconds=DUE_TOLERANCE.total_seconds(),
            )
            return begun, verdict, authorization
    return runtime.records.begin(request_id, lease, dispatch), None, None
