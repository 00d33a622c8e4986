"""Task messages that Celery and kombu build, and our own Lua scripts write.

A new request's record and its task message go to Redis in the one script that stores the
request (worker/state/lua/create.lua): a 202 then means stored *and* queued, atomically,
in a single round trip, and no failure can fall between the two.

Celery still builds the message and kombu still routes it (protocol 2 headers, properties, the
encoded body, delivery info, the list a worker consumes), exactly as `send_task` would. We stop
them at the last step: kombu's Redis transport hands a publish batch the commands it would run
(`Producer.batch()`, kombu 5.7), and the batch we put in its place keeps that one LPUSH instead
of running it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from worker.core.errors import TangoResendError
from worker.state.records import TaskMessage

if TYPE_CHECKING:
    from celery import Celery


class MessageNotCaptured(TangoResendError, RuntimeError):
    """Raised when kombu did not route the message to exactly one Redis list."""


class _CapturingBatch:
    """Takes the place of kombu's publish batch (`Producer._batch_local.current`): kombu
    routes the message through the channel and adds the final Redis commands here; none run."""

    def __init__(self) -> None:
        self.commands: list[tuple[str, tuple[Any, ...]]] = []
        self._routing = False

    def publish(self, channel: Any, message: Any, **kwargs: Any) -> None:
        self._routing = True
        try:
            channel.basic_publish(message, _publish_batch=self, **kwargs)
        finally:
            self._routing = False

    def add(self, name: str, *args: Any) -> None:
        if not self._routing:
            raise MessageNotCaptured("a Redis command was added outside a publish")
        self.commands.append((name, args))


def build_task_message(app: Celery, name: str, request_id: str, queue: str) -> TaskMessage:
    """The message `app.send_task(name, args=[request_id], task_id=request_id, queue=queue)`
    would publish, without publishing it.

    Raises:
        MessageNotCaptured: the transport routed it elsewhere than one list (not Redis, or a
            queue bound more than once); publish it the ordinary way instead.
    """
    capture = _CapturingBatch()
    with app.producer_or_acquire() as producer:
        producer._batch_local.current = capture
        try:
            app.send_task(
                name, args=[request_id], task_id=request_id, queue=queue, producer=producer
            )
        finally:
            del producer._batch_local.current
    if len(capture.commands) != 1 or capture.commands[0][0] != "lpush":
        raise MessageNotCaptured(f"expected one LPUSH, kombu asked for {capture.commands!r:.200}")
    list_key, payload = capture.commands[0][1]
    return TaskMessage(str(list_key), payload if isinstance(payload, str) else payload.decode())
