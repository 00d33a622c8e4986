"""Exactly once in practice (issue 16): after a call whose outcome is unknown, a prompt second
call (a probe) asks Tango whether the first one resent. Tango's cooldown answer, with a
last-sent time provably after our first call started, means it did: the request is `sent`
(`confirmed_by: "cooldown"`) and no second resend happens. Anything less conclusive falls
back to at least once: the resend after Tango's window, never lost.

Real worker processes, the sandbox over loopback. The sandbox's "act, then answer late" fault
(`process_seconds`, then `delay_phase="after"`) resends and stalls past our read timeout.
"""

from __future__ import annotations

import json
from typing import Any

import libfaketime
import pytest
import redis
from click.testing import CliRunner

from tests.support.calls import accepted_sends, resend_calls
from tests.support.metrics import stored_counts
from tests.support.processes import WorkerFactory
from tests.support.records import wait_all_final
from tests.support.settings import Configure
from tests.support.waiting import wait_for
from worker import enqueue_resend, get_resend
from worker.cli.entry import cli
from worker.sandbox import SandboxControl, SandboxServer
from worker.state.keys import RedisKeys

pytestmark = pytest.mark.chaos

WINDOW = 2.0
READ_TIMEOUT, CONNECT_TIMEOUT = 0.5, 0.25
# Tango works this long on the first call before it resends, then stalls past our timeout.
PROCESS, STALL = 0.3, 2.0


def settings(configure: Configure, **overrides: str) -> dict[str, str]:
    return configure(
        RESEND_COOLDOWN_SECONDS=str(WINDOW),
        TANGO_TIMEOUT_SECONDS=str(READ_TIMEOUT),
        TANGO_CONNECT_TIMEOUT_SECONDS=str(CONNECT_TIMEOUT),
        **overrides,
    )


def metrics(client: redis.Redis, env: dict[str, str]) -> dict[str, float]:
    return stored_counts(client, RedisKeys(env["REDIS_KEY_PREFIX"]))


def answered_calls(control: SandboxControl, order: str, count: int) -> list[dict[str, Any]]:
    """The order's resend calls once `count` of them have been answered (a stalled call's
    status is logged when its answer is written)."""

    def answered() -> list[dict[str, Any]] | None:
        calls = resend_calls(control, order)
        done = len(calls) >= count and all(c["answered_at"] is not None for c in calls)
        return calls if done else None

    return wait_for(answered, timeout=15, what=f"{count} answered calls of {order}")


