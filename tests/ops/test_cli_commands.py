"""`tango-resend status|list|history|retry|cancel|enqueue` through click's runner, real Redis.

State is made the way production makes it: a real worker process calls the sandbox (a known
order is sent, an unknown one fails with 404.017), or requests are queued with no worker (they
stay queued). Exit codes: 0 ok, 1 not found, 2 bad input.
"""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from tests.support.cli import CliRun, explain, json_out
from tests.support.processes import WorkerFactory
from tests.support.records import finished
from tests.support.waiting import wait_for
from worker import enqueue_resend, get_resend, retry_resend
from worker.runtime import current_runtime
from worker.sandbox import SandboxControl

pytestmark = pytest.mark.integration

KNOWN = "RA251125-8101-01"
UNKNOWN = "RA251125-8199-01"
OTHER_UNKNOWN = "RA251125-8199-02"
THIRD_UNKNOWN = "RA251125-8199-03"
FLAKY = "RA251125-8301-01"  # a 500, with no retries left
RETRIED = "RA251125-8102-01"  # refused once (400), then sent


def redis_age_seconds(request_id: str) -> float:
    """How long ago (on Redis's clock, the one records use) a request was created."""
    record = get_resend(request_id)
    assert record is not None
    return (current_runtime().clock.now() - record.created_at).total_seconds()


