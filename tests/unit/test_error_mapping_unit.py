"""Unit tests for worker.tango.error_mapping: every HTTP answer and network failure to its
exception."""

from __future__ import annotations

import json
import socket
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from requests.structures import CaseInsensitiveDict
from urllib3.exceptions import MaxRetryError, NameResolutionError

from worker.tango.error_mapping import (
    NeverReached,
    error_for_exception,
    error_for_response,
    never_reached,
    parse_json_object,
)
from worker.tango.errors import (
    TangoAuthenticationError,
    TangoCooldownError,
    TangoError,
    TangoPermanentError,
    TangoTransientError,
)
from worker.tango.timeparse import ParsedInstant

COOLDOWN_MESSAGE = (
    "Cannot send more than once every 30 seconds. Last sent at 2024-03-25T22:46:39.922Z"
)
DATE_HEADER = "Mon, 25 Mar 2024 22:46:50 GMT"


def headers(**values: str) -> CaseInsensitiveDict[str]:
    """Response headers as requests gives them (case-insensitive); `_` in names becomes `-`."""
    return CaseInsensitiveDict({name.replace("_", "-"): value for name, value in values.items()})


def tango_body(**fields: Any) -> str:
    return json.dumps(fields)


def cooldown_body(**overrides: Any) -> str:
    fields: dict[str, Any] = {
        "timestamp": "2024-03-25T22:46:45.123Z",
        "requestId": "req-body",
        "path": "/raas/v2/orders/RA180426-1401-64/resends",
        "httpCode": 403,
        "httpPhrase": "Forbidden",
        "i18nKey": "403.005",
        "message": COOLDOWN_MESSAGE,
    }
    fields.update(overrides)
    return json.dumps({k: v for k, v in fields.items() if v is not None})


# --- 2xx ----------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_success_statuses_map_to_no_error(status: int) -> None:
    assert error_for_response(status, headers(), "{}") is None
    assert error_for_response(status, headers(), "<html>") is None


# --- cooldown -------------------------------------------------------------------------------


def test_403_005_is_a_cooldown_with_last_sent_and_tango_now_from_the_body() -> None:
    error = error_for_response(
        403, headers(Date=DATE_HEADER, X_REQUEST_ID="req-header"), cooldown_body(), "Forbidden"
    )

    assert isinstance(error, TangoCooldownError)
    assert error.last_sent_at == ParsedInstant(
        at=datetime(2024, 3, 25, 22, 46, 39, 922000, tzinfo=UTC),
        resolution=timedelta(milliseconds=1),
    )
    # The body's own timestamp wins over the Date header.
    assert error.tango_now == ParsedInstant(
        at=datetime(2024, 3, 25, 22, 46, 45, 123000, tzinfo=UTC),
        resolution=timedelta(milliseconds=1),
    )
    assert error.status == 403
    assert error.i18n_key == "403.005"
    assert error.message == COOLDOWN_MESSAGE
    assert error.request_id == "req-body"


@pytest.mark.parametrize("timestamp", [None, "garbage", "", 0, True, ["2024"], "1999-01-01T00:00Z"])
def test_cooldown_falls_back_to_the_date_header_when_the_timestamp_is_unreadable(
    timestamp: object,
) -> None:
    error = error_for_response(403, headers(Date=DATE_HEADER), cooldown_body(timestamp=timestamp))

    assert isinstance(error, TangoCooldownError)
    assert error.tango_now == ParsedInstant(
        at=datetime(2024, 3, 25, 22, 46, 50, tzinfo=UTC), resolution=timedelta(seconds=1)
    )


def test_cooldown_without_any_readable_time_carries_none() -> None:
    error = error_for_response(
        403,
        headers(Date="not a date"),
        cooldown_body(timestamp=None, message="Cannot send more than once every 30 seconds."),
    )

    assert isinstance(error, TangoCooldownError)
    assert error.last_sent_at is None
    assert error.tango_now is None


def test_cooldown_key_without_a_message_is_still_a_cooldown() -> None:
    error = error_for_response(403, headers(), cooldown_body(message=None), "Forbidden")

    assert isinstance(error, TangoCooldownError)
    assert error.last_sent_at is None
    assert error.message == "HTTP 403 Forbidden with a JSON body"


