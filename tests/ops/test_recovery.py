"""Incident recovery: `enqueue --orders-between START END` against the sandbox's order listing.

The range spans 250 days (Tango lists at most 100 days per query: three chunks) and one chunk
holds more than 100 orders (Tango pages by at most 100: several pages).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis

from tests.support.cli import CliRun, explain, json_out
from worker.runtime import current_runtime
from worker.sandbox import SandboxControl
from worker.tango.client import TangoAnswer, TangoClient

pytestmark = pytest.mark.integration

START = datetime(2025, 1, 1, tzinfo=UTC)
END = START + timedelta(days=250)
CUSTOMER = "cust-recovery"
OTHER_CUSTOMER = "cust-other"


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Seeded:
    delivered: set[str]  # CUSTOMER's orders in range that Tango delivered: to be resent
    skipped: set[str]  # CUSTOMER's orders in range that Tango did not deliver


def order_id(serial: int) -> str:
    return f"RA250101-{serial}-01"


def seed(control: SandboxControl) -> Seeded:
    serials: Iterator[int] = iter(range(1, 10_000))
    delivered: set[str] = set()
    skipped: set[str] = set()

    def add(at: datetime, customer: str = CUSTOMER, **options: Any) -> str:
        order = order_id(next(serials))
        control.add_order(order, created_at=iso(at), customer_identifier=customer, **options)
        return order

    # Chunk 1 (days 0-100): 130 of ours, so two pages; 10 of them not delivered by Tango.
    for n in range(130):
        at = START + timedelta(days=n * 0.7, minutes=n)
        if n % 26 == 5:
            skipped.add(add(at, send_email=False))
        elif n % 26 == 6:
            skipped.add(add(at, delivery_method="NONE"))
        else:
            delivered.add(add(at))
    # Chunk 2 (days 100-200): exactly one full page.
    for n in range(100):
        delivered.add(add(START + timedelta(days=100 + n * 0.99)))
    # Chunk 3 (days 200-250): the first instant of the chunk, one phone order, the last ms.
    delivered.add(add(START + timedelta(days=200)))
    delivered.add(add(START + timedelta(days=220), delivery_method="PHONE", mobile="+14155550123"))
    skipped.add(add(START + timedelta(days=230), delivery_method="NONE", send_email=False))
    delivered.add(add(END - timedelta(milliseconds=1)))
    # Not ours, or not in [START, END): never listed or never queued.
    for day in (3, 150, 240):
        add(START + timedelta(days=day), customer=OTHER_CUSTOMER)
    add(START - timedelta(milliseconds=1))
    add(END)
    add(END + timedelta(days=1))
    return Seeded(delivered, skipped)


@pytest.fixture
def listing_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The query parameters of every order listing this process sends to Tango."""
    seen: list[dict[str, Any]] = []
    original = TangoClient.list_orders

    def recording(self: TangoClient, params: dict[str, str | int], **options: Any) -> TangoAnswer:
        seen.append(dict(params))
        return original(self, params, **options)

    monkeypatch.setattr(TangoClient, "list_orders", recording)
    return seen


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def stored_keys(client: redis.Redis, env: dict[str, str]) -> set[str]:
    return {str(key) for key in client.keys(f"{env['REDIS_KEY_PREFIX']}:*")} | {
        str(key) for key in client.keys(f"{env['RESEND_QUEUE']}*")
    }


