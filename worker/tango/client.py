"""The HTTP client for the Tango endpoints the worker uses."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests
import urllib3
from requests.adapters import HTTPAdapter

from worker.core.settings import Settings
from worker.tango.auth import Authorizer
from worker.tango.deadline import (
    POOL_CLASSES_BY_SCHEME,
    CallDeadline,
    NotSentInTime,
    check_send_by,
    current_deadline,
)
from worker.tango.error_mapping import (
    error_for_exception,
    error_for_response,
    parse_json_object,
    shown_url,
)
from worker.tango.errors import TangoAuthenticationError, TangoError, TangoNotSent
from worker.tango.ids import REFERENCE_ORDER_ID
from worker.tango.timeparse import ParsedInstant, parse_http_date

USER_AGENT = "tango-resend/0.1 (+https://github.com/tango-resend/tango-resend)"
# Marks a probe: the prompt second call that asks Tango whether an ambiguous call acted.
PROBE_HEADER = "X-Tango-Resend-Probe"


@dataclass(frozen=True)
class TangoAnswer:
    """A successful answer."""

    status: int
    body: dict[str, Any] | None
    request_id: str | None
    tango_time: ParsedInstant | None
    elapsed_seconds: float


class _DeadlineAdapter(HTTPAdapter):
    """Pools whose connections check the thread's call deadline before sending
    (`worker.tango.deadline`)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = POOL_CLASSES_BY_SCHEME


