"""Retrying a failed request: once, as a new request linked to it (`retry_of`)."""

from __future__ import annotations

import redis

from worker.core.errors import RedisUnavailable, TangoResendError
from worker.resend import origins
from worker.resend.producer import Submission, submit_resend
from worker.runtime import Runtime, current_runtime
from worker.state.records import ResendRecord, ResendStatus


class NotRetryable(TangoResendError, ValueError):
    """Raised when `retry_resend` is asked to retry a request that has not failed."""


class PermanentFailure(NotRetryable):
    """Raised when `retry_resend` skips a request Tango refused permanently (404 unknown
    order, 403.003, 400) because it was not asked to include those."""


def retry_key(request_id: str) -> str:
    """The idempotency key of the retry of a failed request: one retry per failed request."""
    return f"retry-of:{request_id}"


def is_permanent_failure(record: ResendRecord) -> bool:
    """Did Tango refuse the request in a way no retry can change (404 unknown order,
    403.003 an email created with sendEmail=false, 400 validation)? A request that failed
    for anything else (patience run out, retries spent, cooldown refusals) may go next time."""
    if record.status is not ResendStatus.FAILED or not record.error:
        return False
    return record.error.get("kind") == "TangoPermanentError"


def retry_resend(
    request_id: str,
    *,
    by: str | None = None,
    force: bool = False,
    include_permanent: bool = True,
) -> Submission:
    """Queue a failed request again, as a new request linked to it (`retry_of`), recorded as
    asked for `by` (e.g. "cli alice@host", "api ops-bot").

    The recent-resend guard applies (unless `force`): when the order was sent to the same
    recipient within RESEND_RECENT_SECONDS, the outcome is "recent" with that request's id.

    A failed request is retried once: asking again (twice, from two shells at once, or by
    `--all-failed` run again) returns the first retry's id with outcome "idempotent" and
    queues nothing, however that retry ended. To try again after a failed retry, retry it.
    `include_permanent` False refuses a permanent failure (`is_permanent_failure`): a retry
    would fail the same way.

    Raises:
        NotRetryable: the request is unknown, or did not fail (or failed permanently, with
            `include_permanent` False).
        RedisUnavailable: Redis could not be reached (`EnqueueError`, a kind of it, when
            the retry could not be stored); nothing is stored.
    """
    runtime = current_runtime()
    try:
        old = runtime.records.get(request_id)
    except redis.RedisError as error:
        raise RedisUnavailable(f"could not read the request: {error}") from error
    if old is None:
        raise NotRetryable(f"no request {request_id!r} (unknown or expired)")
    if old.status is not ResendStatus.FAILED:
        raise NotRetryable(f"request {request_id} is {old.status.value}, not failed")
    if not include_permanent and is_permanent_failure(old):
        raise PermanentFailure(
            f"request {request_id} failed permanently ({old.reason}); a retry would fail "
            "the same way"
        )
    fields = {"referenceOrderID": old.reference_order_id, **old.request}
    key = retry_key(old.id)
    if force and _answered_as_recent(runtime, key, old.id):
        # The retry was answered with a request sent moments before: a forced retry is a
        # retry of its own, once (its own key), and never a second one.
        key += ":forced"
    # The key is taken in the create script, so concurrent retries race safely; it lives as
    # long as a record (longer than the failed one it names), so the answer never changes.
    return submit_resend(
        fields,
        idempotency_key=key,
        retry_of=old.id,
        idempotency_ttl_seconds=runtime.settings.resend_record_ttl_seconds,
        origin=origins.retry_of(old.id),
        requested_by=by,
        force=force,
    )


def _answered_as_recent(runtime: Runtime, key: str, request_id: str) -> bool:
    """Whether the retry key of `request_id` names a request that is not its retry: the
    recent-resend guard answered the retry with an earlier request of the order."""
    try:
        answered = runtime.redis.get(runtime.keys.idempotency(key))
        record = None if answered is None else runtime.records.get(str(answered))
    except redis.RedisError as error:
        raise RedisUnavailable(f"could not read the request: {error}") from error
    return record is not None and record.retry_of != request_id
