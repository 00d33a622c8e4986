"""The outcome-callback task. Delivery and its retry schedule live in `worker.callbacks`."""

from __future__ import annotations

from worker.celery_app import DELIVER_TASK_NAME, app
from worker.runtime import current_runtime


@app.task(name=DELIVER_TASK_NAME, acks_late=True, reject_on_worker_lost=True)
def deliver_outcome(request_id: str) -> str:
    """POST one owed outcome event; a failure is re-scheduled in the outbox, not retried here."""
    from worker.callbacks import OutcomeDeliverer

    runtime = current_runtime()
    if runtime.settings.result_webhook_url is None:
        return "disabled"
    return OutcomeDeliverer(runtime).deliver(request_id)
