"""`tango-resend enqueue`: one order, a CSV file, or every order in a time range."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.progress import Progress

from worker.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_UNAVAILABLE,
    echo_json,
    fail,
    settings_or_exit,
    unavailable,
)

if TYPE_CHECKING:
    from worker.cli.bulk import BulkSummary

# Tango failed or refused while --orders-between was listing orders.
EXIT_TANGO = 4
EXITS_ENQUEUE = (
    "\b\nExit codes: 0 ok, 2 bad input (with --file: any row rejected; the good rows are"
    " still queued), 3 Redis or the broker unavailable (with --file or --orders-between: a"
    " summary says what was queued and where it stopped; run the same command again to queue"
    " the rest), 4 Tango failed while listing orders (the same summary)."
)
# Rejected rows printed in full by the text summary (--json has the first 1,000).
_REJECTED_PRINTED = 50
_BATCH_ID_MAX = 100


def _moment(text: str) -> datetime:
    """An instant in UTC, however it was written (`10:00Z` and `11:00+01:00` are one)."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a date or RFC 3339 time") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


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
@click.option(
    "--batch-id",
    default=None,
    help="With --file: name this batch; rows are then keyed on it and their row number "
    "instead of the file's content (so an edited file, rerun with the same id, queues only "
    "rows not queued before).",
)
@click.option("--customer", default=None, help="With --orders-between: one customer.")
@click.option("--account", default=None, help="With --orders-between: one account.")
@click.option("--dry-run", is_flag=True, help="Validate and count; queue nothing.")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help='Print JSON: for one order {"id", "outcome"}, else the summary.',
)
@click.option(
    "--force",
    is_flag=True,
    help="Send even if the order was just sent to the same recipient (RESEND_RECENT_SECONDS).",
)
def enqueue(
    order_id: str | None,
    csv_file: Path | None,
    orders_between: tuple[str, str] | None,
    batch_id: str | None,
    customer: str | None,
    account: str | None,
    dry_run: bool,
    as_json: bool,
    force: bool,
    **fields: Any,
) -> None:
    """Queue a resend of ORDER_ID (prints its id), or many with --file / --orders-between.

    With RESEND_RECENT_SECONDS set, an order sent to the same recipient that recently is not
    sent again: the request that was sent is printed, with "recent" (--force sends anyway)."""
    settings_or_exit()
    if sum(source is not None for source in (order_id, csv_file, orders_between)) != 1:
        fail("give exactly one of ORDER_ID, --file or --orders-between", EXIT_BAD_INPUT)
    if order_id is not None:
        _enqueue_one(order_id, fields, force, as_json)
        return
    _check_bulk_options(fields, csv_file, batch_id)
    # Only --orders-between lists orders Tango did not deliver, which it skips and counts.
    include_skipped = orders_between is not None
    with _exit_on_bulk_errors():
        if csv_file is not None:
            summary = _enqueue_file(csv_file, batch_id, dry_run, as_json, force)
        else:
            assert orders_between is not None
            summary = _enqueue_orders_between(
                orders_between, customer, account, dry_run, as_json, force
            )
    code = _exit_code(summary)
    if as_json:
        echo_json(summary.as_json(include_skipped=include_skipped, include_requests=not dry_run))
    else:
        _print_summary(summary, dry_run, include_skipped)
    sys.exit(code)


def _check_bulk_options(
    fields: dict[str, Any], csv_file: Path | None, batch_id: str | None
) -> None:
    """Exit 2 on an option that goes with another source than the one given."""
    if any(fields.values()):
        fail(
            "--email/--mobile/--etid/--delivery-method/--key go with ORDER_ID only", EXIT_BAD_INPUT
        )
    if batch_id is not None and (
        csv_file is None or not 1 <= len(batch_id) <= _BATCH_ID_MAX or not batch_id.isprintable()
    ):
        fail(f"--batch-id goes with --file, as 1 to {_BATCH_ID_MAX} characters", EXIT_BAD_INPUT)


@contextmanager
def _exit_on_bulk_errors() -> Iterator[None]:
    """Exit 2 on bulk input that cannot be used (an unreadable file, END before START), 3 on
    an EnqueueError the run let through (the Redis failures it expects stop it, and its
    summary says where)."""
    from worker.cli.bulk import BulkInputError
    from worker.resend.producer import EnqueueError

    try:
        yield
    except BulkInputError as error:
        fail(str(error), EXIT_BAD_INPUT)
    except EnqueueError as error:
        unavailable(error)


def _enqueue_file(
    csv_file: Path, batch_id: str | None, dry_run: bool, as_json: bool, force: bool
) -> BulkSummary:
    from worker.cli.bulk import count_rows, enqueue_file

    # The bar's total costs a read of the whole file: only when there is a bar.
    total = count_rows(csv_file) if not as_json and sys.stderr.isatty() else None
    with _progress(not as_json, "rows", total) as step:
        return enqueue_file(
            csv_file, dry_run=dry_run, progress=step, batch_id=batch_id, keep_requests=as_json,
            force=force,
        )  # fmt: skip


