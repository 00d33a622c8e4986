"""The hostile corpus against validation, the producer API, the receiver and a real worker:
each entry is refused with a message naming the field, nothing is stored, Tango sees no call,
no process crashes, and a valid request is still sent afterwards."""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import requests
from fastapi.testclient import TestClient

from tests.support.calls import resend_calls
from tests.support.findings import report
from tests.support.hostile_corpus import BODY_CASES, FIELD_CASES, GOOD_ORDER, BodyCase, FieldCase
from tests.support.processes import WebFactory, WorkerFactory
from tests.support.receiver import raw_signature, signed_headers
from tests.support.records import wait_all_final
from tests.support.settings import Configure
from tests.support.waiting import wait_for
from worker import InvalidResendRequest, enqueue_resend
from worker.queueing.app import RESEND_TASK_NAME
from worker.queueing.app import app as celery_app
from worker.resend.validation import validate_resend
from worker.sandbox import SandboxControl
from worker.web.app import create_app

SECRET = "whsec_" + base64.b64encode(b"hostile-webhook-secret-012345678").decode()
KEYWORDS = {
    "newEmail": "new_email",
    "newMobile": "new_mobile",
    "newEtid": "new_etid",
    "newDeliveryMethod": "new_delivery_method",
}
# What a refusal may answer: never a 2xx, never a 5xx.
REFUSALS = {400, 401, 411, 413, 415, 422, 431}


def signed(body: bytes, webhook_id: str | None = None) -> dict[str, str]:
    return signed_headers(SECRET, body, webhook_id=webhook_id, signature=raw_signature)


def enqueue_case(case: FieldCase) -> str:
    if case.field == "referenceOrderID":
        return enqueue_resend(case.value)
    return enqueue_resend(GOOD_ORDER, **{KEYWORDS[case.field]: case.value})


def shows(value: Any) -> bool:
    """Whether a refusal's text should be checked for an echo of this value."""
    return isinstance(value, str) and len(value.strip()) >= 4


def assert_refusal(answer: Any, case: BodyCase) -> None:
    assert answer.status_code in case.statuses, (case.why, answer.status_code, answer.text[:300])
    problem = answer.json()
    assert problem["error"] and problem["message"], case.why
    if answer.status_code == 422:
        assert problem["fields"], case.why


@pytest.fixture
def receiver(configure: Configure, test_db: redis.Redis) -> Iterator[TestClient]:
    configure(WEBHOOK_SECRET=SECRET)
    with TestClient(create_app(), raise_server_exceptions=True) as client:
        yield client


def test_the_corpus_holds_at_least_200_hostile_inputs() -> None:
    assert len(FIELD_CASES) + len(BODY_CASES) >= 200
    assert {case.field for case in FIELD_CASES} == set(KEYWORDS) | {"referenceOrderID"}


@pytest.mark.parametrize("case", FIELD_CASES, ids=[case.id for case in FIELD_CASES])
def test_a_bad_field_is_refused_naming_it_without_echoing_it(case: FieldCase) -> None:
    with pytest.raises(InvalidResendRequest) as refused:
        validate_resend(case.fields)
    assert case.field in refused.value.errors, refused.value.errors
    assert all(refused.value.errors.values())
    if shows(case.value):
        # An echo, unless the text is part of the field's fixed message (its example).
        with pytest.raises(InvalidResendRequest) as neutral:
            validate_resend({**case.fields, case.field: "zz"})
        if case.value.strip() not in str(neutral.value):
            assert case.value.strip() not in str(refused.value)


@pytest.mark.parametrize("case", BODY_CASES, ids=[case.why for case in BODY_CASES])
def test_a_bad_webhook_body_is_refused_with_a_problem(
    case: BodyCase, receiver: TestClient, test_db: redis.Redis
) -> None:
    answer = receiver.post("/webhooks/resends", content=case.body, headers=signed(case.body))
    if case.why in ("not-utf8", "invalid-utf8-in-string"):
        # Signatures are checked on the raw body; one that is not UTF-8 cannot be verified.
        case = BodyCase(case.body, case.why, (400, 401))
    assert_refusal(answer, case)
    assert not test_db.keys("*:request:*"), "nothing stored"


