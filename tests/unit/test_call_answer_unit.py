"""What a call's answer says of when it could have acted, for the order's call marker: built
through the client's own error mapping, so that every status and failure is read as the
worker reads it."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import redis
import requests
from urllib3.exceptions import NewConnectionError

from worker.resend.run.call import call_answer, note_call_answer
from worker.runtime import Runtime
from worker.state.call_marker import CallAnswer, MarkerCheck, MarkerVerdict
from worker.state.records import ResendRecord
from worker.tango.client import TangoAnswer
from worker.tango.error_mapping import error_for_exception, error_for_response


def answered_with(status: int, i18n_key: str = "", message: str = "no") -> CallAnswer:
    body = json.dumps({"httpCode": status, "i18nKey": i18n_key, "message": message})
    error = error_for_response(status, {}, body)
    assert error is not None
    return call_answer(error)


def test_a_201_ends_the_calls_chance_to_act() -> None:
    answer = TangoAnswer(
        status=201, body={"id": 1}, request_id="r", tango_time=None, elapsed_seconds=0.1
    )
    assert call_answer(answer) is CallAnswer.ANSWERED


@pytest.mark.parametrize(
    ("status", "key"),
    [(403, "403.005"), (400, "400.001"), (404, "404.017"), (500, "500.006"), (503, ""), (408, "")],
)
def test_tangos_own_answers_end_it_and_are_never_released(status: int, key: str) -> None:
    """A 4xx or 5xx from Tango (a 500 after it acted, say) is an answer: the call could act
    until then, and stays in the marker that long."""
    assert answered_with(status, key) is CallAnswer.ANSWERED


@pytest.mark.parametrize("status", [401, 429])
def test_a_401_or_429_never_reached_a_resend(status: int) -> None:
    assert answered_with(status) is CallAnswer.EXEMPT


@pytest.mark.parametrize("status", [502, 504])
def test_a_gateways_502_or_504_leaves_tango_possibly_still_working(status: int) -> None:
    assert answered_with(status) is CallAnswer.UNKNOWN


def test_a_read_timeout_or_reset_is_unknown_and_a_connection_never_made_is_exempt() -> None:
    assert call_answer(error_for_exception(requests.ReadTimeout("slow"))) is CallAnswer.UNKNOWN
    reset = requests.ConnectionError("Connection reset by peer")
    assert call_answer(error_for_exception(reset)) is CallAnswer.UNKNOWN
    refused = requests.ConnectionError(
        type("Cause", (), {"reason": NewConnectionError(None, "refused")})()  # type: ignore[arg-type]
    )
    assert call_answer(error_for_exception(refused)) is CallAnswer.EXEMPT
    assert call_answer(error_for_exception(requests.ConnectTimeout("no"))) is CallAnswer.EXEMPT


def test_redis_failing_on_the_marker_costs_no_answer_and_proves_nothing(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The marker's write after a call fails (Redis unreachable): the run carries on to store
    the answer, the refusal proof's check counts as not clear, and the gate's bound stays."""

    def unreachable(*args: object, **kwargs: object) -> None:
        raise redis.ConnectionError("down")

    monkeypatch.setattr(runtime.call_marker, "answered", unreachable)
    now = datetime.now(UTC)
    record = ResendRecord(
        id="req-1", reference_order_id="RA251206-2720-01", created_at=now, updated_at=now
    )
    check = MarkerCheck(1, 30.0, 2.0, 13.0)
    answer = TangoAnswer(
        status=201, body=None, request_id=None, tango_time=None, elapsed_seconds=0.1
    )
    result = note_call_answer(runtime, record, 1, answer, check)
    assert result.verdict is MarkerVerdict.NOT_ASKED
    assert "ConnectionError" in result.detail
