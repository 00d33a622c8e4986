"""The platform rate limit (429.008): sliding window, Retry-After, controls, counters."""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from worker.sandbox import SandboxConfig, SandboxControl, SandboxServer, SandboxState
from worker.sandbox import server as server_module
from worker.sandbox.ratelimit import SlidingWindow, window_for

TIMEOUT = 5.0
ORDER = "RA240101-0001-01"
OTHER = "RA240101-0001-02"


def _order_url(server: SandboxServer, order: str = ORDER) -> str:
    return f"{server.base_url}/orders/{order}"


def _resend_url(server: SandboxServer, order: str = ORDER) -> str:
    return f"{server.base_url}/orders/{order}/resends"


def _assert_rate_limited(response: requests.Response, rate: str) -> int:
    """Checks a 429.008 answer and returns its Retry-After in seconds."""
    assert response.status_code == 429
    body = response.json()
    assert body["httpCode"] == 429
    assert body["httpPhrase"] == "Too Many Requests"
    assert body["i18nKey"] == "429.008"
    assert body["message"] == f"platform rate limit {rate} TPS threshold reached"
    retry_after = response.headers["Retry-After"]
    assert retry_after.isdigit()
    assert int(retry_after) >= 1
    return int(retry_after)


def _assert_no_window_overfull(arrivals: list[float], span: float, allowed: int) -> None:
    ordered = sorted(arrivals)
    for first, last in zip(ordered, ordered[allowed:], strict=False):
        assert last - first >= span, f"{allowed + 1} accepted calls within {span} s: {ordered}"


def test_burst_from_four_threads_never_exceeds_five_per_second(
    make_server: Callable[..., SandboxServer], new_session: Callable[..., requests.Session]
) -> None:
    # Given a 5 TPS sandbox with 20 orders, and four clients on their own sessions
    server = make_server(rate_limit=5.0)
    orders = [f"RA240101-0002-{n:02d}" for n in range(20)]
    for order in orders:
        server.state.add_order(order)
    sessions = [new_session() for _ in range(4)]
    barrier = threading.Barrier(4)

    def fire(worker: int) -> list[tuple[str, requests.Response]]:
        barrier.wait(timeout=TIMEOUT)
        session = sessions[worker]
        return [
            (order, session.post(_resend_url(server, order), timeout=TIMEOUT))
            for order in orders[worker::4]
        ]

    # When each resends its five orders as fast as it can
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = [result for batch in pool.map(fire, range(4)) for result in batch]

    # Then every call was either resent or refused by the rate limit
    accepted = {order for order, response in results if response.status_code == 201}
    refused = [(order, response) for order, response in results if response.status_code != 201]
    assert len(accepted) + len(refused) == 20
    for order, response in refused:
        assert _assert_rate_limited(response, "5") <= 2
        # And a refused resend changed nothing about its order
        assert server.state.order_json(order)["lastResentAt"] is None  # type: ignore[index]
    for order in accepted:
        assert server.state.order_json(order)["lastResentAt"] is not None  # type: ignore[index]

    # And the accepted arrivals never put more than five into one second
    calls = server.state.calls()
    arrivals = [call["received_at"] for call in calls if call["status"] == 201]
    assert {call["referenceOrderID"] for call in calls if call["status"] == 201} == accepted
    _assert_no_window_overfull(arrivals, span=1.0, allowed=5)
    assert len(accepted) >= 5
    burst = [call["received_at"] for call in calls]
    if max(burst) - min(burst) < 1.0:  # the usual case: the whole burst inside one second
        assert len(accepted) == 5
    assert {call["i18nKey"] for call in calls if call["status"] == 429} <= {"429.008"}
    assert server.state.stats() == {"accepted": len(accepted), "rate_limited": len(refused)}

    # And once the window slides on, calls get through again
    deadline = time.monotonic() + 3.0
    again = sessions[0].get(_order_url(server, orders[0]), timeout=TIMEOUT)
    while again.status_code == 429 and time.monotonic() < deadline:
        time.sleep(0.05)
        again = sessions[0].get(_order_url(server, orders[0]), timeout=TIMEOUT)
    assert again.status_code == 200
    calls = server.state.calls()
    _assert_no_window_overfull(
        [call["received_at"] for call in calls if call["status"] in (200, 201)], 1.0, 5
    )


