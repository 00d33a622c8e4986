"""What the record scripts take and answer: the messages, verdicts and results of
`RecordStore` (worker/state/records.py), and the constants its callers share. Re-exported by
`worker.state.records`, where other modules have always imported them from.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from worker.state import record_codec
from worker.state.keys import RedisKeys
from worker.state.record_model import ResendRecord, ResendStatus
from worker.state.scripts import ScriptValue
from worker.state.window import window_milliseconds


@dataclass(frozen=True)
class TaskMessage:
    """One task message as kombu's Redis transport would LPUSH it (built by
    `worker/queueing/task_messages.py`), pushed by the script that creates the request."""

    list_key: str
    payload: str


class SubmissionOutcome(StrEnum):
    """What the create script did with a submission (`Creation`, and the producer's public
    `Submission`); the values are the script's words, and those of JSON and CLI output."""

    CREATED = "created"  # a new request
    IDEMPOTENT = "idempotent"  # its idempotency key was seen before: that request's id
    MERGED = "merged"  # coalesced into an identical pending request of the order
    RECENT = "recent"  # the order was sent to the same recipient within RESEND_RECENT_SECONDS


CreateArguments = tuple[ResendRecord, str | None, int, float, TaskMessage | None, float]
"""`RecordStore.create`'s arguments: record, idempotency key, its TTL in seconds, lease in
seconds, task message, and the recent-resend guard's span in seconds (0: off)."""


@dataclass(frozen=True)
class Creation:
    """What `RecordStore.create` did."""

    request_id: str
    outcome: SubmissionOutcome
    is_head: bool  # the first waiting request of its order: its task may run now
    # The number its task message carries (0 when none is to be sent); not part of equality,
    # since it only numbers the message.
    dispatch: int = field(default=0, compare=False)


def creation_from_reply(reply: Any) -> Creation:
    """What the create script's reply says it did."""
    request_id, outcome, head, dispatch = reply
    return Creation(
        str(request_id), SubmissionOutcome(str(outcome)), bool(int(head)), int(dispatch)
    )


class BeginVerdict(StrEnum):
    """What the BEGIN script found when a worker took a request's task message."""

    OK = "ok"  # this run holds the request: `Begun.token` fences its writes
    UNKNOWN = "unknown"  # no record
    FINAL = "final"  # nothing left to do
    BUSY = "busy"  # a call for it is in flight; it is released again when that call's hold ends


@dataclass(frozen=True)
class Begun:
    """What `RecordStore.begin` found (see `BeginVerdict`); `record` is the request when the
    verdict is `ok`, else None."""

    verdict: BeginVerdict
    token: str = ""
    record: ResendRecord | None = None
    # "ok" only: the start (Redis's clock, epoch seconds) of a call that passed the gate and
    # whose outcome nobody stored (its worker died mid-call), else None.
    interrupted_call_started_at: float | None = None


def begin_arguments(
    keys: RedisKeys, request_id: str, lease_seconds: float, dispatch: int | None
) -> tuple[dict[str, str], dict[str, ScriptValue]]:
    """KEYS and ARGV of lib/begin_run.lua, for begin.lua and start.lua alike."""
    return (
        {
            "record_key": keys.record(request_id),
            "due_key": keys.due_index,
            "dispatched_key": keys.dispatched,
            "consumed_key": keys.dispatch_consumed,
        },
        {
            "id": request_id,
            "lease": lease_seconds,
            "carried_dispatch": "" if dispatch is None else dispatch,
        },
    )


def begun_from_reply(request_id: str, reply: Any) -> Begun:
    """What lib/begin_run.lua's reply says (begin.lua's, and the start of start.lua's)."""
    verdict = BeginVerdict(str(reply[0]))
    if verdict is not BeginVerdict.OK:
        return Begun(verdict)
    token, doc, status, merges, interrupted, audit = reply[1:7]
    record = record_codec.decode(str(doc), request_id, str(status), int(merges))
    # Who asked, forced, who cancelled: beside the document in the hash, read in the same step.
    record = record_codec.with_audit(record, json.loads(str(audit)))
    started = int(interrupted) / 1000 if str(interrupted) not in ("", "0") else None
    return Begun(BeginVerdict.OK, str(token), record, started)


class FinishResult(StrEnum):
    """The FINISH script's answer, when it is not the final status the request already had
    (`finish_result_from_reply`)."""

    DONE = "done"  # stored: the request is final now
    UNKNOWN = "unknown"  # no record
    IN_FLIGHT = "in_flight"  # a cancel while a call to Tango is under way: too late
    STALE = "stale"  # a newer run holds the request: this run's outcome is not stored
    CHANGED = "changed"  # the stored document changed since the caller read it: read again


def finish_result_from_reply(reply: Any) -> FinishResult | ResendStatus:
    """The FINISH script's answer: a `FinishResult`, or the final status the request had
    already reached (then nothing was stored)."""
    text = str(reply)
    if text in FinishResult.__members__.values():
        return FinishResult(text)
    return ResendStatus(text)


class CancelResult(StrEnum):
    """What a cancel did (`RecordStore.cancel`, the public `cancel_resend`); the values are
    the ones the API, the CLI's --json and the REST API have always given."""

    CANCELLED = "cancelled"  # cancelled now, or it already was
    IN_FLIGHT = "in_flight"  # its call to Tango is under way: too late
    SENT = "sent"  # already final
    FAILED = "failed"  # already final
    UNKNOWN = "unknown"  # no such request (never existed, or expired)


# A start, save or finish reply is kept this long under its call's nonce (`RedisKeys.script_reply`):
# redis-py replays a script within its retries, seconds after the reply was lost.
SCRIPT_REPLY_MEMO_SECONDS = 60

# The fleet's word that it delivers outcome callbacks lasts this long after its last finish
# (or start) in a process with RESULT_WEBHOOK_URL: a fleet that stops delivering them stops
# owing them a day later.
CALLBACKS_FLEET_SECONDS = 24 * 3600

# The next request of an order is released this long after the window ends, so it never
# meets the window's last millisecond.
PROMOTE_MARGIN_SECONDS = 0.002

WindowAction = float | str | None
"""What to do with the order's window when storing a record after a call: None keeps it,
RELEASE_WINDOW drops it (no resend happened), a number of seconds re-anchors it."""
KEEP_WINDOW: WindowAction = None
RELEASE_WINDOW = "release"  # due-index score of a request queued behind another of its order


def window_arg(window: WindowAction) -> str:
    """The window action as the scripts take it (lib/set_window.lua)."""
    if window is None:
        return ""
    if window == RELEASE_WINDOW:
        return "release"
    return str(window_milliseconds(float(window)))


def due_score(epoch_seconds: float) -> str:
    """A due-index score as Redis takes it (infinities included)."""
    if math.isinf(epoch_seconds):
        return "+inf" if epoch_seconds > 0 else "-inf"
    return repr(epoch_seconds)
