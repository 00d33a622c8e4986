"""The receiver in-process (FastAPI's TestClient), against the real test Redis."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
import redis
from fastapi.testclient import TestClient

from tests.conftest import TEST_REDIS_URL
from worker.core.settings import reset_settings_cache
from worker.runtime import reset_runtime
from worker.web.app import create_app
from worker.web.webhook_signature import sign

SECRET = "whsec_" + base64.b64encode(b"receiver-test-secret-0123456789").decode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"some-other-secret-9876543210abc").decode()
API_TOKEN = "api-token-Vf93kQ-receiver-tests-0123456789"
ORDER = "RA251125-1101-01"


@pytest.fixture
def web_env(redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    tag = uuid.uuid4().hex[:8]
    env = {
        "REDIS_URL": TEST_REDIS_URL,
        "REDIS_KEY_PREFIX": f"web-{tag}",
        "RESEND_QUEUE": f"web-{tag}",
        "WEBHOOK_SECRET": SECRET,
        "API_TOKEN": API_TOKEN,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    reset_settings_cache()
    reset_runtime()
    return env


@pytest.fixture
def client(web_env: dict[str, str]) -> Iterator[TestClient]:
    with TestClient(create_app(), raise_server_exceptions=True) as test_client:
        yield test_client


Signer = Callable[..., dict[str, str]]


@pytest.fixture
def signed() -> Signer:
    """Headers for a body, signed as a Standard Webhooks sender would."""

    def headers(
        body: bytes,
        *,
        secret: str = SECRET,
        webhook_id: str | None = None,
        timestamp: int | None = None,
    ) -> dict[str, str]:
        when = int(time.time()) if timestamp is None else timestamp
        message_id = webhook_id or f"msg_{uuid.uuid4().hex}"
        return {
            "webhook-id": message_id,
            "webhook-timestamp": str(when),
            "webhook-signature": sign(secret, message_id, when, body),
            "content-type": "application/json",
        }

    return headers


def body_of(**fields: object) -> bytes:
    return json.dumps({"referenceOrderID": ORDER, **fields}).encode()
