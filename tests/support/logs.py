"""Logging as a process configures it, captured: a logger of its own, one real handler."""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator, Sequence


@contextlib.contextmanager
def captured_logger(
    name: str, *, fmt: str, level: int, filters: Sequence[logging.Filter] = ()
) -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """The logger `name`, not propagating, with one stream handler (formatted with `fmt`,
    carrying `filters`) writing to the StringIO it yields alongside; removed at the end."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(fmt))
    for log_filter in filters:
        handler.addFilter(log_filter)
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    try:
        yield logger, stream
    finally:
        logger.removeHandler(handler)
        handler.close()
