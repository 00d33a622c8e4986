"""Unit tests for worker.tango.timeparse: every shape Tango's "Last sent at" instant may take."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.tango.timeparse import (
    ParsedInstant,
    extract_last_sent,
    parse_http_date,
    parse_tango_instant,
)

MS = timedelta(milliseconds=1)
SECOND = timedelta(seconds=1)
MINUTE = timedelta(minutes=1)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


# --- ISO-8601 -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "at", "resolution"),
    [
        # Zone forms.
        ("2024-03-25T22:46:39.922Z", utc(2024, 3, 25, 22, 46, 39, 922000), MS),
        ("2024-03-25T22:46:39.922z", utc(2024, 3, 25, 22, 46, 39, 922000), MS),
        ("2024-03-25T22:46:39+02:00", utc(2024, 3, 25, 20, 46, 39), SECOND),
        ("2024-03-25T22:46:39-0500", utc(2024, 3, 26, 3, 46, 39), SECOND),
        ("2024-03-25T22:46:39+05:30", utc(2024, 3, 25, 17, 16, 39), SECOND),
        ("2024-03-25T22:46:39 UTC", utc(2024, 3, 25, 22, 46, 39), SECOND),
        ("2024-03-25T22:46:39GMT", utc(2024, 3, 25, 22, 46, 39), SECOND),
        # No zone: read as UTC, the zone Tango's API speaks.
        ("2024-03-25T22:46:39", utc(2024, 3, 25, 22, 46, 39), SECOND),
        # Space instead of T.
        ("2024-03-25 22:46:39.922Z", utc(2024, 3, 25, 22, 46, 39, 922000), MS),
        # Resolution follows the digits given.
        (
            "2024-03-25T22:46:39.9Z",
            utc(2024, 3, 25, 22, 46, 39, 900000),
            timedelta(milliseconds=100),
        ),
        (
            "2024-03-25T22:46:39.92Z",
            utc(2024, 3, 25, 22, 46, 39, 920000),
            timedelta(milliseconds=10),
        ),
        (
            "2024-03-25T22:46:39,5Z",
            utc(2024, 3, 25, 22, 46, 39, 500000),
            timedelta(milliseconds=100),
        ),
        (
            "2024-03-25T22:46:39.123456Z",
            utc(2024, 3, 25, 22, 46, 39, 123456),
            timedelta(microseconds=1),
        ),
        # More than microsecond digits: truncated, resolution stays 1 µs.
        (
            "2024-03-25T22:46:39.1234567Z",
            utc(2024, 3, 25, 22, 46, 39, 123456),
            timedelta(microseconds=1),
        ),
        ("2024-03-25T22:46Z", utc(2024, 3, 25, 22, 46), MINUTE),
        ("2024-03-25 22:46", utc(2024, 3, 25, 22, 46), MINUTE),
        # Surrounding whitespace is ignored.
        ("  2024-03-25T22:46:39Z \n", utc(2024, 3, 25, 22, 46, 39), SECOND),
        # The last moment before the accepted range ends.
        ("2099-12-31T23:59:59Z", utc(2099, 12, 31, 23, 59, 59), SECOND),
    ],
)
def test_iso_instants_are_read_in_utc_with_the_resolution_of_their_digits(
    text: str, at: datetime, resolution: timedelta
) -> None:
    parsed = parse_tango_instant(text)

    assert parsed == ParsedInstant(at=at, resolution=resolution)
    assert parsed.at.tzinfo is UTC


@pytest.mark.parametrize(
    "text",
    [
        "2024-13-01T00:00:00Z",  # month 13
        "2024-02-30T00:00:00Z",  # no such day
        "2024-03-25T24:00:00Z",  # hour 24
        "2024-03-25T22:61:00Z",  # minute 61
        "2024-03-25T22:46:39+15:00",  # no such offset
        "2024-03-25T22:46:39+02:60",
        "1999-12-31T23:59:59Z",  # before 2000: not a plausible Tango time
        "2100-01-01T00:00:00Z",  # 2100 and later likewise
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59Z",
    ],
)
def test_iso_text_out_of_range_gives_none(text: str) -> None:
    assert parse_tango_instant(text) is None


@pytest.mark.parametrize(
    ("text", "correct"),
    [
        ("2024-03-25T22:46:39 PST", utc(2024, 3, 26, 6, 46, 39)),
        ("2024-03-25T22:46:39 CET", utc(2024, 3, 25, 21, 46, 39)),
        ("2024-03-25T22:46:39-5", utc(2024, 3, 26, 3, 46, 39)),
    ],
)
def test_iso_with_a_zone_it_cannot_place_is_refused_or_read_correctly(
    text: str, correct: datetime
) -> None:
    """Given a zone the ISO pattern does not list, the result must not be the wall time in UTC."""
    parsed = parse_tango_instant(text)

    assert parsed is None or parsed.at == correct


# --- epoch numbers --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "at", "resolution"),
    [
        (1711406799, utc(2024, 3, 25, 22, 46, 39), SECOND),
        ("1711406799", utc(2024, 3, 25, 22, 46, 39), SECOND),
        (" 1711406799 ", utc(2024, 3, 25, 22, 46, 39), SECOND),
        (1711406799.5, utc(2024, 3, 25, 22, 46, 39, 500000), timedelta(microseconds=1)),
        ("1711406799.5", utc(2024, 3, 25, 22, 46, 39, 500000), timedelta(microseconds=1)),
        (1711406799922, utc(2024, 3, 25, 22, 46, 39, 922000), MS),
        ("1711406799922", utc(2024, 3, 25, 22, 46, 39, 922000), MS),
        (946684800, utc(2000, 1, 1), SECOND),
    ],
)
def test_epoch_seconds_and_milliseconds(value: object, at: datetime, resolution: timedelta) -> None:
    assert parse_tango_instant(value) == ParsedInstant(at=at, resolution=resolution)


@pytest.mark.parametrize(
    "value",
    [
        946684799,  # 1999-12-31T23:59:59Z
        4102444800,  # 2100-01-01
        99999999999,  # 11 digits of seconds: year 5138
        171140679992,  # 12 digits: read as ms, 1975
        -1711406799,
        0,
        -5,
        10**30,
        -(10**30),
        1e20,
        1e308,
        float("inf"),
        float("-inf"),
        float("nan"),
        "12345678901234567890",
        "171140679",  # 9 digits: 1975
    ],
)
def test_numbers_that_are_not_plausible_instants_give_none(value: object) -> None:
    assert parse_tango_instant(value) is None


def test_a_gigantic_int_gives_none_rather_than_raising() -> None:
    assert parse_tango_instant(10**5000) is None


# --- java.util.Date renderings ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "at"),
    [
        ("Mon Mar 25 22:46:39 UTC 2024", utc(2024, 3, 25, 22, 46, 39)),
        ("Mon Mar 25 22:46:39 GMT 2024", utc(2024, 3, 25, 22, 46, 39)),
        ("Mon Mar 25 22:46:39 PST 2024", utc(2024, 3, 26, 6, 46, 39)),
        ("Mon Mar 25 15:46:39 PDT 2024", utc(2024, 3, 25, 22, 46, 39)),
        ("Mon Mar 25 18:46:39 EDT 2024", utc(2024, 3, 25, 22, 46, 39)),
        ("Mon Mar 25 22:46:39 +0530 2024", utc(2024, 3, 25, 17, 16, 39)),
        ("Mar 25 22:46:39 UTC 2024", utc(2024, 3, 25, 22, 46, 39)),
        ("Tue Apr 2 08:00:00 UTC 2024", utc(2024, 4, 2, 8, 0, 0)),
    ],
)
def test_java_date_strings_are_read_at_whole_second_resolution(text: str, at: datetime) -> None:
    assert parse_tango_instant(text) == ParsedInstant(at=at, resolution=SECOND)


@pytest.mark.parametrize(
    "text",
    [
        "Mon Mar 25 22:46:39 CET 2024",  # a zone we cannot place
        "Mon Foo 25 22:46:39 UTC 2024",  # no such month
        "Mon Feb 30 22:46:39 UTC 2024",  # no such day
        "Mon Mar 25 22:46:39 UTC 1999",
        "Mon Mar 25 22:46:39 +1500 2024",
    ],
)
def test_java_date_strings_that_cannot_be_placed_give_none(text: str) -> None:
    assert parse_tango_instant(text) is None


# --- java.text.MessageFormat's default for a Date -------------------------------------------


@pytest.mark.parametrize(
    ("text", "at"),
    [
        ("12/5/26, 11:18 PM", utc(2026, 12, 5, 23, 18)),  # Java 9-19, en_US
        ("12/5/26 11:18 PM", utc(2026, 12, 5, 23, 18)),  # Java 8
        ("12/5/26, 11:18\u202fPM", utc(2026, 12, 5, 23, 18)),  # Java 20+
        ("1/15/27, 12:05 AM", utc(2027, 1, 15, 0, 5)),
        ("1/15/27, 12:05 PM", utc(2027, 1, 15, 12, 5)),
    ],
)
def test_messageformat_default_dates_are_read_at_minute_resolution(text: str, at: datetime) -> None:
    assert parse_tango_instant(text) == ParsedInstant(at=at, resolution=MINUTE)
    message = f"Cannot send more than once every 30 seconds. Last sent at {text}"
    assert extract_last_sent(message) == ParsedInstant(at=at, resolution=MINUTE)


@pytest.mark.parametrize("text", ["13/5/26, 11:18 PM", "12/32/26, 11:18 PM", "12/5/26, 13:18 PM"])
def test_messageformat_default_dates_that_cannot_be_placed_give_none(text: str) -> None:
    assert parse_tango_instant(text) is None


# --- garbage --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        False,
        "",
        "   ",
        "garbage",
        "soon",
        "2024",
        "22:46:39",
        "2024-03-25",
        [2024, 3, 25],
        ["2024-03-25T22:46:39Z"],
        {"at": "2024-03-25T22:46:39Z"},
        b"2024-03-25T22:46:39Z",
        object(),
    ],
)
def test_garbage_and_wrong_types_give_none(value: object) -> None:
    assert parse_tango_instant(value) is None


@settings(max_examples=300, database=None, deadline=None)
@given(
    st.one_of(
        st.text(),
        st.integers(min_value=-(10**1000), max_value=10**1000),
        st.floats(allow_nan=True, allow_infinity=True),
        st.from_regex(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2})?([.,]\d{1,12})?.{0,6}"),
        st.from_regex(r"[A-Z][a-z]{2} [A-Z][a-z]{2} \d{1,2} \d{2}:\d{2}:\d{2} \S{1,6} \d{4}"),
    )
)
def test_parse_tango_instant_never_raises(value: object) -> None:
    """Given any text or number, parsing returns an instant inside 2000..2100 or None."""
    parsed = parse_tango_instant(value)

    if parsed is not None:
        assert utc(2000, 1, 1) <= parsed.at < utc(2100, 1, 1)
        assert parsed.resolution > timedelta(0)


# --- ParsedInstant.latest -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "latest"),
    [
        ("2024-03-25T22:46:39.922Z", utc(2024, 3, 25, 22, 46, 39, 923000)),
        ("2024-03-25T22:46:39.9Z", utc(2024, 3, 25, 22, 46, 40)),
        ("2024-03-25T22:46:39Z", utc(2024, 3, 25, 22, 46, 40)),
        ("2024-03-25T22:46Z", utc(2024, 3, 25, 22, 47)),
        (1711406799, utc(2024, 3, 25, 22, 46, 40)),
        (1711406799922, utc(2024, 3, 25, 22, 46, 39, 923000)),
    ],
)
def test_latest_is_the_last_moment_the_text_could_mean(text: object, latest: datetime) -> None:
    parsed = parse_tango_instant(text)

    assert parsed is not None
    assert parsed.latest == latest


# --- extract_last_sent --------------------------------------------------------------------

TEMPLATE = "Cannot send more than once every 30 seconds. Last sent at {}"


@pytest.mark.parametrize(
    ("message", "at", "resolution"),
    [
        (TEMPLATE.format("2024-03-25T22:46:39.922Z"), utc(2024, 3, 25, 22, 46, 39, 922000), MS),
        (TEMPLATE.format("2024-03-25T22:46:39.922Z."), utc(2024, 3, 25, 22, 46, 39, 922000), MS),
        (
            TEMPLATE.format("2024-03-25T22:46:39.9"),
            utc(2024, 3, 25, 22, 46, 39, 900000),
            timedelta(milliseconds=100),
        ),
        (TEMPLATE.format("2024-03-25T22:46:39."), utc(2024, 3, 25, 22, 46, 39), SECOND),
        (TEMPLATE.lower().format("2024-03-25t22:46:39z"), None, None),  # no T: not ISO
        (
            TEMPLATE.lower().format("2024-03-25T22:46:39.922Z"),
            utc(2024, 3, 25, 22, 46, 39, 922000),
            MS,
        ),
        (TEMPLATE.upper().format("2024-03-25T22:46:39Z"), utc(2024, 3, 25, 22, 46, 39), SECOND),
        ("Last sent at: 2024-03-25T22:46:39Z", utc(2024, 3, 25, 22, 46, 39), SECOND),
        (TEMPLATE.format("1711406799922"), utc(2024, 3, 25, 22, 46, 39, 922000), MS),
        (TEMPLATE.format("1711406799."), utc(2024, 3, 25, 22, 46, 39), SECOND),
        (TEMPLATE.format("Mon Mar 25 22:46:39 UTC 2024."), utc(2024, 3, 25, 22, 46, 39), SECOND),
        (TEMPLATE.format("Mon Mar 25 22:46:39 PST 2024"), utc(2024, 3, 26, 6, 46, 39), SECOND),
        ("Last  sent\tat 2024-03-25T22:46:39Z  ", utc(2024, 3, 25, 22, 46, 39), SECOND),
    ],
)
def test_extract_last_sent_reads_the_instant_after_the_marker(
    message: str, at: datetime | None, resolution: timedelta | None
) -> None:
    parsed = extract_last_sent(message)

    if at is None:
        assert parsed is None
    else:
        assert parsed == ParsedInstant(at=at, resolution=resolution)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "message",
    [
        "Cannot send more than once every 30 seconds.",
        "Cannot send more than once every 30 seconds. Last sent at",
        "Cannot send more than once every 30 seconds. Last sent at ",
        TEMPLATE.format("soon"),
        TEMPLATE.format("{1}"),
        "2024-03-25T22:46:39Z",  # an instant, but no marker
        "",
        None,
        42,
        ["Last sent at 2024-03-25T22:46:39Z"],
    ],
)
def test_extract_last_sent_without_a_readable_instant_gives_none(message: object) -> None:
    assert extract_last_sent(message) is None


# --- parse_http_date ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "at"),
    [
        ("Mon, 25 Mar 2024 22:46:40 GMT", utc(2024, 3, 25, 22, 46, 40)),
        ("Mon, 25 Mar 2024 22:46:40 +0200", utc(2024, 3, 25, 20, 46, 40)),
        ("Monday, 25-Mar-24 22:46:40 GMT", utc(2024, 3, 25, 22, 46, 40)),  # RFC 850
        ("Mon Mar 25 22:46:40 2024", utc(2024, 3, 25, 22, 46, 40)),  # asctime, no zone: UTC
    ],
)
def test_http_dates_are_whole_seconds_in_utc(value: str, at: datetime) -> None:
    assert parse_http_date(value) == ParsedInstant(at=at, resolution=SECOND)


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "garbage",
        "Mon, 32 Mar 2024 22:46:40 GMT",
        "Mon, 25 Mar 1999 22:46:40 GMT",
        1,
        b"x",
    ],
)
def test_unreadable_http_dates_give_none(value: object) -> None:
    assert parse_http_date(value) is None
