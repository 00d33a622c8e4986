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

import base64
import json
import re
import uuid
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


_PLAIN_ID = re.compile(r"[A-Za-z0-9.-]+")


class TaskMessageTemplate:
    """What `build_task_message` builds, for any request id, at the cost of a few string
    replacements: for many requests at once (`tango-resend enqueue --file`), where building
    each message through Celery and kombu would cost more than storing the request.

    It is one message built the ordinary way, for a placeholder id; `render` puts a request's
    id where the placeholder was (the headers, the properties, the base64-encoded body) and a
    fresh delivery tag (kombu gives each message a UUID of its own). Only `build_template`
    makes one, after checking it against a message built the ordinary way.
    """

    def __init__(self, message: TaskMessage, placeholder: str) -> None:
        document = json.loads(message.payload)
        properties = document["properties"]
        encoded = document["body"]
        before, quoted, after = message.payload.partition(json.dumps(encoded))
        body = base64.b64decode(encoded).decode()
        if not quoted or properties.get("body_encoding") != "base64" or placeholder not in body:
            raise MessageNotCaptured("the task message is not laid out as expected")
        self.list_key = message.list_key
        self._placeholder = placeholder
        self._tag = str(properties["delivery_tag"])
        self._before, self._body, self._after = before, body, after

    def render(self, request_id: str, delivery_tag: str | None = None) -> TaskMessage:
        """The message for `request_id`, as `build_task_message` builds it (with
        `delivery_tag`, or a new one). Ids are ASCII letters, digits, dots and dashes (what
        request ids are: 12 hex digits, a dot, the order; UUIDs before), which every encoding
        on the way leaves as they are.

        Raises:
            ValueError: for any other id.
        """
        if not _PLAIN_ID.fullmatch(request_id):
            raise ValueError(f"not an id a template can take: {request_id!r}")
        placeholder, tag = self._placeholder, delivery_tag or str(uuid.uuid4())
        body = base64.b64encode(self._body.replace(placeholder, request_id).encode()).decode()
        before = self._before.replace(placeholder, request_id).replace(self._tag, tag)
        after = self._after.replace(placeholder, request_id).replace(self._tag, tag)
        return TaskMessage(self.list_key, f'{before}"{body}"{after}')


def build_template(app: Celery, name: str, queue: str) -> TaskMessageTemplate:
    """A `TaskMessageTemplate` for `build_task_message(app, name, <id>, queue)`, checked
    before use: for another id, a message built the ordinary way must equal the template's
    byte for byte (given that message's delivery tag).

    Raises:
        MessageNotCaptured: as `build_task_message`, or when the template does not give what
            Celery and kombu build (then build each message the ordinary way).
    """
    placeholder, check = str(uuid.uuid4()), str(uuid.uuid4())
    template = TaskMessageTemplate(build_task_message(app, name, placeholder, queue), placeholder)
    expected = build_task_message(app, name, check, queue)
    tag = str(json.loads(expected.payload)["properties"]["delivery_tag"])
    if template.render(check, tag) != expected:
        raise MessageNotCaptured("a message from the template differs from the one kombu built")
    return template
