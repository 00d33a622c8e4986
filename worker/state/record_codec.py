"""How a record's document is stored: a JSON array by position, not an object by name.

A million waiting requests is a million documents, so the stored form says each thing once:
no field names (the position is the name), no defaults (trailing zeros, nulls and empty lists
are dropped), times as integer microseconds (the creation time since the epoch, every other
time since the creation), and nothing the record's hash or key already holds (the id is in the
key; `status` and `merges` are hash fields the scripts change atomically). Microseconds keep
every time exactly, so a record reads back equal to the one stored, and `status`/`history`
show what they always showed.

Documents stored as a JSON object (by earlier versions) are still read.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from worker.state.record_model import AttemptEntry, AttemptOutcome, ResendRecord, ResendStatus

FORMAT = 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

# The document's positions after the format number. A field of ResendRecord that is in none
# of these, nor in _HELD_ELSEWHERE, would be lost: tests/unit/test_record_codec.py checks.
_FIELDS = (
    "reference_order_id",
    "request",
    "created_at",
    "updated_at",
    "attempts",
    "transient_failures",
    "cooldown_deferrals",
    "lock_deferrals",
    "sent_at",
    "next_attempt_at",
    "reason",
    "error",
    "response",
    "tango_request_ids",
    "attempt_log",
    "retry_of",
    "confirmed_by",
    "unresolved_call_started_at",
)
_HELD_ELSEWHERE = (
    "id",
    "status",
    "merges",
    "origin",
    "requested_by",
    "forced",
    "cancelled_by",
    "cancelled_at",
)

# Who asked, who asked for a retry, a forced send, who cancelled and when: fields of the record's
# hash of their own, not positions of the document. A worker of the version before them reads
# documents with positions it does not know as an error, and ignores hash fields it does not
# know: so in a rolling deploy, old workers keep reading what new producers store. Each value is
# at most AUDIT_VALUE_MAX_BYTES, so the hash keeps its compact listpack encoding (doc.lua).
AUDIT_HASH_FIELDS = {
    "origin": "o",
    "requested_by": "rb",
    "forced": "f",
    "cancelled_by": "cb",
    "cancelled_at": "ca",
}
AUDIT_VALUE_MAX_BYTES = 60
_ATTEMPT_FIELDS = ("at", "outcome", "status", "i18n_key", "tango_request_id", "probe")

# What each position holds when nothing happened: trailing positions that hold it are dropped
# (the decoder puts it back). _KEPT is never dropped. A time offset of 0 is data, not a default,
# where the field may be null: only null is its default.
_KEPT = object()
_DEFAULTS: tuple[Any, ...] = (
    _KEPT,  # format
    _KEPT,  # reference_order_id
    _KEPT,  # request
    _KEPT,  # created_at
    0,  # updated_at (since creation)
    0,  # attempts
    0,  # transient_failures
    0,  # cooldown_deferrals
    0,  # lock_deferrals
    None,  # sent_at
    None,  # next_attempt_at
    None,  # reason
    None,  # error
    None,  # response
    [],  # tango_request_ids
    [],  # attempt_log
    None,  # retry_of
    None,  # confirmed_by
    None,  # unresolved_call_started_at
)
_ATTEMPT_DEFAULTS: tuple[Any, ...] = (_KEPT, _KEPT, None, None, None, 0)

# Reasons a waiting request says most often (worker/resend/executor.py, records.py), stored as
# their place here: a million requests waiting for their windows hold one small number each,
# not the sentence. Only ever append: stored documents name reasons by their place. Any other
# reason (or one whose wording changed) is stored as it is.
_COMMON_REASONS = (
    "the order's window is held",
    "waiting for its rate-limit slot",
    "waiting for an earlier request of the same order",
    "cancelled before it was sent",
)
_REASON_CODES = {reason: code for code, reason in enumerate(_COMMON_REASONS)}


def encode(record: ResendRecord) -> str:
    """The stored document of `record` (without its id, status and merges)."""
    created = _microseconds(record.created_at, _EPOCH)
    values: list[Any] = [
        FORMAT,
        record.reference_order_id,
        record.request,
        created,
        _since(record.updated_at, record.created_at),
        record.attempts,
        record.transient_failures,
        record.cooldown_deferrals,
        record.lock_deferrals,
        _since(record.sent_at, record.created_at),
        _since(record.next_attempt_at, record.created_at),
        _REASON_CODES.get(record.reason, record.reason) if record.reason else record.reason,
        record.error,
        record.response,
        record.tango_request_ids,
        [_encode_attempt(entry, record.created_at) for entry in record.attempt_log],
        record.retry_of,
        record.confirmed_by,
        record.unresolved_call_started_at,
    ]
    return json.dumps(_trimmed(values, _DEFAULTS), separators=(",", ":"), ensure_ascii=False)


def stored_doc(fields: Mapping[str, str]) -> str | None:
    """The document from a record hash's fields: its chunks joined (worker/state/lua/lib/doc.lua
    writes them), or the whole `doc` an earlier version stored; None when there is neither."""
    count = int(fields.get("dn") or 0)
    if count == 0:
        return fields.get("doc")
    return "".join(fields.get(f"d{index}", "") for index in range(1, count + 1))


def audit_values(record: ResendRecord) -> dict[str, str]:
    """The record's audit fields as its hash holds them (hash field -> value); unset ones are
    left out, so a request nobody named stores nothing more."""
    values = {
        "o": record.origin or "",
        "rb": record.requested_by or "",
        "f": "1" if record.forced else "",
        "cb": record.cancelled_by or "",
        "ca": "" if record.cancelled_at is None else repr(_utc(record.cancelled_at).timestamp()),
    }
    return {field: value for field, value in values.items() if value}


def with_audit(record: ResendRecord, fields: Mapping[str, str]) -> ResendRecord:
    """`record` with the audit fields its hash holds (`fields`: the hash, or part of it)."""
    record.origin = fields.get("o") or None
    record.requested_by = fields.get("rb") or None
    record.forced = fields.get("f") == "1"
    record.cancelled_by = fields.get("cb") or None
    cancelled_at = fields.get("ca")
    record.cancelled_at = datetime.fromtimestamp(float(cancelled_at), UTC) if cancelled_at else None
    return record


def decode(doc: str, request_id: str, status: str, merges: int) -> ResendRecord:
    """The record stored as `doc` under `request_id`, with the hash's `status` and `merges`."""
    if doc.startswith("{"):
        record = ResendRecord.model_validate_json(doc)
        record.status = ResendStatus(status)
        record.merges = merges
        return record
    values = json.loads(doc)
    if values[0] != FORMAT:
        raise ValueError(f"record {request_id}: unknown document format {values[0]!r}")
    values.extend([None] * (len(_FIELDS) + 1 - len(values)))
    (
        _,
        order,
        request,
        created_us,
        updated,
        attempts,
        transient_failures,
        cooldown_deferrals,
        lock_deferrals,
        sent,
        next_attempt,
        reason,
        error,
        response,
        tango_request_ids,
        attempt_log,
        retry_of,
        confirmed_by,
        unresolved,
    ) = values
    created = _EPOCH + created_us * _MICROSECOND
    # Built without validation: every value was validated when the record was made, and
    # reading is on every run's path.
    return ResendRecord.model_construct(
        id=request_id,
        reference_order_id=order,
        request=request or {},
        status=ResendStatus(status),
        attempts=attempts or 0,
        transient_failures=transient_failures or 0,
        cooldown_deferrals=cooldown_deferrals or 0,
        lock_deferrals=lock_deferrals or 0,
        merges=merges,
        created_at=created,
        updated_at=_at(updated or 0, created),
        sent_at=None if sent is None else _at(sent, created),
        next_attempt_at=None if next_attempt is None else _at(next_attempt, created),
        error=error,
        reason=_COMMON_REASONS[reason] if isinstance(reason, int) else reason,
        response=response,
        tango_request_ids=tango_request_ids or [],
        attempt_log=[_decode_attempt(entry, created) for entry in attempt_log or ()],
        retry_of=retry_of,
        confirmed_by=confirmed_by,
        unresolved_call_started_at=unresolved,
    )


