"""What a new user hit in the CLI (issue 11): Redis down, id prefixes, waiting requests,
one time format, order ids, bulk exit codes, and processes that say what they wait for."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from tests.support.cli import CliRun, explain, json_out
from tests.support.processes import LoggedProcess, WebProcess, free_port
from tests.support.redis_db import unreachable_redis_url
from tests.support.settings import apply_settings
from tests.support.waiting import wait_for
from worker import enqueue_resend
from worker.runtime import current_runtime
from worker.state.records import ResendRecord

ORDER = "RA251125-1301-01"


@pytest.fixture
def redis_down(monkeypatch: pytest.MonkeyPatch) -> str:
    url = unreachable_redis_url()
    apply_settings({"REDIS_URL": url}, monkeypatch.setenv)
    return url


@pytest.mark.parametrize(
    "args",
    [
        ["status", "5f0c2a8e-0000-4000-8000-000000000000"],
        ["status", "5f0c2a8e", "--json"],
        ["list"],
        ["list", "--json"],
        ["history", ORDER],
        ["cancel", "5f0c2a8e-0000-4000-8000-000000000000", "--json"],
        ["retry", "5f0c2a8e-0000-4000-8000-000000000000"],
        ["retry", "--all-failed"],
        ["enqueue", ORDER],
    ],
    ids=lambda args: " ".join(args),
)
def test_commands_exit_3_with_one_line_when_redis_is_down(
    redis_down: str, run_cli: CliRun, args: list[str]
) -> None:
    """Given no Redis, each command prints one line naming the problem and exits 3 (not 1,
    which means "not found"), with no traceback."""
    result = run_cli(*args)
    assert result.exit_code == 3, explain(result)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Redis is unavailable" in lines[0], result.stderr
    assert "Traceback" not in result.output


def store(request_id: str, order: str = ORDER) -> None:
    now = datetime.now(UTC)
    record = ResendRecord(id=request_id, reference_order_id=order, created_at=now, updated_at=now)
    current_runtime().records.create(record, None, 60, lease_seconds=600)


def test_any_unique_prefix_of_8_characters_names_a_request(
    settings_env: dict[str, str], run_cli: CliRun
) -> None:
    request_id = enqueue_resend(ORDER)
    short = request_id[:8]  # what the demo prints

    shown = run_cli("status", short, "--json")
    assert shown.exit_code == 0, explain(shown)
    assert json_out(shown)["id"] == request_id
    assert run_cli("status", request_id[:12]).exit_code == 0
    assert run_cli("status", request_id[:7]).exit_code == 1, "fewer than 8: not a prefix"
    cancelled = run_cli("cancel", short, "--json")
    assert json_out(cancelled) == {"id": request_id, "result": "cancelled"}
    assert run_cli("retry", short).exit_code == 2, "known, but not failed"


def test_an_ambiguous_prefix_exits_2_and_says_so(
    settings_env: dict[str, str], run_cli: CliRun
) -> None:
    store("abcdef12-0000-4000-8000-000000000001", "RA251125-1301-02")
    store("abcdef12-0000-4000-8000-000000000002", "RA251125-1301-03")
    for command in ("status", "cancel", "retry"):
        result = run_cli(command, "abcdef12")
        assert result.exit_code == 2, explain(result)
        assert "matches 2 requests" in result.stderr
    unique = run_cli("status", "abcdef12-0000-4000-8000-0000000000", "--json")
    assert unique.exit_code == 2
    assert run_cli("status", "abcdef12-0000-4000-8000-000000000002").exit_code == 0
    assert run_cli("status", "abcdef13").exit_code == 1


def test_text_and_json_print_times_the_same_way(
    settings_env: dict[str, str], run_cli: CliRun
) -> None:
    request_id = enqueue_resend(ORDER)
    record = json_out(run_cli("status", request_id, "--json"))
    text = run_cli("status", request_id).stdout
    rows = dict(line.split(None, 1) for line in text.splitlines() if line.strip())
    assert rows["created_at"] == record["created_at"]
    assert record["created_at"].endswith("Z") and "+00:00" not in text
    listed = run_cli("list", "--order", ORDER).stdout
    assert record["created_at"][:19] in listed and "+00:00" not in listed


def test_a_request_behind_another_of_its_order_shows_that_it_waits_for_its_turn(
    settings_env: dict[str, str], run_cli: CliRun
) -> None:
    first = enqueue_resend(ORDER, new_email="pat@example.com")
    second = enqueue_resend(ORDER, new_email="sam@example.com")

    ahead = json_out(run_cli("status", first, "--json"))
    behind = json_out(run_cli("status", second, "--json"))
    assert ahead["status"] == "queued" and ahead["reason"] is None
    assert behind["status"] == "deferred"
    assert behind["reason"] == f"waiting for an earlier request of the same order ({first})"
    text = run_cli("status", second).stdout
    assert "deferred" in text and "waiting for an earlier request" in text
    listed = json_out(run_cli("list", "--order", ORDER, "--json"))
    assert {item["id"]: item["status"] for item in listed} == {
        first: "queued",
        second: "deferred",
    }


def test_history_of_a_malformed_order_id_is_bad_input(
    settings_env: dict[str, str], run_cli: CliRun
) -> None:
    malformed = run_cli("history", "not-an-order")
    assert malformed.exit_code == 2 and "RA251125-1001-01" in malformed.stderr
    assert run_cli("history", "RA251125-1301-99").exit_code == 1


def test_bulk_exits_2_when_a_row_is_rejected_and_gives_each_rows_request_id(
    settings_env: dict[str, str], run_cli: CliRun, tmp_path: Path
) -> None:
    path = tmp_path / "resends.csv"
    path.write_text(
        "referenceOrderID,newEmail\n"
        "RA251125-1302-01,pat@example.com\n"
        "RA-bad,pat@example.com\n"
        "RA251125-1302-01,pat@example.com\n"
        "RA251125-1302-02,\n"
    )
    result = run_cli("enqueue", "--file", str(path), "--json")
    assert result.exit_code == 2, explain(result)
    summary = json_out(result)
    assert summary["accepted"] == 2 and summary["coalesced"] == 1
    assert [bad["row"] for bad in summary["rejected"]] == [2]
    requests_by_row = {item["row"]: item for item in summary["requests"]}
    assert sorted(requests_by_row) == [1, 3, 4]
    assert requests_by_row[3]["id"] == requests_by_row[1]["id"]
    assert [requests_by_row[row]["coalesced"] for row in (1, 3, 4)] == [False, True, False]
    runtime = current_runtime()
    assert runtime.records.ids_for_order("RA251125-1302-02") == [requests_by_row[4]["id"]]

    text = run_cli("enqueue", "--file", str(path))
    assert text.exit_code == 2 and "1 rejected" in text.stdout
    good = tmp_path / "good.csv"
    good.write_text("referenceOrderID\nRA251125-1302-03\n")
    assert run_cli("enqueue", "--file", str(good)).exit_code == 0
    assert "requests" not in json_out(
        run_cli("enqueue", "--file", str(good), "--dry-run", "--json")
    )


def test_a_worker_without_redis_says_what_it_waits_for(tmp_path: Path) -> None:
    """Given a REDIS_URL nothing answers, `tango-resend worker` names Redis, the URL and the
    error at once, and keeps trying, instead of minutes of silent retries."""
    port = free_port()
    settings = {
        "REDIS_URL": f"redis://:hunter2@127.0.0.1:{port}/0",
        "TANGO_PLATFORM_NAME": "p",
        "TANGO_PLATFORM_KEY": "k",
    }
    worker = LoggedProcess(
        settings, tmp_path / "worker.log", ["-m", "worker", "worker"], cwd=tmp_path
    )
    try:
        worker.wait_until(
            lambda: worker.log().count("waiting for Redis") >= 2,
            timeout=20,
            interval=0.1,
            what="two 'waiting for Redis' lines",
        )
        text = worker.log()
        assert f"redis://:***@127.0.0.1:{port}/0" in text and "hunter2" not in text
        assert worker.process.poll() is None, "it keeps waiting"
    finally:
        worker.kill()
        worker.stop()


def test_web_warns_at_start_when_redis_does_not_answer(tmp_path: Path) -> None:
    port = free_port()
    settings = {"REDIS_URL": f"redis://127.0.0.1:{port}/0", "WEBHOOK_ALLOW_UNSIGNED": "true"}
    web = WebProcess(settings, tmp_path / "web.log", cwd=tmp_path)
    try:

        def health() -> list[requests.Response] | None:
            try:  # a list: a 503 response is falsy itself
                return [requests.get(f"{web.url}/healthz", timeout=2)]
            except requests.ConnectionError:
                return None

        (answer,) = wait_for(health, timeout=30, interval=0.1, what="the receiver")
        assert answer.status_code == 503
        assert "Redis does not answer" in json.dumps(answer.json())
        assert "warning: Redis does not answer" in web.log()
    finally:
        web.stop()