def test_half_a_call_per_second_allows_one_call_every_two_seconds(
    make_server: Callable[..., SandboxServer], tango: requests.Session
) -> None:
    # Given a 0.5 TPS sandbox and one accepted call
    server = make_server(rate_limit=0.5)
    server.state.add_order(ORDER)
    assert tango.get(_order_url(server), timeout=TIMEOUT).status_code == 200

    # When calls follow at once, and one second later on the sandbox clock
    at_once = tango.get(_order_url(server), timeout=TIMEOUT)
    server.state.set_clock_offset(1.0)
    one_second_later = tango.get(_order_url(server), timeout=TIMEOUT)

    # Then both are refused, each told how many whole seconds remain
    arrivals = [call["received_at"] for call in server.state.calls()]
    assert _assert_rate_limited(at_once, "0.5") == math.ceil(arrivals[0] + 2.0 - arrivals[1])
    assert _assert_rate_limited(one_second_later, "0.5") == 1

    # And two seconds after the accepted call one more gets through, then none again
    server.state.set_clock_offset(2.0)
    assert tango.get(_order_url(server), timeout=TIMEOUT).status_code == 200
    _assert_rate_limited(tango.get(_order_url(server), timeout=TIMEOUT), "0.5")
    accepted = [call["received_at"] for call in server.state.calls() if call["status"] == 200]
    assert len(accepted) == 2
    assert accepted[1] - accepted[0] >= 2.0


def test_zero_rate_limit_is_unlimited(
    server: SandboxServer,
    control: SandboxControl,
    new_session: Callable[..., requests.Session],
) -> None:
    control.add_order(ORDER)
    sessions = [new_session() for _ in range(4)]

    def fire(worker: int) -> list[int]:
        url = _order_url(server)
        return [sessions[worker].get(url, timeout=TIMEOUT).status_code for _ in range(10)]

    with ThreadPoolExecutor(max_workers=4) as pool:
        statuses = [status for batch in pool.map(fire, range(4)) for status in batch]

    assert statuses == [200] * 40
    assert control.stats() == {"accepted": 40, "rate_limited": 0}


def test_limit_and_window_can_change_at_run_time(
    server: SandboxServer, control: SandboxControl, tango: requests.Session
) -> None:
    # Given an unlimited sandbox that served a quick burst
    control.add_order(ORDER)
    assert [tango.get(_order_url(server), timeout=TIMEOUT).status_code for _ in range(3)] == [
        200
    ] * 3

    # When a 1 TPS limit is switched on, the next call gets in and the one after does not
    control.configure(rate_limit=1)
    assert server.state.config.rate_limit == 1.0
    assert tango.get(_order_url(server), timeout=TIMEOUT).status_code == 200
    _assert_rate_limited(tango.get(_order_url(server), timeout=TIMEOUT), "1")

    # And switching it off lifts it at once
    control.configure(rate_limit=0)
    assert [tango.get(_order_url(server), timeout=TIMEOUT).status_code for _ in range(3)] == [
        200
    ] * 3

    # And the resend window can be changed the same way
    assert tango.post(_resend_url(server), timeout=TIMEOUT).status_code == 201
    assert tango.post(_resend_url(server), timeout=TIMEOUT).json()["i18nKey"] == "403.005"
    control.configure(cooldown_seconds=0)
    assert tango.post(_resend_url(server), timeout=TIMEOUT).status_code == 201

    # And the control route answers the settings in force
    answer = requests.post(
        f"{server.control_url}/_sandbox/config", json={"rateLimit": 2.5}, timeout=TIMEOUT
    )
    assert answer.status_code == 200
    assert answer.json() == {"rateLimit": 2.5, "cooldownSeconds": 0.0, "lastSentFormat": "iso"}


@pytest.mark.parametrize(
    "body",
    [
        {"rateLimit": -1},
        {"rateLimit": "fast"},
        {"rateLimit": True},
        {"rateLimit": float("nan")},
        {"rateLimit": float("inf")},
        {"cooldownSeconds": -0.5},
        {"rateLimits": 1},
        {"rateLimit": 3, "cooldownSeconds": -1},
        [1],
    ],
)
def test_invalid_settings_are_refused_and_change_nothing(server: SandboxServer, body: Any) -> None:
    # json.dumps, unlike requests, writes NaN and Infinity (and Python's json reads them).
    answer = requests.post(
        f"{server.control_url}/_sandbox/config",
        data=json.dumps(body),
        headers={"Content-Type": "application/json"},
        timeout=TIMEOUT,
    )

    assert answer.status_code == 400
    assert server.state.config.rate_limit == 0.0
    assert server.state.config.cooldown_seconds == 30.0


def test_invalid_limit_is_refused_by_the_constructors() -> None:
    with pytest.raises(ValueError, match="rate_limit"):
        SandboxServer(rate_limit=-1)
    with pytest.raises(ValueError, match="rate_limit"):
        SandboxConfig(rate_limit=float("nan"))


