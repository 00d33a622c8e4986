"""The resend task's message for a request about to be stored, or None when the broker cannot
build one (the request is then due at once, and the scheduler publishes it).

Celery builds it where Celery is installed. The slim producer install has no Celery (it runs
no worker): there the message is written by hand, field for field the same
(`plain_message.py`)."""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable
from functools import cache

from worker.queueing.plain_message import plain_task_message
from worker.queueing.task_names import RESEND_TASK_NAME
from worker.state.records import TaskMessage

logger = logging.getLogger("tango_resend.producer")

MessageBuilder = Callable[[str], TaskMessage | None]
"""A request's task message, given its id (None: the scheduler publishes it)."""


def task_message_or_none(request_id: str, queue: str) -> TaskMessage | None:
    """The request's task message, for the create script to queue with the request (only
    the first waiting request of an order uses it; the others are released in order as the
    ones ahead of them finish). None when it cannot be built: the request is then due at
    once, and the scheduler publishes it. Never lost, never deleted: an identical submission
    may be merged into it, or a redelivery handed its id, at any moment."""
    if not celery_installed():
        return plain_task_message(RESEND_TASK_NAME, request_id, queue)
    from worker.queueing.app import app
    from worker.queueing.task_messages import build_task_message

    try:
        return build_task_message(app, RESEND_TASK_NAME, request_id, queue)
    except Exception as error:  # the first build declares the queue: the broker may be down
        logger.warning(
            "request=%s: task message not built (%s); the scheduler publishes it", request_id, error
        )
        return None


def message_builder(queue: str) -> MessageBuilder:
    """Task messages for many requests: rendered from one template (`build_template`, checked
    against Celery's own message); each built by `task_message_or_none` when kombu lays messages out
    otherwise; none when the broker cannot be reached (as `task_message_or_none`: the requests are
    then due at once, for the scheduler to publish; trying each would wait out kombu's
    retries once per request)."""
    if not celery_installed():
        return lambda request_id: plain_task_message(RESEND_TASK_NAME, request_id, queue)
    from worker.queueing.app import app
    from worker.queueing.task_messages import MessageNotCaptured, build_template

    try:
        template = build_template(app, RESEND_TASK_NAME, queue)
    except MessageNotCaptured as error:
        logger.warning("task message template not usable (%s); building each message", error)
        return lambda request_id: task_message_or_none(request_id, queue)
    except Exception as error:  # the first build declares the queue: the broker may be down
        logger.warning("task messages not built (%s); the scheduler publishes them", error)
        return lambda _: None
    return template.render


@cache
def celery_installed() -> bool:
    """Whether Celery can be imported: not in the slim producer install."""
    return importlib.util.find_spec("celery") is not None
