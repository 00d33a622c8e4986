"""Figures from the sandbox's call log (Tango's view: its clock, its arrival and answer times)."""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

Call = dict[str, Any]
COOLDOWN_KEY = "403.005"


def resend_calls(calls: Iterable[Call], orders: set[str] | None = None) -> list[Call]:
    """Calls to `POST .../resends` (of `orders` only, if given), by arrival."""
    chosen = [
        call
        for call in calls
        if call["method"] == "POST"
        and str(call["path"]).endswith("/resends")
        and (orders is None or call["referenceOrderID"] in orders)
    ]
    return sorted(chosen, key=lambda call: float(call["received_at"]))


def sent(calls: Iterable[Call]) -> list[Call]:
    return [call for call in calls if call["status"] == 201]


def cooldown_errors(calls: Iterable[Call]) -> int:
    return sum(1 for call in calls if call["status"] == 403 and call["i18nKey"] == COOLDOWN_KEY)


def rate_limited(calls: Iterable[Call]) -> int:
    return sum(1 for call in calls if call["status"] == 429)


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def span_seconds(calls: Sequence[Call]) -> float:
    """From the first call's arrival to the last one's answer."""
    if not calls:
        return math.nan
    first = min(float(call["received_at"]) for call in calls)
    last = max(float(call["answered_at"] or call["received_at"]) for call in calls)
    return last - first


def throughput(calls: Sequence[Call]) -> float:
    """Calls answered per second over the run."""
    span = span_seconds(calls)
    return len(calls) / span if span > 0 else math.nan


@dataclass(frozen=True)
class Lateness:
    """One deferred resend: how long after its window opened it reached Tango."""

    order: str
    seconds: float
    at: float  # when the window opened (previous answer + W), sandbox clock


def lateness(calls: Sequence[Call], window_seconds: float) -> list[Lateness]:
    """For consecutive successful resends of one order: next arrival - (previous answer + W).

    Negative means a resend reached Tango before its window opened (an early send).
    """
    by_order: dict[str, list[Call]] = defaultdict(list)
    for call in sent(calls):
        by_order[str(call["referenceOrderID"])].append(call)
    result: list[Lateness] = []
    for order, successes in by_order.items():
        successes.sort(key=lambda call: float(call["received_at"]))
        for previous, current in itertools.pairwise(successes):
            opened = float(previous["answered_at"]) + window_seconds
            result.append(Lateness(order, float(current["received_at"]) - opened, opened))
    return result


def sliding_window_excess(arrivals: Sequence[float], rate_limit: float) -> int:
    """Calls beyond `rate_limit` per second in any window (the sandbox's own rule: at most
    `allowed` calls in any `span` seconds, span = max(1, 1/rate))."""
    span = max(1.0, 1.0 / rate_limit)
    allowed = max(1, round(rate_limit * span))
    ordered = sorted(arrivals)
    excess = 0
    for index in range(allowed, len(ordered)):
        if ordered[index] - ordered[index - allowed] < span:
            excess += 1
    return excess


def per_bin(times: Iterable[float], start: float, width: float) -> list[tuple[float, int]]:
    """Counts per `width`-second bin from `start`: [(bin start offset, count)]."""
    counts: dict[int, int] = defaultdict(int)
    for moment in times:
        counts[int((moment - start) // width)] += 1
    if not counts:
        return []
    return [(index * width, counts.get(index, 0)) for index in range(max(counts) + 1)]


def summary(values: Sequence[float]) -> dict[str, float]:
    return {
        "count": float(len(values)),
        "min": min(values) if values else math.nan,
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "max": max(values) if values else math.nan,
    }
