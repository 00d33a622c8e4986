"""The Python API's one exception for "Redis unavailable", and the `tango_resend` import path."""

from __future__ import annotations

import pytest

import tango_resend
import worker
from tests.support.redis_db import unreachable_redis_url
from tests.support.settings import apply_settings


@pytest.fixture
def redis_down(monkeypatch: pytest.MonkeyPatch) -> None:
    """REDIS_URL names a port nothing listens on."""
    apply_settings({"REDIS_URL": unreachable_redis_url()}, monkeypatch.setenv)


def test_enqueue_error_is_a_redis_unavailable() -> None:
    assert issubclass(worker.EnqueueError, worker.RedisUnavailable)
    assert not issubclass(worker.RedisUnavailable, ValueError), "not confused with bad input"


@pytest.mark.usefixtures("redis_down")
def test_every_function_raises_redis_unavailable_when_redis_is_down() -> None:
    """Given no Redis, when an application calls the API, then it meets one documented
    exception type, never a raw redis-py error."""
    with pytest.raises(worker.RedisUnavailable):
        worker.get_resend("5f0c2a8e-0000-4000-8000-000000000000")
    with pytest.raises(worker.RedisUnavailable):
        worker.cancel_resend("5f0c2a8e-0000-4000-8000-000000000000")
    with pytest.raises(worker.EnqueueError):
        worker.enqueue_resend("RA251125-1001-01")


def test_tango_resend_re_exports_the_public_api() -> None:
    for name in tango_resend.__all__:
        assert getattr(tango_resend, name) is getattr(worker, name)
    expected = {
        "enqueue_resend",
        "get_resend",
        "cancel_resend",
        "retry_resend",
        "InvalidResendRequest",
        "EnqueueError",
        "RedisUnavailable",
        "NotRetryable",
        "ConfigurationError",
        "ResendRecord",
        "ResendStatus",
    }
    assert expected <= set(tango_resend.__all__)
