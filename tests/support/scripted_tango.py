"""One run of a request without Celery: a scripted stand-in for Tango, a request stored as the
producer stores it, and the executor that runs it."""

from __future__ import annotations

from collections.abc import Callable

from worker.resend.executor import ResendExecutor
from worker.runtime import Runtime
from worker.state.records import ResendRecord
from worker.tango.client import TangoAnswer
from worker.tango.errors import TangoError

ORDER = "RA251125-9101-01"
# The executor tests' settings (`make_runtime(**EXECUTOR_SETTINGS)`): Tango's own 30 s window,
# no rate limit.
EXECUTOR_SETTINGS = {
    "REDIS_KEY_PREFIX": "executor-test",
    "RESEND_COOLDOWN_SECONDS": "30",
    "TANGO_RATE_LIMIT": "0",
}
CREATED = TangoAnswer(
    status=201, body={"id": 1}, request_id="t-1", tango_time=None, elapsed_seconds=0.01
)


class ScriptedTango:
    """Answers calls from a script; an exception in the script is raised. `during_call` runs
    while a call is "in flight", to interleave other processes' work with it."""

    longest_call_seconds = 1.0

    def __init__(self, *answers: TangoAnswer | BaseException) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[str, dict[str, str]]] = []
        self.authorizations: list[str] = []
        self.during_call: Callable[[], None] | None = None
        self.token_error: TangoError | None = None

    def authorization(self) -> str:
        if self.token_error is not None:
            raise self.token_error
        self.authorizations.append(f"Bearer token-{len(self.authorizations) + 1}")
        return self.authorizations[-1]

    # HTTP Basic-like: at hand unless the token is made to fail; never waited for.
    longest_authorization_wait_seconds = 0.0

    def authorization_at_hand(self) -> str | None:
        if self.token_error is not None:
            return None
        return self.authorization()

    def renew(self, authorization: str) -> bool:
        return True

    def resend(self, order: str, body: dict[str, str], authorization: str) -> TangoAnswer:
        self.calls.append((order, body))
        if self.during_call is not None:
            self.during_call()
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer


def new_request(runtime: Runtime, request_id: str = "req-1") -> ResendRecord:
    """A request for ORDER, stored as the producer stores it."""
    now = runtime.clock.now()
    record = ResendRecord(
        id=request_id,
        reference_order_id=ORDER,
        request={"newEtid": "E000001"},
        created_at=now,
        updated_at=now,
    )
    runtime.records.create(record, None, 60, lease_seconds=5)
    return record


def executor_with(runtime: Runtime, tango: ScriptedTango) -> ResendExecutor:
    runtime.tango = tango  # type: ignore[assignment]
    return ResendExecutor(runtime, rand=lambda: 0.0)
