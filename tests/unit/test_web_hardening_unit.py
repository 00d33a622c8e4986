"""The pure parts of the web process's hardening: whom X-Forwarded-For names, control
characters escaped in every field of a log record, URLs shown without their secrets, weak
and reused secrets refused, and bearer tokens resolved to whom they stand for."""

from __future__ import annotations

import base64
import logging

import pytest

from tests.support.logs import captured_logger
from tests.support.receiver import API_TOKEN, WEBHOOK_SECRET
from worker.core.logging_setup import configure_handlers
from worker.core.redaction import redact, url_without_secrets
from worker.core.settings import ConfigurationError, load_settings
from worker.web.api_tokens import Identity, Role, identify
from worker.web.forwarded import forwarded_client, forwarded_scheme

READ_TOKEN = "read-only-token-Q8w3-unit-tests-0987654321"


# --- forwarded headers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "hops", "client"),
    [
        (["10.9.9.1, 198.51.100.7"], 1, "198.51.100.7"),  # the client wrote the first hop
        (["10.9.9.1", "198.51.100.7"], 1, "198.51.100.7"),  # two header lines, in order
        (["10.9.9.1, 198.51.100.7, 192.0.2.1"], 2, "198.51.100.7"),  # CDN, then our nginx
        (["198.51.100.7"], 2, None),  # shorter than our proxies: the peer stands
        (["not-an-address"], 1, None),
        (["198.51.100.7:51234"], 1, "198.51.100.7"),
        (["[2001:db8::7]:443"], 1, "2001:db8::7"),
        ([], 1, None),
    ],
)
def test_the_client_is_read_from_the_right_of_x_forwarded_for(
    values: list[str], hops: int, client: str | None
) -> None:
    assert forwarded_client(values, hops) == client


def test_only_http_or_https_counts_as_a_forwarded_scheme() -> None:
    assert forwarded_scheme(["https"], 1) == "https"
    assert forwarded_scheme(["http, https"], 1) == "https"
    assert forwarded_scheme(["javascript"], 1) is None


# --- logs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_no_field_of_a_log_record_can_start_a_line(log_format: str) -> None:
    """Given text with a newline in a message's argument, in an `extra=` field and in an
    exception, Then every record is one line (a traceback's own lines indented), and the
    forged text shows escaped."""
    forged = "x\n[2026-12-05 00:00:00,000: INFO] forged\r\x1b[2K"
    with captured_logger(
        "tango_resend.tests.unit.forging",
        fmt="%(levelname)s %(name)s %(request_id)s: %(message)s",
        level=logging.INFO,
    ) as (logger, stream):
        configure_handlers(logger, log_format)
        logger.info("cancel of %s", forged, extra={"request_id": forged})
        try:
            raise ValueError(forged)
        except ValueError:
            logger.exception("failed", extra={"request_id": "r-1"})
    lines = stream.getvalue().splitlines()

    assert not any(line.startswith("[2026-12-05") for line in lines), lines
    assert "\x1b" not in stream.getvalue() and "\r" not in stream.getvalue()
    if log_format == "text":
        assert lines[0].count("x\\x0a[2026-12-05 00:00:00,000: INFO] forged\\x0d\\x1b[2K") == 2
        assert all(line.startswith(("INFO", "ERROR", "Traceback", " ")) for line in lines)


def test_urls_are_shown_without_user_password_or_query() -> None:
    shown = url_without_secrets("https://cb-user:hunter2@hooks.example.com:8443/in?token=abc")
    assert shown == "https://***@hooks.example.com:8443/in?***"
    assert url_without_secrets("redis://:pw@127.0.0.1:6379/0") == "redis://***@127.0.0.1:6379/0"
    assert url_without_secrets("https://example.com/a") == "https://example.com/a"
    said = redact("POST to http://user:pass@sandbox:8765/raas/v2 failed")
    assert said == "POST to http://***@sandbox:8765/raas/v2 failed"


# --- weak and reused secrets --------------------------------------------------------------------


def one_byte_secret() -> str:
    return "whsec_" + base64.b64encode(b"\x00" * 32).decode()


@pytest.mark.parametrize(
    ("settings", "named", "why"),
    [
        ({"API_TOKEN": "a" * 32}, "API_TOKEN", "distinct characters"),
        ({"API_TOKEN": "abcdefghij" * 4}, "API_TOKEN", "repeated"),
        ({"API_TOKEN": WEBHOOK_SECRET}, "API_TOKEN must differ from WEBHOOK_SECRET", ""),
        (
            {"API_TOKEN": API_TOKEN, "API_READ_TOKEN": WEBHOOK_SECRET},
            "API_READ_TOKEN must differ from WEBHOOK_SECRET",
            "",
        ),
        (
            {"API_TOKEN": API_TOKEN, "API_READ_TOKEN": API_TOKEN},
            "API_READ_TOKEN must differ from API_TOKEN",
            "",
        ),
        ({"CONSOLE_SESSION_SECRET": "ab" * 20}, "CONSOLE_SESSION_SECRET", "distinct characters"),
        (
            {"API_TOKENS": f"alice:{'x' * 32}:write"},
            "API_TOKENS: the token of 'alice'",
            "distinct characters",
        ),
        (
            {"API_TOKENS": f"hooks:{WEBHOOK_SECRET}:write"},
            "API_TOKENS: the token of 'hooks' must differ from WEBHOOK_SECRET",
            "",
        ),
        ({"WEBHOOK_SECRET": one_byte_secret()}, "WEBHOOK_SECRET", "distinct bytes"),
        ({"RESULT_WEBHOOK_SECRET": one_byte_secret()}, "RESULT_WEBHOOK_SECRET", "distinct bytes"),
    ],
)
def test_weak_or_reused_secrets_are_refused_at_start(
    monkeypatch: pytest.MonkeyPatch, settings: dict[str, str], named: str, why: str
) -> None:
    monkeypatch.setenv("WEBHOOK_SECRET", WEBHOOK_SECRET)
    for name, value in settings.items():
        monkeypatch.setenv(name, value)

    with pytest.raises(ConfigurationError) as refused:
        load_settings()

    message = str(refused.value)
    assert named in message and why in message
    assert not any(value in message for value in settings.values())


def test_tokens_resolve_to_whom_they_stand_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_TOKEN", API_TOKEN)
    monkeypatch.setenv("API_READ_TOKEN", READ_TOKEN)
    settings = load_settings()

    assert identify(settings, API_TOKEN) == Identity("default", Role.WRITE)
    assert identify(settings, READ_TOKEN) == Identity("read", Role.READ)
    assert identify(settings, API_TOKEN[:-1]) is None
    assert identify(settings, "") is None