def own_cooldowns(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Cooldown refusals of calls that were not probes: cooldowns of our making."""
    return [c for c in calls if c["i18nKey"] == "403.005" and not c["probe"]]


def test_act_then_answer_late_is_confirmed_by_a_probe_with_no_duplicate(
    configure: Configure, control: SandboxControl, start_worker: WorkerFactory, test_db: redis.Redis
) -> None:
    """Five orders, each with Tango resending and then answering after our read timeout (on
    main before issue 16: 5 duplicate resends in 10 calls). Now: 0 duplicates, each request
    `sent` and confirmed by the probe's cooldown answer, both calls in its attempt log."""
    env = settings(configure)
    control.configure(cooldown_seconds=WINDOW)
    orders = [f"RA251210-1601-{n:02d}" for n in range(5)]
    for order in orders:
        control.add_order(order)
        control.inject_fault(
            order, process_seconds=PROCESS, delay_seconds=STALL, delay_phase="after"
        )
    start_worker(env)

    ids = [enqueue_resend(order, new_etid="E000001") for order in orders]
    done = wait_all_final(ids, timeout=30)

    for order, record in zip(orders, done, strict=True):
        assert record.status.value == "sent", record.reason
        assert record.confirmed_by == "cooldown"
        assert [(e.outcome, e.probe) for e in record.attempt_log] == [
            ("retrying", False),
            ("confirmed", True),
        ]
        assert record.attempt_log[1].i18n_key == "403.005"
        calls = answered_calls(control, order, 2)
        assert len(accepted_sends(calls)) == 1, f"{order}: a duplicate resend"
        assert [c["probe"] for c in calls] == [False, True]
        assert own_cooldowns(calls) == []
        # The probe went inside Tango's window of the first call (that is what let it prove).
        assert calls[1]["received_at"] - calls[0]["received_at"] < WINDOW
    counted = metrics(test_db, env)
    assert counted.get("probes_total|confirmed") == 5
    assert "probes_total|inconclusive" not in counted
    assert "deferrals_total|cooldown" not in counted, "probes are not our cooldowns"
    # The operator sees how `sent` was known: `status` (the record, as the REST API serves it)
    # and `history`.
    runner = CliRunner()
    shown = runner.invoke(cli, ["status", ids[0], "--json"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["confirmed_by"] == "cooldown"
    history = runner.invoke(cli, ["history", orders[0]])
    assert history.exit_code == 0, history.output
    assert "confirmed by cooldown" in history.output


def test_a_stall_before_tango_acts_is_settled_by_the_probe_with_no_duplicate(
    configure: Configure, control: SandboxControl, start_worker: WorkerFactory
) -> None:
    """A call still stalled inside Tango when the probe arrives: Tango resends for the probe
    (201: it is the resend), and the stalled call, acting later inside that window, is
    refused by Tango. One resend."""
    env = settings(configure)
    control.configure(cooldown_seconds=WINDOW)
    order = "RA251210-1602-01"
    control.add_order(order)
    control.inject_fault(order, delay_seconds=READ_TIMEOUT + 1.2, delay_phase="before")
    start_worker(env)

    request = enqueue_resend(order, new_etid="E000001")
    [record] = wait_all_final([request], timeout=30)
    assert record.status.value == "sent" and record.confirmed_by is None
    assert [(e.outcome, e.probe) for e in record.attempt_log] == [
        ("retrying", False),
        ("sent", True),
    ]

    calls = answered_calls(control, order, 2)
    assert len(accepted_sends(calls)) == 1
    assert [(c["probe"], c["status"]) for c in calls] == [(False, 403), (True, 201)]


def test_sigkill_mid_call_the_replacements_probe_confirms_with_no_duplicate(
    configure: Configure,
    control: SandboxControl,
    sandbox: SandboxServer,
    start_worker: WorkerFactory,
    test_db: redis.Redis,
) -> None:
    """The worker calling Tango is killed after Tango resent and before it answered. The
    request is released once the call must be over (`calling_until`: the call's own bound,
    no longer a window past it), and the surviving worker's probe proves the resend."""
    env = settings(configure, RESEND_LEASE_SECONDS="1")
    control.configure(cooldown_seconds=WINDOW)
    order = "RA251210-1603-01"
    control.add_order(order)
    control.inject_fault(order, process_seconds=PROCESS, delay_seconds=5.0, delay_phase="after")
    workers = [start_worker(env, "k1", concurrency=2), start_worker(env, "k2", concurrency=2)]

    request = enqueue_resend(order, new_etid="E000001")

    def acted() -> bool:
        found = sandbox.state.order_json(order)
        return found is not None and found["lastResentAt"] is not None

    wait_for(acted, timeout=15, interval=0.005, what="Tango to resend")
    [holder] = [w for w in workers if request in w.log()]
    holder.kill()
    [survivor] = [w for w in workers if w is not holder]

    [record] = wait_all_final([request], timeout=30)
    assert record.status.value == "sent", record.reason
    assert record.confirmed_by == "cooldown"
    assert [(e.outcome, e.probe) for e in record.attempt_log] == [
        ("interrupted", False),
        ("confirmed", True),
    ]
    calls = answered_calls(control, order, 2)
    assert len(accepted_sends(calls)) == 1, "a duplicate resend"
    assert [c["probe"] for c in calls] == [False, True]
    assert calls[1]["received_at"] - calls[0]["received_at"] < WINDOW
    assert request in survivor.log()
    assert metrics(test_db, env).get("probes_total|confirmed") == 1


@pytest.mark.parametrize(
    ("precision", "skew"),
    [
        ("iso-minutes", "+5s"),
        ("iso-minutes", "-5s"),
        ("garbage", "+5s"),
        ("iso", "-5s"),
    ],
)
def test_an_inconclusive_probe_falls_back_to_at_least_once_and_never_loses_the_resend(
    configure: Configure,
    control: SandboxControl,
    sandbox: SandboxServer,
    start_worker: WorkerFactory,
    test_db: redis.Redis,
    precision: str,
    skew: str,
) -> None:
    """Minute precision or an unreadable last-sent time, or a resend too close to our call's
    start (Tango acting at once: "iso" with no processing time is a race of a few ms, so it
    may go either way), with the worker's clock and Tango's 5 s off: the request ends `sent`
    either way. When not proved, Tango's window is waited out and the resend made again (at
    least once, as before issue 16); no call of ours except the probe meets Tango's cooldown."""
    _, faketime_env = libfaketime.get_reload_information()
    env = settings(configure)
    control.configure(cooldown_seconds=WINDOW, last_sent_format=precision)
    sandbox.state.set_clock_offset(-5.0 if skew == "+5s" else 5.0)
    order = "RA251210-1604-01"
    control.add_order(order)
    control.inject_fault(order, delay_seconds=STALL, delay_phase="after")
    start_worker({**env, **faketime_env, "FAKETIME": skew})

    request = enqueue_resend(order, new_etid="E000001")
    [record] = wait_all_final([request], timeout=30)
    assert record.status.value == "sent", record.reason
    calls = answered_calls(control, order, 2 if record.confirmed_by else 3)
    assert own_cooldowns(calls) == []
    sends = accepted_sends(calls)
    counted = metrics(test_db, env)
    if record.confirmed_by == "cooldown":
        assert precision == "iso", "minute precision or no time can never prove a resend"
        assert len(sends) == 1
        return
    assert [(e.outcome, e.probe) for e in record.attempt_log] == [
        ("retrying", False),
        ("deferred", True),
        ("sent", False),
    ]
    assert len(sends) == 2, "at least once: resent after Tango's window"
    assert sends[1]["received_at"] - sends[0]["received_at"] >= WINDOW
    assert counted.get("probes_total|inconclusive") == 1
    assert get_resend(request) is not None
