"""Celery's consumer, when it loses the broker (our Redis), logs a traceback and then an
ERROR per reconnection attempt. Those lines are routed into the process's one "Redis is
unreachable" condition instead (worker/core/conditions.py): one line when it starts, one a
minute while it lasts, one when it ends."""

from __future__ import annotations

import logging
import warnings

from worker.core.conditions import REDIS_UNREACHABLE

CONSUMER_LOGGER = "celery.worker.consumer.consumer"
_LOST = "consumer: Connection to broker lost"
_CANNOT_CONNECT = "consumer: Cannot connect to"


class BrokerLossFilter(logging.Filter):
    """Turns the consumer's broker-loss lines into reports of `REDIS_UNREACHABLE`."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        if message.startswith(_LOST):
            error = record.exc_info[1] if record.exc_info else None
            detail = f"{type(error).__name__}: {error}" if error else "connection lost"
        elif message.startswith(_CANNOT_CONNECT):
            args = record.args if isinstance(record.args, tuple) else ()
            detail = str(args[1]) if len(args) > 1 else "cannot connect"
        else:
            return True
        REDIS_UNREACHABLE.report(f"broker: {detail.strip().rstrip('.')}")
        return False


def install_broker_loss_filter() -> None:
    """Once per worker process (more calls add nothing)."""
    consumer = logging.getLogger(CONSUMER_LOGGER)
    if not any(isinstance(existing, BrokerLossFilter) for existing in consumer.filters):
        consumer.addFilter(BrokerLossFilter())
    # Celery warns on every broker loss that a future version will cancel running tasks on
    # it; our runs are fenced and leased either way, so the warning says nothing to operators.
    warnings.filterwarnings(
        "ignore", message=r"(?s).*worker_cancel_long_running_tasks_on_connection_loss"
    )
