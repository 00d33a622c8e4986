"""Unit tests for worker.core.redaction: contact data never reaches a log line unmasked."""

from __future__ import annotations

import io
import logging
import uuid
from collections.abc import Iterator

import pytest

from tests.support.logs import captured_logger
from worker.core.redaction import (
    RedactingFilter,
    install_redaction,
    mask_email,
    mask_phone,
    redact,
)


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("jane.doe@example.com", "j***@example.com"),
        ("a@b.co", "a***@b.co"),
        ("jane+tag@mail.example.co.uk", "j***@mail.example.co.uk"),
        ("J_D-1@EXAMPLE.COM", "J***@EXAMPLE.COM"),
        ("to jane@example.com and bob@example.org.", "to j***@example.com and b***@example.org."),
        ("<jane@example.com>", "<j***@example.com>"),
        ("no email here", "no email here"),
        ("user@localhost", "user@localhost"),  # no dot in the domain: not an address we mask
    ],
)
def test_mask_email(text: str, masked: str) -> None:
    assert mask_email(text) == masked


@pytest.mark.parametrize(
    "email",
    ["mary.o'neil@example.com", "jean-paul!smith@example.com", "first%last@example.com"],
)
def test_mask_email_hides_local_parts_with_other_valid_characters(email: str) -> None:
    masked = mask_email(email)

    assert masked == f"{email[0]}***@example.com"


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("+14155550123", "+1******0123"),
        ("+447911123456", "+4*******3456"),
        ("+123456789012345", "+1**********2345"),  # 15 digits, the E.164 maximum
        ("+123456789", "+1****6789"),  # 9 digits
        ("call +14155550123, please", "call +1******0123, please"),
        ("+1234567", "+1234567"),  # too short to be a phone number: untouched
        ("order RA180426-1401-64", "order RA180426-1401-64"),
        ("14155550123", "14155550123"),  # no plus: not E.164
    ],
)
def test_mask_phone(text: str, masked: str) -> None:
    assert mask_phone(text) == masked


@pytest.mark.parametrize(
    ("phone", "masked"), [("+50051234", "+5***1234"), ("+29051234", "+2***1234")]
)
def test_mask_phone_masks_the_shortest_valid_numbers(phone: str, masked: str) -> None:
    assert mask_phone(phone) == masked


def test_mask_phone_keeps_the_length() -> None:
    for phone in ("+14155550123", "+447911123456", "+123456789"):
        assert len(mask_phone(phone)) == len(phone)


def test_redact_masks_emails_and_phones_in_free_text() -> None:
    text = "resend RA180426-1401-64 to jane.doe@example.com / +14155550123 (was bob@example.org)"

    assert redact(text) == (
        "resend RA180426-1401-64 to j***@example.com / +1******0123 (was b***@example.org)"
    )


def test_redact_is_idempotent() -> None:
    text = "jane.doe@example.com +14155550123"

    assert redact(redact(text)) == redact(text)


# --- RedactingFilter on a real handler ------------------------------------------------------


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger of its own with one real stream handler carrying the filter."""
    with captured_logger(
        f"test.redaction.{uuid.uuid4().hex}",
        fmt="%(levelname)s %(message)s",
        level=logging.DEBUG,
        filters=[RedactingFilter()],
    ) as captured:
        yield captured


def test_filter_masks_contact_data_passed_as_arguments(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured

    logger.info("resend %s to %s and %s", "RA180426-1401-64", "jane@example.com", "+14155550123")

    assert (
        stream.getvalue() == "INFO resend RA180426-1401-64 to j***@example.com and +1******0123\n"
    )


def test_filter_masks_contact_data_in_the_message_itself(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured

    logger.warning("bounce for jane.doe@example.com")

    assert stream.getvalue() == "WARNING bounce for j***@example.com\n"


def test_filter_leaves_clean_records_untouched(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured
    seen: list[logging.LogRecord] = []

    class Keep(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            seen.append(record)
            return True

    logger.handlers[0].addFilter(Keep())
    logger.info("attempt %d of %s", 2, "RA180426-1401-64")

    assert stream.getvalue() == "INFO attempt 2 of RA180426-1401-64\n"
    assert seen[0].msg == "attempt %d of %s"
    assert seen[0].args == (2, "RA180426-1401-64")


def test_filter_never_drops_a_record() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "to %s", ("a@b.co",), None)

    assert RedactingFilter().filter(record) is True
    assert record.getMessage() == "to a***@b.co"


def test_filter_masks_a_message_that_is_not_a_string(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured

    logger.info({"email": "jane@example.com"})

    assert "jane@example.com" not in stream.getvalue()
    assert "j***@example.com" in stream.getvalue()


def test_filter_masks_contact_data_in_an_exception_traceback(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured

    try:
        raise ValueError("Tango rejected newEmail jane.doe@example.com")
    except ValueError:
        logger.exception("resend failed")

    assert "jane.doe@example.com" not in stream.getvalue()


def test_install_redaction_adds_one_filter_per_handler() -> None:
    logger = logging.getLogger(f"test.install.{uuid.uuid4().hex}")
    first, second = logging.StreamHandler(io.StringIO()), logging.StreamHandler(io.StringIO())
    logger.addHandler(first)
    logger.addHandler(second)
    try:
        install_redaction(logger)
        install_redaction(logger)  # twice: still one filter each

        for handler in (first, second):
            filters = [f for f in handler.filters if isinstance(f, RedactingFilter)]
            assert len(filters) == 1
    finally:
        logger.removeHandler(first)
        logger.removeHandler(second)
