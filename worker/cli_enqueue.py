"""`tango-resend enqueue`: one order, a CSV file, or every order in a time range."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from rich.progress import Progress

from worker.cli_common import (
    EXIT_BAD_INPUT,
    EXITS_ENQUEUE,
    echo_json,
    fail,
    settings_or_exit,
    unavailable,
)


def _moment(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a date or RFC 3339 time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@contextmanager
def _progress(enabled: bool, label: str, total: int | None) -> Iterator[Callable[[int], None]]:
    """A progress bar on a terminal; nothing when piped or printing JSON."""
    if not enabled or not sys.stderr.isatty():
        yield lambda _: None
        return
    with Progress(transient=True, console=None) as bar:
        task = bar.add_task(label, total=total)
        yield lambda step: bar.advance(task, step)


@click.command(epilog=EXITS_ENQUEUE)
@click.argument("order_id", required=False)
@click.option("--email", "new_email", default=None, help="Resend to this address.")
@click.option("--mobile", "new_mobile", default=None, help="Resend to this E.164 number.")
@click.option("--etid", "new_etid", default=None, help="Email template id, e.g. E000000.")
@click.option(
    "--delivery-method", "new_delivery_method", default=None, help="EMAIL, PHONE or NONE."
)
@click.option(
    "--key",
    "idempotency_key",
    default=None,
    help="Idempotency key: the same key within 24 h returns the first request's id.",
)
@click.option(
    "--file",
    "csv_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="A CSV with columns referenceOrderID,newEmail,newMobile,newEtid,newDeliveryMethod.",
)
@click.option(
    "--orders-between",
    nargs=2,
    metavar="START END",
    default=None,
    help="Every order Tango created and delivered in this range (RFC 3339).",
)
@click.option("--customer", default=None, help="With --orders-between: one customer.")
@click.option("--account", default=None, help="With --orders-between: one account.")
@click.option("--dry-run", is_flag=True, help="Validate and count; queue nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def enqueue(
    order_id: str | None,
    csv_file: Path | None,
    orders_between: tuple[str, str] | None,
    customer: str | None,
    account: str | None,
    dry_run: bool,
    as_json: bool,
    **fields: Any,
) -> None:
    """Queue a resend of ORDER_ID (prints its id), or many with --file / --orders-between."""
    settings_or_exit()
    sources = [order_id is not None, csv_file is not None, orders_between is not None]
    if sum(sources) != 1:
        fail("give exactly one of ORDER_ID, --file or --orders-between", EXIT_BAD_INPUT)
    if order_id is not None:
        _enqueue_one(order_id, fields)
        return
    if any(fields.values()):
        fail(
            "--email/--mobile/--etid/--delivery-method/--key go with ORDER_ID only", EXIT_BAD_INPUT
        )
    from worker.bulk import BulkInputError, count_rows, enqueue_file, enqueue_orders_between
    from worker.producer import EnqueueError
    from worker.runtime import current_runtime

    try:
        if csv_file is not None:
            total = count_rows(csv_file) if not as_json else None
            with _progress(not as_json, "rows", total) as step:
                summary = enqueue_file(csv_file, dry_run=dry_run, progress=step)
            include_skipped = False
        else:
            assert orders_between is not None
            start, end = (_moment(text) for text in orders_between)
            with _progress(not as_json, "orders", None) as step:
                summary = enqueue_orders_between(
                    current_runtime(),
                    start,
                    end,
                    customer=customer,
                    account=account,
                    dry_run=dry_run,
                    progress=step,
                )
            include_skipped = True
    except BulkInputError as error:
        fail(str(error), EXIT_BAD_INPUT)
    except EnqueueError as error:
        unavailable(error)
    result = summary.as_json(include_skipped=include_skipped, include_requests=not dry_run)
    # Scripts need to know when a row was refused; the good rows are queued all the same.
    code = EXIT_BAD_INPUT if summary.rejected else 0
    if as_json:
        echo_json(result)
        sys.exit(code)
    verb = "would be queued" if dry_run else "queued"
    click.echo(
        f"{summary.accepted} {verb}, {summary.coalesced} coalesced into pending "
        f"requests, {len(summary.rejected)} rejected"
        + (f", {summary.skipped} skipped (not delivered by Tango)" if include_skipped else "")
    )
    for bad in summary.rejected[:50]:
        click.echo(f"  row {bad['row']}: {bad['errors']}")
    if len(summary.rejected) > 50:
        click.echo(f"  ... and {len(summary.rejected) - 50} more (use --json for all)")
    sys.exit(code)


def _enqueue_one(order_id: str, fields: dict[str, Any]) -> None:
    from worker.producer import EnqueueError, enqueue_resend
    from worker.validation import InvalidResendRequest

    try:
        request_id = enqueue_resend(order_id, **fields)
    except InvalidResendRequest as error:
        fail(str(error), EXIT_BAD_INPUT)
    except EnqueueError as error:
        unavailable(error)
    click.echo(request_id)
