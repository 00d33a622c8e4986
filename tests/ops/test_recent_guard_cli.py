"""The recent-resend guard and the audit trail from Python and the CLI (click's runner), real
Redis, no worker: a request is marked sent as a worker would leave it (`mark_sent`)."""

from __future__ import annotations

import getpass
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.support.cli import CliRun, explain, json_out
from tests.support.records import mark_sent
from tests.support.settings import apply_settings
from worker import enqueue_resend, get_resend
from worker.resend.producer import submit_many, submit_resend
from worker.runtime import current_runtime
from worker.sandbox import SandboxControl

pytestmark = pytest.mark.integration

ORDER = "RA251206-9101-01"
OTHER = "RA251206-9101-02"
CLI_USER = f"cli {getpass.getuser()}@{socket.gethostname()}"


@pytest.fixture
def guarded(settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    apply_settings({"RESEND_RECENT_SECONDS": "600"}, monkeypatch.setenv)
    return {**settings_env, "RESEND_RECENT_SECONDS": "600"}


def test_python_names_the_earlier_request_and_force_sends_anyway(guarded: dict[str, str]) -> None:
    first = enqueue_resend(ORDER, new_email="pat@example.com", origin="billing-job")
    assert get_resend(first).origin == "python billing-job"  # type: ignore[union-attr]
    mark_sent(first)

    assert enqueue_resend(ORDER, new_email="pat@example.com") == first
    submission = submit_resend({"referenceOrderID": ORDER, "newEmail": "pat@example.com"})
    assert (submission.request_id, submission.outcome) == (first, "recent")
    assert not submission.created
    assert enqueue_resend(ORDER, new_email="sam@example.com") != first

    forced = enqueue_resend(ORDER, new_email="pat@example.com", force=True)
    record = get_resend(forced)
    assert forced != first and record is not None and record.forced
    assert record.origin == "python"
    many = submit_many(
        [({"referenceOrderID": ORDER, "newEmail": "pat@example.com"}, None)] * 2, origin="x"
    )
    # The guard answers before coalescing: the request that was sent, not the forced one.
    assert [(s.request_id, s.outcome) for s in many] == [(first, "recent")] * 2  # type: ignore[union-attr]


def test_the_cli_prints_the_earlier_id_and_recent(guarded: dict[str, str], run_cli: CliRun) -> None:
    made = run_cli("enqueue", ORDER, "--email", "pat@example.com")
    assert made.exit_code == 0, explain(made)
    first = made.stdout.strip()
    assert get_resend(first).origin == CLI_USER  # type: ignore[union-attr]
    assert json_out(run_cli("enqueue", OTHER, "--json"))["outcome"] == "created"
    mark_sent(first)

    again = run_cli("enqueue", ORDER, "--email", "pat@example.com")
    assert again.exit_code == 0, explain(again)
    assert again.stdout.strip() == f"{first} recent"
    assert "--force" in again.stderr
    as_json = json_out(run_cli("enqueue", ORDER, "--email", "pat@example.com", "--json"))
    assert as_json == {"id": first, "outcome": "recent", "recent": True}

    forced = run_cli("enqueue", ORDER, "--email", "pat@example.com", "--force")
    assert forced.exit_code == 0 and forced.stdout.strip() != first
    assert get_resend(forced.stdout.strip()).forced  # type: ignore[union-attr]


def test_cancel_and_history_say_who(guarded: dict[str, str], run_cli: CliRun) -> None:
    request_id = enqueue_resend(ORDER, origin="crm")
    cancelled = run_cli("cancel", request_id)
    assert cancelled.exit_code == 0, explain(cancelled)
    record = get_resend(request_id)
    assert record is not None and record.cancelled_by == CLI_USER
    assert record.cancelled_at is not None

    history = run_cli("history", ORDER)
    assert "python crm" in history.stdout and "origin" in history.stdout
    shown = json_out(run_cli("history", ORDER, "--json"))[0]
    assert (shown["origin"], shown["cancelled_by"]) == ("python crm", CLI_USER)
    status = run_cli("status", request_id)
    assert "python crm" in status.stdout and f"by {CLI_USER}" in status.stdout


def test_a_bulk_file_counts_rows_answered_as_recent(
    guarded: dict[str, str], run_cli: CliRun, tmp_path: Path
) -> None:
    sent_before = enqueue_resend(ORDER, new_email="pat@example.com")
    mark_sent(sent_before)
    rows = tmp_path / "bounces.csv"
    rows.write_text(
        "referenceOrderID,newEmail\n"
        f"{ORDER},pat@example.com\n"  # 1: sent moments ago to this recipient
        f"{ORDER},sam@example.com\n"  # 2: another recipient
        f"{OTHER},\n"  # 3: another order
    )
    result = run_cli("enqueue", "--file", str(rows), "--json")
    assert result.exit_code == 0, explain(result)
    summary = json_out(result)
    assert (summary["accepted"], summary["recent"]) == (2, 1)
    by_row = {item["row"]: item for item in summary["requests"]}
    assert by_row[1]["id"] == sent_before and by_row[1]["recent"] is True
    assert get_resend(by_row[3]["id"]).origin == "bulk bounces.csv:3"  # type: ignore[union-attr]

    text = run_cli("enqueue", "--file", str(rows), "--force", "--batch-id", "again")
    assert text.exit_code == 0, explain(text)
    assert text.stdout.startswith("1 queued, 2 coalesced"), text.stdout


def test_orders_between_counts_orders_answered_as_recent(
    guarded: dict[str, str], run_cli: CliRun, control: SandboxControl
) -> None:
    start = datetime(2025, 3, 1, tzinfo=UTC)
    for serial, order in enumerate((ORDER, OTHER)):
        at = (start + timedelta(days=serial + 1)).isoformat().replace("+00:00", "Z")
        control.add_order(order, created_at=at)
    sent_before = enqueue_resend(ORDER)
    mark_sent(sent_before)

    between = ("2025-03-01T00:00:00Z", "2025-04-01T00:00:00Z")
    result = run_cli("enqueue", "--orders-between", *between, "--json")
    assert result.exit_code == 0, explain(result)
    summary = json_out(result)
    assert (summary["accepted"], summary["recent"]) == (1, 1)
    (other_id,) = current_runtime().records.ids_for_order(OTHER)
    origin = get_resend(other_id).origin  # type: ignore[union-attr]
    assert origin == "recovery 2025-03-01T00:00:00Z/2025-04-01T00:00:00Z"
    # Run again: the answer given is kept under the order's recovery key.
    text = run_cli("enqueue", "--orders-between", *between)
    assert "2 already queued by an earlier run" in text.stdout, explain(text)
