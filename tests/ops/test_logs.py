"""Log output: JSON lines from a real worker, and masking of recipients' contact data."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.logs import captured_logger
from tests.support.processes import WorkerFactory
from tests.support.records import finished
from tests.support.waiting import wait_for
from worker import enqueue_resend
from worker.core.logging_setup import configure_handlers
from worker.sandbox import SandboxControl

pytestmark = pytest.mark.integration

EMAIL_ORDER = "RA251125-6101-01"
PHONE_ORDER = "RA251125-6102-01"
RETRIED_ORDER = "RA251125-6103-01"
UNKNOWN_ORDER = "RA251125-6199-01"
EMAIL = "pat.secret@example.com"
OTHER_EMAIL = "unknown.recipient@example.org"
PHONE = "+14155550123"
CLEAR_VALUES = (EMAIL, OTHER_EMAIL, "pat.secret", "unknown.recipient", PHONE, "4155550123")


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line that starts with "{" must be one JSON object."""
    entries = []
    for line in text.splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            assert isinstance(entry, dict), line
            entries.append(entry)
    return entries


def test_worker_json_logs_carry_state_fields_and_no_contact_data(
    control: SandboxControl, start_worker: WorkerFactory
) -> None:
    for order in (EMAIL_ORDER, PHONE_ORDER, RETRIED_ORDER):
        control.add_order(order)
    control.inject_fault(RETRIED_ORDER, status=500)
    worker = start_worker(LOG_FORMAT="json")
    ids = {
        enqueue_resend(EMAIL_ORDER, new_email=EMAIL): ("sent", 1),
        enqueue_resend(PHONE_ORDER, new_mobile=PHONE, new_delivery_method="PHONE"): ("sent", 1),
        enqueue_resend(RETRIED_ORDER, new_email=EMAIL, new_mobile=PHONE): ("sent", 2),
        enqueue_resend(UNKNOWN_ORDER, new_email=OTHER_EMAIL): ("failed", 1),
    }
    wait_for(lambda: finished(list(ids)), timeout=15, what="every request to finish")

    def state_lines() -> list[dict[str, Any]] | None:
        lines = [e for e in json_lines(worker.log()) if "request_id" in e and "status" in e]
        final = {(e["request_id"], e["status"]) for e in lines}
        return lines if all((i, s) in final for i, (s, _) in ids.items()) else None

    lines = wait_for(state_lines, timeout=10, what="the final state lines in the log")
    log = worker.log()
    entries = json_lines(log)
    assert len(entries) > len(lines), "Celery's own lines are JSON too"
    assert any(e["message"].endswith(" ready.") for e in entries)
    for entry in entries:
        assert {"time", "level", "logger", "message"} <= set(entry)
    orders = {
        request_id: order
        for request_id, order in zip(
            ids, (EMAIL_ORDER, PHONE_ORDER, RETRIED_ORDER, UNKNOWN_ORDER), strict=True
        )
    }
    for request_id, (status, attempts) in ids.items():
        (final,) = [e for e in lines if e["request_id"] == request_id and e["status"] == status]
        assert final["order_id"] == orders[request_id]
        assert final["attempt"] == attempts
        assert final["logger"] == "tango_resend.executor"
        assert f"request={request_id}" in final["message"]
        assert final.get("tango_request_id")
    (retrying,) = [e for e in lines if e["status"] == "retrying"]
    assert (retrying["order_id"], retrying["attempt"]) == (RETRIED_ORDER, 1)
    assert "next attempt in" in retrying["reason"]
    for value in CLEAR_VALUES:
        assert value not in log, f"{value} in the worker's log"


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger of its own with one stream handler, as a process would configure it."""
    with captured_logger(
        "tango_resend.tests.ops.masking",
        fmt="%(levelname)s %(name)s: %(message)s",
        level=logging.INFO,
    ) as captured:
        yield captured


def log_everything(logger: logging.Logger) -> None:
    logger.info("resend to %s by SMS %s", EMAIL, PHONE)
    logger.warning(f"bounce from {OTHER_EMAIL} (mobile {PHONE})")
    logger.info("a dict %s", {"newEmail": EMAIL, "newMobile": PHONE})
    try:
        raise ValueError(f"Tango refused {EMAIL}")
    except ValueError:
        logger.exception("call failed for %s", PHONE)
    logger.info("where %s", "it happened", stack_info=True, extra={"request_id": "r-1"})


def test_text_format_masks_messages_arguments_tracebacks(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured
    configure_handlers(logger, "text")
    configure_handlers(logger, "text")  # twice: still one filter, masking once
    log_everything(logger)
    text = stream.getvalue()
    for value in CLEAR_VALUES:
        assert value not in text
    assert "resend to p***@example.com by SMS +1******0123" in text
    assert "bounce from u***@example.org (mobile +1******0123)" in text
    assert "ValueError: Tango refused p***@example.com" in text
    assert text.count("INFO tango_resend.tests.ops.masking: ") == 3


def test_json_format_masks_messages_and_tracebacks(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured
    configure_handlers(logger, "json")
    log_everything(logger)
    entries = json_lines(stream.getvalue())
    assert len(entries) == 5
    assert entries[0]["message"] == "resend to p***@example.com by SMS +1******0123"
    assert "p***@example.com" in entries[3]["exception"]
    assert entries[4]["request_id"] == "r-1"
    for value in CLEAR_VALUES:
        assert value not in stream.getvalue()


def test_json_format_masks_state_fields(captured: tuple[logging.Logger, io.StringIO]) -> None:
    """A failure's reason is Tango's message, which can quote the address it refused."""
    logger, stream = captured
    configure_handlers(logger, "json")
    logger.info(
        "request=r-1 status=failed",
        extra={
            "request_id": "r-1",
            "status": "failed",
            "reason": f"Tango refused the resend: {EMAIL} is not deliverable to {PHONE}",
        },
    )
    (entry,) = json_lines(stream.getvalue())
    assert entry["status"] == "failed"
    assert entry["reason"] == (
        "Tango refused the resend: p***@example.com is not deliverable to +1******0123"
    )
