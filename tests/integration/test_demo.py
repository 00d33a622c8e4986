"""`make demo` keeps working: the demo's own checks hold, and it leaves nothing behind."""

from __future__ import annotations

import pytest
import redis

from tests.support.processes import REPO_ROOT
from tests.support.redis_db import TEST_REDIS_URL
from worker.cli.demo import run_demo

pytestmark = pytest.mark.integration


def test_demo_passes_its_checks_and_cleans_up(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("REDIS_URL", TEST_REDIS_URL)
    # The demo's worker is `python -m worker`; make the checkout importable without an install.
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))

    summary = run_demo(window_seconds=1.0)

    assert summary["ok"], capsys.readouterr().out
    assert summary["outcome"]["unknown order"] == "failed"
    assert summary["cooldown_errors"] == 0
    assert 1.0 <= summary["gap_seconds"] <= 1.5
    leftovers = [key for key in redis_client.keys("*") if "demo" in key]
    assert leftovers == []
    # The broker's binding tables have no TTL: the demo takes out its own rows and tables.
    assert redis_client.keys("_kombu*") == []
    assert "demo OK" in capsys.readouterr().out
