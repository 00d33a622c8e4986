"""Unit tests for worker.resend.validation: what a resend request may contain."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from worker.resend.validation import (
    DeliveryMethod,
    InvalidResendRequest,
    ResendRequest,
    validate_resend,
)

GOOD_ID = "RA180426-1401-64"
ASCII_ID = re.compile(r"RA[0-9]{6}-[0-9]{1,10}-[0-9]{1,10}")


def refused(fields: dict[str, Any]) -> InvalidResendRequest:
    with pytest.raises(InvalidResendRequest) as caught:
        validate_resend(fields)
    return caught.value


# --- referenceOrderID ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "order_id",
    [GOOD_ID, "RA000000-0-0", "RA991231-1234567890-1234567890", "RA240325-1-2"],
)
def test_well_formed_reference_order_ids_are_accepted(order_id: str) -> None:
    request = validate_resend({"referenceOrderID": order_id})

    assert request.reference_order_id == order_id
    assert request.tango_body() == {}


@pytest.mark.parametrize(
    "order_id",
    [
        f"{GOOD_ID}/../x",
        "..",
        "../orders",
        f"{GOOD_ID}/",
        f"{GOOD_ID}?x=1",
        f"{GOOD_ID}#frag",
        f"{GOOD_ID}%2F..",
        "RA180426%2D1401-64",
        f" {GOOD_ID}",
        f"{GOOD_ID} ",
        f"{GOOD_ID}\n",
        f"{GOOD_ID}\r\nX-Injected: 1",
        f"{GOOD_ID}\x00",
        f"{GOOD_ID}\t",
        "RA180426\x0b1401-64",
        "RA180426-1401-64\u200b",  # zero-width space
        "ra180426-1401-64",
        "Ra180426-1401-64",
        "RA18042-1401-64",  # 5 date digits
        "RA1804266-1401-64",  # 7 date digits
        "RA180426-12345678901-64",  # 11 digits
        "RA180426-1401-",
        "RA180426--64",
        "RA180426-1401-64-1",
        "RA180426_1401_64",
        "",
        "RA" + "1" * 10_000,
        GOOD_ID * 1000,
    ],
)
def test_hostile_or_malformed_reference_order_ids_are_refused(order_id: str) -> None:
    error = refused({"referenceOrderID": order_id})

    assert set(error.errors) == {"referenceOrderID"}


@pytest.mark.parametrize(
    "order_id",
    [
        "RA\u0661\u0668\u0660\u0664\u0662\u0666-1401-64",  # Arabic-Indic digits
        "RA\uff11\uff18\uff10\uff14\uff12\uff16-1401-64",  # fullwidth digits
        "RA180426-\u0967\u096a\u0966\u0967-64",  # Devanagari digits
    ],
)
def test_unicode_look_alike_digits_in_reference_order_id_are_refused(order_id: str) -> None:
    error = refused({"referenceOrderID": order_id})

    assert set(error.errors) == {"referenceOrderID"}


@pytest.mark.parametrize("value", [180426, 1.5, None, ["RA180426-1401-64"], {"id": GOOD_ID}, b"RA"])
def test_reference_order_id_of_the_wrong_type_is_refused(value: object) -> None:
    error = refused({"referenceOrderID": value})

    assert error.errors == {"referenceOrderID": "must be text"}


def test_a_missing_reference_order_id_is_refused() -> None:
    error = refused({"newEmail": "jane@example.com"})

    assert error.errors == {
        "referenceOrderID": "is required: the order's id, e.g. RA180426-1401-64"
    }


@settings(max_examples=300, database=None, deadline=None)
@given(
    st.one_of(
        st.text(),
        st.from_regex(r"RA\d{6}-\d{1,10}-\d{1,10}.{0,3}"),
        st.builds(lambda a, b: f"{GOOD_ID[:a]}{b}{GOOD_ID[a:]}", st.integers(0, 16), st.text()),
    )
)
def test_an_accepted_reference_order_id_can_never_change_the_request_path(order_id: str) -> None:
    """Given any text, an accepted id holds none of / . ? # % whitespace or control chars."""
    try:
        request = validate_resend({"referenceOrderID": order_id})
    except InvalidResendRequest:
        return
    accepted = request.reference_order_id
    assert accepted == order_id
    assert not set(accepted) & set("/.?#%\\ ")
    assert accepted.isprintable()
    assert not any(ch.isspace() for ch in accepted)


