"""Value types the sandbox keeps: its settings, simulated orders and resend outcomes."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from .formats import LAST_SENT_FORMATS, iso_ms

DELIVERY_METHODS = ("EMAIL", "PHONE", "NONE")


def check_cooldown(seconds: float) -> float:
    """Validates a per-order resend window.

    Args:
        seconds: The window in seconds.

    Returns:
        The window as a float.

    Raises:
        ValueError: If it is negative or not a number.
    """
    value = float(seconds)
    if math.isnan(value) or value < 0:
        raise ValueError("cooldown_seconds must not be negative")
    return value


def check_rate_limit(calls_per_second: float) -> float:
    """Validates a platform rate limit.

    Args:
        calls_per_second: Requests per second; 0 turns the limit off.

    Returns:
        The limit as a float.

    Raises:
        ValueError: If it is negative, infinite or not a number.
    """
    value = float(calls_per_second)
    if not math.isfinite(value) or value < 0:
        raise ValueError("rate_limit must be a finite number of calls per second, 0 or more")
    return value


@dataclass
class SandboxConfig:
    """How one sandbox behaves; mutable so a test can move the clock mid-run.

    Attributes:
        cooldown_seconds: Tango's per-order resend window (30 s in production).
        platform_name: HTTP Basic user name accepted on the RaaS routes.
        platform_key: HTTP Basic password accepted on the RaaS routes.
        client_id: OAuth client id accepted by the token route.
        client_secret: OAuth client secret accepted by the token route.
        token_ttl_seconds: Lifetime of issued bearer tokens, on the sandbox clock.
        clock_offset_seconds: Added to the host clock to get the sandbox clock.
        last_sent_format: How 403.005 renders the last resend time.
        rate_limit: Platform-wide limit on authenticated RaaS calls, in calls
            per second (fractions allowed); 0 turns it off. Over the limit
            Tango answers 429 with i18nKey 429.008.
    """

    cooldown_seconds: float = 30.0
    platform_name: str = "sandbox-platform"
    platform_key: str = "sandbox-key"
    client_id: str = "sandbox-client"
    client_secret: str = "sandbox-secret"
    token_ttl_seconds: int = 86400
    clock_offset_seconds: float = 0.0
    last_sent_format: str = "iso"
    rate_limit: float = 0.0

    def __post_init__(self) -> None:
        if self.last_sent_format not in LAST_SENT_FORMATS:
            raise ValueError(
                f"last_sent_format must be one of {LAST_SENT_FORMATS}, "
                f"not {self.last_sent_format!r}"
            )
        self.cooldown_seconds = check_cooldown(self.cooldown_seconds)
        self.rate_limit = check_rate_limit(self.rate_limit)
        if self.token_ttl_seconds <= 0:
            raise ValueError("token_ttl_seconds must be positive")


@dataclass
class Order:
    """One simulated Tango order; mutated in place by resends under the state lock."""

    reference_order_id: str
    email: str
    mobile: str | None
    delivery_method: str
    send_email: bool
    etid: str
    customer_identifier: str
    account_identifier: str
    external_ref_id: str | None
    created_at_ms: int
    last_resent_ms: int | None = None

    def to_json(self) -> dict[str, Any]:
        """Renders the order the way ``GET /orders/{referenceOrderID}`` does.

        Returns:
            A JSON-ready dict in Tango's camelCase shape.
        """
        return {
            "referenceOrderID": self.reference_order_id,
            "externalRefID": self.external_ref_id,
            "customerIdentifier": self.customer_identifier,
            "accountIdentifier": self.account_identifier,
            "status": "COMPLETE",
            "createdAt": iso_ms(self.created_at_ms),
            "amountCharged": {
                "value": 10.0,
                "currencyCode": "USD",
                "exchangeRate": 1.0,
                "fee": 0.0,
                "total": 10.0,
            },
            "recipient": {
                "email": self.email,
                "firstName": "Sandbox",
                "lastName": "Recipient",
                "mobile": self.mobile,
            },
            "sendEmail": self.send_email,
            "deliveryMethod": self.delivery_method,
            "etid": self.etid,
            "lastResentAt": (None if self.last_resent_ms is None else iso_ms(self.last_resent_ms)),
        }


ResendKind = Literal["sent", "not_found", "send_email_disabled", "cooldown"]


@dataclass(frozen=True)
class ResendOutcome:
    """What one atomic resend attempt did.

    Attributes:
        kind: ``sent``, ``not_found``, ``send_email_disabled`` or ``cooldown``.
        now_ms: The sandbox time at which the attempt was judged.
        resend_id: The new resend's id (``sent`` only).
        last_sent_ms: The resend time (``sent``) or the blocking last resend
            (``cooldown``).
        email: The order's email after the update (``sent`` only).
    """

    kind: ResendKind
    now_ms: int
    resend_id: int = 0
    last_sent_ms: int = 0
    email: str = ""
