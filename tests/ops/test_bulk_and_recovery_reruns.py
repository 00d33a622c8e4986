"""Bulk files and incident recovery under failure (reruns queue only what is missing), and
metrics that must not drift: through the CLI in-process, against Redis and the sandbox."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.support.broker import producer_broker
from tests.support.cli import CliRun, explain, json_out
from tests.support.redis_db import TEST_REDIS_URL
from tests.support.redis_server import RedisServer
from worker.cli import bulk
from worker.core.settings import reset_settings_cache
from worker.queueing.app import app as celery_app
from worker.resend.producer import EnqueueError, submit_many, submit_resend
from worker.runtime import current_runtime
from worker.sandbox import SandboxControl
from worker.state.records import PROMOTE_MARGIN_SECONDS, RecordStore, ResendStatus
from worker.tango.client import TangoAnswer, TangoClient
from worker.tango.errors import TangoTransientError

pytestmark = pytest.mark.integration

HEADER = "referenceOrderID,newEmail"
ROWS = 100
STOP_AT = 50


def rows_file(path: Path) -> Path:
    lines = [HEADER] + [f"RA251125-{7000 + n}-01,user{n}@example.com" for n in range(1, ROWS + 1)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def mark_all_sent() -> int:
    """Every queued request finished as sent (what workers would have done)."""
    runtime = current_runtime()
    ids = [str(i) for i in runtime.redis.zrange(runtime.keys.requests_by_time, 0, -1)]
    for record in runtime.records.get_many(ids):
        if not record.status.is_final:
            record.status, record.sent_at = ResendStatus.SENT, runtime.clock.now()
            assert runtime.records.finish(record, PROMOTE_MARGIN_SECONDS)
    return len(ids)


def test_a_file_stopped_by_redis_says_where_and_a_rerun_queues_only_the_rest(
    settings_env: dict[str, str], run_cli: CliRun, tmp_path: Path
) -> None:
    """Redis fails at row 50: exit 3 with a summary (49 queued, stopped at row 50). The rows
    before it are sent; the same file run again queues rows 50-100 only, no second resend."""
    csv_file = rows_file(tmp_path / "rows.csv")
    calls = {"n": 0}

    def failing_at_row(requests: list[Any], **options: Any) -> list[Any]:
        """The rows before STOP_AT are stored; from it on, Redis fails."""
        first = calls["n"] + 1
        calls["n"] += len(requests)
        stored = max(0, min(len(requests), STOP_AT - first))
        error = EnqueueError("could not store the request: Connection refused")
        return submit_many(requests[:stored], **options) + [error] * (len(requests) - stored)

    patch = pytest.MonkeyPatch()
    patch.setattr("worker.cli.bulk.submit_many", failing_at_row)
    first = run_cli("enqueue", "--file", str(csv_file), "--json")
    assert first.exit_code == 3, explain(first)
    summary = json_out(first)
    assert summary["accepted"] == STOP_AT - 1
    assert summary["stopped"]["row"] == STOP_AT and summary["stopped"]["reason"] == "redis"
    assert len(summary["requests"]) == STOP_AT - 1

    calls["n"] = 0
    text = run_cli("enqueue", "--file", str(csv_file))  # the text form: one line, exit 3
    assert text.exit_code == 3, explain(text)
    assert text.stdout.startswith("0 queued, 0 coalesced into pending requests, 49 already")
    assert "Redis is unavailable" in text.stderr and "stopped at row 50" in text.stderr
    assert len(text.stderr.strip().splitlines()) == 1
    patch.undo()

    assert mark_all_sent() == STOP_AT - 1
    again = run_cli("enqueue", "--file", str(csv_file), "--json")
    assert again.exit_code == 0, explain(again)
    rerun = json_out(again)
    assert rerun["accepted"] == ROWS - STOP_AT + 1 and rerun["already_queued"] == STOP_AT - 1
    assert "stopped" not in rerun
    runtime = current_runtime()
    assert runtime.redis.zcard(runtime.keys.requests_by_time) == ROWS, "no row queued twice"


PER_ROUND_TRIP = 10


@pytest.mark.parametrize("moment", ["before", "during"])
def test_redis_going_away_mid_file_stops_where_and_a_rerun_queues_the_rest(
    run_cli: CliRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, moment: str
) -> None:
    """A redis-server of the test's own stops at the third round trip of 10 rows: `before`
    it is sent (nothing of it stored), or `during` it (it ran, its reply was lost). The run
    stops at row 21 with exit 3 and says so; once Redis is back, the same file queues the
    rest, and the rows the lost round trip did store are found already queued."""
    # Celery reads its configuration once per process: read it now, from the tests' Redis,
    # so that `producer_broker` gives it back to the tests that follow (not this server's).
    monkeypatch.setenv("REDIS_URL", TEST_REDIS_URL)
    reset_settings_cache()
    assert celery_app.conf.broker_url
    server = RedisServer(tmp_path / "redis").start()
    try:
        env = {"REDIS_URL": server.url(0), "REDIS_KEY_PREFIX": "cut", "RESEND_QUEUE": "cut-q"}
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setattr(bulk, "ROWS_PER_ROUND_TRIP", PER_ROUND_TRIP)
        csv_file = rows_file(tmp_path / "rows.csv")
        original = RecordStore.create_many
        round_trips = {"n": 0}

        def redis_goes_away(store: RecordStore, requests: Any) -> Any:
            round_trips["n"] += 1
            if round_trips["n"] < 3:
                return original(store, requests)
            if moment == "before":
                server.stop()
                return original(store, requests)
            original(store, requests)
            server.stop()
            raise redis.ConnectionError("Connection closed by server.")

        with producer_broker(), monkeypatch.context() as cut:
            cut.setattr(RecordStore, "create_many", redis_goes_away)
            first = run_cli("enqueue", "--file", str(csv_file), "--json")
        assert first.exit_code == 3, explain(first)
        summary = json_out(first)
        queued = 2 * PER_ROUND_TRIP
        assert summary["accepted"] == queued and len(summary["requests"]) == queued
        assert summary["stopped"]["row"] == queued + 1, summary["stopped"]
        assert summary["stopped"]["reason"] == "redis"

        server.start()
        with producer_broker():
            again = run_cli("enqueue", "--file", str(csv_file), "--json")
        assert again.exit_code == 0, explain(again)
        rerun = json_out(again)
        stored = queued + (PER_ROUND_TRIP if moment == "during" else 0)
        assert (rerun["accepted"], rerun["already_queued"]) == (ROWS - stored, stored)
        runtime = current_runtime()
        assert runtime.redis.zcard(runtime.keys.requests_by_time) == ROWS, "each row once"
        assert runtime.redis.llen("cut-q") == ROWS, "one task message per request"
    finally:
        server.stop()


def test_a_row_redis_refuses_stops_the_file_there_without_losing_the_rows_after_it(
    settings_env: dict[str, str],
    run_cli: CliRun,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Row 25's create script fails alone (its order's pending hash is a string: WRONGTYPE),
    in the middle of a round trip of 10: the run stops at row 25 and counts the 24 before
    it; rows 26-30, in the same round trip, were stored all the same, and the rerun (once
    the key is repaired) finds them already queued and queues row 25 and the rest."""
    monkeypatch.setattr(bulk, "ROWS_PER_ROUND_TRIP", PER_ROUND_TRIP)
    csv_file = rows_file(tmp_path / "rows.csv")
    runtime = current_runtime()
    broken = runtime.keys.order_pending("RA251125-7025-01")
    runtime.redis.set(broken, "not a hash")

    first = run_cli("enqueue", "--file", str(csv_file), "--json")
    assert first.exit_code == 3, explain(first)
    summary = json_out(first)
    assert summary["accepted"] == 24
    assert summary["stopped"]["row"] == 25 and "WRONGTYPE" in summary["stopped"]["error"]
    runtime = current_runtime()
    assert runtime.redis.zcard(runtime.keys.requests_by_time) == 29, "rows 26-30 stored"

    runtime.redis.delete(broken)
    again = run_cli("enqueue", "--file", str(csv_file), "--json")
    assert again.exit_code == 0, explain(again)
    rerun = json_out(again)
    assert (rerun["accepted"], rerun["already_queued"]) == (ROWS - 29, 29)
    runtime = current_runtime()
    assert runtime.redis.zcard(runtime.keys.requests_by_time) == ROWS, "each row once"