@settings(max_examples=300, database=None, deadline=None)
@given(st.one_of(st.text(), st.from_regex(r"RA\d{6}-\d{1,10}-\d{1,10}", fullmatch=True)))
@example("RA\u0661\u0668\u0660\u0664\u0662\u0666-1401-64")
def test_any_text_is_refused_or_an_ascii_reference_order_id(order_id: str) -> None:
    try:
        request = validate_resend({"referenceOrderID": order_id})
    except InvalidResendRequest:
        return
    assert ASCII_ID.fullmatch(request.reference_order_id)


# --- newEmail -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("email", "normalized"),
    [
        ("jane@example.com", "jane@example.com"),
        ("jane.doe+tag@sub.example.co.uk", "jane.doe+tag@sub.example.co.uk"),
        ("Jane.Doe@EXAMPLE.COM", "Jane.Doe@example.com"),  # domain lower-cased, local kept
        ("o'neil@example.com", "o'neil@example.com"),
    ],
)
def test_valid_emails_are_accepted_and_normalized(email: str, normalized: str) -> None:
    request = validate_resend({"referenceOrderID": GOOD_ID, "newEmail": email})

    assert request.new_email == normalized
    assert request.tango_body() == {"newEmail": normalized}


BAD_EMAILS = [
    "plainaddress",
    "@example.com",
    "jane@",
    "jane@@example.com",
    "jane@example",  # no TLD
    "jane doe@example.com",
    "jane@exa mple.com",
    "jane@example.com\r\nBcc: victim@example.com",
    "jane@example.com\n",
    "jane\x00@example.com",
    "j\u00e4ne@example.com",  # SMTPUTF8 local part: not allowed
    "a" * 250 + "@example.com",  # > 254 characters
    "",
]


@pytest.mark.parametrize("email", BAD_EMAILS)
def test_invalid_emails_are_refused_without_echoing_them(email: str) -> None:
    error = refused({"referenceOrderID": GOOD_ID, "newEmail": email})

    assert error.errors == {"newEmail": "is not a valid email address"}
    if email:
        assert email not in str(error)
        assert email not in repr(error.errors)


def test_email_of_exactly_254_characters_passes_the_length_check() -> None:
    email = f"{'a' * 64}@{'b' * 63}.{'c' * 63}.{'d' * 61}"
    assert len(email) == 254

    request = validate_resend({"referenceOrderID": GOOD_ID, "newEmail": email})

    assert request.new_email == email


def test_email_of_255_characters_is_refused() -> None:
    email = f"{'a' * 64}@{'b' * 63}.{'c' * 63}.{'d' * 62}"
    assert len(email) == 255

    error = refused({"referenceOrderID": GOOD_ID, "newEmail": email})

    assert error.errors == {"newEmail": "is not a valid email address"}


@pytest.mark.parametrize("value", [1, ["jane@example.com"], {"a": "b"}])
def test_email_of_the_wrong_type_is_refused(value: object) -> None:
    error = refused({"referenceOrderID": GOOD_ID, "newEmail": value})

    assert set(error.errors) == {"newEmail"}


# --- newMobile ------------------------------------------------------------------------------


@pytest.mark.parametrize("mobile", ["+14155550123", "+447911123456", "+33612345678"])
def test_valid_e164_mobiles_are_accepted(mobile: str) -> None:
    request = validate_resend({"referenceOrderID": GOOD_ID, "newMobile": mobile})

    assert request.new_mobile == mobile
    assert request.tango_body() == {"newMobile": mobile}


@pytest.mark.parametrize(
    "mobile",
    [
        "16505550100",  # no plus
        "+1415555O123",  # letter O
        "+1 415 555 0123",
        "+1-415-555-0123",
        "+1234567",  # too short
        "+1234567890123456",  # too long
        "+04155550123",  # leading zero country code
        "+10000000000",  # well-formed, not a real number
        "+14155550123\r\n",
        "+",
        "",
        "+" + "1" * 40,
    ],
)
def test_invalid_mobiles_are_refused_without_echoing_them(mobile: str) -> None:
    error = refused({"referenceOrderID": GOOD_ID, "newMobile": mobile})

    assert set(error.errors) == {"newMobile"}
    if len(mobile) > 1:
        assert mobile not in str(error)


def test_mobile_of_the_wrong_type_is_refused() -> None:
    error = refused({"referenceOrderID": GOOD_ID, "newMobile": 14155550123})

    assert set(error.errors) == {"newMobile"}


# --- newEtid ------------------------------------------------------------------------------


