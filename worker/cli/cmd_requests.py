"""Commands about requests: status, list, history, retry, cancel."""

from __future__ import annotations

import sys
from datetime import datetime, timedelta

import click
from rich.console import Console
from rich.table import Table

from worker.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_NOT_FOUND,
    EXITS_CHANGE,
    EXITS_LOOKUP,
    Duration,
    echo_json,
    fail,
    settings_or_exit,
    timestamp,
)
from worker.state.records import CancelResult, ResendRecord, ResendStatus, SubmissionOutcome

STATUSES = [status.value for status in ResendStatus]
ORDER_ID_HELP = "Tango's referenceOrderID, e.g. RA251125-1001-01."
# `list` shows records a page at a time (one round trip for their shown states).
_SHOWN_PAGE = 200


def _when(value: datetime | None) -> str:
    return timestamp(value) if value else ""


def _full_id(request_id: str, *, missing_ok: bool = False) -> str:
    """The whole id for an id or a unique prefix of at least 8 characters; exits 1 when
    nothing matches (or, with `missing_ok`, gives `request_id` back), 2 when the prefix is
    ambiguous."""
    from worker.runtime import current_runtime
    from worker.state.queries import AmbiguousRequestId, resolve_request_id

    try:
        resolved = resolve_request_id(current_runtime(), request_id)
    except AmbiguousRequestId as error:
        fail(str(error), EXIT_BAD_INPUT)
    if resolved is None and missing_ok:
        return request_id
    if resolved is None:
        fail(f"no request {request_id!r} (unknown or expired){_hint(request_id)}", EXIT_NOT_FOUND)
    return resolved


def _hint(request_id: str) -> str:
    """Why an id may have found nothing: an order id given for a request id, a short prefix."""
    from worker.state.queries import MIN_PREFIX_LENGTH
    from worker.tango.ids import REFERENCE_ORDER_ID

    if REFERENCE_ORDER_ID.fullmatch(request_id):
        return (
            f"; {request_id} is an order id: `tango-resend history {request_id}` lists its requests"
        )
    if len(request_id) < MIN_PREFIX_LENGTH:
        return f" (a prefix needs at least {MIN_PREFIX_LENGTH} characters)"
    return ""


def _console() -> Console:
    # Piped output is not cut at 80 columns: ids must survive intact for scripts and greps.
    width = None if sys.stdout.isatty() else 240
    return Console(highlight=False, soft_wrap=True, width=width)


@click.command(epilog=EXITS_LOOKUP)
@click.argument("request_id")
@click.option("--json", "as_json", is_flag=True, help="Print the whole record as JSON.")
def status(request_id: str, as_json: bool) -> None:
    """Show a request's state. REQUEST_ID may be a unique prefix of 8 or more characters."""
    settings_or_exit()
    from worker.resend.producer import get_resend
    from worker.runtime import current_runtime
    from worker.state.queries import as_shown

    record = get_resend(_full_id(request_id))
    if record is None:
        fail(f"no request {request_id!r} (unknown or expired)", EXIT_NOT_FOUND)
    record = as_shown(current_runtime(), record)
    if as_json:
        click.echo(record.model_dump_json(indent=2))
        return
    rows = {
        "id": record.id,
        "order": record.reference_order_id,
        "status": record.status.value,
        "attempts": str(record.attempts),
        "merges": str(record.merges),
        "created_at": timestamp(record.created_at),
        "sent_at": timestamp(record.sent_at),
        "confirmed_by": record.confirmed_by or "-",
        "next_attempt_at": timestamp(record.next_attempt_at),
        "reason": record.reason or "-",
        "tango_request_ids": ", ".join(record.tango_request_ids) or "-",
        "retry_of": record.retry_of or "-",
        "origin": _origin(record),
    }
    if record.cancelled_at is not None:
        rows["cancelled"] = f"{timestamp(record.cancelled_at)} by {record.cancelled_by or '-'}"
    width = max(len(name) for name in rows)
    for name, value in rows.items():
        click.echo(f"{name.ljust(width)}  {value}")


def _origin(record: ResendRecord) -> str:
    """Who asked, as `status` and `history` show it."""
    text = record.origin or "-"
    if record.requested_by:
        text += f" (by {record.requested_by})"
    return text + (" (sent anyway)" if record.forced else "")