def test_a_batch_id_keys_rows_on_it_instead_of_the_content(
    settings_env: dict[str, str], run_cli: CliRun, tmp_path: Path
) -> None:
    csv_file = rows_file(tmp_path / "rows.csv")
    first = run_cli("enqueue", "--file", str(csv_file), "--batch-id", "incident-42", "--json")
    assert first.exit_code == 0, explain(first)
    mark_all_sent()
    # The file edited (a row appended): with the same batch id only the new row is queued.
    with csv_file.open("a", encoding="utf-8") as handle:
        handle.write("RA251125-7999-01,late@example.com\n")
    again = run_cli("enqueue", "--file", str(csv_file), "--batch-id", "incident-42", "--json")
    rerun = json_out(again)
    assert rerun["accepted"] == 1 and rerun["already_queued"] == ROWS, explain(again)


def test_a_file_changed_between_the_reads_is_reported_not_a_traceback(
    settings_env: dict[str, str],
    run_cli: CliRun,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A row turns invalid after the validation pass: the version first read is queued
    whole, the change is reported, exit 2."""
    csv_file = rows_file(tmp_path / "rows.csv")
    import worker.cli.bulk as bulk

    original = bulk.validate_resend
    seen = {"n": 0}

    def validate_then_change(fields: dict[str, str]) -> Any:
        seen["n"] += 1
        if seen["n"] == ROWS:  # the last row of the validation pass: change the file
            csv_file.write_text(HEADER + "\nRA-broken,nobody\n", encoding="utf-8")
        return original(fields)

    monkeypatch.setattr(bulk, "validate_resend", validate_then_change)
    result = run_cli("enqueue", "--file", str(csv_file), "--json")
    assert result.exit_code == 2, explain(result)
    summary = json_out(result)
    assert summary["accepted"] == ROWS and summary["rejected_total"] == 0
    assert "changed while it was being read" in summary["file_changed"]


def test_rejected_rows_are_kept_in_full_up_to_a_bound(
    settings_env: dict[str, str], run_cli: CliRun, tmp_path: Path
) -> None:
    csv_file = tmp_path / "bad.csv"
    csv_file.write_text(HEADER + "\n" + "RA-bad,x\n" * 3000, encoding="utf-8")
    result = run_cli("enqueue", "--file", str(csv_file), "--dry-run", "--json")
    assert result.exit_code == 2, explain(result)
    summary = json_out(result)
    assert summary["rejected_total"] == 3000 and len(summary["rejected"]) == 1000


# --- incident recovery --------------------------------------------------------------------

START = datetime(2025, 3, 1, 10, 0, tzinfo=UTC)


def seed_orders(control: SandboxControl, count: int) -> set[str]:
    orders = set()
    for n in range(count):
        order = f"RA250301-{8000 + n}-01"
        at = (START + timedelta(hours=1 + n)).isoformat().replace("+00:00", "Z")
        control.add_order(order, created_at=at, customer_identifier="cust-17")
        orders.add(order)
    return orders


def test_recovery_skips_orders_already_recovered_however_the_range_is_spelled(
    control: SandboxControl, settings_env: dict[str, str], run_cli: CliRun
) -> None:
    """The same instants written with another offset, and a wider overlapping range, queue
    nothing for orders whose recovery resend is pending or sent."""
    orders = seed_orders(control, 5)
    first = run_cli(
        "enqueue", "--orders-between", "2025-03-01T10:00:00Z", "2025-03-02T10:00:00Z", "--json"
    )
    assert first.exit_code == 0, explain(first)
    assert json_out(first)["accepted"] == len(orders)
    mark_all_sent()

    for start, end in [
        ("2025-03-01T11:00:00+01:00", "2025-03-02T11:00:00+01:00"),  # the same instants
        ("2025-02-28T00:00:00Z", "2025-03-03T00:00:00Z"),  # wider, overlapping
    ]:
        again = run_cli("enqueue", "--orders-between", start, end, "--json")
        assert again.exit_code == 0, explain(again)
        summary = json_out(again)
        assert summary["accepted"] == 0 and summary["already_queued"] == len(orders), summary
    runtime = current_runtime()
    assert runtime.redis.zcard(runtime.keys.requests_by_time) == len(orders)


def test_recovery_queues_again_an_order_whose_recovery_failed(
    control: SandboxControl, settings_env: dict[str, str], run_cli: CliRun
) -> None:
    seed_orders(control, 1)
    args = ("enqueue", "--orders-between", "2025-03-01T10:00:00Z", "2025-03-02T10:00:00Z")
    assert run_cli(*args).exit_code == 0
    runtime = current_runtime()
    (request_id,) = [str(i) for i in runtime.redis.zrange(runtime.keys.requests_by_time, 0, -1)]
    record = runtime.records.get(request_id)
    assert record is not None
    record.status, record.reason = ResendStatus.FAILED, "refused"
    assert runtime.records.finish(record, PROMOTE_MARGIN_SECONDS)
    again = run_cli(*args, "--json")
    assert json_out(again)["accepted"] == 1, explain(again)
    mark_all_sent()
    third = run_cli(*args, "--json")
    assert json_out(third)["already_queued"] == 1, explain(third)


def test_a_tango_error_while_paging_gives_one_line_a_summary_and_exit_4(
    control: SandboxControl,
    settings_env: dict[str, str],
    run_cli: CliRun,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seed_orders(control, 3)
    original = TangoClient.list_orders
    pages = {"n": 0}

    def second_page_fails(self: TangoClient, params: dict[str, Any], **kw: Any) -> TangoAnswer:
        pages["n"] += 1
        if pages["n"] > 1:
            raise TangoTransientError("HTTP 503 Service Unavailable", status=503)
        return original(self, params, **kw)

    monkeypatch.setattr(TangoClient, "list_orders", second_page_fails)
    # A range over 100 days: two listing calls, the second fails.
    args = ("enqueue", "--orders-between", "2025-03-01T10:00:00Z", "2025-07-01T10:00:00Z")
    result = run_cli(*args)
    assert result.exit_code == 4, explain(result)
    assert "Traceback" not in result.output
    assert result.stdout.startswith("3 queued"), explain(result)
    assert "Tango failed while listing orders" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1

    pages["n"] = 0
    as_json = run_cli(*args, "--json")
    assert as_json.exit_code == 4
    summary = json_out(as_json)
    assert summary["stopped"]["reason"] == "tango" and summary["already_queued"] == 3


# --- metrics ------------------------------------------------------------------------------


def test_a_replay_is_a_redelivery_not_a_coalesced_request(
    settings_env: dict[str, str], redis_client: redis.Redis
) -> None:
    fields = {"referenceOrderID": "RA251125-7501-01"}
    first = submit_resend(fields, idempotency_key="msg_replayed")
    replay = submit_resend(fields, idempotency_key="msg_replayed")
    assert replay.request_id == first.request_id and replay.outcome == "idempotent"
    runtime = current_runtime()
    counted = runtime.redis.hgetall(runtime.keys.metrics)
    assert counted.get("redeliveries_total|") == "1"
    assert "requests_total|coalesced" not in counted
