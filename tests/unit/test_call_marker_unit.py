"""The order's call marker, on real Redis: written by the gate's Lua step and by each answer,
never released by a cancel, a failure or an error answer, and judged for the refusal proof
(conditions 2 and 4). Includes the marker's side of the review's scenarios in which a naive
refusal proof records `sent` for a resend that never happened."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.support.redis_db import TEST_REDIS_URL
from tests.support.redis_server import RedisServer
from worker.state.call_marker import CallAnswer, CallMarker, MarkerCheck, MarkerVerdict, call_id
from worker.state.gate import CallGate, Verdict
from worker.state.keys import RedisKeys
from worker.state.records import RecordStore, ResendRecord, ResendStatus

KEYS = RedisKeys("marker-test")
ORDER = "RA251206-2701-01"
CALL_SECONDS, STALL_SECONDS = 0.3, 0.4
# Small, so that "a window and a margin before the probe" passes in a test's time.
WINDOW, MARGIN = 0.3, 0.1


@pytest.fixture
def client(redis_client: redis.Redis) -> Iterator[redis.Redis]:
    yield redis.Redis.from_url(TEST_REDIS_URL, decode_responses=True)


@pytest.fixture
def gate(client: redis.Redis) -> CallGate:
    return CallGate(client, KEYS, 0, stall_seconds=STALL_SECONDS, marker_keep_seconds=60)


@pytest.fixture
def records(client: redis.Redis) -> RecordStore:
    return RecordStore(client, KEYS, 60)


@pytest.fixture
def marker(client: redis.Redis) -> CallMarker:
    return CallMarker(client, KEYS, keep_seconds=60)


def run_id(client: redis.Redis) -> str:
    return str(client.info("server")["run_id"])


def age_the_epoch(client: redis.Redis, seconds: float = 600) -> None:
    """This Redis has held every marker for `seconds` (as after a worker's start long ago)."""
    now_ms = int(time.time() * 1000)
    client.hset(
        KEYS.call_marker_epoch, mapping={"run_id": run_id(client), "since": now_ms - 1000 * seconds}
    )


def new_request(client: redis.Redis, request_id: str) -> str:
    store = RecordStore(client, KEYS, 60)
    now = store._clock.now()
    record = ResendRecord(
        id=request_id,
        reference_order_id=ORDER,
        request={"newEmail": f"{request_id}@example.com"},  # not merged into another request
        created_at=now,
        updated_at=now,
    )
    store.create(record, None, 60, lease_seconds=5)
    return record.id


def finish(records: RecordStore, request_id: str, status: ResendStatus) -> None:
    """Store a final outcome: the request leaves its order's queue, the next one may go."""
    record = records.get(request_id)
    assert record is not None
    record.status = status
    records.finish(record, 0.1)


def go(gate: CallGate, request_id: str, probe: bool = False) -> int:
    """Pass the gate (holding the order's window 5 s) and return the call's gate time (ms)."""
    verdict = gate.try_start(ORDER, request_id, 5.0, call_seconds=CALL_SECONDS, probe=probe)
    assert verdict.verdict is Verdict.GO and verdict.started_at is not None
    return round(verdict.started_at * 1000)


def check(probe_gate_ms: int, late: float = CALL_SECONDS + STALL_SECONDS) -> MarkerCheck:
    return MarkerCheck(probe_gate_ms, WINDOW, MARGIN, late)


def bounds(client: redis.Redis) -> dict[str, str]:
    return dict(client.hgetall(KEYS.call_marker(ORDER)))


def test_the_gate_marks_a_call_able_to_act_until_its_bound_plus_the_stall_bound(
    client: redis.Redis, gate: CallGate
) -> None:
    """Given a request at the gate, When it goes, Then in the same step the order's marker
    holds the call, able to act until gate + longest call + stall bound, the Redis's run_id
    beside it, and a TTL; and the fleet's epoch is started."""
    request = new_request(client, "req-a")
    gate_ms = go(gate, request)
    marked = bounds(client)
    assert int(marked[call_id(request, gate_ms)]) == gate_ms + 300 + 400
    assert marked["run_id"] == run_id(client)
    assert client.pttl(KEYS.call_marker(ORDER)) > 60_000
    assert client.hget(KEYS.call_marker_epoch, "run_id") == run_id(client)


def test_an_answer_lowers_the_bound_exempts_a_call_that_never_reached_tango_and_an_unknown_stays(
    client: redis.Redis, gate: CallGate, marker: CallMarker, records: RecordStore
) -> None:
    requests = [new_request(client, f"req-{n}") for n in range(3)]
    gates = []
    for request in requests:
        gates.append(go(gate, request))
        finish(records, request, ResendStatus.FAILED)
        client.delete(KEYS.order_window(ORDER))  # let the next request of the order through
    answered, exempt, unknown = zip(requests, gates, strict=True)
    before = int(time.time() * 1000)
    marker.answered(ORDER, answered[0], answered[1], CallAnswer.ANSWERED)
    marker.answered(ORDER, exempt[0], exempt[1], CallAnswer.EXEMPT)
    marker.answered(ORDER, unknown[0], unknown[1], CallAnswer.UNKNOWN)
    marked = bounds(client)
    assert before - 50 <= int(marked[call_id(*answered)]) <= int(time.time() * 1000) + 50
    assert call_id(*exempt) not in marked
    assert int(marked[call_id(*unknown)]) == unknown[1] + 700
    # An answer never raises a bound, and a call the marker does not hold is not invented.
    marker.answered(ORDER, "req-x", 123, CallAnswer.ANSWERED)
    assert "req-x@123" not in bounds(client)


def test_a_refused_probe_is_clear_when_only_its_own_requests_calls_could_have_acted(
    client: redis.Redis, gate: CallGate, marker: CallMarker
) -> None:
    """Given the fleet's epoch old enough and an earlier request's call answered long before,
    When our request's ambiguous call (outcome unknown) is probed and refused, Then the
    marker is clear: only our own calls could have acted inside Tango's window."""
    age_the_epoch(client)
    client.hset(KEYS.call_marker(ORDER), "old-request@1", int(time.time() * 1000) - 10_000)
    request = new_request(client, "req-ours")
    first = go(gate, request)
    marker.answered(ORDER, request, first, CallAnswer.UNKNOWN)
    probe = go(gate, request, probe=True)
    result = marker.answered(ORDER, request, probe, CallAnswer.ANSWERED, check(probe))
    assert result.verdict is MarkerVerdict.CLEAR, result.detail


def test_an_earlier_request_that_acted_and_got_a_500_is_another_call_that_could_explain_it(
    client: redis.Redis, gate: CallGate, marker: CallMarker, records: RecordStore
) -> None:
    """Review scenario: an earlier request's call acted but got a 500, and its window was
    released; our call then timed out (never reaching Tango) and the probe was refused.
    The 500's call stays in the marker (answered, not released): the refusal proves nothing."""
    age_the_epoch(client)
    earlier = new_request(client, "req-500")
    earlier_gate = go(gate, earlier)
    marker.answered(ORDER, earlier, earlier_gate, CallAnswer.ANSWERED)  # Tango's 500
    client.delete(KEYS.order_window(ORDER))  # the 500 released the window
    finish(records, earlier, ResendStatus.FAILED)
    ours = new_request(client, "req-ours")
    first = go(gate, ours)
    marker.answered(ORDER, ours, first, CallAnswer.UNKNOWN)
    probe = go(gate, ours, probe=True)
    result = marker.answered(ORDER, ours, probe, CallAnswer.ANSWERED, check(probe))
    assert result.verdict is MarkerVerdict.OTHER_CALL
    assert earlier in result.detail


def test_a_cancelled_ambiguous_request_keeps_its_call_possibly_acting_until_its_stall_bound(
    client: redis.Redis, gate: CallGate, marker: CallMarker, records: RecordStore
) -> None:
    """Review scenario: a request's call timed out (outcome unknown) and the request was then
    cancelled; its call may act late. The cancel releases nothing in the marker: a refusal
    of another request's probe within gate + longest call + stall bound proves nothing."""
    age_the_epoch(client)
    cancelled = new_request(client, "req-cancelled")
    its_gate = go(gate, cancelled)
    marker.answered(ORDER, cancelled, its_gate, CallAnswer.UNKNOWN)
    time.sleep(CALL_SECONDS + 0.05)  # past `calling_until`: the cancel is taken
    assert records.cancel(cancelled, 0.1) == "cancelled"
    client.delete(KEYS.order_window(ORDER))
    assert call_id(cancelled, its_gate) in bounds(client)
    ours = new_request(client, "req-ours")
    first = go(gate, ours)
    marker.answered(ORDER, ours, first, CallAnswer.UNKNOWN)
    probe = go(gate, ours, probe=True)
    result = marker.answered(ORDER, ours, probe, CallAnswer.ANSWERED, check(probe))
    assert result.verdict is MarkerVerdict.OTHER_CALL
    assert cancelled in result.detail


def test_a_call_answered_a_window_and_margin_before_the_probe_no_longer_counts(
    client: redis.Redis, gate: CallGate, marker: CallMarker, records: RecordStore
) -> None:
    age_the_epoch(client)
    other = new_request(client, "req-other")
    other_gate = go(gate, other)
    marker.answered(ORDER, other, other_gate, CallAnswer.ANSWERED)
    finish(records, other, ResendStatus.SENT)
    client.delete(KEYS.order_window(ORDER))
    answered_ms = int(bounds(client)[call_id(other, other_gate)])
    ours = new_request(client, "req-ours")
    probe_gate = answered_ms + int(1000 * (WINDOW + MARGIN))
    assert marker.answered(ORDER, ours, None, CallAnswer.ANSWERED, check(probe_gate)).verdict is (
        MarkerVerdict.CLEAR
    )
    assert marker.answered(
        ORDER, ours, None, CallAnswer.ANSWERED, check(probe_gate - 1)
    ).verdict is (MarkerVerdict.OTHER_CALL)


def test_a_restarted_redis_proves_nothing_until_a_call_it_lost_could_no_longer_act(
    tmp_path: Path,
) -> None:
    """Condition 4, with a redis-server of the test's own, restarted from its files (which
    may lose the last writes): the marker's run_id names the old process, so a probe whose
    answer comes after the restart proves nothing; nor does one until a call that passed
    the gate before the restart could no longer act (its start + longest call + stall)."""
    server = RedisServer(tmp_path / "redis").start()
    try:
        client = server.client()
        gate = CallGate(client, KEYS, 0, stall_seconds=STALL_SECONDS, marker_keep_seconds=60)
        ours = new_request(client, "req-ours")
        first = go(gate, ours)
        old_run_id = run_id(client)
        server.restart()
        client = server.client()
        marker = CallMarker(client, KEYS, keep_seconds=60)
        assert run_id(client) != old_run_id
        now_ms = int(time.time() * 1000)
        far = now_ms + 600_000  # a probe long after: only the run_id can defeat it
        result = marker.answered(ORDER, ours, first, CallAnswer.UNKNOWN, check(far))
        assert result.verdict is MarkerVerdict.RESTARTED
        assert "not the one" in result.detail
        # The epoch starts at the restart: a probe whose gate is within a window, a margin,
        # the longest call and the stall bound of it proves nothing, one after it may.
        gate = CallGate(client, KEYS, 0, stall_seconds=STALL_SECONDS, marker_keep_seconds=60)
        probe = go(gate, ours, probe=True)
        since = int(client.hget(KEYS.call_marker_epoch, "since") or 0)
        assert now_ms - 2000 <= since <= now_ms + 10
        reach = int(1000 * (WINDOW + MARGIN + CALL_SECONDS + STALL_SECONDS))
        soon = marker.answered(ORDER, ours, None, CallAnswer.UNKNOWN, check(since + reach - 1))
        assert soon.verdict is MarkerVerdict.RESTARTED
        assert "complete only since" in soon.detail
        later = marker.answered(ORDER, ours, probe, CallAnswer.ANSWERED, check(since + reach))
        assert later.verdict is MarkerVerdict.CLEAR
    finally:
        server.stop()


def test_an_epoch_lost_or_written_by_another_redis_starts_when_this_one_took_over(
    client: redis.Redis, marker: CallMarker
) -> None:
    """The epoch gone (the keyspace lost) or another Redis's: it starts again when this
    process started (whatever it lost, it lost before), never later than now."""
    uptime_ms = 1000 * int(client.info("server")["uptime_in_seconds"])
    for damage in ("gone", "another run_id"):
        if damage == "gone":
            client.delete(KEYS.call_marker_epoch)
        else:
            client.hset(KEYS.call_marker_epoch, mapping={"run_id": "0" * 40, "since": 1})
        before = int(time.time() * 1000)
        marker.open_epoch()
        since = int(client.hget(KEYS.call_marker_epoch, "since") or 0)
        assert before - uptime_ms - 1000 <= since <= before - uptime_ms + 1000
        assert client.hget(KEYS.call_marker_epoch, "run_id") == run_id(client)
        assert client.pttl(KEYS.call_marker_epoch) > 24 * 3600 * 1000