@click.command(name="list", epilog=EXITS_LOOKUP.replace("1 not found, ", ""))
@click.option(
    "--order", metavar="ORDER_ID", default=None, help=f"Only this order's requests. {ORDER_ID_HELP}"
)
@click.option(
    "--status",
    "status_filter",
    type=click.Choice(STATUSES),
    default=None,
    help="Only requests in this state, as `status` shows it.",
)
@click.option("--since", type=Duration(), default=None, help="Created within, e.g. 1h, 2d.")
@click.option(
    "--limit",
    type=click.IntRange(1, 100_000),
    default=50,
    show_default=True,
    help="At most this many requests.",
)
@click.option("--json", "as_json", is_flag=True, help="Print records as a JSON array.")
def list_requests(
    order: str | None, status_filter: str | None, since: timedelta | None, limit: int, as_json: bool
) -> None:
    """List requests, newest first."""
    settings_or_exit()
    from worker.runtime import current_runtime
    from worker.state.queries import iter_requests, shown_records

    wanted = ResendStatus(status_filter) if status_filter else None
    runtime = current_runtime()
    # Stored and shown statuses differ only for unfinished requests (queued behind another
    # is shown deferred, a call under way in_flight): filter those on what is shown.
    stored_filter = wanted if wanted is None or wanted.is_final else None
    records: list[ResendRecord] = []
    page: list[ResendRecord] = []

    def take(page: list[ResendRecord]) -> None:
        for shown in shown_records(runtime, page):
            if (wanted is None or shown.status is wanted) and len(records) < limit:
                records.append(shown)

    for record in iter_requests(runtime, order=order, status=stored_filter, since=since):
        page.append(record)
        if len(page) >= _SHOWN_PAGE:
            take(page)
            page = []
            if len(records) >= limit:
                break
    take(page)
    if as_json:
        echo_json([record.model_dump(mode="json") for record in records])
        return
    table = Table("id", "order", "status", "calls", "created", "sent", "reason")
    for record in records:
        table.add_row(
            record.id,
            record.reference_order_id,
            record.status.value,
            str(record.attempts),
            _when(record.created_at),
            _when(record.sent_at),
            record.reason or "",
        )
    _console().print(table)
    click.echo(f"{len(records)} request(s)")


@click.command(epilog=EXITS_LOOKUP)
@click.argument("order_id")
@click.option("--json", "as_json", is_flag=True, help="Print every request and attempt as JSON.")
def history(order_id: str, as_json: bool) -> None:
    """Every request and every call to Tango for ORDER_ID (Tango's referenceOrderID, e.g.
    RA251125-1001-01), with Tango's request ids."""
    settings_or_exit()
    from worker.runtime import current_runtime
    from worker.state.queries import order_history, shown_records
    from worker.tango.ids import REFERENCE_ORDER_ID

    if not REFERENCE_ORDER_ID.fullmatch(order_id):
        fail(
            f"{order_id!r} is not an order id: it must look like RA251125-1001-01 "
            "(RA, 6 digits, -, digits, -, digits)",
            EXIT_BAD_INPUT,
        )
    runtime = current_runtime()
    records = shown_records(runtime, order_history(runtime, order_id))
    if not records:
        fail(f"no requests for order {order_id!r}", EXIT_NOT_FOUND)
    if as_json:
        echo_json([record.model_dump(mode="json") for record in records])
        return
    table = Table(
        "request", "created", "status", "origin", "call at", "outcome", "HTTP", "i18nKey",
        "Tango request id",
    )  # fmt: skip
    for record in records:
        status = record.status.value
        if record.confirmed_by:  # `sent`, known from a probe's answer (cooldown or refusal)
            status += f" (confirmed by {record.confirmed_by})"
        elif record.status.value == "sent":
            status += " (Tango's 201)"
        if record.cancelled_by:
            status += f" (by {record.cancelled_by})"
        origin = _origin(record)
        table.add_row(record.id, _when(record.created_at), status, origin, "", "", "", "", "")
        for attempt in record.attempt_log:
            table.add_row(
                "",
                "",
                "",
                "",
                _when(attempt.at),
                attempt.outcome + (" (probe)" if attempt.probe else ""),
                str(attempt.status or ""),
                attempt.i18n_key or "",
                attempt.tango_request_id or "",
            )
    _console().print(table)