@pytest.mark.parametrize("status", [400, 403, 409, 429, 500])
def test_any_answer_whose_message_says_last_sent_at_is_a_cooldown(status: int) -> None:
    """Given no 403.005 key but Tango's cooldown wording, the answer still means cooldown."""
    body = tango_body(message=COOLDOWN_MESSAGE.replace("Last sent", "LAST SENT"))

    error = error_for_response(status, headers(Date=DATE_HEADER), body)

    assert isinstance(error, TangoCooldownError)
    assert error.last_sent_at is not None
    assert error.last_sent_at.at == datetime(2024, 3, 25, 22, 46, 39, 922000, tzinfo=UTC)
    assert error.status == status


def test_cooldown_message_in_errors_array_is_a_cooldown() -> None:
    body = tango_body(errors=[{"path": "order", "i18nKey": "403.005", "message": "x"}])

    error = error_for_response(403, headers(), body)

    assert isinstance(error, TangoCooldownError)
    assert error.i18n_key == "403.005"


# --- authentication ------------------------------------------------------------------------


def test_401_is_an_authentication_error() -> None:
    body = tango_body(i18nKey="401.001", message="Unauthorized", requestId="r-401")

    error = error_for_response(401, headers(), body, "Unauthorized")

    assert isinstance(error, TangoAuthenticationError)
    assert (error.status, error.i18n_key, error.request_id) == (401, "401.001", "r-401")


def test_401_with_an_empty_body_says_so() -> None:
    error = error_for_response(401, headers(), "", "Unauthorized")

    assert isinstance(error, TangoAuthenticationError)
    assert error.message == "HTTP 401 Unauthorized with a non-JSON (?) body"


# --- transient -----------------------------------------------------------------------------


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504, 599])
def test_timeouts_rate_limits_and_5xx_are_transient(status: int) -> None:
    body = tango_body(i18nKey=f"{status}.001", message="try later", requestId="r-t")

    error = error_for_response(status, headers(), body)

    assert isinstance(error, TangoTransientError)
    assert error.retry_after is None
    # Only a gateway's timeout or bad answer leaves open whether Tango acted behind it.
    assert error.ambiguous is (status in (502, 504))
    assert (error.status, error.i18n_key, error.request_id) == (status, f"{status}.001", "r-t")


@pytest.mark.parametrize(
    ("retry_after", "date", "expected"),
    [
        ("120", None, 120.0),
        ("0", None, 0.0),
        ("1.5", None, 1.5),
        ("7200", None, 3600.0),  # capped
        ("1e400", None, 3600.0),  # infinite: capped
        ("-5", None, 0.0),  # negative: now
        ("nan", None, None),
        ("soon", None, None),
        ("", None, None),
        ("Mon, 25 Mar 2024 22:47:50 GMT", DATE_HEADER, 60.0),  # relative to Date
        ("Mon, 25 Mar 2024 22:46:20 GMT", DATE_HEADER, 0.0),  # already past
        ("Tue, 26 Mar 2024 22:46:50 GMT", DATE_HEADER, 3600.0),  # a day: capped
    ],
)
def test_retry_after_as_seconds_or_http_date(
    retry_after: str, date: str | None, expected: float | None
) -> None:
    values = {"Retry-After": retry_after}
    if date:
        values["Date"] = date

    error = error_for_response(429, CaseInsensitiveDict(values), tango_body(i18nKey="429.001"))

    assert isinstance(error, TangoTransientError)
    assert error.retry_after == expected


def test_retry_after_http_date_without_a_date_header_is_relative_to_now() -> None:
    """Given no Date header, the local clock is the only reference left (bounded by the cap)."""
    error = error_for_response(503, headers(Retry_After="Mon, 25 Mar 2024 22:47:50 GMT"), "")

    assert isinstance(error, TangoTransientError)
    assert error.retry_after == 0.0  # 2024 is in the past


def test_retry_after_header_name_is_case_insensitive() -> None:
    error = error_for_response(503, CaseInsensitiveDict({"retry-after": "7"}), "")

    assert isinstance(error, TangoTransientError)
    assert error.retry_after == 7.0


def test_an_html_502_is_transient_and_names_the_content_type() -> None:
    page = "<html><body><h1>502 Bad Gateway</h1></body></html>"

    error = error_for_response(
        502, headers(Content_Type="text/html; charset=utf-8"), page, "Bad Gateway"
    )

    assert isinstance(error, TangoTransientError)
    assert error.message == ("HTTP 502 Bad Gateway with a non-JSON (text/html; charset=utf-8) body")
    assert error.i18n_key is None
    assert error.body is None


