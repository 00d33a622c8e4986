"""The receiver in-process (FastAPI's TestClient), against the real test Redis."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from fastapi.testclient import TestClient

from tests.support.receiver import API_TOKEN, WEBHOOK_SECRET, Signer, signed_headers
from tests.support.redis_db import TEST_REDIS_URL
from tests.support.settings import apply_settings, new_tag
from worker.web.app import create_app


@pytest.fixture
def web_env(redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    tag = new_tag()
    env = {
        "REDIS_URL": TEST_REDIS_URL,
        "REDIS_KEY_PREFIX": f"web-{tag}",
        "RESEND_QUEUE": f"web-{tag}",
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
        "API_TOKEN": API_TOKEN,
    }
    apply_settings(env, monkeypatch.setenv)
    return env


@pytest.fixture
def client(web_env: dict[str, str]) -> Iterator[TestClient]:
    with TestClient(create_app(), raise_server_exceptions=True) as test_client:
        yield test_client


@pytest.fixture
def signed() -> Signer:
    """Headers for a body, signed as a Standard Webhooks sender would (with WEBHOOK_SECRET
    unless `secret=` says otherwise)."""

    def headers(
        body: bytes,
        *,
        secret: str = WEBHOOK_SECRET,
        webhook_id: str | None = None,
        timestamp: int | None = None,
    ) -> dict[str, str]:
        return signed_headers(secret, body, webhook_id=webhook_id, timestamp=timestamp)

    return headers