def test_recovery_over_250_days_chunks_pages_filters_and_is_idempotent(
    control: SandboxControl,
    settings_env: dict[str, str],
    run_cli: CliRun,
    redis_client: redis.Redis,
    listing_calls: list[dict[str, Any]],
) -> None:
    seeded = seed(control)
    assert len(seeded.delivered) == 223 and len(seeded.skipped) == 11
    args = ["enqueue", "--orders-between", iso(START), iso(END), "--customer", CUSTOMER]

    dry = run_cli(*args, "--dry-run", "--json")
    assert dry.exit_code == 0, explain(dry)
    assert json_out(dry) == {
        "accepted": 223,
        "coalesced": 0,
        "already_queued": 0,
        "recent": 0,
        "rejected": [],
        "rejected_total": 0,
        "skipped": 11,
    }
    assert stored_keys(redis_client, settings_env) == set(), "a dry run queues nothing"

    listing_calls.clear()
    control.reset()  # forgets the calls (and orders): seed again for the real run
    seed(control)
    first = run_cli(*args, "--json")
    assert first.exit_code == 0, explain(first)
    first_summary = json_out(first)
    assert len(first_summary.pop("requests")) == 223
    assert first_summary == {
        "accepted": 223,
        "coalesced": 0,
        "already_queued": 0,
        "recent": 0,
        "rejected": [],
        "rejected_total": 0,
        "skipped": 11,
    }

    # What Tango was asked: 100-day chunks covering the range, every page of each.
    assert [(c["startDate"], c["endDate"], c["page"]) for c in listing_calls] == [
        (iso(START), iso(START + timedelta(days=100)), 0),
        (iso(START), iso(START + timedelta(days=100)), 1),
        (iso(START + timedelta(days=100)), iso(START + timedelta(days=200)), 0),
        (iso(START + timedelta(days=200)), iso(END), 0),
    ]
    for call in listing_calls:
        assert 1 <= int(call["elementsPerBlock"]) <= 100
        assert parse(call["endDate"]) - parse(call["startDate"]) <= timedelta(days=100)
        assert call["customerIdentifier"] == CUSTOMER
    sandbox_listings = [
        c for c in control.calls() if c["method"] == "GET" and c["path"] == "/raas/v2/orders"
    ]
    assert len(sandbox_listings) == len(listing_calls) == 4
    assert all(c["status"] == 200 for c in sandbox_listings)
    assert not [c for c in control.calls() if c["method"] == "POST"], "nothing resent yet"

    runtime = current_runtime()
    queued_orders = {
        record.reference_order_id
        for record in runtime.records.get_many(
            [str(i) for i in redis_client.zrange(runtime.keys.requests_by_time, 0, -1)]
        )
    }
    assert queued_orders == seeded.delivered
    assert redis_client.llen(settings_env["RESEND_QUEUE"]) == 223

    again = run_cli(*args, "--json")
    assert again.exit_code == 0, explain(again)
    again_summary = json_out(again)
    # Every order already has a recovery resend pending: skipped, whatever the range.
    assert all(item["already_queued"] for item in again_summary.pop("requests"))
    assert again_summary == {
        "accepted": 0,
        "coalesced": 0,
        "already_queued": 223,
        "recent": 0,
        "rejected": [],
        "rejected_total": 0,
        "skipped": 11,
    }
    assert redis_client.zcard(runtime.keys.requests_by_time) == 223
    assert redis_client.llen(settings_env["RESEND_QUEUE"]) == 223

    text = run_cli(*args)
    assert text.exit_code == 0, explain(text)
    assert text.stdout.strip() == (
        "0 queued, 0 coalesced into pending requests, 223 already queued by an earlier run, "
        "0 rejected, 11 skipped (not delivered by Tango)"
    )


def test_recovery_without_a_customer_takes_every_customer(
    control: SandboxControl, settings_env: dict[str, str], run_cli: CliRun
) -> None:
    seed(control)
    result = run_cli("enqueue", "--orders-between", iso(START), iso(END), "--dry-run", "--json")
    assert json_out(result) == {
        "accepted": 226,
        "coalesced": 0,
        "already_queued": 0,
        "recent": 0,
        "rejected": [],
        "rejected_total": 0,
        "skipped": 11,
    }
    by_account = run_cli(
        "enqueue",
        "--orders-between",
        iso(START),
        iso(END),
        "--account",
        "no-such-account",
        "--dry-run",
        "--json",
    )
    assert json_out(by_account) == {
        "accepted": 0,
        "coalesced": 0,
        "already_queued": 0,
        "recent": 0,
        "rejected": [],
        "rejected_total": 0,
        "skipped": 0,
    }


@pytest.mark.parametrize(
    "between",
    [
        ("2025-03-01T00:00:00Z", "2025-01-01T00:00:00Z"),  # END before START
        ("2025-01-01T00:00:00Z", "2025-01-01T00:00:00Z"),  # empty range
        ("yesterday", "2025-01-01T00:00:00Z"),
        ("2025-01-01", "2025-13-01"),
    ],
)
def test_a_bad_range_exits_2_before_calling_tango(
    control: SandboxControl, settings_env: dict[str, str], run_cli: CliRun, between: tuple[str, str]
) -> None:
    result = run_cli("enqueue", "--orders-between", *between, "--json")
    assert result.exit_code == 2, explain(result)
    assert control.calls() == []


def test_a_dry_run_predicts_what_the_real_run_counts(
    control: SandboxControl, settings_env: dict[str, str], run_cli: CliRun
) -> None:
    """Given one order with a plain resend pending and one with a recovery pending, a dry run
    counts them as the real run then does (coalesced, already queued), not as "would be
    queued"; and a dry run after the real run predicts that nothing would be queued."""
    from worker import enqueue_resend

    seeded = seed(control)
    pending_plain, recovered_before = sorted(seeded.delivered)[:2]
    enqueue_resend(pending_plain)
    args = ["enqueue", "--orders-between", iso(START), iso(END), "--customer", CUSTOMER, "--json"]
    from worker.cli.recovery import recovery_key
    from worker.resend.producer import submit_resend

    submit_resend(
        {"referenceOrderID": recovered_before}, idempotency_key=recovery_key(recovered_before)
    )

    dry = json_out(run_cli(*args, "--dry-run"))
    real = json_out(run_cli(*args))
    real.pop("requests")
    assert (
        dry
        == real
        == {
            "accepted": len(seeded.delivered) - 2,
            "coalesced": 1,
            "already_queued": 1,
            "recent": 0,  # the recent-resend guard is off by default
            "rejected": [],
            "rejected_total": 0,
            "skipped": len(seeded.skipped),
        }
    )
    after = json_out(run_cli(*args, "--dry-run"))
    assert (after["accepted"], after["coalesced"]) == (0, 0)
    # The merged order too: its recovery key now names the request it was merged into.
    assert after["already_queued"] == len(seeded.delivered)