@pytest.mark.parametrize(
    ("status", "reason", "ambiguous"),
    [(502, "Bad Gateway", True), (504, "Gateway Timeout", True), (503, "Unavailable", False)],
)
def test_a_gateway_502_or_504_page_is_ambiguous_and_a_503_is_not(
    status: int, reason: str, ambiguous: bool
) -> None:
    """Given a load balancer's HTML page: 502 and 504 can follow a resend Tango performed (the
    window must be held); 503 means nothing reached Tango (see worker/tango/error_mapping.py)."""
    page = f"<html><body><h1>{status} {reason}</h1></body></html>"

    error = error_for_response(status, headers(Content_Type="text/html"), page, reason)

    assert isinstance(error, TangoTransientError)
    assert error.ambiguous is ambiguous


# --- permanent ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "key"),
    [
        (400, "400.001"),
        (403, "403.003"),
        (404, "404.017"),
        (409, "409.001"),
        (422, "422.134"),
        (405, None),
        (418, None),
        (302, None),
    ],
)
def test_other_refusals_are_permanent(status: int, key: str | None) -> None:
    body = tango_body(i18nKey=key, message="refused", requestId="r-p") if key else "{}"

    error = error_for_response(status, headers(), body)

    assert isinstance(error, TangoPermanentError)
    assert error.status == status
    assert error.i18n_key == key


def test_key_and_message_come_from_errors_when_top_level_ones_are_absent() -> None:
    body = tango_body(
        requestId="r-422",
        errors=[
            {"path": "newEmail", "i18nKey": "422.134", "message": "not a well-formed email"},
            {"path": "newEtid", "i18nKey": "422.200", "message": "unknown template"},
            "not a dict",
        ],
    )

    error = error_for_response(400, headers(), body)

    assert isinstance(error, TangoPermanentError)
    assert error.i18n_key == "422.134"
    assert error.message == "newEmail: not a well-formed email; newEtid: unknown template"


def test_top_level_key_and_message_win_over_errors() -> None:
    body = tango_body(
        i18nKey="400.100",
        message="top",
        errors=[{"path": "p", "i18nKey": "422.134", "message": "detail"}],
    )

    error = error_for_response(400, headers(), body)

    assert (error.i18n_key, error.message) == ("400.100", "top")  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[1, 2]", "HTTP 400 Bad Request with a non-JSON (?) body"),
        ("null", "HTTP 400 Bad Request with a non-JSON (?) body"),
        ("{}", "HTTP 400 Bad Request with a JSON body"),
        ('{"errors": []}', "HTTP 400 Bad Request with a JSON body"),
        ("[" * 100_000, "HTTP 400 Bad Request with a non-JSON (?) body"),
    ],
)
def test_bodies_without_detail_get_a_message_of_their_own(text: str, message: str) -> None:
    error = error_for_response(400, headers(), text, "Bad Request")

    assert isinstance(error, TangoPermanentError)
    assert error.message == message


# --- request id, str, as_dict -------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "hdrs", "expected"),
    [
        ({"requestId": "from-body"}, {"X-REQUEST-ID": "from-header"}, "from-body"),
        ({}, {"X-REQUEST-ID": "from-header"}, "from-header"),
        ({}, {"x-request-id": "lower"}, "lower"),
        ({"requestId": ""}, {"X-REQUEST-ID": "from-header"}, "from-header"),
        ({}, {}, None),
    ],
)
def test_request_id_from_body_else_header(
    body: dict[str, Any], hdrs: dict[str, str], expected: str | None
) -> None:
    error = error_for_response(500, CaseInsensitiveDict(hdrs), json.dumps(body))

    assert error is not None
    assert error.request_id == expected


def test_request_id_from_a_plain_dict_of_headers() -> None:
    error = error_for_response(500, {"X-Request-Id": "plain"}, "")

    assert error is not None
    assert error.request_id == "plain"


@pytest.mark.parametrize(
    ("status", "text"),
    [
        (403, cooldown_body()),
        (401, tango_body(message="no", requestId="req-body", i18nKey="401.1")),
        (503, tango_body(message="no", requestId="req-body", i18nKey="503.1")),
        (404, tango_body(message="no", requestId="req-body", i18nKey="404.017")),
    ],
)
def test_every_error_carries_status_key_message_request_id_and_prints_them(
    status: int, text: str
) -> None:
    error = error_for_response(status, headers(), text)

    assert isinstance(error, TangoError)
    assert error.status == status
    assert error.i18n_key
    assert error.message
    assert error.request_id == "req-body"
    assert "request_id=req-body" in str(error)
    assert f"status={status}" in str(error)
    assert f"i18nKey={error.i18n_key}" in str(error)
    assert error.as_dict() == {
        "kind": type(error).__name__,
        "message": error.message,
        "status": status,
        "i18n_key": error.i18n_key,
        "request_id": "req-body",
    }


