"""A small client for the sandbox's ``/_sandbox`` control API."""

from __future__ import annotations

from types import TracebackType
from typing import Any, cast
from urllib.parse import quote

import requests

# (connect, read): a control call is local and quick, but a fault-stalled
# server thread must not hang a test forever.
_TIMEOUT = (5.0, 30.0)


class SandboxControl:
    """Drives a running sandbox over HTTP: seeds orders, queues faults, reads the log.

    Every method raises ``requests.HTTPError`` when the sandbox refuses the
    call (for example a 400 for a bad argument or a 404 for an unknown order).
    """

    def __init__(self, control_url: str) -> None:
        """Creates a client.

        Args:
            control_url: The sandbox root, e.g. ``SandboxServer.control_url``.
        """
        self._root = control_url.rstrip("/") + "/_sandbox"

    def _call(self, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
        # A fresh connection per call: callers often never close this client, and
        # a pooled socket left to the garbage collector raises ResourceWarning.
        with requests.Session() as session:
            response = session.request(method, self._root + path, json=payload, timeout=_TIMEOUT)
            response.raise_for_status()
            return response.json()

    def add_order(
        self,
        reference_order_id: str,
        *,
        email: str = "recipient@example.com",
        mobile: str | None = None,
        delivery_method: str = "EMAIL",
        send_email: bool = True,
        etid: str = "E000000",
        customer_identifier: str = "customer-1",
        account_identifier: str = "account-1",
        created_at: str | None = None,
        external_ref_id: str | None = None,
    ) -> None:
        """Creates (or replaces) an order in the sandbox.

        Args:
            reference_order_id: Tango's order number.
            email: Recipient email.
            mobile: Recipient mobile in E.164, if any.
            delivery_method: ``EMAIL``, ``PHONE`` or ``NONE``.
            send_email: False makes resends fail with 403.003.
            etid: Email template id.
            customer_identifier: Owning customer.
            account_identifier: Owning account.
            created_at: RFC 3339 creation time; defaults to the sandbox now.
            external_ref_id: The caller's own reference, if any.
        """
        self._call(
            "POST",
            "/orders",
            {
                "referenceOrderID": reference_order_id,
                "email": email,
                "mobile": mobile,
                "deliveryMethod": delivery_method,
                "sendEmail": send_email,
                "etid": etid,
                "customerIdentifier": customer_identifier,
                "accountIdentifier": account_identifier,
                "createdAt": created_at,
                "externalRefID": external_ref_id,
            },
        )

    def inject_fault(
        self,
        reference_order_id: str,
        *,
        status: int | None = None,
        count: int = 1,
        retry_after: float | None = None,
        delay_seconds: float = 0.0,
        delay_phase: str = "before",
        body: str = "json",
        reset: bool = False,
        process_seconds: float = 0.0,
    ) -> None:
        """Queues misbehaviour for the next resend calls of an order.

        Args:
            reference_order_id: The order, or ``"*"`` for any order.
            status: Status to answer instead of processing (a 2xx still resends).
            count: How many consecutive calls it applies to.
            retry_after: Seconds for a ``Retry-After`` header.
            delay_seconds: How long to stall.
            delay_phase: ``before`` (then process) or ``after`` (process, then
                stall before answering; with an error ``status``, answer that
                error after the resend happened).
            body: ``json``, ``html`` or ``malformed``.
            reset: Drop the connection without answering.
            process_seconds: Tango's own time on the call before it acts; with
                ``delay_phase="after"``: act, then answer late.
        """
        self._call(
            "POST",
            "/faults",
            {
                "referenceOrderID": reference_order_id,
                "status": status,
                "count": count,
                "retryAfter": retry_after,
                "delaySeconds": delay_seconds,
                "delayPhase": delay_phase,
                "body": body,
                "reset": reset,
                "processSeconds": process_seconds,
            },
        )

    def portal_resend(self, reference_order_id: str) -> None:
        """Simulates a resend from Tango's portal, which restarts the window.

        Args:
            reference_order_id: The order to mark as just resent.
        """
        self._call("POST", f"/orders/{quote(reference_order_id, safe='')}/portal-resend")

    def calls(self) -> list[dict[str, Any]]:
        """Returns the call log of RaaS requests, oldest first."""
        return cast(list[dict[str, Any]], self._call("GET", "/calls")["calls"])

    def token_requests(self) -> int:
        """Returns how many token requests the sandbox received."""
        return int(self._call("GET", "/tokens")["issued"])

    def stats(self) -> dict[str, int]:
        """Returns the rate-limit counters since the last reset.

        Returns:
            ``{"accepted": n, "rate_limited": m}``: authenticated RaaS calls the
            rate limit let through, and calls it refused with 429.008.
        """
        payload = self._call("GET", "/stats")
        return {"accepted": int(payload["accepted"]), "rate_limited": int(payload["rate_limited"])}

    def configure(
        self,
        rate_limit: float | None = None,
        cooldown_seconds: float | None = None,
        last_sent_format: str | None = None,
    ) -> None:
        """Changes settings of the running sandbox; None leaves a setting as it is.

        Args:
            rate_limit: Platform rate limit in calls per second; 0 turns it off.
            cooldown_seconds: Per-order resend window.
            last_sent_format: How 403.005 renders the last resend time (``iso``,
                ``iso-seconds``, ``iso-seconds-offset``, ``iso-minutes``, ``epoch-ms``, ``java``,
                ``java-messageformat``, ``garbage``).
        """
        payload: dict[str, Any] = {}
        if last_sent_format is not None:
            payload["lastSentFormat"] = last_sent_format
        if rate_limit is not None:
            payload["rateLimit"] = rate_limit
        if cooldown_seconds is not None:
            payload["cooldownSeconds"] = cooldown_seconds
        self._call("POST", "/config", payload)

    def reset(self) -> None:
        """Clears orders, faults, calls, tokens and rate-limit history and counters."""
        self._call("POST", "/reset")

    def health(self) -> bool:
        """Tells whether the sandbox answers its health check."""
        return bool(self._call("GET", "/health")["ok"])

    def close(self) -> None:
        """Releases resources; kept for symmetry, as no connection outlives a call."""

    def __enter__(self) -> SandboxControl:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
