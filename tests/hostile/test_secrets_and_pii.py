"""The whole system (web + workers + sandbox, OAuth and Basic credentials) run with distinctive
secrets and recipients, then every log line, every record, every value in Redis (all keys, all
types, Celery's task messages decoded) and every outcome callback is scanned.

Secrets (platform key, client secret, webhook secrets, API token) may appear nowhere. Clear
emails and phones may appear in no log line and no task message (tasks carry only the request
id); a record legitimately holds the recipient's new contact data in `request`.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
import redis
import requests

from tests.support.broker import producer_broker
from tests.support.calls import resend_calls
from tests.support.findings import report
from tests.support.processes import WebProcess, WorkerProcess
from tests.support.receiver import post_webhook, signed_headers
from tests.support.records import wait_all_final
from tests.support.redis_db import TEST_REDIS_URL
from tests.support.sandbox import sandbox_settings
from tests.support.settings import apply_settings
from tests.support.waiting import wait_for
from worker import enqueue_resend, get_resend
from worker.core.settings import Settings, reset_settings_cache
from worker.runtime import reset_runtime
from worker.sandbox import SandboxControl, SandboxServer

pytestmark = pytest.mark.integration

PLATFORM_NAME = "pii-platform-Wq7"
PLATFORM_KEY = "PLATKEY-7f3Kq9ZxW2-distinct"
CLIENT_ID = "pii-client-Lm4"
CLIENT_SECRET = "CLIENTSECRET-Vb82nQ1x-distinct"
WEBHOOK_RAW = b"WEBHOOKSECRET-bytes-Hn3pQ8sd-distinct"
WEBHOOK_SECRET = "whsec_" + base64.b64encode(WEBHOOK_RAW).decode()
RESULT_RAW = b"RESULTSECRET-bytes-Zc5tY1fg-distinct"
RESULT_SECRET = "whsec_" + base64.b64encode(RESULT_RAW).decode()
API_TOKEN = "APITOKEN-Jd6wR2kv-distinct-Tq84mZ0s"
BASIC_HEADER = base64.b64encode(f"{PLATFORM_NAME}:{PLATFORM_KEY}".encode()).decode()
SECRETS = {
    "platform key": PLATFORM_KEY,
    "platform basic header": BASIC_HEADER,
    "client secret": CLIENT_SECRET,
    "webhook secret": WEBHOOK_SECRET,
    "webhook secret key": WEBHOOK_SECRET.removeprefix("whsec_"),
    "webhook secret bytes": WEBHOOK_RAW.decode(),
    "result webhook secret": RESULT_SECRET,
    "result webhook secret bytes": RESULT_RAW.decode(),
    "api token": API_TOKEN,
}
EMAIL_1 = "zed.pii-recipient-91@example.net"
EMAIL_2 = "ann.pii-second-47@example.org"
ORDER_OWNER = "orig.pii-owner-33@example.com"  # the order's own address, never sent by us
MOBILE_1 = "+14155550987"
MOBILE_2 = "+447911123456"
CONTACTS = {
    "email 1": EMAIL_1,
    "email 1 local part": "zed.pii-recipient-91",
    "email 2": EMAIL_2,
    "order owner email": ORDER_OWNER,
    "mobile 1": MOBILE_1,
    "mobile 1 digits": MOBILE_1[1:],
    "mobile 2": MOBILE_2,
    "mobile 2 digits": MOBILE_2[1:],
}
ORDERS = [f"RA251206-5001-{n:02d}" for n in range(4)]
UNKNOWN_ORDER = "RA251206-5999-99"


@dataclass
class Capture:
    logs: dict[str, str] = field(default_factory=dict)
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    redis_values: dict[str, str] = field(default_factory=dict)  # "type key" -> dumped value
    task_messages: list[str] = field(default_factory=list)  # decoded Celery message bodies
    callbacks: list[str] = field(default_factory=list)
    auth_kinds: set[str] = field(default_factory=set)


class _CallbackSink(BaseHTTPRequestHandler):
    bodies: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.bodies.append(self.rfile.read(length).decode(errors="replace"))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def decode_envelopes(text: str) -> list[str]:
    """Celery/kombu messages carry their body base64-encoded inside a JSON envelope."""
    try:
        envelope = json.loads(text)
    except ValueError:
        return []
    if not isinstance(envelope, dict):
        return []
    found = []
    if envelope.get("properties", {}).get("body_encoding") == "base64" and "body" in envelope:
        found.append(base64.b64decode(envelope["body"]).decode(errors="replace"))
        found.append(json.dumps(envelope.get("headers", {})))
    return found


def dump_redis(client: redis.Redis) -> tuple[dict[str, str], list[str]]:
    """Every key of every type, as text; plus the decoded bodies of every task message."""
    values: dict[str, str] = {}
    messages: list[str] = []
    for raw_key in client.scan_iter(count=1000):
        key = raw_key.decode(errors="replace")
        kind = client.type(raw_key).decode()
        items: list[bytes]
        if kind == "string":
            items = [client.get(raw_key) or b""]
        elif kind == "hash":
            items = [part for pair in client.hgetall(raw_key).items() for part in pair]
        elif kind == "list":
            items = client.lrange(raw_key, 0, -1)
        elif kind == "set":
            items = list(client.smembers(raw_key))
        elif kind == "zset":
            items = [member for member, _ in client.zrange(raw_key, 0, -1, withscores=True)]
        elif kind == "stream":
            items = [
                part
                for _, entry in client.xrange(raw_key)
                for pair in entry.items()
                for part in pair
            ]
        else:
            items = []
        texts = [item.decode(errors="replace") for item in items]
        values[f"{kind} {key}"] = "\n".join(texts)
        for text in texts:
            messages.extend(decode_envelopes(text))
    return values, messages


def run_system(tmp: Path) -> Capture:
    """Run everything once; collect what must be scanned."""
    capture = Capture()
    redis.Redis.from_url(TEST_REDIS_URL).flushdb()
    sink = ThreadingHTTPServer(("127.0.0.1", 0), _CallbackSink)
    _CallbackSink.bodies = capture.callbacks
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    sandbox = SandboxServer(
        cooldown_seconds=1.0,
        platform_name=PLATFORM_NAME,
        platform_key=PLATFORM_KEY,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
    ).start()
    control = SandboxControl(sandbox.control_url)
    for order in ORDERS:
        control.add_order(order, email=ORDER_OWNER, mobile=MOBILE_2)
    control.inject_fault(ORDERS[1], status=503)  # a retry, logged
    env = sandbox_settings(
        TEST_REDIS_URL,
        sandbox,
        TANGO_PLATFORM_NAME=PLATFORM_NAME,
        TANGO_PLATFORM_KEY=PLATFORM_KEY,
        TANGO_CLIENT_ID=CLIENT_ID,
        TANGO_CLIENT_SECRET=CLIENT_SECRET,
        TANGO_TOKEN_URL=sandbox.token_url,
        RESEND_COOLDOWN_SECONDS="1.0",
        WEBHOOK_SECRET=WEBHOOK_SECRET,
        API_TOKEN=API_TOKEN,
        LOG_LEVEL="DEBUG",
    )
    if "result_webhook_secret" in Settings.model_fields:
        env["RESULT_WEBHOOK_URL"] = f"http://127.0.0.1:{sink.server_address[1]}/outcomes"
        env["RESULT_WEBHOOK_SECRET"] = RESULT_SECRET
    # An empty variable means "not set" (and overrides what the environment inherits).
    basic_only = {**env, "TANGO_CLIENT_ID": "", "TANGO_CLIENT_SECRET": "", "TANGO_TOKEN_URL": ""}
    processes: list[Any] = []
    ids: list[str] = []
    with pytest.MonkeyPatch.context() as patch:
        apply_settings(env, patch.setenv)
        try:
            with producer_broker():
                # With its access log too: those lines must be as clean as the others.
                web = WebProcess(
                    {**env, "LOG_LEVEL": "INFO"}, tmp / "web.log", ["--access-log"]
                ).wait_ready()
                processes.append(web)
                oauth = WorkerProcess(env, tmp / "oauth-worker.log", name="oauth").wait_ready()
                processes.append(oauth)
                # Phase 1: OAuth (Bearer). Producer API and signed webhooks, one of them with
                # contact data in its query string, a Tango retry, a failure.
                ids.append(enqueue_resend(ORDERS[0], new_email=EMAIL_1, idempotency_key=EMAIL_1))
                ids.append(
                    enqueue_resend(ORDERS[1], new_mobile=MOBILE_1, new_delivery_method="PHONE")
                )
                ids.append(enqueue_resend(UNKNOWN_ORDER, new_email=EMAIL_2))
                answer = post_webhook(
                    web.url, WEBHOOK_SECRET, {"referenceOrderID": ORDERS[2], "newEmail": EMAIL_2}
                )
                assert answer.status_code == 202, answer.text
                ids.append(answer.json()["id"])
                body = json.dumps({"referenceOrderID": ORDERS[3], "newMobile": MOBILE_2}).encode()
                answer = requests.post(
                    f"{web.url}/webhooks/resends?email={EMAIL_1}&mobile={MOBILE_1}",
                    data=body,
                    headers=signed_headers(WEBHOOK_SECRET, body),
                    timeout=30,
                )
                assert answer.status_code == 202, answer.text
                ids.append(answer.json()["id"])
                wait_all_final(ids, timeout=60)
                oauth.stop()
                # Phase 2: queued while no worker runs, so the task messages sit in Redis and
                # are scanned there; then HTTP Basic only.
                ids.append(enqueue_resend(ORDERS[0], new_email=EMAIL_2, new_mobile=MOBILE_1))
                ids.append(enqueue_resend(ORDERS[2], new_etid="E000123"))
                client = redis.Redis.from_url(TEST_REDIS_URL)
                queued, messages = dump_redis(client)
                capture.redis_values.update({f"(queued) {k}": v for k, v in queued.items()})
                capture.task_messages.extend(messages)
                basic = WorkerProcess(basic_only, tmp / "basic-worker.log", name="basic")
                processes.append(basic.wait_ready())
                wait_all_final(ids, timeout=60)
                shown = requests.get(
                    f"{web.url}/resends/{ids[0]}",
                    headers={"Authorization": f"Bearer {API_TOKEN}"},
                    timeout=30,
                )
                assert shown.status_code == 200
                wrong = requests.get(
                    f"{web.url}/resends/{ids[0]}",
                    headers={"Authorization": f"Bearer {API_TOKEN}x"},
                    timeout=30,
                )
                assert wrong.status_code == 401
                if "RESULT_WEBHOOK_URL" in env:
                    wait_for(
                        lambda: len(capture.callbacks) >= len(ids),
                        timeout=30,
                        what="an outcome callback per request",
                    )
                for request_id in ids:
                    record = get_resend(request_id)
                    assert record is not None
                    capture.records[request_id] = record.model_dump(mode="json")
                capture.auth_kinds = {c["auth"] for c in resend_calls(control)}
                final, messages = dump_redis(client)
                capture.redis_values.update(final)
                capture.task_messages.extend(messages)
                client.close()
        finally:
            for process in reversed(processes):
                process.stop()
            sandbox.stop()
            sink.shutdown()
            sink.server_close()
            reset_runtime()
            reset_settings_cache()
    capture.logs = {path.name: path.read_text(errors="replace") for path in tmp.glob("*.log")}
    return capture


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Capture]:
    client = redis.Redis.from_url(TEST_REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.skip(f"Redis is not reachable at {TEST_REDIS_URL}")
    finally:
        client.close()
    started = time.monotonic()
    result = run_system(tmp_path_factory.mktemp("pii"))
    report(
        "hostile",
        f"secrets/PII scan: {len(result.logs)} logs, {len(result.records)} records, "
        f"{len(result.redis_values)} Redis keys, {len(result.task_messages)} task messages, "
        f"{len(result.callbacks)} callbacks, auth={sorted(result.auth_kinds)} "
        f"({time.monotonic() - started:.1f}s)",
    )
    yield result


def found(needles: dict[str, str], haystacks: dict[str, str]) -> list[str]:
    return [
        f"{what} in {where}"
        for where, text in haystacks.items()
        for what, needle in needles.items()
        if needle in text
    ]


def test_the_run_used_oauth_and_basic_and_wrote_real_logs(capture: Capture) -> None:
    assert capture.auth_kinds == {"basic", "bearer"}
    assert {"web.log", "oauth-worker.log", "basic-worker.log"} <= set(capture.logs)
    assert all(" ready." in capture.logs[name] for name in ("oauth-worker.log", "basic-worker.log"))
    assert "/webhooks/resends" in capture.logs["web.log"], "the receiver's access log is there"
    assert capture.task_messages, "Celery's task messages were found and decoded"


def test_no_secret_anywhere(capture: Capture) -> None:
    haystacks = {
        **{f"log {name}": text for name, text in capture.logs.items()},
        **{f"record {rid}": json.dumps(doc) for rid, doc in capture.records.items()},
        **{f"redis {key}": value for key, value in capture.redis_values.items()},
        **{f"task message {n}": text for n, text in enumerate(capture.task_messages)},
        **{f"callback {n}": text for n, text in enumerate(capture.callbacks)},
    }
    assert found(SECRETS, haystacks) == []


def test_no_clear_contact_data_in_any_log_line(capture: Capture) -> None:
    assert found(CONTACTS, capture.logs) == []


def test_task_messages_carry_only_the_request_id(capture: Capture) -> None:
    """A task message holds the request id and, for resends, the message's dispatch number
    (see worker/queueing/scheduler.py): never a field of the request."""
    assert found(CONTACTS, {str(n): t for n, t in enumerate(capture.task_messages)}) == []
    for text in capture.task_messages:
        body = json.loads(text)
        if isinstance(body, list) and body and isinstance(body[0], list):  # [args, kwargs, embed]
            args, kwargs = body[0], body[1]
            assert len(args) == 1 and isinstance(args[0], str), body
            assert set(kwargs) <= {"dispatch"}, body
            assert all(isinstance(value, int) for value in kwargs.values()), body


def test_contact_data_in_redis_only_in_request_records(capture: Capture) -> None:
    """Outside `request:{id}` records, no Redis value holds a clear email or phone."""
    outside = {key: value for key, value in capture.redis_values.items() if ":request:" not in key}
    assert found(CONTACTS, outside) == []


def test_outcome_callbacks_carry_no_contact_data(capture: Capture) -> None:
    if not capture.callbacks:
        pytest.skip("outcome callbacks are not configured in this version")
    assert found(CONTACTS, {str(n): body for n, body in enumerate(capture.callbacks)}) == []


def test_records_hold_contact_data_only_in_request_and_tangos_answer(capture: Capture) -> None:
    """The request (what to resend, and to whom) and Tango's 201 body (kept as Tango sent it:
    the issue asks for it, and it says where the resend went) may name the recipient; no
    other field of a record may (reasons, errors, attempt log, ...)."""
    leaks = []
    for request_id, doc in capture.records.items():
        rest = {name: value for name, value in doc.items() if name not in ("request", "response")}
        leaks += found(
            CONTACTS, {f"{request_id} {name}": json.dumps(v) for name, v in rest.items()}
        )
    assert leaks == []