def test_status_list_history_retry_cancel_against_a_worker(
    control: SandboxControl,
    start_worker: WorkerFactory,
    run_cli: CliRun,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    control.add_order(KNOWN)
    worker = start_worker()
    sent_id = enqueue_resend(KNOWN, new_etid="E000123")
    failed_id = enqueue_resend(UNKNOWN)
    wait_for(lambda: finished([sent_id, failed_id]), timeout=15, what="both final")
    worker.stop()  # nothing runs from here on: what a command queues stays queued
    calls = {call["referenceOrderID"]: call for call in control.calls()}

    # status
    shown = run_cli("status", sent_id, "--json")
    assert shown.exit_code == 0, explain(shown)
    record = json_out(shown)
    assert record["id"] == sent_id and record["status"] == "sent"
    assert record["request"] == {"newEtid": "E000123"}
    assert record["tango_request_ids"] == [calls[KNOWN]["requestId"]]
    table = run_cli("status", failed_id)
    assert table.exit_code == 0, explain(table)
    assert re.search(r"^status\s+failed$", table.stdout, re.M)
    assert re.search(rf"^order\s+{UNKNOWN}$", table.stdout, re.M)
    unknown = run_cli("status", "no-such-request")
    assert unknown.exit_code == 1 and "no request" in unknown.stderr
    unknown_json = run_cli("status", "no-such-request", "--json")
    assert unknown_json.exit_code == 1 and unknown_json.stdout == ""

    # list: newest first, filters, limit, a JSON array
    everything = run_cli("list", "--json")
    assert everything.exit_code == 0, explain(everything)
    assert [r["id"] for r in json_out(everything)] == [failed_id, sent_id]
    assert [r["id"] for r in json_out(run_cli("list", "--status", "failed", "--json"))] == [
        failed_id
    ]
    assert [r["id"] for r in json_out(run_cli("list", "--order", KNOWN, "--json"))] == [sent_id]
    assert [r["id"] for r in json_out(run_cli("list", "--limit", "1", "--json"))] == [failed_id]
    assert len(json_out(run_cli("list", "--since", "1h", "--json"))) == 2
    assert json_out(run_cli("list", "--order", KNOWN, "--status", "failed", "--json")) == []
    assert json_out(run_cli("list", "--order", "RA251125-8100-77", "--json")) == []
    monkeypatch.setenv("COLUMNS", "250")  # a wide terminal: rich wraps tables at 80 otherwise
    plain = run_cli("list")
    assert plain.exit_code == 0 and "2 request(s)" in plain.stdout
    assert sent_id in plain.stdout and failed_id in plain.stdout
    for bad in (
        ["--since", "5 parsecs"],
        ["--since", "10"],
        ["--since", "1h30"],
        ["--limit", "0"],
        ["--status", "lost"],
    ):
        refused = run_cli("list", *bad)
        assert refused.exit_code == 2, (bad, explain(refused))

    # history: every attempt with Tango's own request id
    history = run_cli("history", KNOWN, "--json")
    assert history.exit_code == 0, explain(history)
    (sent_record,) = json_out(history)
    (attempt,) = sent_record["attempt_log"]
    assert attempt["outcome"] == "sent" and attempt["status"] == 201
    assert attempt["tango_request_id"] == calls[KNOWN]["requestId"]
    (failed_record,) = json_out(run_cli("history", UNKNOWN, "--json"))
    (attempt,) = failed_record["attempt_log"]
    assert (attempt["outcome"], attempt["status"], attempt["i18n_key"]) == (
        "failed",
        404,
        "404.017",
    )
    assert attempt["tango_request_id"] == calls[UNKNOWN]["requestId"]
    history_table = run_cli("history", UNKNOWN)
    assert history_table.exit_code == 0 and "404.017" in history_table.stdout
    nothing = run_cli("history", "RA251125-8100-77")
    assert nothing.exit_code == 1 and "no requests" in nothing.stderr

    # retry: a failed request again, linked to it; a sent one is refused; unknown is 1
    retried = run_cli("retry", failed_id, "--json")
    assert retried.exit_code == 0, explain(retried)
    (pair,) = json_out(retried)
    assert pair["retried"] == failed_id and pair["id"] not in (failed_id, sent_id)
    new = json_out(run_cli("status", pair["id"], "--json"))
    assert (new["retry_of"], new["status"], new["reference_order_id"]) == (
        failed_id,
        "queued",
        UNKNOWN,
    )
    assert (r := run_cli("retry", sent_id)).exit_code == 2 and "not failed" in r.stderr
    assert (r := run_cli("retry", "no-such-request")).exit_code == 1, explain(r)
    assert (r := run_cli("retry")).exit_code == 2, explain(r)
    assert (r := run_cli("retry", failed_id, "--all-failed")).exit_code == 2, explain(r)
    assert get_resend(failed_id).status.value == "failed"  # type: ignore[union-attr]

    # cancel: too late for a final request (2); the queued retry can still be cancelled
    too_late = run_cli("cancel", sent_id, "--json")
    assert too_late.exit_code == 2 and json_out(too_late) == {
        "id": sent_id,
        "result": "sent",
        "callers": 1,
    }
    assert "already sent" in too_late.stderr
    cancelled = run_cli("cancel", pair["id"])
    assert cancelled.exit_code == 0 and cancelled.stdout.strip() == "cancelled"
    assert json_out(run_cli("list", "--status", "cancelled", "--json"))[0]["id"] == pair["id"]


def test_retry_all_failed_honours_since_and_never_duplicates(
    start_worker: WorkerFactory, run_cli: CliRun
) -> None:
    worker = start_worker()
    older = enqueue_resend(OTHER_UNKNOWN)
    wait_for(lambda: finished([older]), timeout=10, what="the older failure")
    wait_for(lambda: redis_age_seconds(older) > 1.0, timeout=5, what="the older one to age")
    newer = enqueue_resend(UNKNOWN)
    wait_for(lambda: finished([newer]), timeout=10, what="the newer failure")
    worker.stop()

    # A cut-off between the two: the newer one is younger, the older one over a second older.
    since = f"{redis_age_seconds(newer) + 0.5:.2f}s"
    assert redis_age_seconds(older) > redis_age_seconds(newer) + 1.0
    recent = run_cli("retry", "--all-failed", "--include-permanent", "--since", since, "--json")
    assert recent.exit_code == 0, explain(recent)
    (pair,) = json_out(recent)
    assert (pair["retried"], pair["already_retried"]) == (newer, False)
    retry_of_newer = pair["id"]
    assert get_resend(retry_of_newer).retry_of == newer  # type: ignore[union-attr]

    every = run_cli("retry", "--all-failed", "--include-permanent")
    assert every.exit_code == 0, explain(every)
    lines = every.stdout.splitlines()
    assert lines[-1] == "1 failed request(s) queued again, 1 already retried"
    mapping = dict(line.split(" -> ") for line in lines[:-1])
    assert set(mapping) == {older, newer}
    # The newer one was retried already: its retry is named, nothing new is queued for it.
    assert mapping[newer] == f"{retry_of_newer} (already retried)"
    assert get_resend(mapping[older]).retry_of == older  # type: ignore[union-attr]
    queued = json_out(run_cli("list", "--status", "queued", "--json"))
    assert sorted(r["id"] for r in queued) == sorted([retry_of_newer, mapping[older]])

    none_failed = run_cli(
        "retry", "--all-failed", "--include-permanent", "--since", "0.001s", "--json"
    )
    assert none_failed.exit_code == 0 and json_out(none_failed) == []


def test_retrying_a_failed_request_again_and_again_calls_tango_once_more(
    control: SandboxControl, start_worker: WorkerFactory, run_cli: CliRun
) -> None:
    """Given a failed request, retries from four threads at once, again after the retry was
    sent, twice by id and twice with --all-failed from the CLI all name one retry: Tango
    sees exactly one call more (one order used to get three 201s this way)."""
    control.add_order(RETRIED)
    control.inject_fault(RETRIED, status=400)  # a permanent refusal, once
    start_worker()
    failed_id = enqueue_resend(RETRIED, new_etid="E000456")
    wait_for(lambda: finished([failed_id]), timeout=10, what="the failure")
    assert get_resend(failed_id).status.value == "failed"  # type: ignore[union-attr]

    with ThreadPoolExecutor(max_workers=4) as pool:
        racing = list(pool.map(lambda _: retry_resend(failed_id), range(4)))
    retry_id = racing[0].request_id
    assert {s.request_id for s in racing} == {retry_id}
    assert sorted(s.outcome for s in racing) == ["created"] + ["idempotent"] * 3
    wait_for(lambda: finished([retry_id]), timeout=10, what="the retry sent")
    assert get_resend(retry_id).status.value == "sent"  # type: ignore[union-attr]

    again = retry_resend(failed_id)
    assert (again.request_id, again.outcome) == (retry_id, "idempotent")
    for _ in range(2):
        by_id = run_cli("retry", failed_id)
        assert by_id.exit_code == 0, explain(by_id)
        assert by_id.stdout.strip() == f"{failed_id} -> {retry_id} (already retried)"
    as_json = json_out(run_cli("retry", failed_id, "--json"))
    assert as_json == [
        {"retried": failed_id, "id": retry_id, "already_retried": True, "recent": False}
    ]
    for _ in range(2):
        every = run_cli("retry", "--all-failed", "--include-permanent")
        assert every.exit_code == 0, explain(every)
        assert every.stdout.splitlines() == [
            f"{failed_id} -> {retry_id} (already retried)",
            "0 failed request(s) queued again, 1 already retried",
        ]

    # Nothing else exists for the order, so nothing else can reach Tango.
    assert [r["id"] for r in json_out(run_cli("list", "--order", RETRIED, "--json"))] == [
        retry_id,
        failed_id,
    ]
    calls = [c for c in control.calls() if c["referenceOrderID"] == RETRIED]
    assert [(c["status"], c["body"]) for c in calls] == [
        (400, {"newEtid": "E000456"}),
        (201, {"newEtid": "E000456"}),
    ]


def test_retry_all_failed_skips_permanent_failures_unless_asked(
    control: SandboxControl, start_worker: WorkerFactory, run_cli: CliRun
) -> None:
    """Given one request Tango refused for good (404 unknown order) and one that failed for
    a reason a retry can change (a 500 with no retries left); Then `retry --all-failed`
    queues only the second and names the first as skipped; `--include-permanent` takes it."""
    control.add_order(FLAKY)
    control.inject_fault(FLAKY, status=500)
    worker = start_worker(RESEND_MAX_RETRIES="0")
    unknown, flaky = enqueue_resend(THIRD_UNKNOWN), enqueue_resend(FLAKY)
    wait_for(lambda: finished([unknown, flaky]), timeout=15, what="both failures")
    worker.stop()

    default = run_cli("retry", "--all-failed")
    assert default.exit_code == 0, explain(default)
    lines = default.stdout.splitlines()
    assert lines[0].startswith(f"{unknown} skipped: failed permanently (Tango refused")
    assert lines[1].startswith(f"{flaky} -> ")
    assert lines[-1] == (
        "1 failed request(s) queued again, 0 already retried, 1 permanent failure(s) skipped "
        "(--include-permanent retries them)"
    )

    everything = json_out(run_cli("retry", "--all-failed", "--include-permanent", "--json"))
    assert {(pair["retried"], pair["already_retried"]) for pair in everything} == {
        (unknown, False),
        (flaky, True),
    }


def test_cancel_exit_codes_and_json_without_a_worker(
    settings_env: dict[str, str], run_cli: CliRun, redis_client: redis.Redis
) -> None:
    queued = enqueue_resend(KNOWN)
    assert json_out(run_cli("status", queued, "--json"))["status"] == "queued"

    first = run_cli("cancel", queued, "--json")
    assert first.exit_code == 0, explain(first)
    assert json_out(first) == {"id": queued, "result": "cancelled", "callers": 1}
    again = run_cli("cancel", queued)
    assert again.exit_code == 0 and again.stdout.strip() == "cancelled", "idempotent"
    assert json_out(run_cli("status", queued, "--json"))["status"] == "cancelled"

    unknown = run_cli("cancel", "no-such-request", "--json")
    assert unknown.exit_code == 1
    assert json_out(unknown) == {"id": "no-such-request", "result": "unknown", "callers": 0}
    assert "no request" in unknown.stderr

    # A request whose call to Tango is under way can no longer be cancelled.
    busy = enqueue_resend(KNOWN, new_etid="E000777")
    keys = current_runtime().keys
    redis_client.hset(keys.record(busy), "calling_until", str(time.time() + 60))
    in_flight = run_cli("cancel", busy)
    assert in_flight.exit_code == 2 and "under way" in in_flight.stderr
    assert json_out(run_cli("status", busy, "--json"))["status"] == "in_flight", (
        "one name: what cancel says"
    )


def test_enqueue_one_and_its_bad_input(
    settings_env: dict[str, str], run_cli: CliRun, redis_client: redis.Redis
) -> None:
    queued = run_cli("enqueue", KNOWN, "--email", "pat@example.com", "--key", "ticket-1")
    assert queued.exit_code == 0, explain(queued)
    request_id = queued.stdout.strip()
    assert json_out(run_cli("status", request_id, "--json"))["request"] == {
        "newEmail": "pat@example.com"
    }
    same_key = run_cli("enqueue", KNOWN, "--email", "pat@example.com", "--key", "ticket-1")
    assert same_key.stdout.strip() == f"{request_id} idempotent", "the id, and one word"
    as_json = run_cli("enqueue", KNOWN, "--email", "pat@example.com", "--key", "ticket-1", "--json")
    assert json_out(as_json) == {"id": request_id, "outcome": "idempotent"}
    merged = run_cli("enqueue", KNOWN, "--email", "pat@example.com", "--json")
    assert json_out(merged) == {"id": request_id, "outcome": "merged"}
    created = json_out(run_cli("enqueue", KNOWN, "--email", "sam@example.com", "--json"))
    assert created["outcome"] == "created" and created["id"] != request_id

    keys_before = set(redis_client.keys("*"))
    bad = run_cli("enqueue", "RA-nope", "--email", "not-an-email", "--etid", "X1")
    assert bad.exit_code == 2
    for field in ("referenceOrderID", "newEmail", "newEtid"):
        assert field in bad.stderr
    assert "not-an-email" not in bad.stderr, "values are not echoed"
    assert run_cli("enqueue").exit_code == 2
    assert run_cli("enqueue", KNOWN, "--orders-between", "2025-01-01", "2025-02-01").exit_code == 2
    assert set(redis_client.keys("*")) == keys_before, "refused input stores nothing"


def test_a_bad_setting_exits_2_naming_it(
    settings_env: dict[str, str], run_cli: CliRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TANGO_RATE_LIMIT", "-1")
    for command in (["status", "x"], ["list"], ["cancel", "x"], ["history", KNOWN]):
        result = run_cli(*command)
        assert result.exit_code == 2, explain(result)
        assert "TANGO_RATE_LIMIT" in result.stderr


def test_status_of_an_order_id_points_to_history(
    settings_env: dict[str, str], run_cli: CliRun
) -> None:
    result = run_cli("status", KNOWN)
    assert result.exit_code == 1
    assert f"tango-resend history {KNOWN}" in result.stderr, result.stderr
