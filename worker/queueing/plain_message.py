"""The resend task's message, written without Celery or kombu: for the slim producer install
(`pip install tango-resend`, no `[worker]` extra), which stores requests but runs no worker.

It is the message Celery's `send_task` makes and kombu's Redis transport pushes (protocol 2:
headers, properties, the base64 body; `task_messages.build_task_message` captures that one),
field for field; tests/unit/test_plain_message.py compares the two, and a real worker runs
what a slim producer queued (tests/integration/test_slim_install.py). Only the delivery tag,
`reply_to` and `origin` differ, as they do between any two messages.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import uuid
from typing import Any

from worker.state.records import TaskMessage

# Celery's default options (no callbacks, no chain): the third element of every body.
_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


def plain_task_message(task_name: str, request_id: str, queue: str) -> TaskMessage:
    """What `app.send_task(task_name, args=[request_id], task_id=request_id, queue=queue)`
    pushes to the queue's Redis list, built by hand."""
    body = json.dumps([[request_id], {}, _EMBED])
    headers: dict[str, Any] = {
        "lang": "py",
        "task": task_name,
        "id": request_id,
        "shadow": None,
        "eta": None,
        "expires": None,
        "group": None,
        "group_index": None,
        "retries": 0,
        "timelimit": [None, None],
        "root_id": request_id,
        "parent_id": None,
        "argsrepr": repr([request_id]),
        "kwargsrepr": "{}",
        "origin": f"gen{os.getpid()}@{socket.gethostname()}",
        "ignore_result": False,
        "replaced_task_nesting": 0,
        "stamped_headers": None,
        "stamps": {},
    }
    properties = {
        "correlation_id": request_id,
        "reply_to": str(uuid.uuid4()),
        "delivery_mode": 2,
        "delivery_info": {"exchange": "", "routing_key": queue},
        "priority": 0,
        "body_encoding": "base64",
        "delivery_tag": str(uuid.uuid4()),
    }
    message = {
        "body": base64.b64encode(body.encode()).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": headers,
        "properties": properties,
    }
    return TaskMessage(queue, json.dumps(message))
