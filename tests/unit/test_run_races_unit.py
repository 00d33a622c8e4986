"""Races between a run and a cancel (or a replayed script), on real Redis with the executor and
a scripted stand-in for Tango: a cancel never says `cancelled` while a call's outcome is
unknown, never writes back a stale copy of the record, and never loses a run's outcome."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator

import pytest

from tests.support.lost_reply import reply_lost_once
from tests.support.runtime import RuntimeFactory
from tests.support.scripted_tango import (
    CREATED,
    EXECUTOR_SETTINGS,
    ORDER,
    ScriptedTango,
    executor_with,
    new_request,
)
from worker.queueing.scheduler import DueReleaser
from worker.resend import executor as executor_module
from worker.resend.callbacks import OutcomeDeliverer, resend_finished
from worker.resend.executor import Done
from worker.runtime import Runtime
from worker.state.records import AttemptOutcome, ResendRecord, ResendStatus, new_request_id
from worker.tango.client import TangoAnswer
from worker.tango.errors import TangoTransientError


class ProbingTango(ScriptedTango):
    def resend(
        self, order: str, body: dict[str, str], authorization: str, probe: bool = False
    ) -> TangoAnswer:
        return super().resend(order, body, authorization)


def ambiguous_timeout() -> TangoTransientError:
    return TangoTransientError("ReadTimeout: no answer", ambiguous=True)


def outbox(runtime: Runtime) -> list[str]:
    return [str(member) for member in runtime.redis.zrange(runtime.keys.callbacks_due, 0, -1)]


# --- a cancel while a probe is owed ----------------------------------------------------------


def test_a_cancel_after_an_ambiguous_call_answers_in_flight_while_the_probe_is_owed(
    runtime: Runtime,
) -> None:
    """Given a call whose read timed out (Tango may have resent to the new address), when the
    request is cancelled before its probe, then the cancel answers `in_flight`, the request
    keeps waiting for its probe, and no `cancelled` is stored or owed to anyone."""
    new_request(runtime)
    tango = ProbingTango(ambiguous_timeout())
    assert executor_with(runtime, tango).run("req-1") == Done(ResendStatus.RETRYING)

    assert runtime.records.cancel("req-1", 0.0) == "in_flight"

    record = runtime.records.get("req-1")
    assert record is not None and record.status is ResendStatus.RETRYING
    assert record.unresolved_call_started_at is not None
    assert outbox(runtime) == []


def test_a_cancel_after_a_call_cut_off_by_a_workers_death_answers_in_flight(
    runtime: Runtime,
) -> None:
    """Given a call that passed the gate and whose worker died (its `calling_until` is past,
    its outcome never stored), when the request is cancelled, then it answers `in_flight`:
    the replacement's probe is owed first."""
    new_request(runtime)
    tango = ScriptedTango(CREATED)

    def worker_dies() -> None:
        raise SystemExit("SIGKILL")

    tango.during_call = worker_dies
    with pytest.raises(SystemExit):
        executor_with(runtime, tango).run("req-1")
    key = runtime.keys.record("req-1")
    runtime.redis.hset(key, "calling_until", runtime.clock.now().timestamp() - 0.5)

    assert runtime.records.cancel("req-1", 0.0) == "in_flight"
    record = runtime.records.get("req-1")
    assert record is not None and not record.status.is_final


def test_once_the_probe_settles_the_outcome_a_cancel_is_honoured_again(runtime: Runtime) -> None:
    """A probe answered 201 settles it (the first call did not act; this one did): sent. A
    probe that proves nothing and falls back to waiting out the window leaves no probe owed,
    so a cancel then cancels as before."""
    new_request(runtime)
    tango = ProbingTango(ambiguous_timeout(), TangoTransientError("HTTP 500", ambiguous=False))
    assert executor_with(runtime, tango).run("req-1") == Done(ResendStatus.RETRYING)
    assert runtime.records.cancel("req-1", 0.0) == "in_flight"
    record = runtime.records.get("req-1")
    assert record is not None
    record.unresolved_call_started_at = None  # as after an inconclusive probe: today's path
    assert runtime.records.save(record, 0.0)

    assert runtime.records.cancel("req-1", 0.0) == "cancelled"


