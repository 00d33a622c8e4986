"""Metrics as tests read them: Prometheus text parsed, and the counters kept in Redis."""

from __future__ import annotations

import redis
import requests
from prometheus_client.parser import text_string_to_metric_families

from worker.state.keys import RedisKeys

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> tuple[Samples, dict[str, str]]:
    """Every sample by (name, sorted labels), and every family's type by name."""
    values: Samples = {}
    types: dict[str, str] = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values, types


def labelled(values: Samples, name: str, label: str) -> dict[str, float]:
    """One metric's samples by the value of one of their labels."""
    return {
        dict(labels)[label]: value
        for (sample, labels), value in values.items()
        if sample == name and label in dict(labels)
    }


def stored_counts(client: redis.Redis, keys: RedisKeys) -> dict[str, float]:
    """The counters tango-resend keeps in Redis (`metric|label` -> value)."""
    return {str(k): float(v) for k, v in client.hgetall(keys.metrics).items()}


def scrape(url: str) -> str | None:
    """The text a /metrics endpoint serves, or None while it does not answer 200 (a probe for
    `wait_for`)."""
    try:
        answer = requests.get(url, timeout=5)
    except requests.RequestException:
        return None
    return answer.text if answer.status_code == 200 else None
