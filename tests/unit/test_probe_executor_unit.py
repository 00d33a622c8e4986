"""Probes in one run of a request (issue 16): real Redis, a scripted stand-in for Tango."""

from __future__ import annotations

import json
from datetime import timedelta

import redis

from tests.support.scripted_tango import (
    CREATED,
    ORDER,
    ScriptedTango,
    executor_with,
    new_request,
)
from tests.support.window import window_of
from worker.resend.executor import Done
from worker.runtime import Runtime
from worker.state.records import ResendStatus
from worker.tango.client import TangoAnswer
from worker.tango.error_mapping import error_for_response
from worker.tango.errors import TangoCooldownError, TangoTransientError


class ProbingTango(ScriptedTango):
    """Records which calls were probes; `cooldown_after` builds Tango's 403.005 from the
    record's own times (Tango resent `acted_after` s after our call started)."""

    def __init__(self, *answers: TangoAnswer | BaseException) -> None:
        super().__init__(*answers)
        self.probes: list[bool] = []

    def resend(
        self, order: str, body: dict[str, str], authorization: str, probe: bool = False
    ) -> TangoAnswer:
        self.probes.append(probe)
        return super().resend(order, body, authorization)


def tango_cooldown(last_sent_ms: int, now_ms: int) -> TangoCooldownError:
    body = {
        "timestamp": now_ms,
        "i18nKey": "403.005",
        "message": f"Cannot send more than once every 30 seconds. Last sent at {last_sent_ms}",
    }
    error = error_for_response(403, {}, json.dumps(body))
    assert isinstance(error, TangoCooldownError)
    return error


def redis_ms(client: redis.Redis) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


def fields(runtime: Runtime) -> dict[str, str]:
    return {str(k): str(v) for k, v in runtime.redis.hgetall(runtime.keys.record("req-1")).items()}


def test_a_call_counts_as_in_flight_for_the_call_itself_not_a_window_more(
    runtime: Runtime,
) -> None:
    """`calling_until` bounds the call (the longest call, 1 s here); the window is held a
    window more. So after a worker's death mid-call the request is released in time to probe
    inside Tango's window."""
    new_request(runtime)
    seen: dict[str, float] = {}

    def look() -> None:
        now = runtime.clock.now().timestamp()
        record = fields(runtime)
        seen["calling"] = float(record["calling_until"]) - now
        seen["started"] = now - int(record["call_started_at"]) / 1000
        seen["window"] = window_of(runtime).remaining_seconds(ORDER)

    tango = ProbingTango(CREATED)
    tango.during_call = look
    assert executor_with(runtime, tango).run("req-1") == Done(ResendStatus.SENT)
    assert 0.8 < seen["calling"] <= 1.0
    assert 0 <= seen["started"] < 0.2
    assert 30.5 < seen["window"] <= 31.0


def test_an_ambiguous_timeout_is_probed_through_its_own_window_and_the_cooldown_confirms_it(
    runtime: Runtime,
) -> None:
    new_request(runtime)
    timeout = TangoTransientError("ReadTimeout: no answer", ambiguous=True)
    tango = ProbingTango(timeout)
    assert executor_with(runtime, tango).run("req-1") == Done(ResendStatus.RETRYING)
    record = runtime.records.get("req-1")
    assert record is not None and record.unresolved_call_started_at is not None
    assert record.next_attempt_at is not None
    wait = (record.next_attempt_at - runtime.clock.now()).total_seconds()
    assert wait < 5, "a prompt probe, not a whole window"
    assert window_of(runtime).holder(ORDER) == "req-1"
    assert "call_started_at" not in fields(runtime), "the outcome is stored: in the doc now"

    # As if the first call started 1 s ago, and Tango resent 300 ms into it; the probe is
    # judged 5 ms after it leaves.
    now_ms = redis_ms(runtime.redis)
    record.unresolved_call_started_at = (now_ms - 1000) / 1000
    tango.answers.append(tango_cooldown(now_ms - 700, now_ms + 5))
    runtime.redis.zadd(runtime.keys.due_index, {"req-1": 0})
    record.next_attempt_at = None
    assert runtime.records.save(record, 0)
    assert executor_with(runtime, tango).run("req-1") == Done(ResendStatus.SENT)

    assert tango.probes == [False, True]
    done = runtime.records.get("req-1")
    assert done is not None
    assert (done.status, done.confirmed_by) == (ResendStatus.SENT, "cooldown")
    assert done.unresolved_call_started_at is None and done.error is None
    assert [(e.outcome, e.probe) for e in done.attempt_log] == [
        ("retrying", False),
        ("confirmed", True),
    ]
    assert window_of(runtime).holder(ORDER) == "req-1"
    assert 25 < window_of(runtime).remaining_seconds(ORDER) <= 30, "Tango's window, from its times"
    counted = {str(k): v for k, v in runtime.redis.hgetall(runtime.keys.metrics).items()}
    assert float(counted["probes_total|confirmed"]) == 1
    assert "deferrals_total|cooldown" not in counted