# --- a cancel never writes back a stale copy --------------------------------------------------


def test_a_cancel_keeps_what_a_run_stored_after_the_cancel_read_the_record(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given a cancel that read the record while a call was under way, when that run stores
    its outcome before the cancel writes, then the cancelled record keeps the run's attempt,
    its attempt log and Tango's request id: the cancel changes status and reason only."""
    new_request(runtime)
    failure = TangoTransientError("HTTP 500", ambiguous=False, status=500)
    failure.request_id = "tango-req-7"
    tango = ScriptedTango(failure)
    store = runtime.records
    write = store._finish_script

    def let_the_run_store_its_outcome_first(*args, **kwargs):  # type: ignore[no-untyped-def]
        # The cancel has read the record and is about to write: the run stores its outcome.
        monkeypatch.setattr(store, "_finish_script", write)
        assert executor_with(runtime, tango).run("req-1") == Done(ResendStatus.RETRYING)
        return write(*args, **kwargs)

    monkeypatch.setattr(store, "_finish_script", let_the_run_store_its_outcome_first)
    assert store.cancel("req-1", 0.0) == "cancelled"

    record = store.get("req-1")
    assert record is not None and record.status is ResendStatus.CANCELLED
    assert record.reason == "cancelled before it was sent"
    assert record.attempts == 1
    assert record.tango_request_ids == ["tango-req-7"]
    assert [entry.outcome for entry in record.attempt_log] == [AttemptOutcome.RETRYING]


# --- start.lua and finish.lua replayed by redis-py after a lost reply -----------------------


def test_a_replayed_start_is_the_same_start_and_the_call_is_made(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given the reply of the script that begins a run and passes the gate lost on the wire,
    when redis-py runs it again, then the run gets the first reply (not `busy` from its own
    call bound), calls Tango once and ends sent; no "interrupted" call is ever logged."""
    request_id = new_request(runtime, new_request_id(ORDER)).id  # names its order: start.lua
    tango = ScriptedTango(CREATED)
    with reply_lost_once(monkeypatch, "start") as lost:
        assert executor_with(runtime, tango).run(request_id) == Done(ResendStatus.SENT)
    assert lost, "the reply was lost and the script replayed"
    assert len(tango.calls) == 1
    record = runtime.records.get(request_id)
    assert record is not None and record.status is ResendStatus.SENT
    assert [entry.outcome for entry in record.attempt_log] == [AttemptOutcome.SENT]


def test_a_replayed_finish_is_done_once_hooks_hear_of_it_and_counts_are_added_once(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given the reply of the script that stores a run's final outcome lost on the wire, when
    redis-py runs it again, then the run still learns it stored the outcome: the in-process
    hook hears of it once, and the run's counts (its call to Tango) are added once."""
    new_request(runtime)
    heard: list[str] = []

    def receiver(sender: object, record: ResendRecord, **_: object) -> None:
        heard.append(record.status.value)

    resend_finished.connect(receiver)
    try:
        with reply_lost_once(monkeypatch, "finish") as lost, runtime.metrics.batch():
            assert executor_with(runtime, ScriptedTango(CREATED)).run("req-1") == Done(
                ResendStatus.SENT
            )
    finally:
        resend_finished.disconnect(receiver)
    assert lost, "the reply was lost and the script replayed"
    assert heard == ["sent"]
    counts = runtime.redis.hgetall(runtime.keys.metrics)
    assert float(counts["tango_calls_total|201"]) == 1.0
    assert float(counts["requests_total|sent"]) == 1.0


def test_a_replayed_save_adds_the_runs_counts_once_and_stores_its_outcome(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given the reply of the script that stores a run's outcome that is not final (a retry
    after Tango's 500) lost on the wire, when redis-py runs it again, then the run learns its
    write was stored and its counts (its call to Tango) are added once, not twice."""
    new_request(runtime)
    failure = TangoTransientError("HTTP 500", ambiguous=False, status=500)
    with reply_lost_once(monkeypatch, "save") as lost, runtime.metrics.batch():
        assert executor_with(runtime, ScriptedTango(failure)).run("req-1") == Done(
            ResendStatus.RETRYING
        )
    assert lost, "the reply was lost and the script replayed"
    counts = runtime.redis.hgetall(runtime.keys.metrics)
    assert float(counts["tango_calls_total|500"]) == 1.0
    record = runtime.records.get("req-1")
    assert record is not None and record.status is ResendStatus.RETRYING
    assert [entry.outcome for entry in record.attempt_log] == [AttemptOutcome.RETRYING]


# --- an unexpected error in a stale run -------------------------------------------------------


class BrokenAuthorization(ScriptedTango):
    """A bug of ours right after the run began: its authorisation raises."""

    def authorization(self) -> str:
        raise RuntimeError("bug")


def test_an_unexpected_error_in_a_stale_run_leaves_the_live_runs_call_alone(
    runtime: Runtime,
) -> None:
    """Given a run that began, hit a bug, and was replaced by a newer run (a redelivery), when
    its task records the failure while the newer run's call is in flight, then nothing is
    stored: the newer run's 201 makes the request sent (it used to be `failed`, and the
    resend Tango made refused)."""
    new_request(runtime)
    stale = executor_with(runtime, BrokenAuthorization())
    with pytest.raises(RuntimeError):
        stale.run("req-1")

    live_tango = ScriptedTango(CREATED)
    live_tango.during_call = lambda: stale.fail_unexpectedly("req-1", RuntimeError("bug"))
    assert executor_with(runtime, live_tango).run("req-1") == Done(ResendStatus.SENT)

    record = runtime.records.get("req-1")
    assert record is not None and record.status is ResendStatus.SENT
    assert record.attempts == 1


def test_an_unexpected_error_before_the_run_began_fails_it_only_when_no_call_is_under_way(
    runtime: Runtime,
) -> None:
    """A bug before the run took the request (no token) fails it only while no call is in
    flight or of unknown outcome, and keeps what runs stored; otherwise the request is left
    to the run that holds it."""
    new_request(runtime)
    live_tango = ScriptedTango(CREATED)
    fresh = executor_with(runtime, ScriptedTango())
    live_tango.during_call = lambda: fresh.fail_unexpectedly("req-1", RuntimeError("bug"))
    assert executor_with(runtime, live_tango).run("req-1") == Done(ResendStatus.SENT)
    record = runtime.records.get("req-1")
    assert record is not None and record.status is ResendStatus.SENT

    new_request(runtime, "req-2")
    executor_with(runtime, ScriptedTango()).fail_unexpectedly("req-2", RuntimeError("bug"))
    record = runtime.records.get("req-2")
    assert record is not None and record.status is ResendStatus.FAILED
    assert record.reason == "internal error: RuntimeError"


# --- the call is bound as a whole -------------------------------------------------------------


def test_a_run_paused_between_the_gate_and_the_send_does_not_send(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given a run that passed the gate and then stalled (a paused VM, a starved process)
    for more than half the gate's bound on its call, when it comes back, then it does not
    send: nothing reaches Tango, the outcome is not ambiguous, the window is given back, and
    the request retries."""
    new_request(runtime)
    tango = ScriptedTango(CREATED)  # its longest call: 1 s
    send = executor_module.call_tango

    def stall_then_send(*args, **kwargs):  # type: ignore[no-untyped-def]
        time.sleep(0.6)
        return send(*args, **kwargs)

    monkeypatch.setattr(executor_module, "call_tango", stall_then_send)
    assert executor_with(runtime, tango).run("req-1") == Done(ResendStatus.RETRYING)

    assert tango.calls == []
    record = runtime.records.get("req-1")
    assert record is not None and record.attempts == 0
    assert record.unresolved_call_started_at is None, "nothing was sent: not ambiguous"
    assert record.error is not None and "not sent" in str(record.error)
    assert runtime.redis.get(runtime.keys.order_window(ORDER)) is None


# --- callbacks are the fleet's, whoever finishes the request --------------------------------

SECRET = "whsec_" + "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3"
NO_WEBHOOK = {"RESULT_WEBHOOK_URL": "", "RESULT_WEBHOOK_SECRET": ""}


class Receiver(http.server.ThreadingHTTPServer):
    """A callback endpoint on loopback that keeps the events it was posted."""

    def __init__(self) -> None:
        self.events: list[dict[str, object]] = []
        events = self.events

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                events.append(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_: object) -> None:
                return

        super().__init__(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}/hook"
        threading.Thread(target=self.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.shutdown()
    server.server_close()


def test_a_cancel_by_an_application_without_the_webhook_settings_still_owes_the_callback(
    make_runtime: RuntimeFactory, receiver: Receiver
) -> None:
    """Given a fleet whose workers deliver outcome callbacks, when an application process
    that has only REDIS_URL (as the README shows) cancels a request, then `resend.cancelled`
    is owed all the same, and the fleet's deliverer posts it."""
    webhook = {"RESULT_WEBHOOK_URL": receiver.url, "RESULT_WEBHOOK_SECRET": SECRET}
    worker = make_runtime(**EXECUTOR_SETTINGS, **webhook)
    assert worker.records is not None  # a worker builds its record store when it starts
    application = make_runtime(**EXECUTOR_SETTINGS, **NO_WEBHOOK)
    new_request(application)

    assert application.records.cancel("req-1", 0.0) == "cancelled"

    assert outbox(application) == ["req-1"]
    assert OutcomeDeliverer(worker).deliver_due()[0] == 1
    assert [event["type"] for event in receiver.events] == ["resend.cancelled"]


def test_without_a_webhook_anywhere_in_the_fleet_no_callback_is_owed(
    make_runtime: RuntimeFactory,
) -> None:
    application = make_runtime(**EXECUTOR_SETTINGS, **NO_WEBHOOK)
    new_request(application)
    assert application.records.cancel("req-1", 0.0) == "cancelled"
    assert outbox(application) == []


# --- a slow OAuth token endpoint ----------------------------------------------------------------


class SlowTokenTango(ScriptedTango):
    """The fleet's OAuth token is being fetched from a slow endpoint: none is at hand, and
    asking for one waits (`while_waiting` runs meanwhile, as the rest of the fleet would)."""

    longest_authorization_wait_seconds = 5.0

    def __init__(self, *answers: TangoAnswer | BaseException) -> None:
        super().__init__(*answers)
        self.while_waiting: list[object] = []
        self.during_wait = lambda: None

    def authorization_at_hand(self) -> str | None:
        return None

    def authorization(self) -> str:
        time.sleep(1.3)
        self.while_waiting.append(self.during_wait())
        return super().authorization()


def test_a_run_waiting_for_a_slow_oauth_token_is_not_released_again_every_lease(
    make_runtime: RuntimeFactory,
) -> None:
    """Given a run that must wait for the fleet's OAuth token longer than a lease, when the
    scheduler looks meanwhile, then it does not release the request again (it used to, once
    per lease, each release one more message): the run took the request for as long as the
    token may take, and then sends once."""
    runtime = make_runtime(**EXECUTOR_SETTINGS, RESEND_LEASE_SECONDS="1")
    request_id = new_request(runtime, new_request_id(ORDER)).id
    releaser = DueReleaser(runtime)
    runtime.redis.zadd(runtime.keys.due_index, {request_id: 0})
    [(claimed, dispatch)], _ = releaser.claim_resends()
    assert claimed == request_id
    tango = SlowTokenTango(CREATED)
    tango.during_wait = lambda: releaser.claim_resends()[0]

    assert executor_with(runtime, tango).run(request_id, dispatch) == Done(ResendStatus.SENT)

    assert tango.while_waiting == [[]], "not released again while the token was awaited"
    assert len(tango.calls) == 1
