"""Standard Webhooks verification (webhook-id, webhook-timestamp, webhook-signature).

The `standardwebhooks` library does the cryptography (HMAC-SHA256 over `id.timestamp.body`,
constant-time comparison, several space-separated signatures for key rotation, a five-minute
timestamp tolerance). This wrapper only makes every malformed input a verification failure:
the library raises other exceptions for some of them (a signature without a comma, bad base64,
a body that is not UTF-8), which must never become a 500.
"""

from __future__ import annotations

import binascii
from collections.abc import Mapping
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from worker.core.errors import TangoResendError

# The library accepts a `webhook-timestamp` up to this far from our clock, either way.
TIMESTAMP_TOLERANCE_SECONDS = 5 * 60
# How long a signed webhook can be replayed: one stamped TOLERANCE ahead of our clock is
# accepted from TOLERANCE before its stamp to TOLERANCE after it. Its webhook-id must be
# remembered at least that long (plus a minute for a small step of this host's clock), or a
# captured webhook replayed later is a new request.
REPLAY_WINDOW_SECONDS = 2 * TIMESTAMP_TOLERANCE_SECONDS + 60
# Far above any honest header: a sender rotating keys sends two or three signatures.
_MAX_SIGNATURE_HEADER = 2048
_MAX_ID_LENGTH = 255


class SignatureError(TangoResendError):
    """Raised when a webhook's signature headers are missing, stale or do not match."""


class WebhookVerifier:
    """Checks a raw body and its headers against the shared secret."""

    def __init__(self, secret: str) -> None:
        self._webhook = Webhook(secret)

    def verify(self, body: bytes, headers: Mapping[str, str]) -> str:
        """Verify before anything is parsed; returns the `webhook-id`.

        Raises:
            SignatureError: naming what is wrong, without echoing header values.
        """
        webhook_id = headers.get("webhook-id", "")
        timestamp = headers.get("webhook-timestamp", "")
        signature = headers.get("webhook-signature", "")
        if not (webhook_id and timestamp and signature):
            raise SignatureError("missing webhook-id, webhook-timestamp or webhook-signature")
        if len(signature) > _MAX_SIGNATURE_HEADER or len(webhook_id) > _MAX_ID_LENGTH:
            raise SignatureError("signature headers are too long")
        try:
            self._webhook.verify(
                body,
                {
                    "webhook-id": webhook_id,
                    "webhook-timestamp": timestamp,
                    "webhook-signature": signature,
                },
                json_parse=False,
            )
        except WebhookVerificationError as error:
            raise SignatureError(str(error).lower()) from None
        except (ValueError, binascii.Error, UnicodeDecodeError, OverflowError):
            raise SignatureError("malformed signature headers or body") from None
        return webhook_id


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value a sender would send (for tests, the demo and docs)."""
    when = datetime.fromtimestamp(timestamp, tz=UTC)
    return Webhook(secret).sign(webhook_id, when, body.decode())