def test_as_dict_never_holds_the_body() -> None:
    """The body may echo a recipient's email (invalidValue); a record must not keep it."""
    body = tango_body(
        i18nKey="422.134",
        message="bad email",
        errors=[{"path": "newEmail", "invalidValue": "jane@example.com"}],
    )

    error = error_for_response(400, headers(), body)

    assert error is not None
    assert "jane@example.com" not in json.dumps(error.as_dict())
    assert error.body is not None  # kept on the exception for the caller, not in the record


def test_parse_json_object_only_accepts_objects() -> None:
    assert parse_json_object('{"a": 1}') == {"a": 1}
    assert parse_json_object("[]") is None
    assert parse_json_object('"text"') is None
    assert parse_json_object("<html>") is None
    assert parse_json_object("") is None


# --- error_for_exception --------------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_refused_connection_is_transient_and_not_ambiguous() -> None:
    """Given nothing listening, When the request fails to connect, Then nothing reached Tango."""
    try:
        requests.post(f"http://127.0.0.1:{closed_port()}/resends", timeout=2)
    except requests.ConnectionError as caught:
        failure: requests.RequestException = caught
    else:  # pragma: no cover - something answered on a port that was just closed
        pytest.fail("expected a refused connection")

    error = error_for_exception(failure)

    assert isinstance(error, TangoTransientError)
    assert error.ambiguous is False
    assert error.message.startswith("ConnectionError: no answer from Tango (")
    assert "Connection refused" in error.message
    assert never_reached(error) is NeverReached.UNREACHABLE


@pytest.mark.parametrize(
    ("failure", "ambiguous"),
    [
        (requests.ConnectTimeout("connect timed out"), False),
        (requests.ReadTimeout("read timed out"), True),
        (requests.ConnectionError("reset"), True),
        (requests.ConnectionError(), True),
        (requests.exceptions.ChunkedEncodingError("broken"), True),
        (requests.RequestException("other"), True),
    ],
)
def test_only_failures_before_sending_are_unambiguous(
    failure: requests.RequestException, ambiguous: bool
) -> None:
    error = error_for_exception(failure)

    assert isinstance(error, TangoTransientError)
    assert error.ambiguous is ambiguous
    assert error.status is None
    assert error.retry_after is None
    assert type(failure).__name__ in error.message


@pytest.mark.parametrize(
    ("message", "stated"),
    [
        ("Cannot send more than once every 30 seconds. Last sent at 2024-03-25T22:46:39Z", 30.0),
        ("Cannot send more than once every 1.5 seconds. Last sent at x", 1.5),
        ("cannot send MORE THAN ONCE EVERY 4 seconds", 4.0),
        ("Last sent at 2024-03-25T22:46:39Z", None),  # no window stated
        ("Cannot send more than once every 0 seconds", None),  # not believable
        ("Cannot send more than once every 999999 seconds", None),
    ],
)
def test_a_cooldown_error_keeps_the_window_its_message_states(
    message: str, stated: float | None
) -> None:
    body = json.dumps({"i18nKey": "403.005", "message": message, "httpCode": 403})
    error = error_for_response(403, {}, body)
    assert isinstance(error, TangoCooldownError)
    assert error.stated_window_seconds == stated


def test_a_failed_tls_handshake_and_a_failed_dns_lookup_never_reached_tango() -> None:
    """Given a loopback server that answers a TLS hello with plain text, and a DNS failure
    as urllib3 reports it; Then both are unreachable Tango, never ambiguous."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]

        def answer_plain_text() -> None:
            connection, _ = server.accept()
            with connection:
                connection.recv(1024)
                connection.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\nnot TLS")

        thread = threading.Thread(target=answer_plain_text, daemon=True)
        thread.start()
        try:
            requests.post(f"https://127.0.0.1:{port}/resends", timeout=2)
        except requests.RequestException as caught:
            handshake: requests.RequestException = caught
        else:  # pragma: no cover - a plain-text server cannot complete a TLS handshake
            pytest.fail("expected a TLS handshake failure")
        thread.join(timeout=5)
    dns = requests.ConnectionError(
        MaxRetryError(
            None,  # type: ignore[arg-type]
            "/resends",
            NameResolutionError("tango.invalid", None, OSError("Name or service not known")),  # type: ignore[arg-type]
        )
    )

    for failure in (handshake, dns):
        error = error_for_exception(failure)
        assert error.ambiguous is False, failure
        assert never_reached(error) is NeverReached.UNREACHABLE