def raw_http(port: int, request: bytes) -> int:
    """Send raw bytes, return the status code of the answer (0 when the server hung up)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(request)
        answer = b""
        while b"\r\n" not in answer:
            chunk = connection.recv(4096)
            if not chunk:
                return 0
            answer += chunk
    return int(answer.split(b" ", 2)[1])


def raw_attacks(host: str) -> dict[str, bytes]:
    body = b'{"referenceOrderID": "RA251205-6001-01"}'
    head = f"POST /webhooks/resends HTTP/1.1\r\nHost: {host}\r\n".encode()
    big_chunk = b"x" * 70_000
    return {
        "negative-length": head + b"Content-Length: -1\r\n\r\n" + body,
        "text-length": head + b"Content-Length: abc\r\n\r\n" + body,
        "length-and-chunked": head
        + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "chunked-over-64k": head
        + b"Transfer-Encoding: chunked\r\n\r\n"
        + f"{len(big_chunk):x}\r\n".encode()
        + big_chunk
        + b"\r\n0\r\n\r\n",
        "crlf-in-header": head + b"webhook-id: a\r\nX: b\rc\r\nContent-Length: 2\r\n\r\n{}",
        "huge-header": head + b"X-Big: " + b"a" * 100_000 + b"\r\nContent-Length: 2\r\n\r\n{}",
        "many-signatures": head
        + b"webhook-id: a\r\nwebhook-timestamp: 1\r\nwebhook-signature: "
        + b"v1,AAAA " * 1000
        + b"\r\nContent-Length: 2\r\n\r\n{}",
    }


@pytest.mark.integration
def test_a_real_worker_survives_the_corpus_and_still_sends(
    configure: Configure,
    control: SandboxControl,
    start_worker: WorkerFactory,
    start_web: WebFactory,
    test_db: redis.Redis,
) -> None:
    env = configure(WEBHOOK_SECRET=SECRET)
    control.add_order(GOOD_ORDER)
    worker = start_worker(env)
    web = start_web(env)
    fed = 0

    for case in FIELD_CASES:  # the producer API
        with pytest.raises(InvalidResendRequest) as refused:
            enqueue_case(case)
        assert case.field in refused.value.errors, (case.id, refused.value.errors)
        fed += 1
    with TestClient(create_app()) as client:  # the receiver, in process
        for case in BODY_CASES:
            answer = client.post("/webhooks/resends", content=case.body, headers=signed(case.body))
            assert answer.status_code in REFUSALS, (case.why, answer.status_code)
            fed += 1
    for case in BODY_CASES:  # the receiver, over HTTP
        answer = requests.post(
            f"{web.url}/webhooks/resends", data=case.body, headers=signed(case.body), timeout=30
        )
        assert answer.status_code in REFUSALS, (case.why, answer.status_code)
        fed += 1
    for name, attack in raw_attacks(f"127.0.0.1:{web.port}").items():
        status = raw_http(web.port, attack)
        assert status in REFUSALS | {0}, (name, status)
        fed += 1
    poison: list[dict[str, Any]] = [
        {"args": ["../../etc/passwd"]},
        {"args": ["x" * 100_000]},
        {"args": [""]},
        {"args": [123]},
        {"args": [None]},
        {"args": [{"id": "x"}]},
        {"args": []},
        {"args": ["a", "b"]},
        {"args": ["a"], "kwargs": {"evil": True}},
    ]
    for message in poison:  # task messages no producer of ours would send
        celery_app.send_task(RESEND_TASK_NAME, queue=env["RESEND_QUEUE"], **message)
        fed += 1
    wait_for(
        lambda: worker.log().count(f"{RESEND_TASK_NAME}[") >= 2 * len(poison),
        timeout=30,
        what="the worker to take every poison message",
    )

    assert not test_db.keys(f"{env['REDIS_KEY_PREFIX']}:request:*"), "nothing was stored"
    assert resend_calls(control) == [], "Tango saw no call"
    assert worker.process.poll() is None and web.process.poll() is None
    good = enqueue_resend(GOOD_ORDER, new_email="pat@example.com")
    (record,) = wait_all_final([good], timeout=30)
    assert record.status.value == "sent"
    assert [c["status"] for c in resend_calls(control)] == [201]
    for text in (worker.log(), web.log()):
        assert "CRITICAL" not in text and "Unrecoverable" not in text
    assert "Exception in ASGI application" not in web.log()
    report("hostile", f"corpus: {fed} hostile inputs fed, 0 stored, 0 calls to Tango")


# --- bugs found --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "email",
    ["pat@ex\u0430mple.com", "pat@ex\u0430mple.\u0441om", "pat@xn--exmple-4nf.com"],
    ids=["cyrillic-a-domain", "cyrillic-tld", "punycode-lookalike"],
)
def test_lookalike_email_domains_are_refused_or_sent_as_ascii(email: str) -> None:
    try:
        request = validate_resend({"referenceOrderID": GOOD_ORDER, "newEmail": email})
    except InvalidResendRequest as refused:
        assert set(refused.errors) == {"newEmail"}
        return
    assert request.tango_body()["newEmail"].isascii(), request.tango_body()


def test_an_email_local_part_over_64_octets_is_refused() -> None:
    with pytest.raises(InvalidResendRequest) as refused:
        validate_resend({"referenceOrderID": GOOD_ORDER, "newEmail": "a" * 65 + "@example.com"})
    assert set(refused.value.errors) == {"newEmail"}


def test_the_receiver_refuses_field_names_outside_its_schema(
    receiver: TestClient, test_db: redis.Redis
) -> None:
    body = json.dumps({"reference_order_id": GOOD_ORDER, "new_etid": "E000001"}).encode()
    answer = receiver.post("/webhooks/resends", content=body, headers=signed(body))
    assert answer.status_code == 422, answer.text
    assert not test_db.keys("*:request:*")


@pytest.mark.parametrize(
    "key",
    [b"ticket-4411", 4411, ["ticket"], "ticket-\ud800"],
    ids=["bytes", "int", "list", "lone-surrogate"],
)
def test_a_malformed_idempotency_key_is_refused_naming_it(
    key: Any, configure: Configure, test_db: redis.Redis
) -> None:
    configure()
    with pytest.raises(InvalidResendRequest) as refused:
        enqueue_resend(GOOD_ORDER, idempotency_key=key)
    assert "idempotency_key" in refused.value.errors
    assert not test_db.keys("*:request:*")
