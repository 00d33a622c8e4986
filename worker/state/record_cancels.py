"""Finishing a request no run holds: a cancel, or a bug before the run began (`RecordStore`'s,
worker/state/records.py). Each reads the record and stores it back only if nobody changed it
meanwhile (compare-and-set), so a run's outcome stored in between is never overwritten.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import redis

from worker.state import record_codec
from worker.state.clock import Clock
from worker.state.record_model import ResendRecord, ResendStatus
from worker.state.record_reads import RecordReads
from worker.state.record_replies import CancelResult, FinishResult

# A compare-and-set that finds the record changed reads it again; a run stores a request a
# few times a minute at most, so a handful of tries is plenty.
_COMPARE_AND_SET_TRIES = 8


class RecordCancels(RecordReads):
    """Cancels and unowned finishes of `RecordStore`, which sets these attributes and defines
    `_finish_script` (the finish script's call)."""

    _clock: Clock
    _finish_script: Callable[..., FinishResult | ResendStatus]

    def cancel(self, request_id: str, promote_margin_seconds: float) -> CancelResult:
        """Cancel a queued or deferred request, atomically with its order's queue.

        Returns `cancelled`, `in_flight` (a call to Tango is under way), `unknown`, or the
        final status it already had (see `CancelResult`).
        """
        return self.try_cancel(request_id, promote_margin_seconds)[0]

    def try_cancel(
        self, request_id: str, promote_margin_seconds: float, by: str | None = None
    ) -> tuple[CancelResult, bool]:
        """As `cancel`, and whether this very call did the cancelling (racing cancellers:
        exactly one gets True); the record keeps who cancelled it (`by`) and when."""
        for _ in range(_COMPARE_AND_SET_TRIES):
            result = self._finish_read_copy(
                request_id,
                promote_margin_seconds,
                ResendStatus.CANCELLED,
                "cancelled before it was sent",
                only_if_cancellable=True,
            )
            if result is FinishResult.DONE:
                self._note_cancelled_by(request_id, by)
                return CancelResult.CANCELLED, True
            if result is not FinishResult.CHANGED:
                # `unknown`, `in_flight` or the final status it reached meanwhile (never
                # `stale`: a cancel passes no run token).
                return CancelResult(result.value), False
        raise redis.RedisError(f"request {request_id} kept changing while it was cancelled")

    def _note_cancelled_by(self, request_id: str, by: str | None) -> None:
        """Who cancelled and when, beside the record's document (record_codec's audit
        fields): only the cancel that won writes them."""
        audit = ResendRecord.model_construct(cancelled_by=by, cancelled_at=self._clock.now())
        values = record_codec.audit_values(audit)
        self._client.hset(
            self._keys.record(request_id),
            mapping={key: value for key, value in values.items() if key in ("cb", "ca")},
        )

    def finish_unowned(
        self, request_id: str, status: ResendStatus, reason: str, promote_margin_seconds: float
    ) -> bool:
        """Finish a request that no run of this process holds (a bug before the run began):
        only when no call to Tango is in flight or of unknown outcome, and keeping whatever
        a run stored meanwhile (status and reason are the only changes). True if stored."""
        for _ in range(_COMPARE_AND_SET_TRIES):
            result = self._finish_read_copy(
                request_id, promote_margin_seconds, status, reason, only_if_cancellable=True
            )
            if result is not FinishResult.CHANGED:
                return result is FinishResult.DONE
        return False

    def _finish_read_copy(
        self,
        request_id: str,
        promote_margin_seconds: float,
        status: ResendStatus,
        reason: str,
        *,
        only_if_cancellable: bool,
    ) -> FinishResult | ResendStatus:
        """Read the record, set a final status and reason on it, and store it only if its
        document is still the one read (compare-and-set): `changed` says to read it again."""
        # A client of ours decodes replies (decode_responses): fields and values are str.
        fields = cast(dict[str, str], self._client.hgetall(self._keys.record(request_id)))
        stored, current = record_codec.stored_doc(fields), fields.get("status")
        if stored is None or current is None:
            return FinishResult.UNKNOWN
        record = record_codec.decode(
            stored, request_id, str(current), int(fields.get("merges") or 0)
        )
        if record.status.is_final:
            return record.status
        record.status = status
        record.reason = reason
        record.next_attempt_at = None
        record.updated_at = self._clock.now()
        return self._finish_script(
            record,
            promote_margin_seconds,
            only_if_cancellable=only_if_cancellable,
            expected_doc=stored,
        )
