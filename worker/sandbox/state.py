"""Thread-safe in-memory state of one sandbox: orders, limits, faults, calls, tokens."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Mapping
from typing import Any

from .calllog import CallLog
from .credentials import Credentials
from .faults import Fault, FaultQueue
from .formats import LAST_SENT_FORMATS, parse_rfc3339_ms, to_ms
from .models import (
    DELIVERY_METHODS,
    Order,
    ResendOutcome,
    SandboxConfig,
    check_cooldown,
    check_rate_limit,
)
from .ratelimit import RateVerdict, SlidingWindow
from .responses import Request

# Resend body field -> Order attribute it overwrites.
_UPDATABLE_FIELDS = {
    "newEmail": "email",
    "newMobile": "mobile",
    "newEtid": "etid",
    "newDeliveryMethod": "delivery_method",
}


class SandboxState:
    """Everything a sandbox remembers; orders and the rate limit are guarded by one lock.

    Every public method is safe to call from any thread; ``resend`` performs
    the cooldown check and the update in one critical section, so two parallel
    calls for one order can never both succeed, and ``admit_call`` judges and
    records a call in one critical section, so parallel calls cannot both take
    the last slot of the rate limit.
    """

    def __init__(self, config: SandboxConfig | None = None) -> None:
        """Creates empty state.

        Args:
            config: Behaviour settings; defaults mirror production Tango.
        """
        self.config = config if config is not None else SandboxConfig()
        self._lock = threading.Lock()
        self._orders: dict[str, Order] = {}
        self._faults = FaultQueue()
        self._credentials = Credentials(self.config, self.now_ms)
        self._calls = CallLog(self.now)
        self._resend_ids = itertools.count(1)
        self._window = SlidingWindow()
        self._accepted_calls = 0
        self._rate_limited_calls = 0

    # -- clock ---------------------------------------------------------------

    def now(self) -> float:
        """Returns the sandbox clock: host time plus the configured offset."""
        return time.time() + self.config.clock_offset_seconds

    def now_ms(self) -> int:
        """Returns the sandbox clock in whole epoch milliseconds."""
        return to_ms(self.now())

    def set_clock_offset(self, seconds: float) -> None:
        """Moves the sandbox clock relative to the host clock.

        Args:
            seconds: New offset; negative puts Tango behind the workers.
        """
        self.config.clock_offset_seconds = float(seconds)

    # -- settings ------------------------------------------------------------

    def configure(
        self,
        *,
        rate_limit: float | None = None,
        cooldown_seconds: float | None = None,
        last_sent_format: str | None = None,
    ) -> None:
        """Changes settings at run time; None leaves a setting as it is.

        Both values are checked before either is applied. The rate limit keeps
        the calls already accepted (a new limit judges them too), except that
        turning it off forgets them.

        Args:
            rate_limit: Calls per second; 0 turns the limit off.
            cooldown_seconds: Per-order resend window.
            last_sent_format: How 403.005 renders the last resend time (one of
                ``LAST_SENT_FORMATS``; ``iso-minutes`` for minute precision).

        Raises:
            ValueError: On a negative or non-finite value, or an unknown format.
        """
        if last_sent_format is not None and last_sent_format not in LAST_SENT_FORMATS:
            raise ValueError(f"last_sent_format must be one of {LAST_SENT_FORMATS}")
        new_rate = None if rate_limit is None else check_rate_limit(rate_limit)
        new_cooldown = None if cooldown_seconds is None else check_cooldown(cooldown_seconds)
        with self._lock:
            if new_rate is not None:
                self.config.rate_limit = new_rate
                if new_rate == 0:
                    self._window.clear()
            if new_cooldown is not None:
                self.config.cooldown_seconds = new_cooldown
            if last_sent_format is not None:
                self.config.last_sent_format = last_sent_format

    # -- rate limit ----------------------------------------------------------

    def admit_call(self, arrived_at: float) -> RateVerdict:
        """Judges an authenticated RaaS call against the platform rate limit.

        Accepted calls are counted and take a slot; refused ones are counted
        separately and take nothing.

        Args:
            arrived_at: Sandbox clock when the request arrived.

        Returns:
            The verdict; always accepted while the limit is 0 (off).
        """
        with self._lock:
            verdict = self._window.admit(arrived_at, self.config.rate_limit)
            if verdict.accepted:
                self._accepted_calls += 1
            else:
                self._rate_limited_calls += 1
            return verdict

    def accepted_count(self) -> int:
        """Returns how many authenticated RaaS calls passed the rate limit since the last reset."""
        with self._lock:
            return self._accepted_calls

    def rate_limited_count(self) -> int:
        """Returns how many calls the rate limit refused (429.008) since the last reset."""
        with self._lock:
            return self._rate_limited_calls

    def stats(self) -> dict[str, int]:
        """Returns both rate-limit counters, read together."""
        with self._lock:
            return {"accepted": self._accepted_calls, "rate_limited": self._rate_limited_calls}

    # -- orders --------------------------------------------------------------

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
        """Creates (or replaces) an order that resends can target.

        Args:
            reference_order_id: Tango's order number, e.g. ``RA180426-1401-64``.
            email: Recipient email.
            mobile: Recipient mobile number in E.164, if any.
            delivery_method: ``EMAIL``, ``PHONE`` or ``NONE``.
            send_email: False makes every resend fail with 403.003.
            etid: Email template id.
            customer_identifier: Owning customer.
            account_identifier: Owning account.
            created_at: RFC 3339 creation time; defaults to the sandbox now.
            external_ref_id: The caller's own reference, if any.

        Raises:
            ValueError: On an empty id, unknown delivery method or bad timestamp.
        """
        if not reference_order_id:
            raise ValueError("referenceOrderID must not be empty")
        if delivery_method not in DELIVERY_METHODS:
            raise ValueError(f"deliveryMethod must be one of {DELIVERY_METHODS}")
        created_ms = self.now_ms() if created_at is None else parse_rfc3339_ms(created_at)
        order = Order(
            reference_order_id=reference_order_id,
            email=email,
            mobile=mobile,
            delivery_method=delivery_method,
            send_email=send_email,
            etid=etid,
            customer_identifier=customer_identifier,
            account_identifier=account_identifier,
            external_ref_id=external_ref_id,
            created_at_ms=created_ms,
        )
        with self._lock:
            self._orders[reference_order_id] = order

    def has_order(self, reference_order_id: str) -> bool:
        """Tells whether an order exists."""
        with self._lock:
            return reference_order_id in self._orders

    def order_json(self, reference_order_id: str) -> dict[str, Any] | None:
        """Returns one order in Tango's JSON shape, or None when unknown."""
        with self._lock:
            order = self._orders.get(reference_order_id)
            return None if order is None else order.to_json()

    def list_orders(
        self,
        *,
        start_ms: int | None = None,
        end_ms: int | None = None,
        customer_identifier: str | None = None,
        account_identifier: str | None = None,
        external_ref_id: str | None = None,
    ) -> list[dict[str, Any]]:
        """Returns matching orders in Tango's JSON shape, oldest first.

        Args:
            start_ms: Inclusive lower bound on creation time.
            end_ms: Exclusive upper bound on creation time.
            customer_identifier: Only this customer's orders.
            account_identifier: Only this account's orders.
            external_ref_id: Only orders with this external reference.

        Returns:
            Orders sorted by creation time, then reference order id.
        """
        with self._lock:
            orders = sorted(
                self._orders.values(), key=lambda o: (o.created_at_ms, o.reference_order_id)
            )
            return [
                order.to_json()
                for order in orders
                if (start_ms is None or order.created_at_ms >= start_ms)
                and (end_ms is None or order.created_at_ms < end_ms)
                and customer_identifier in (None, order.customer_identifier)
                and account_identifier in (None, order.account_identifier)
                and external_ref_id in (None, order.external_ref_id)
            ]

    def resend(self, reference_order_id: str, updates: Mapping[str, Any]) -> ResendOutcome:
        """Attempts one resend: checks the window and, if open, resends atomically.

        Args:
            reference_order_id: The order to resend.
            updates: Validated body fields (``newEmail`` …); None values are ignored.

        Returns:
            What happened; ``sent`` means the window restarted at ``now_ms``.
        """
        with self._lock:
            now_ms = self.now_ms()
            order = self._orders.get(reference_order_id)
            if order is None:
                return ResendOutcome("not_found", now_ms)
            if not order.send_email:
                return ResendOutcome("send_email_disabled", now_ms)
            last = order.last_resent_ms
            if last is not None and now_ms - last < self.config.cooldown_seconds * 1000:
                return ResendOutcome("cooldown", now_ms, last_sent_ms=last)
            for field, attribute in _UPDATABLE_FIELDS.items():
                if updates.get(field) is not None:
                    setattr(order, attribute, updates[field])
            order.last_resent_ms = now_ms
            return ResendOutcome(
                "sent",
                now_ms,
                resend_id=next(self._resend_ids),
                last_sent_ms=now_ms,
                email=order.email,
            )

    def portal_resend(self, reference_order_id: str) -> None:
        """Simulates a resend from Tango's portal, which ignores the window.

        Args:
            reference_order_id: The order to mark as just resent.

        Raises:
            KeyError: If the order is unknown.
        """
        with self._lock:
            self._orders[reference_order_id].last_resent_ms = self.now_ms()

    # -- faults --------------------------------------------------------------

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
            status: Status to answer instead of processing (2xx still resends).
            count: How many consecutive calls the fault applies to.
            retry_after: Seconds for a ``Retry-After`` header.
            delay_seconds: How long to stall.
            delay_phase: ``before`` or ``after`` processing (``after`` with an
                error status: process, then answer that error).
            body: ``json``, ``html`` or ``malformed``.
            reset: Drop the connection without an answer.
            process_seconds: Tango's own time on the call before it acts.

        Raises:
            ValueError: On an out-of-range argument.
        """
        fault = Fault(
            reference_order_id=reference_order_id,
            status=status,
            retry_after=retry_after,
            delay_seconds=delay_seconds,
            delay_phase=delay_phase,
            body=body,
            reset=reset,
            process_seconds=process_seconds,
        )
        self._faults.push(fault, count)

    def next_fault(self, reference_order_id: str) -> Fault | None:
        """Removes and returns the oldest fault that applies to this order.

        Args:
            reference_order_id: The order named in the request path.

        Returns:
            The fault, or None when none is queued for the order.
        """
        return self._faults.pop_for(reference_order_id)

    # -- authentication and call log (delegated) -----------------------------

    def classify_auth(self, authorization: str | None) -> str:
        """Classifies an ``Authorization`` header as basic/bearer/none/invalid."""
        return self._credentials.classify(authorization)

    def count_token_request(self) -> None:
        """Counts one call to the token route, whatever its outcome."""
        self._credentials.count_request()

    def issue_token(self, client_id: str, client_secret: str) -> str | None:
        """Issues a bearer token, or returns None for wrong client credentials."""
        return self._credentials.issue(client_id, client_secret)

    def token_requests(self) -> int:
        """Returns how many token requests arrived since the last reset."""
        return self._credentials.requests()

    def begin_call(
        self, request: Request, reference_order_id: str | None, *, probe: bool = False
    ) -> int:
        """Records the arrival of a RaaS request; see ``CallLog.begin``."""
        return self._calls.begin(request, reference_order_id, probe=probe)

    def finish_call(self, call_id: int, *, status: int | None, i18n_key: str | None) -> None:
        """Completes a call record; ``status`` None means the connection was reset."""
        self._calls.finish(call_id, status=status, i18n_key=i18n_key)

    def calls(self) -> list[dict[str, Any]]:
        """Returns deep copies of the call log, oldest first."""
        return self._calls.snapshot()

    # -- housekeeping --------------------------------------------------------

    def reset(self) -> None:
        """Forgets orders, faults, calls, tokens and rate-limit history; keeps the configuration."""
        with self._lock:
            self._orders.clear()
            self._resend_ids = itertools.count(1)
            self._window.clear()
            self._accepted_calls = 0
            self._rate_limited_calls = 0
        self._faults.clear()
        self._calls.clear()
        self._credentials.reset()
