"""Property tests on what a resend request may hold, and on the webhook signature.

Each property is stated for every input hypothesis can think of, not just the corpus: refusals
are always `InvalidResendRequest` naming the field, never an echo of the value, and a valid
value spoiled by one control or invisible character is always refused.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.support.hostile_corpus import GOOD_ORDER
from tests.support.receiver import raw_signature, signed_headers
from tests.support.settings import Configure
from worker import InvalidResendRequest
from worker.resend.validation import ETID, REFERENCE_ORDER_ID, validate_resend
from worker.web.app import create_app
from worker.web.webhook_signature import SignatureError, WebhookVerifier

SECRET = "whsec_" + base64.b64encode(b"property-webhook-secret-01234567").decode()
FIELDS = ("referenceOrderID", "newEmail", "newMobile", "newEtid", "newDeliveryMethod")
VALID = {
    "referenceOrderID": GOOD_ORDER,
    "newEmail": "pat@example.com",
    "newMobile": "+14155550123",
    "newEtid": "E000000",
    "newDeliveryMethod": "EMAIL",
}
E164 = re.compile(r"\+[1-9][0-9]{7,14}")
# Control characters, line and paragraph separators, and invisible format characters.
INVISIBLE = st.sampled_from(
    [chr(c) for c in range(0x00, 0x20)]
    + ["\x7f", "\x85", "\u2028", "\u2029", "\u200b", "\u200c", "\u200d", "\u202e", "\ufeff"]
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=12,
)
PROPERTY = settings(max_examples=200, deadline=None)


def refused(fields: dict[str, Any]) -> InvalidResendRequest:
    with pytest.raises(InvalidResendRequest) as caught:
        validate_resend(fields)
    return caught.value


@PROPERTY
@given(st.dictionaries(st.sampled_from([*FIELDS, "extra", "reference_order_id"]) | st.text(), JSON))
def test_validation_only_ever_accepts_or_raises_invalid_resend_request(
    fields: dict[str, Any],
) -> None:
    try:
        validate_resend(fields)
    except InvalidResendRequest as error:
        assert error.errors and all(isinstance(k, str) and v for k, v in error.errors.items())


@PROPERTY
@given(st.text(max_size=60))
@example("RA251205-6001-01\n")
@example("RA\u0662\u0665\u0661\u0662\u0660\u0665-6001-01")
def test_an_order_id_is_accepted_exactly_when_it_matches_the_pattern(order_id: str) -> None:
    if REFERENCE_ORDER_ID.fullmatch(order_id) and len(order_id) <= 40:
        assert validate_resend({"referenceOrderID": order_id}).reference_order_id == order_id
    else:
        assert "referenceOrderID" in refused({"referenceOrderID": order_id}).errors


@PROPERTY
@given(st.from_regex(REFERENCE_ORDER_ID, fullmatch=True))
def test_every_well_formed_order_id_is_accepted(order_id: str) -> None:
    assert validate_resend({"referenceOrderID": order_id}).reference_order_id == order_id


@PROPERTY
@given(field=st.sampled_from(FIELDS), spoiler=INVISIBLE, where=st.floats(0, 1))
def test_a_valid_value_spoiled_by_one_invisible_character_is_refused(
    field: str, spoiler: str, where: float
) -> None:
    value = VALID[field]
    at = round(where * len(value))
    spoiled = value[:at] + spoiler + value[at:]
    fields = {**VALID, field: spoiled}
    assert field in refused(fields).errors


@PROPERTY
@given(field=st.sampled_from(FIELDS), value=st.text(alphabet="qxzjkQXZJK@.+-_90", min_size=12))
def test_a_refusal_never_echoes_the_value(field: str, value: str) -> None:
    try:
        validate_resend({**VALID, field: value})
    except InvalidResendRequest as error:
        assert value not in str(error) and value not in repr(error.errors)


@PROPERTY
@given(st.text(max_size=40))
@example("+14155550123")
@example("+1\u0664\u0661\u0665\u0665\u0665\u0665\u0660\u0661\u0662\u0663")
def test_an_accepted_mobile_is_always_plain_e164(mobile: str) -> None:
    try:
        request = validate_resend({"referenceOrderID": GOOD_ORDER, "newMobile": mobile})
    except InvalidResendRequest as error:
        assert set(error.errors) == {"newMobile"}
        return
    assert E164.fullmatch(mobile) and request.tango_body()["newMobile"] == mobile


@PROPERTY
@given(st.text(max_size=300))
@example("pat@example.com")
def test_an_accepted_email_is_one_printable_address_of_at_most_254_characters(email: str) -> None:
    try:
        request = validate_resend({"referenceOrderID": GOOD_ORDER, "newEmail": email})
    except InvalidResendRequest as error:
        assert set(error.errors) == {"newEmail"}
        return
    sent = request.tango_body()["newEmail"]
    assert len(sent) <= 254 and sent.isprintable() and sent.count("@") == 1
    assert not any(ch.isspace() for ch in sent)


@PROPERTY
@given(st.text(max_size=20) | st.from_regex(ETID, fullmatch=True))
def test_a_template_id_is_accepted_exactly_when_it_is_e_and_six_digits(etid: str) -> None:
    fields = {"referenceOrderID": GOOD_ORDER, "newEtid": etid}
    if ETID.fullmatch(etid):
        assert validate_resend(fields).tango_body() == {"newEtid": etid}
    else:
        assert set(refused(fields).errors) == {"newEtid"}


@PROPERTY
@given(st.text(max_size=20) | JSON)
def test_a_delivery_method_is_exactly_email_phone_or_none(method: Any) -> None:
    fields = {"referenceOrderID": GOOD_ORDER, "newDeliveryMethod": method}
    if method is None or method in ("EMAIL", "PHONE", "NONE"):
        validate_resend(fields)
    else:
        assert refused(fields).errors == {"newDeliveryMethod": "must be one of EMAIL, PHONE, NONE"}


@PROPERTY
@given(body=st.binary(max_size=300), flip=st.integers(min_value=0))
def test_any_change_to_a_signed_body_fails_verification(body: bytes, flip: int) -> None:
    verifier = WebhookVerifier(SECRET)
    headers = signed_headers(SECRET, body, webhook_id="msg_p", signature=raw_signature)
    tampered = bytearray(body or b"\x00")
    tampered[flip % len(tampered)] ^= 0x01
    with pytest.raises(SignatureError):
        verifier.verify(bytes(tampered), headers)


@pytest.fixture
def receiver(configure: Configure, test_db: redis.Redis) -> Iterator[TestClient]:
    configure(WEBHOOK_SECRET=SECRET)
    with TestClient(create_app(), raise_server_exceptions=False) as client:
        yield client


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=st.binary(max_size=500) | JSON.map(lambda value: json.dumps(value).encode()))
def test_the_receiver_never_answers_5xx_to_any_signed_body(
    receiver: TestClient, body: bytes
) -> None:
    headers = signed_headers(SECRET, body, signature=raw_signature)
    answer = receiver.post("/webhooks/resends", content=body, headers=headers)
    assert answer.status_code in (202, 400, 401, 422), (answer.status_code, answer.text[:200])
