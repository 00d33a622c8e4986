"""The outcome-callback task of earlier versions. Delivery and its retry schedule live in
`worker.resend.callbacks`: each worker's own delivery threads take owed callbacks straight from the
outbox, so callbacks never wait in (or hold) the resend queue's pool."""

from __future__ import annotations

from worker.queueing.app import DELIVER_TASK_NAME, ResultlessTask, app


@app.task(base=ResultlessTask, name=DELIVER_TASK_NAME, acks_late=True, reject_on_worker_lost=True)
def deliver_outcome(request_id: str) -> str:
    """A message an older version's scheduler published during a rolling deploy. It delivers
    nothing: the entry is still in the outbox, and a delivery thread claims it there (once)."""
    return "outbox"
