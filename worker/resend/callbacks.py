"""Telling others a request finished: a signed webhook (at least once), and an in-process hook.

When a request reaches `sent`, `failed` or `cancelled`, the script that records it also puts
it in the callback outbox (a sorted set by next attempt), so a callback is owed exactly when
the outcome is stored. The outbox is the callbacks' own queue: resends never wait behind them.
Each worker runs RESULT_WEBHOOK_CONCURRENCY delivery threads (default 1) beside its resend
pool; a thread claims one due entry at a time with a lease and a token (the claim's fencing
token, as for resends), POSTs a Standard-Webhooks-signed event to RESULT_WEBHOOK_URL, and
settles the entry in one script:
- delivered: the entry leaves the outbox for good; a later duplicate changes nothing and is
  counted `duplicate`, not `delivered`;
- failed: only the entry's current claim may re-schedule it (exponential backoff) or abandon
  it after RESULT_WEBHOOK_MAX_ATTEMPTS, so a superseded delivery neither undoes a delivery nor
  uses up attempts;
- gone (the record expired): the entry and its attempt count are removed.
A slow endpoint so costs at most RESULT_WEBHOOK_CONCURRENCY threads per worker, never a resend
thread. The event id is stable across retries, so receivers can drop duplicates.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from datetime import UTC, datetime
from enum import StrEnum
from typing import Literal

import requests
from standardwebhooks.webhooks import Webhook

from worker.core.conditions import (
    REDIS_OUTAGE_ERRORS,
    REDIS_UNREACHABLE,
    redis_error_detail,
)

# The hook and the event live apart from the delivery (which needs requests): a producer,
# which installs neither, fires the hook too. Their names have always been importable here.
from worker.resend.finished import event_body as event_body
from worker.resend.finished import event_id as event_id
from worker.resend.finished import notify_finished as notify_finished
from worker.resend.finished import resend_finished as resend_finished
from worker.runtime import Runtime
from worker.state import scripts
from worker.state.durability import NotReplicated

logger = logging.getLogger("tango_resend.callbacks")

_BACKOFF_BASE_SECONDS = 2.0
_BACKOFF_MAX_SECONDS = 3600.0


# Requests' timeouts for one POST (connect, read); the claim's lease covers them with a margin,
# so a live delivery keeps its entry (a delivery slower than that is superseded, and fenced).
_POST_TIMEOUT = (3.05, 10.0)
CLAIM_LEASE_SECONDS = 2 * sum(_POST_TIMEOUT) + 5
# While nothing is due sooner, look again at least this often.
_IDLE_SECONDS = 1.0


class DeliveryOutcome(StrEnum):
    """What became of one delivery of an outcome callback (the SETTLE script's first reply
    element; the values are its words)."""

    DELIVERED = "delivered"  # the endpoint took it: the entry leaves the outbox
    RETRYING = "retrying"  # it failed: scheduled again with backoff
    ABANDONED = "abandoned"  # it failed RESULT_WEBHOOK_MAX_ATTEMPTS times: given up
    GONE = "gone"  # the record expired: nothing left to deliver
    DUPLICATE = "duplicate"  # a success for an entry no longer owed (delivered already...)
    STALE = "stale"  # a failure after a newer claim took the entry: the newer one decides
    # REDIS_WAIT_REPLICAS: the final status is not on the replicas yet; nothing was sent, and
    # the entry is due again in a second (no attempt counted).
    UNCONFIRMED = "unconfirmed"

    @property
    def metric_label(self) -> str:
        """The `outcome` label of `tango_resend_callbacks_total` (a retry counts "retried")."""
        return "retried" if self is DeliveryOutcome.RETRYING else self.value


# What one delivery reports to the SETTLE script (its ARGV[3]).
Attempted = Literal["delivered", "failed", "gone", "unconfirmed"]


class OutcomeDeliverer:
    """Claims owed callbacks, delivers each, and settles it (see the module's docstring)."""

    def __init__(self, runtime: Runtime, session: requests.Session | None = None) -> None:
        settings = runtime.settings
        assert settings.result_webhook_url and settings.result_webhook_secret
        self._runtime = runtime
        self._url = str(settings.result_webhook_url)
        self._webhook = Webhook(settings.result_webhook_secret.get_secret_value())
        self._session = session or requests.Session()
        self._max_attempts = settings.result_webhook_max_attempts
        self._claim = scripts.load("outbox_claim").bind(runtime.redis)
        self._settle = scripts.load("outbox_settle").bind(runtime.redis)

    def claim(self, limit: int = 1) -> tuple[list[tuple[str, str]], float]:
        """Claim up to `limit` due entries: [(request id, claim token)], and the seconds until
        the next entry is due (inf when none is scheduled)."""
        keys = self._runtime.keys
        reply = self._claim(
            keys={"outbox_key": keys.callbacks_due, "claims_key": keys.callback_claims},
            args={"lease": CLAIM_LEASE_SECONDS, "batch": limit},
        )
        *pairs, next_in = (str(item) for item in reply)
        claimed = [(pairs[i], pairs[i + 1]) for i in range(0, len(pairs), 2)]
        wait = float(next_in)
        return claimed, math.inf if wait < 0 else wait

    def deliver_due(self) -> tuple[int, float]:
        """Claim one due entry and deliver it. Returns (entries handled, seconds until the
        next entry is due)."""
        claimed, next_in = self.claim(1)
        for request_id, token in claimed:
            self.deliver(request_id, token)
        return len(claimed), 0.0 if claimed else next_in

    def deliver(self, request_id: str, token: str) -> DeliveryOutcome:
        """Deliver one claimed entry; returns what became of it (see `DeliveryOutcome`)."""
        runtime = self._runtime
        try:
            record = runtime.records.get_reported(request_id)
        except NotReplicated as error:
            # Never a status a failover could take back: delivered once the replicas hold it.
            return self._settled(request_id, token, "unconfirmed", str(error))
        if record is None or not record.status.is_final:
            return self._settled(request_id, token, "gone", "record expired")
        body = json.dumps(event_body(record), separators=(",", ":"))
        message_id = event_id(record)
        now = datetime.now(UTC)
        headers = {
            "content-type": "application/json",
            "webhook-id": message_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": self._webhook.sign(message_id, now, body),
        }
        try:
            response = self._session.post(
                self._url,
                data=body.encode(),
                headers=headers,
                timeout=_POST_TIMEOUT,
                allow_redirects=False,
            )
            delivered = 200 <= response.status_code < 300
            problem = f"HTTP {response.status_code}"
        except requests.RequestException as error:
            delivered, problem = False, type(error).__name__
        return self._settled(
            request_id, token, "delivered" if delivered else "failed", problem, message_id
        )

    def _settled(
        self, request_id: str, token: str, result: Attempted, problem: str, message_id: str = ""
    ) -> DeliveryOutcome:
        runtime, keys = self._runtime, self._runtime.keys
        outcome, attempts, delay = self._settle(
            keys={
                "outbox_key": keys.callbacks_due,
                "claims_key": keys.callback_claims,
                "attempts_key": keys.callback_attempts,
            },
            args={
                "id": request_id,
                "claim_token": token,
                "result": result,
                "max_attempts": self._max_attempts,
                "backoff_base": _BACKOFF_BASE_SECONDS,
                "backoff_max": _BACKOFF_MAX_SECONDS,
            },
        )
        outcome = DeliveryOutcome(str(outcome))
        if outcome not in (DeliveryOutcome.STALE, DeliveryOutcome.UNCONFIRMED):
            runtime.metrics.callback(outcome.metric_label)
        if outcome is DeliveryOutcome.DELIVERED:
            logger.info("request=%s callback %s delivered", request_id, message_id)
        elif outcome is DeliveryOutcome.RETRYING:
            logger.warning(
                "request=%s callback %s failed (%s); attempt %s, next in %.0fs",
                request_id,
                message_id,
                problem,
                attempts,
                float(delay),
            )
        elif outcome is DeliveryOutcome.ABANDONED:
            logger.error(
                "request=%s callback %s abandoned after %s attempts (%s)",
                request_id,
                message_id,
                attempts,
                problem,
            )
        else:
            logger.info("request=%s callback %s: %s (%s)", request_id, message_id, outcome, problem)
        return outcome


class CallbackThread(threading.Thread):
    """One delivery thread of a worker (RESULT_WEBHOOK_CONCURRENCY of them per worker)."""

    def __init__(self, runtime: Runtime, number: int = 0) -> None:
        super().__init__(name=f"tango-resend-callbacks-{number}", daemon=True)
        self._deliverer = OutcomeDeliverer(runtime)
        self._stopped = threading.Event()

    def run(self) -> None:
        while not self._stopped.is_set():
            try:
                _, next_in = self._deliverer.deliver_due()
                REDIS_UNREACHABLE.clear()
                if next_in > 0:
                    self._stopped.wait(min(next_in, _IDLE_SECONDS))
            except REDIS_OUTAGE_ERRORS as error:  # Redis down: one line a minute, not a traceback
                REDIS_UNREACHABLE.report(f"callback delivery: {redis_error_detail(error)}")
                self._stopped.wait(1.0)
            except Exception:  # a bug of ours: say so, try again shortly, never kill the worker
                logger.warning("callback delivery pass failed; will try again", exc_info=True)
                self._stopped.wait(1.0)

    def stop(self) -> None:
        self._stopped.set()
