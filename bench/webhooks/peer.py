"""The minimal peer receiver: what any team would write in an afternoon.

FastAPI; verify the Standard Webhooks signature (`standardwebhooks`) on the raw body, parse the
JSON, publish one Celery task to the same Redis, answer 202. No validation, no idempotency, no
record, no metrics, no logging: the floor a receiver that queues work cannot go below.

`uvicorn --factory bench.webhooks.peer:create_app` with PEER_REDIS_URL, PEER_QUEUE and
PEER_WEBHOOK_SECRET in the environment.
"""

from __future__ import annotations

import json
import os
from typing import Any

from celery import Celery
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

PEER_TASK_NAME = "bench.peer_resend"


def create_app() -> FastAPI:
    broker = Celery("bench-peer", broker=os.environ["PEER_REDIS_URL"])
    broker.conf.update(task_serializer="json", task_ignore_result=True)
    queue = os.environ["PEER_QUEUE"]
    verifier = Webhook(os.environ["PEER_WEBHOOK_SECRET"])
    app = FastAPI()

    @app.post("/webhooks/resends", status_code=202)
    async def receive(request: Request) -> Any:
        body = await request.body()
        try:
            payload = verifier.verify(body, dict(request.headers))
        except WebhookVerificationError:
            return JSONResponse({"error": "invalid_signature"}, status_code=401)
        fields = payload if isinstance(payload, dict) else json.loads(body)
        order = str(fields.get("referenceOrderID", ""))
        broker.send_task(PEER_TASK_NAME, args=[order, fields], queue=queue)
        return {"status": "queued"}

    return app