def build_session(pool_size: int) -> requests.Session:
    """One pooled session per process; no automatic retries (retry policy is ours)."""
    session = requests.Session()
    adapter = _DeadlineAdapter(pool_connections=4, pool_maxsize=max(pool_size, 4), max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    session.headers["Accept"] = "application/json"
    return session


class TangoClient:
    """Calls Tango; every non-success becomes a `TangoError` through `error_mapping`."""

    def __init__(
        self, settings: Settings, session: requests.Session, authorizer: Authorizer
    ) -> None:
        self._base_url = str(settings.tango_base_url).rstrip("/")
        self._timeout = (settings.tango_connect_timeout_seconds, settings.tango_timeout_seconds)
        self._session = session
        self._authorizer = authorizer

    @property
    def longest_call_seconds(self) -> float:
        """A bound on one send, for holding the window from the gate to Tango's answer.

        requests' timeouts bound each connection attempt and each read, not the whole call,
        so this takes twice connect plus read as the margin. Authorisation happens before the
        gate and a 401's second send passes the gate again, so neither is inside the hold.
        """
        connect, read = self._timeout
        return 2 * (connect + read)

    @property
    def longest_send_seconds(self) -> float:
        """One connection attempt and one read: how long a send normally takes at most."""
        connect, read = self._timeout
        return connect + read

    def authorization(self) -> str:
        """The Authorization header for the next call (may wait for the fleet's OAuth token).

        Raises:
            TangoTransientError: the token could not be had in time (nothing was sent).
            TangoAuthenticationError: the token endpoint refused our credentials.
        """
        return self._authorizer.authorization()

    def authorization_at_hand(self) -> str | None:
        """The Authorization header if it can be had without waiting (a cached OAuth token,
        or HTTP Basic), else None."""
        return self._authorizer.authorization_at_hand()

    @property
    def longest_authorization_wait_seconds(self) -> float:
        """How long `authorization` may wait for the fleet's OAuth token (0 for HTTP Basic)."""
        return self._authorizer.longest_wait_seconds

    def renew(self, authorization: str) -> bool:
        """Forget a credential Tango answered 401 to; True when another may now be had."""
        return self._authorizer.rejected(authorization)

    def resend(
        self,
        reference_order_id: str,
        body: dict[str, str],
        authorization: str,
        probe: bool = False,
    ) -> TangoAnswer:
        """POST /orders/{referenceOrderID}/resends with only the fields the caller set: one
        send, no retry of its own (a 401 is the caller's to renew and pass the gate again).
        A `probe` (the prompt second call after an ambiguous one) says so in a header, for
        Tango's support and our sandbox's call log; Tango ignores it."""
        path = self._order_path(reference_order_id) + "/resends"
        extra = {PROBE_HEADER: "1"} if probe else None
        return self._send("POST", path, body, authorization, extra_headers=extra)

    def get_order(
        self, reference_order_id: str, before_retry: Callable[[], None] | None = None
    ) -> TangoAnswer:
        """GET /orders/{referenceOrderID}; `before_retry` runs before a 401's second send."""
        return self._call("GET", self._order_path(reference_order_id), None, None, before_retry)

    def list_orders(
        self, params: dict[str, str | int], before_retry: Callable[[], None] | None = None
    ) -> TangoAnswer:
        """GET /orders with filters (startDate, endDate, elementsPerBlock, page, ...).

        `before_retry` runs before a 401's second send (e.g. to take another rate slot)."""
        return self._call("GET", "/orders", None, params, before_retry)

    def _order_path(self, reference_order_id: str) -> str:
        # Validation already refuses anything else; this guard keeps the client safe on its own.
        if not REFERENCE_ORDER_ID.fullmatch(reference_order_id):
            raise ValueError("refusing a malformed referenceOrderID")
        return "/orders/" + quote(reference_order_id, safe="")

    def _call(
        self,
        method: str,
        path: str,
        body: dict[str, str] | None,
        params: dict[str, str | int] | None = None,
        before_retry: Callable[[], None] | None = None,
    ) -> TangoAnswer:
        authorization = self._authorizer.authorization()
        try:
            return self._send(method, path, body, authorization, params)
        except TangoAuthenticationError:
            # One renewal at most: a rejected shared token is dropped and fetched again once.
            if not self._authorizer.rejected(authorization):
                raise
            if before_retry is not None:
                before_retry()
            return self._send(method, path, body, self._authorizer.authorization(), params)

    def _send(
        self,
        method: str,
        path: str,
        body: dict[str, str] | None,
        authorization: str,
        params: dict[str, str | int] | None = None,
        extra_headers: dict[str, str] | None = None,
    ) -> TangoAnswer:
        started = time.monotonic()
        deadline = current_deadline()
        try:
            check_send_by()
            response = self._session.request(
                method,
                self._base_url + path,
                json=body,
                params=params,
                headers={"Authorization": authorization, **(extra_headers or {})},
                timeout=self._timeouts_within(deadline),
                allow_redirects=False,
                stream=deadline is not None,
            )
            text = response.text if deadline is None else _read_text(response, deadline)
        except requests.RequestException as error:
            unanswered = error_for_exception(error)
            unanswered.url = shown_url(self._base_url + path)
            raise unanswered from None
        except NotSentInTime as error:
            raise TangoNotSent(str(error)) from None
        elapsed = time.monotonic() - started
        failure: TangoError | None = error_for_response(
            response.status_code, response.headers, text, response.reason
        )
        if failure is not None:
            failure.url = shown_url(self._base_url + path)
            raise failure
        request_id = response.headers.get("X-REQUEST-ID")
        return TangoAnswer(
            status=response.status_code,
            body=parse_json_object(text),
            request_id=request_id,
            tango_time=parse_http_date(response.headers.get("Date")),
            elapsed_seconds=elapsed,
        )

    def _timeouts_within(self, deadline: CallDeadline | None) -> tuple[float, float]:
        """requests' (connect, read) timeouts, cut to what is left of the call's deadline."""
        connect, read = self._timeout
        if deadline is None:
            return connect, read
        left = max(deadline.remaining_seconds(), 0.001)
        return min(connect, left), min(read, left)


def _read_text(response: requests.Response, deadline: CallDeadline) -> str:
    """The answer's body, read against the call's deadline: each read waits at most what is
    left of it, so a server trickling the body past the deadline is cut off (an ambiguous
    timeout: Tango had the request and may have acted)."""
    raw, chunks = response.raw, []
    try:
        while True:
            left = deadline.remaining_seconds()
            if left <= 0:
                raise requests.ReadTimeout("the answer was not read by the call's deadline")
            sock = getattr(raw.connection, "sock", None)
            if sock is not None:
                sock.settimeout(left)
            chunk = raw.read1(16384, decode_content=True)
            if not chunk:
                break
            chunks.append(chunk)
    except (urllib3.exceptions.HTTPError, OSError) as error:
        response.close()  # the connection is in an unknown state: not reused
        raise requests.ReadTimeout(f"the answer was cut off: {error}") from None
    raw.release_conn()  # read to its end: the connection goes back to the pool, kept alive
    return b"".join(chunks).decode(response.encoding or "utf-8", errors="replace")
