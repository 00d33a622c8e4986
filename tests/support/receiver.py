"""The webhook receiver as tests talk to it: secrets and a token, signed headers, posts."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import requests

from worker.web.webhook_signature import sign

WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"receiver-test-secret-0123456789").decode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"some-other-secret-9876543210abc").decode()
API_TOKEN = "api-token-Vf93kQ-receiver-tests-0123456789"
# The order the in-process receiver tests post for.
WEBHOOK_ORDER = "RA251125-1101-01"

# headers(body, *, secret=..., webhook_id=..., timestamp=...): a fixture's `signed_headers`.
Signer = Callable[..., dict[str, str]]


def raw_signature(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The signature of any bytes, UTF-8 or not (what a hostile sender can compute), written
    apart from the receiver's own code."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(
    secret: str,
    body: bytes,
    *,
    webhook_id: str | None = None,
    timestamp: int | None = None,
    signature: Callable[[str, str, int, bytes], str] = sign,
) -> dict[str, str]:
    """Headers for `body` as a Standard Webhooks sender signs it (now, a fresh id unless
    given); `signature=raw_signature` signs without the receiver's code."""
    when = int(time.time()) if timestamp is None else timestamp
    message_id = webhook_id or f"msg_{uuid.uuid4().hex}"
    return {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(when),
        "webhook-signature": signature(secret, message_id, when, body),
    }


def post_webhook(
    url: str, secret: str, payload: dict[str, Any], webhook_id: str | None = None
) -> requests.Response:
    """POST `payload`, signed, to the receiver at `url`."""
    body = json.dumps(payload).encode()
    return requests.post(
        f"{url}/webhooks/resends",
        data=body,
        headers=signed_headers(secret, body, webhook_id=webhook_id),
        timeout=30,
    )


def webhook_body(**fields: object) -> bytes:
    """A webhook's body for WEBHOOK_ORDER with `fields`."""
    return json.dumps({"referenceOrderID": WEBHOOK_ORDER, **fields}).encode()