def _encode_attempt(entry: AttemptEntry, created: datetime) -> list[Any]:
    return _trimmed(
        [
            _since(entry.at, created),
            entry.outcome,
            entry.status,
            entry.i18n_key,
            entry.tango_request_id,
            1 if entry.probe else 0,
        ],
        _ATTEMPT_DEFAULTS,
    )


def _decode_attempt(values: list[Any], created: datetime) -> AttemptEntry:
    values = values + [None] * (len(_ATTEMPT_FIELDS) - len(values))
    at, outcome, status, i18n_key, tango_request_id, probe = values
    return AttemptEntry.model_construct(
        at=_at(at, created),
        outcome=AttemptOutcome(outcome),
        status=status,
        i18n_key=i18n_key,
        tango_request_id=tango_request_id,
        probe=bool(probe),
    )


def _trimmed(values: list[Any], defaults: tuple[Any, ...]) -> list[Any]:
    """Without the trailing positions that hold their default (the decoder puts them back)."""
    end = len(values)
    while end and _is_default(values[end - 1], defaults[end - 1]):
        end -= 1
    return values[:end]


def _is_default(value: Any, default: Any) -> bool:
    # Exact types: 0.0 is not 0, and an empty error dict is data that must read back as stored.
    return default is not _KEPT and type(value) is type(default) and value == default


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _microseconds(moment: datetime, since: datetime) -> int:
    return (_utc(moment) - _utc(since)) // _MICROSECOND


def _since(moment: datetime | None, created: datetime) -> int | None:
    return None if moment is None else _microseconds(moment, created)


def _at(offset_us: int, created: datetime) -> datetime:
    return created + offset_us * _MICROSECOND