def _enqueue_orders_between(
    orders_between: tuple[str, str],
    customer: str | None,
    account: str | None,
    dry_run: bool,
    as_json: bool,
    force: bool,
) -> BulkSummary:
    from worker.cli.recovery import enqueue_orders_between
    from worker.runtime import current_runtime

    start, end = (_moment(text) for text in orders_between)
    with _progress(not as_json, "orders", None) as step:
        return enqueue_orders_between(
            current_runtime(),
            start,
            end,
            customer=customer,
            account=account,
            dry_run=dry_run,
            progress=step,
            force=force,
        )


def _print_summary(summary: BulkSummary, dry_run: bool, include_skipped: bool) -> None:
    verb = "would be queued" if dry_run else "queued"
    click.echo(
        f"{summary.accepted} {verb}, {summary.coalesced} coalesced into pending requests, "
        + (
            f"{summary.already_queued} already queued by an earlier run, "
            if summary.already_queued
            else ""
        )
        + (
            f"{summary.recent} recent (sent to the same recipient moments ago, not again), "
            if summary.recent
            else ""
        )
        + f"{summary.rejected_total} rejected"
        + (f", {summary.skipped} skipped (not delivered by Tango)" if include_skipped else "")
    )
    for bad in summary.rejected[:_REJECTED_PRINTED]:
        click.echo(f"  row {bad['row']}: {bad['errors']}")
    if summary.rejected_total > _REJECTED_PRINTED:
        click.echo(
            f"  ... and {summary.rejected_total - _REJECTED_PRINTED} more "
            f"(--json lists the first {len(summary.rejected)})"
        )
    if summary.file_changed is not None:
        click.echo(f"tango-resend: {summary.file_changed}", err=True)
    for warning in summary.warnings:
        click.echo(f"tango-resend: warning: {warning}", err=True)
    if summary.stopped is not None:
        click.echo(f"tango-resend: {_stopped_line(summary)}", err=True)


def _exit_code(summary: BulkSummary) -> int:
    """3 Redis, 4 Tango (a run that stopped early); else 2 when a row was refused (the good
    rows are queued all the same) or the file changed while it was read; else 0."""
    if summary.stopped is not None:
        return EXIT_TANGO if summary.stopped_by_tango else EXIT_UNAVAILABLE
    return EXIT_BAD_INPUT if summary.rejected_total or summary.file_changed else 0


def _stopped_line(summary: BulkSummary) -> str:
    stopped = summary.stopped
    assert stopped is not None  # said only of a run that stopped early
    queued = summary.accepted + summary.coalesced + summary.already_queued + summary.recent
    if "row" in stopped:
        where = f"stopped at row {stopped['row']} ({queued} rows before it are queued)"
    else:
        where = f"stopped after {stopped['orders_listed']} listed orders ({queued} queued)"
    cause = (
        f"Tango failed while listing orders ({stopped['error']})"
        if summary.stopped_by_tango
        else f"Redis is unavailable ({stopped['error']})"
    )
    return f"{cause}; {where}; run the same command again to queue the rest"


def _enqueue_one(order_id: str, fields: dict[str, Any], force: bool, as_json: bool) -> None:
    """Print the request's id, and what became of the submission: with --json `{"id",
    "outcome"}` (and `"recent": true` when the recent-resend guard answered with the earlier
    request's id); as text, after an id that is not a new request, its outcome in one word
    (`idempotent`, `merged`, `recent`)."""
    from worker.resend import origins
    from worker.resend.producer import EnqueueError, submit_resend, tango_fields
    from worker.resend.validation import InvalidResendRequest
    from worker.state.records import SubmissionOutcome

    idempotency_key = fields.pop("idempotency_key", None)
    try:
        submission = submit_resend(
            tango_fields(order_id, **fields),
            idempotency_key=idempotency_key,
            origin=origins.cli(),
            force=force,
        )
    except InvalidResendRequest as error:
        fail(str(error), EXIT_BAD_INPUT)
    except EnqueueError as error:
        unavailable(error)
    recent = submission.outcome == SubmissionOutcome.RECENT
    if as_json:
        answer: dict[str, Any] = {"id": submission.request_id, "outcome": submission.outcome.value}
        if recent:
            answer["recent"] = True
        echo_json(answer)
        return
    if submission.created:
        click.echo(submission.request_id)
        return
    click.echo(f"{submission.request_id} {submission.outcome.value}")
    if recent:
        click.echo(
            "tango-resend: recent: this order was sent to the same recipient within "
            "RESEND_RECENT_SECONDS; nothing queued (the id is the request that was sent; "
            "--force sends anyway)",
            err=True,
        )