def test_a_call_cut_off_by_a_workers_death_makes_the_next_run_a_probe(runtime: Runtime) -> None:
    new_request(runtime)
    first = runtime.records.begin("req-1", 5.0, None)
    verdict = runtime.gate.try_start(ORDER, "req-1", 31.0, first.token, call_seconds=0.001)
    assert verdict.verdict == "go" and verdict.started_at is not None
    # The worker dies; its call is over (calling_until passed), its outcome never stored. As
    # if it had started 1 s ago, and Tango had resent 300 ms into it.
    now_ms = redis_ms(runtime.redis)
    runtime.redis.hset(
        runtime.keys.record("req-1"),
        mapping={"calling_until": (now_ms - 5) / 1000, "call_started_at": now_ms - 1000},
    )
    tango = ProbingTango(tango_cooldown(now_ms - 700, now_ms + 5))
    assert executor_with(runtime, tango).run("req-1") == Done(ResendStatus.SENT)
    assert tango.probes == [True], "the probe passes the window its own request holds"
    done = runtime.records.get("req-1")
    assert done is not None and done.confirmed_by == "cooldown"
    assert [e.outcome for e in done.attempt_log] == ["interrupted", "confirmed"]


def test_a_replacement_that_dies_too_keeps_the_earliest_unknown_call(runtime: Runtime) -> None:
    """The gate keeps `call_started_at` of a call nobody stored: a second interrupted run
    still judges from the first call's start."""
    new_request(runtime)
    first = runtime.records.begin("req-1", 5.0, None)
    verdict = runtime.gate.try_start(ORDER, "req-1", 31.0, first.token, call_seconds=0.001)
    assert verdict.started_at is not None
    key = runtime.keys.record("req-1")
    runtime.redis.hset(key, "calling_until", (redis_ms(runtime.redis) - 5) / 1000)
    second = runtime.records.begin("req-1", 5.0, None)
    assert second.interrupted_call_started_at == round(verdict.started_at * 1000) / 1000
    again = runtime.gate.try_start(
        ORDER, "req-1", 31.0, second.token, call_seconds=0.001, probe=True
    )
    assert again.verdict == "go"
    runtime.redis.hset(key, "calling_until", (redis_ms(runtime.redis) - 5) / 1000)
    third = runtime.records.begin("req-1", 5.0, None)
    assert third.interrupted_call_started_at == second.interrupted_call_started_at


def test_a_probe_refused_for_other_reasons_keeps_the_window_and_probes_again(
    runtime: Runtime,
) -> None:
    new_request(runtime)
    tango = ProbingTango(TangoTransientError("ReadTimeout", ambiguous=True))
    assert executor_with(runtime, tango).run("req-1") == Done(ResendStatus.RETRYING)
    record = runtime.records.get("req-1")
    assert record is not None
    record.next_attempt_at = None
    assert runtime.records.save(record, 0)
    tango.answers.append(TangoTransientError("HTTP 500", status=500))
    assert executor_with(runtime, tango).run("req-1") == Done(ResendStatus.RETRYING)
    assert window_of(runtime).holder(ORDER) == "req-1", "a 500 to a probe gives nothing back"
    again = runtime.records.get("req-1")
    assert again is not None and again.unresolved_call_started_at is not None
    counted = {str(k): v for k, v in runtime.redis.hgetall(runtime.keys.metrics).items()}
    assert float(counted["probes_total|inconclusive"]) == 1


def test_an_inconclusive_probe_resends_after_tangos_window_as_before(runtime: Runtime) -> None:
    new_request(runtime)
    tango = ProbingTango(TangoTransientError("ReadTimeout", ambiguous=True))
    executor_with(runtime, tango).run("req-1")
    record = runtime.records.get("req-1")
    assert record is not None and record.unresolved_call_started_at is not None
    started_ms = int(record.unresolved_call_started_at * 1000)
    # Tango's last resend 10 ms *before* our call started: not ours, proves nothing.
    tango.answers.append(tango_cooldown(started_ms - 10, redis_ms(runtime.redis) + 5))
    assert record.unresolved_call_started_at is not None
    record.next_attempt_at = None
    assert runtime.records.save(record, 0)
    assert executor_with(runtime, tango).run("req-1") == Done(ResendStatus.DEFERRED)
    after = runtime.records.get("req-1")
    assert after is not None
    assert after.unresolved_call_started_at is None, "today's path from here"
    assert after.cooldown_deferrals == 0 and after.confirmed_by is None
    assert after.next_attempt_at is not None
    assert after.next_attempt_at - runtime.clock.now() > timedelta(seconds=25)
    assert window_of(runtime).holder(ORDER) == "req-1"
