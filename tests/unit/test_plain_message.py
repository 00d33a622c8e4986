"""The task message the slim producer writes by hand is the one Celery builds, field for
field (only the delivery tag, `reply_to` and `origin` differ, as between any two messages);
a real worker running such a message: tests/integration/test_slim_install.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from tests.support.broker import producer_broker
from tests.support.redis_db import TEST_REDIS_URL
from worker.core.settings import reset_settings_cache
from worker.queueing import message_builders
from worker.queueing.app import app as celery_app
from worker.queueing.plain_message import plain_task_message
from worker.queueing.task_messages import build_task_message
from worker.queueing.task_names import RESEND_TASK_NAME
from worker.runtime import reset_runtime

VARYING = {("properties", "delivery_tag"), ("properties", "reply_to"), ("headers", "origin")}


@pytest.fixture
def queue(redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    for name, value in {
        "REDIS_URL": TEST_REDIS_URL,
        "REDIS_KEY_PREFIX": "plain-message",
        "RESEND_QUEUE": "plain-message",
    }.items():
        monkeypatch.setenv(name, value)
    reset_settings_cache()
    reset_runtime()
    with producer_broker():
        yield "plain-message"


def without_varying(document: dict[str, Any]) -> dict[str, Any]:
    return {
        section: (
            {k: v for k, v in value.items() if (section, k) not in VARYING}
            if isinstance(value, dict)
            else value
        )
        for section, value in document.items()
    }


@pytest.mark.parametrize(
    "request_id", ["3f9a0c1b2d4e.RA251125-1001-01", "2b0e7c1e-6f5e-4c8e-9d55-0d6f1c1f6a01"]
)
def test_the_plain_message_is_celerys_message(queue: str, request_id: str) -> None:
    celerys = build_task_message(celery_app, RESEND_TASK_NAME, request_id, queue)
    plain = plain_task_message(RESEND_TASK_NAME, request_id, queue)

    assert plain.list_key == celerys.list_key
    built, written = json.loads(celerys.payload), json.loads(plain.payload)
    assert without_varying(written) == without_varying(built)
    assert written["headers"]["origin"].startswith("gen")
    assert written["properties"]["delivery_tag"] != built["properties"]["delivery_tag"]


def test_without_celery_the_builders_write_the_plain_message(
    queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(message_builders, "celery_installed", lambda: False)
    single = message_builders.task_message_or_none("3f9a0c1b2d4e.RA251125-1001-01", queue)
    many = message_builders.message_builder(queue)("3f9a0c1b2d4e.RA251125-1001-02")
    assert single is not None and many is not None
    assert json.loads(single.payload)["headers"]["task"] == RESEND_TASK_NAME
    assert json.loads(many.payload)["headers"]["id"] == "3f9a0c1b2d4e.RA251125-1001-02"