@click.command(epilog=EXITS_CHANGE)
@click.argument("request_id", required=False)
@click.option("--all-failed", is_flag=True, help="Retry every failed request.")
@click.option(
    "--since",
    type=Duration(),
    default=None,
    help="With --all-failed: only those created within, e.g. 1h.",
)
@click.option(
    "--include-permanent",
    is_flag=True,
    help="With --all-failed: retry permanent failures too (404 unknown order, 403.003, 400), "
    "which are skipped otherwise: Tango would refuse them again.",
)
@click.option("--json", "as_json", is_flag=True, help="Print old and new ids as JSON.")
@click.option(
    "--force",
    is_flag=True,
    help="Send even if the order was just sent to the same recipient (RESEND_RECENT_SECONDS).",
)
def retry(
    request_id: str | None,
    all_failed: bool,
    since: timedelta | None,
    include_permanent: bool,
    as_json: bool,
    force: bool,
) -> None:
    """Queue failed requests again, as new requests linked to the old ones.

    Each failed request is retried once: one already retried is not queued again, and its
    retry's id is printed "(already retried)". --all-failed skips the permanent failures
    unless --include-permanent is given. With RESEND_RECENT_SECONDS set, an order sent to the
    same recipient that recently is not sent again: the request that was sent is printed
    "(recent)". REQUEST_ID may be a unique prefix of 8 or more characters."""
    settings_or_exit()
    from worker.resend import origins
    from worker.resend.retry import NotRetryable, is_permanent_failure, retry_resend
    from worker.runtime import current_runtime
    from worker.state.queries import iter_requests

    if bool(request_id) == all_failed:
        fail("give a REQUEST_ID or --all-failed (not both)", EXIT_BAD_INPUT)
    if request_id:
        targets: list[ResendRecord] | None = None
        skipped: list[ResendRecord] = []
        request_id = _full_id(request_id)
        try:
            submission = retry_resend(request_id, by=origins.cli(), force=force)
        except NotRetryable as error:
            code = EXIT_NOT_FOUND if "unknown" in str(error) else EXIT_BAD_INPUT
            fail(str(error), code)
        pairs = [(request_id, submission)]
    else:
        failed = list(iter_requests(current_runtime(), status=ResendStatus.FAILED, since=since))
        targets = [old for old in failed if include_permanent or not is_permanent_failure(old)]
        skipped = [old for old in failed if old not in targets]
        by = origins.cli()
        pairs = [(old.id, retry_resend(old.id, by=by, force=force)) for old in targets]
    # A failed request is retried once; asking again answers its existing retry ("idempotent").
    if as_json:
        echo_json(
            [
                {
                    "retried": old,
                    "id": new.request_id,
                    "already_retried": new.outcome == SubmissionOutcome.IDEMPOTENT,
                    "recent": new.outcome == SubmissionOutcome.RECENT,
                }
                for old, new in pairs
            ]
        )
        return
    for old_record in skipped:
        click.echo(f"{old_record.id} skipped: failed permanently ({old_record.reason})")
    notes = {
        SubmissionOutcome.IDEMPOTENT: " (already retried)",
        SubmissionOutcome.RECENT: " (recent: sent to the same recipient moments ago)",
    }
    for old, new in pairs:
        click.echo(f"{old} -> {new.request_id}{notes.get(new.outcome, '')}")
    if targets is not None:
        again = sum(1 for _, new in pairs if new.outcome == SubmissionOutcome.IDEMPOTENT)
        recent = sum(1 for _, new in pairs if new.outcome == SubmissionOutcome.RECENT)
        summary = (
            f"{len(pairs) - again - recent} failed request(s) queued again, {again} already retried"
        )
        if recent:
            summary += f", {recent} recent (not sent again)"
        if skipped:
            summary += (
                f", {len(skipped)} permanent failure(s) skipped (--include-permanent retries them)"
            )
        click.echo(summary)


@click.command(epilog=EXITS_CHANGE)
@click.argument("request_id")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def cancel(request_id: str, as_json: bool) -> None:
    """Cancel a queued or deferred request before it is sent.

    REQUEST_ID may be a unique prefix of 8 or more characters."""
    settings_or_exit()
    from worker.resend import origins
    from worker.resend.cancellation import cancel_resend_detailed

    request_id = _full_id(request_id, missing_ok=True)  # unknown: "unknown", in JSON too
    cancellation = cancel_resend_detailed(request_id, by=origins.cli())
    result = cancellation.result
    if as_json:
        echo_json({"id": request_id, "result": result.value, "callers": cancellation.callers})
    if result is CancelResult.CANCELLED:
        if not as_json:
            click.echo("cancelled" + _shared_note(cancellation.others))
        return
    code = EXIT_NOT_FOUND if result is CancelResult.UNKNOWN else EXIT_BAD_INPUT
    messages = {
        CancelResult.UNKNOWN: f"no request {request_id!r} (unknown or expired)",
        CancelResult.IN_FLIGHT: (
            "too late: its call to Tango is under way, or its outcome is unknown until a "
            "probe settles it"
        ),
    }
    fail(messages.get(result, f"not cancelled: the request is already {result}"), code)


def _shared_note(others: int) -> str:
    """What a cancel also did for the callers merged into the request, if any."""
    if not others:
        return ""
    callers = "caller" if others == 1 else "callers"
    return f" (also for {others} other {callers} whose identical request was merged into it)"


COMMANDS = [status, list_requests, history, retry, cancel]