def test_stats_count_accepted_and_refused_calls_on_every_raas_route(
    make_server: Callable[..., SandboxServer],
    new_session: Callable[..., requests.Session],
    tango: requests.Session,
) -> None:
    # Given a 1 TPS sandbox with one order
    server = make_server(rate_limit=1)
    server.state.add_order(ORDER)
    stranger = new_session(auth=("who", "knows"))
    with SandboxControl(server.control_url) as control:
        assert control.stats() == {"accepted": 0, "rate_limited": 0}

        # When one call is accepted, a stranger calls, and every RaaS route is called again
        assert tango.get(_order_url(server), timeout=TIMEOUT).status_code == 200
        assert stranger.get(_order_url(server), timeout=TIMEOUT).status_code == 401
        _assert_rate_limited(tango.get(f"{server.base_url}/orders", timeout=TIMEOUT), "1")
        _assert_rate_limited(tango.get(_order_url(server), timeout=TIMEOUT), "1")
        _assert_rate_limited(tango.post(_resend_url(server), timeout=TIMEOUT), "1")

        # Then unauthenticated calls are neither limited nor counted, refusals are
        assert control.stats() == {"accepted": 1, "rate_limited": 3}
        assert server.state.rate_limited_count() == 3
        assert server.state.accepted_count() == 1
        # And the call log shows them as usual
        logged = [(call["status"], call["i18nKey"]) for call in control.calls()]
        assert logged == [(200, None), (401, "401.001")] + [(429, "429.008")] * 3

        # And a reset forgets both counters and the window
        control.reset()
        assert control.stats() == {"accepted": 0, "rate_limited": 0}
        assert tango.get(f"{server.base_url}/orders", timeout=TIMEOUT).status_code == 200


def test_refused_resend_does_not_start_the_resend_window(
    make_server: Callable[..., SandboxServer], tango: requests.Session
) -> None:
    # Given a 1 TPS sandbox whose slot another call just took
    server = make_server(rate_limit=1, cooldown_seconds=30.0)
    server.state.add_order(ORDER)
    server.state.add_order(OTHER)
    assert tango.get(_order_url(server, OTHER), timeout=TIMEOUT).status_code == 200

    # When the order is resent over the limit
    _assert_rate_limited(tango.post(_resend_url(server), timeout=TIMEOUT), "1")

    # Then its window did not start: a second later the resend goes through
    assert server.state.order_json(ORDER)["lastResentAt"] is None  # type: ignore[index]
    server.state.set_clock_offset(1.0)
    assert tango.post(_resend_url(server), timeout=TIMEOUT).status_code == 201


def test_refused_resend_leaves_queued_faults_alone(
    make_server: Callable[..., SandboxServer], tango: requests.Session
) -> None:
    server = make_server(rate_limit=1)
    server.state.add_order(ORDER)
    server.state.inject_fault(ORDER, status=503)
    assert tango.get(_order_url(server), timeout=TIMEOUT).status_code == 200

    _assert_rate_limited(tango.post(_resend_url(server), timeout=TIMEOUT), "1")

    server.state.set_clock_offset(1.0)
    assert tango.post(_resend_url(server), timeout=TIMEOUT).status_code == 503
    server.state.set_clock_offset(2.0)
    assert tango.post(_resend_url(server), timeout=TIMEOUT).status_code == 201


def test_parallel_calls_cannot_share_the_last_slot() -> None:
    state = SandboxState(SandboxConfig(rate_limit=5))
    arrived_at = state.now()
    barrier = threading.Barrier(32)

    def admit(_: int) -> bool:
        barrier.wait(timeout=TIMEOUT)
        return state.admit_call(arrived_at).accepted

    with ThreadPoolExecutor(max_workers=32) as pool:
        verdicts = list(pool.map(admit, range(32)))

    assert verdicts.count(True) == 5
    assert state.stats() == {"accepted": 5, "rate_limited": 27}


@pytest.mark.parametrize(
    ("rate", "window"),
    [(5, (1.0, 5)), (1, (1.0, 1)), (0.5, (2.0, 1)), (0.25, (4.0, 1)), (10, (1.0, 10))],
)
def test_window_follows_the_rule(rate: float, window: tuple[float, int]) -> None:
    assert window_for(rate) == window


def test_calls_judged_out_of_arrival_order_still_respect_every_window() -> None:
    window = SlidingWindow()

    assert window.admit(10.5, 1).accepted
    # Arrived earlier but judged later: it would share a second with 10.5.
    late = window.admit(10.2, 1)
    assert not late.accepted
    assert late.wait_seconds == pytest.approx(1.3)
    assert window.admit(9.4, 1).accepted
    assert window.admit(11.5, 1).accepted
    assert not window.admit(12.4, 1).accepted


def test_main_serve_passes_the_rate_limit_through(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[SandboxServer] = []

    class _Built(Exception):
        pass

    def build(*args: Any, **kwargs: Any) -> SandboxServer:
        sandbox = SandboxServer(*args, **kwargs)
        sandbox.stop()
        built.append(sandbox)
        raise _Built

    monkeypatch.setattr(server_module, "SandboxServer", build)

    with pytest.raises(_Built):
        server_module.main_serve("127.0.0.1", 0, 2.0, rate_limit=0.5)

    assert built[0].state.config.rate_limit == 0.5
    assert built[0].state.config.cooldown_seconds == 2.0