def test_a_template_id_is_accepted() -> None:
    request = validate_resend({"referenceOrderID": GOOD_ID, "newEtid": "E000000"})

    assert request.tango_body() == {"newEtid": "E000000"}


@pytest.mark.parametrize("etid", ["e000000", "E00000", "E0000000", "E00000a", " E000000", "", 0])
def test_malformed_template_ids_are_refused(etid: object) -> None:
    error = refused({"referenceOrderID": GOOD_ID, "newEtid": etid})

    assert set(error.errors) == {"newEtid"}


def test_unicode_digits_in_template_id_are_refused() -> None:
    error = refused(
        {"referenceOrderID": GOOD_ID, "newEtid": "E\u0660\u0660\u0660\u0660\u0660\u0660"}
    )

    assert set(error.errors) == {"newEtid"}


# --- newDeliveryMethod ----------------------------------------------------------------------


@pytest.mark.parametrize("method", ["EMAIL", "PHONE", "NONE"])
def test_known_delivery_methods_are_accepted(method: str) -> None:
    request = validate_resend({"referenceOrderID": GOOD_ID, "newDeliveryMethod": method})

    assert request.new_delivery_method == DeliveryMethod(method)
    assert request.tango_body() == {"newDeliveryMethod": method}


@pytest.mark.parametrize("method", ["email", "Email", "SMS", "", " EMAIL", 1, True, ["EMAIL"]])
def test_unknown_delivery_methods_are_refused(method: object) -> None:
    error = refused({"referenceOrderID": GOOD_ID, "newDeliveryMethod": method})

    assert error.errors == {"newDeliveryMethod": "must be one of EMAIL, PHONE, NONE"}


# --- the request as a whole ---------------------------------------------------------------


@pytest.mark.parametrize("extra", ["newPhone", "email", "sendEmail", "reference_order_id_x"])
def test_an_unknown_field_is_refused_by_name(extra: str) -> None:
    error = refused({"referenceOrderID": GOOD_ID, extra: "x"})

    assert error.errors == {extra: "is not a field of a resend request"}


def test_every_bad_field_is_named_in_errors_and_message() -> None:
    bad_email = "not-an-email@@example.com"
    bad_mobile = "+1999"

    error = refused(
        {
            "referenceOrderID": "ra180426-1401-64",
            "newEmail": bad_email,
            "newMobile": bad_mobile,
            "newEtid": "e000000",
            "newDeliveryMethod": "SMS",
            "surprise": True,
        }
    )

    expected = {
        "referenceOrderID",
        "newEmail",
        "newMobile",
        "newEtid",
        "newDeliveryMethod",
        "surprise",
    }
    assert set(error.errors) == expected
    message = str(error)
    assert message.startswith("invalid resend request: ")
    for field in expected:
        assert f"{field}: " in message
    assert bad_email not in message
    assert bad_mobile not in message


def test_invalid_resend_request_is_a_value_error() -> None:
    assert issubclass(InvalidResendRequest, ValueError)
    with pytest.raises(ValueError, match="referenceOrderID"):
        validate_resend({"referenceOrderID": "x"})


def test_tango_body_holds_only_set_fields_in_tango_names() -> None:
    request = validate_resend(
        {
            "referenceOrderID": GOOD_ID,
            "newEmail": "jane@example.com",
            "newMobile": "+14155550123",
            "newEtid": "E000001",
            "newDeliveryMethod": "PHONE",
        }
    )

    assert request.tango_body() == {
        "newEmail": "jane@example.com",
        "newMobile": "+14155550123",
        "newEtid": "E000001",
        "newDeliveryMethod": "PHONE",
    }


@pytest.mark.parametrize(
    "fields",
    [
        {"newEmail": None},
        {"newEmail": None, "newMobile": None, "newEtid": None, "newDeliveryMethod": None},
        {"newEtid": "E000000", "newMobile": None},
    ],
)
def test_tango_body_never_holds_nulls(fields: dict[str, Any]) -> None:
    request = validate_resend({"referenceOrderID": GOOD_ID, **fields})

    body = request.tango_body()

    assert None not in body.values()
    assert body == {k: v for k, v in fields.items() if v is not None}
    assert "referenceOrderID" not in body


def test_a_request_is_frozen() -> None:
    request = validate_resend({"referenceOrderID": GOOD_ID})

    with pytest.raises(ValueError, match="frozen"):
        request.new_email = "jane@example.com"  # type: ignore[misc]
    assert isinstance(request, ResendRequest)
