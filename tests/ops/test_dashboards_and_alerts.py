"""The operators' Grafana dashboard and Prometheus alert rules (deploy/): promtool accepts the
rules and they fire on the series they are about, and every metric they name is one the code
exports (read from worker/state/metrics.py's registry, built against the test Redis)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import redis
import yaml

from worker.state.keys import RedisKeys
from worker.state.metrics_export import build_registry

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "tango-resend.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
METRIC = re.compile(r"\btango_resend_[a-z_]+\b")


@pytest.fixture
def promtool() -> str:
    beside_python = Path(sys.executable).parent / "promtool"
    found = str(beside_python) if beside_python.is_file() else shutil.which("promtool")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing: `make test-tools` unpacks Debian's")
        pytest.skip("promtool is missing: `make test-tools` unpacks Debian's")
    return found


def exported_names(client: redis.Redis) -> set[str]:
    """Every series name a scrape can hold, from the registry's metric families."""
    names: set[str] = set()
    keys = RedisKeys("dashboards-test")
    # Tango's last success is exported once one is known.
    client.set(keys.tango_last_success, "1764979200.0")
    for family in build_registry(client, keys, "q").collect():
        if family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type == "histogram":
            names.update(f"{family.name}_{suffix}" for suffix in ("bucket", "sum", "count"))
        else:
            names.add(family.name)
    return names


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def alert_expressions() -> list[str]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def test_promtool_accepts_the_alert_rules(promtool: str) -> None:
    result = subprocess.run(
        [promtool, "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 11 rules found" in result.stdout


def test_every_metric_the_dashboard_and_alerts_use_is_exported(
    redis_client: redis.Redis,
) -> None:
    exported = exported_names(redis_client)
    used = {
        name
        for expr in dashboard_expressions() + alert_expressions()
        for name in METRIC.findall(expr)
    }

    assert used, "no metric found in the dashboard or the alerts"
    assert used <= exported, f"not exported by worker/state/metrics.py: {sorted(used - exported)}"


def test_the_dashboard_covers_what_operators_watch() -> None:
    used = {name for expr in dashboard_expressions() for name in METRIC.findall(expr)}

    assert {
        "tango_resend_requests_total",  # throughput and outcomes
        "tango_resend_deferrals_total",  # deferrals by reason
        "tango_resend_send_delay_seconds_bucket",  # send delay percentiles
        "tango_resend_queue_depth",
        "tango_resend_parked",
        "tango_resend_tango_latency_seconds_bucket",
        "tango_resend_tango_calls_total",  # Tango's statuses
        "tango_resend_callbacks_total",
        "tango_resend_tango_up",  # the top row: Tango's and Redis's state
        "tango_resend_redis_up",
        "tango_resend_waiting_on_outage",
    } <= used
    # Every endpoint serves the fleet's numbers: summing instances would multiply them.
    assert not any(re.search(r"\bsum\((rate|increase)\(", expr) for expr in dashboard_expressions())


def test_the_alerts_fire_on_the_series_they_are_about(promtool: str, tmp_path: Path) -> None:
    """promtool's rule unit tests, on synthetic series: Given a 429, an evicting Redis, a
    request overdue, a queue nobody takes from; Then exactly the alert about each fires."""
    # promtool compares annotations too; the expressions are what is tested here.
    rules = yaml.safe_load(ALERTS.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    bare_rules = tmp_path / "alerts.yml"
    bare_rules.write_text(yaml.safe_dump(rules))
    tests = {
        "rule_files": [str(bare_rules)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {"series": 'tango_resend_tango_calls_total{status="201"}', "values": "0+10x20"},
                    {
                        "series": 'tango_resend_tango_calls_total{status="429"}',
                        "values": "0 0 1 1 1",
                    },
                    {"series": "tango_resend_redis_eviction_unsafe", "values": "1x20"},
                    {"series": "tango_resend_oldest_due_overdue_seconds", "values": "0 0 120x10"},
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "3m",
                        "alertname": "TangoResendTangoRateLimited",
                        "exp_alerts": [{"exp_labels": {"severity": "page"}}],
                    },
                    {
                        "eval_time": "10m",
                        "alertname": "TangoResendRedisMayEvict",
                        "exp_alerts": [{"exp_labels": {"severity": "page"}}],
                    },
                    {
                        "eval_time": "6m",
                        "alertname": "TangoResendRequestWaitingPastItsWindow",
                        "exp_alerts": [{"exp_labels": {"severity": "page"}}],
                    },
                    {"eval_time": "15m", "alertname": "TangoResendNoWorkerConsuming"},
                ],
            },
            {
                "interval": "1m",
                "input_series": [
                    {"series": "tango_resend_queue_depth", "values": "5x20"},
                    {"series": 'tango_resend_tango_calls_total{status="201"}', "values": "3x20"},
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "15m",
                        "alertname": "TangoResendNoWorkerConsuming",
                        "exp_alerts": [{"exp_labels": {"severity": "page"}}],
                    }
                ],
            },
        ],
    }
    path = tmp_path / "alerts_test.yml"  # the first case: nothing else fires, no worker alert
    path.write_text(yaml.safe_dump(tests))
    result = subprocess.run(
        [promtool, "test", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def run_promtool_tests(promtool: str, tmp_path: Path, cases: list[dict[str, object]]) -> None:
    """promtool's rule unit tests (`cases`) against the alert rules, annotations left out."""
    rules = yaml.safe_load(ALERTS.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    bare_rules = tmp_path / "bad_day_alerts.yml"
    bare_rules.write_text(yaml.safe_dump(rules))
    path = tmp_path / "bad_day_alerts_test.yml"
    tests = {"rule_files": [str(bare_rules)], "evaluation_interval": "1m", "tests": cases}
    path.write_text(yaml.safe_dump(tests))
    result = subprocess.run(
        [promtool, "test", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_bad_day_alerts_fire_at_a_few_resends_an_hour(promtool: str, tmp_path: Path) -> None:
    """Given one failure in an hour, refused credentials, Tango down 3 minutes, Redis down
    (and, in its own case, no metrics at all), requests waiting on an outage; Then the alert
    about each fires, at its severity, and none fires on a quiet healthy hour."""
    quiet = {
        "interval": "1m",
        "input_series": [
            {"series": 'tango_resend_requests_total{outcome="failed"}', "values": "0x60"},
            {"series": 'tango_resend_requests_total{outcome="sent"}', "values": "0+1x60"},
            {"series": "tango_resend_tango_up", "values": "1x60"},
            {"series": "tango_resend_redis_up", "values": "1x60"},
            {"series": 'tango_resend_tango_outage{reason="credentials_refused"}', "values": "0x60"},
            {"series": 'tango_resend_waiting_on_outage{reason="unreachable"}', "values": "0x60"},
        ],
        "alert_rule_test": [
            {"eval_time": "59m", "alertname": name}
            for name in (
                "TangoResendAnyFailure",
                "TangoResendCredentialsRefused",
                "TangoResendTangoDown",
                "TangoResendRedisDown",
                "TangoResendWaitingOnOutage",
                "TangoResendFailuresHigh",
            )
        ],
    }
    bad_day = {
        "interval": "1m",
        "input_series": [
            # One failure at minute 30 of a quiet hour: the rate alert stays silent.
            {"series": 'tango_resend_requests_total{outcome="failed"}', "values": "0x29 1x30"},
            {"series": "tango_resend_tango_up", "values": "1x9 0x20 1x30"},
            {"series": "tango_resend_redis_up", "values": "1x39 0x5 1x15"},
            {
                "series": 'tango_resend_tango_outage{reason="credentials_refused"}',
                "values": "0x9 1x20 0x30",
            },
            {
                "series": 'tango_resend_waiting_on_outage{reason="credentials_refused"}',
                "values": "0x9 3x20 0x30",
            },
        ],
        "alert_rule_test": [
            {
                "eval_time": "35m",
                "alertname": "TangoResendAnyFailure",
                "exp_alerts": [{"exp_labels": {"severity": "warning"}}],
            },
            {"eval_time": "35m", "alertname": "TangoResendFailuresHigh"},
            {
                "eval_time": "10m",
                "alertname": "TangoResendCredentialsRefused",
                "exp_alerts": [{"exp_labels": {"severity": "critical"}}],
            },
            {"eval_time": "11m", "alertname": "TangoResendTangoDown"},  # not 2 minutes yet
            {
                "eval_time": "13m",
                "alertname": "TangoResendTangoDown",
                "exp_alerts": [{"exp_labels": {"severity": "page"}}],
            },
            {
                "eval_time": "16m",
                "alertname": "TangoResendWaitingOnOutage",
                "exp_alerts": [{"exp_labels": {"severity": "warning"}}],
            },
            {
                "eval_time": "42m",
                "alertname": "TangoResendRedisDown",
                "exp_alerts": [{"exp_labels": {"severity": "page"}}],
            },
            {"eval_time": "50m", "alertname": "TangoResendTangoDown"},  # over
        ],
    }
    no_metrics = {
        "interval": "1m",
        "input_series": [{"series": "tango_resend_queue_depth", "values": "0x10"}],
        "alert_rule_test": [
            {
                "eval_time": "5m",
                "alertname": "TangoResendRedisDown",
                "exp_alerts": [{"exp_labels": {"severity": "page"}}],
            }
        ],
    }
    run_promtool_tests(promtool, tmp_path, [quiet, bad_day, no_metrics])


def test_the_oldest_due_gauge_says_how_long_the_most_overdue_request_has_waited(
    redis_client: redis.Redis,
) -> None:
    """Given requests parked in the due index, one due 100 s ago, one due later, one waiting
    for its turn; Then the gauge the overdue alert reads is about 100 s (0 with none due)."""
    keys = RedisKeys("dashboards-test")
    registry = build_registry(redis_client, keys, "q")
    assert registry.get_sample_value("tango_resend_oldest_due_overdue_seconds") == 0.0

    seconds, _ = redis_client.time()
    now = float(seconds)
    redis_client.zadd(keys.due_index, {"late": now - 100, "later": now + 50, "turn": "+inf"})

    overdue = registry.get_sample_value("tango_resend_oldest_due_overdue_seconds")
    assert overdue is not None and 99 <= overdue <= 105
