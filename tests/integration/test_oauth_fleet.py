"""OAuth client credentials: one token for the whole fleet."""

from __future__ import annotations

import pytest

from tests.support.processes import WorkerFactory
from tests.support.records import finished
from tests.support.waiting import wait_for
from worker import enqueue_resend
from worker.sandbox import SandboxControl, SandboxServer

pytestmark = pytest.mark.integration


def test_three_workers_starting_at_once_make_one_token_request(
    sandbox: SandboxServer, control: SandboxControl, start_worker: WorkerFactory
) -> None:
    oauth = {
        "TANGO_PLATFORM_NAME": "",
        "TANGO_PLATFORM_KEY": "",
        "TANGO_CLIENT_ID": "sandbox-client",
        "TANGO_CLIENT_SECRET": "sandbox-secret",
        "TANGO_TOKEN_URL": sandbox.token_url,
    }
    orders = [f"RA251125-6001-{n:02d}" for n in range(9)]
    for order in orders:
        control.add_order(order)
    workers = [start_worker(f"w{n}", concurrency=4, wait=False, **oauth) for n in range(3)]
    for worker in workers:
        worker.wait_ready()

    ids = [enqueue_resend(order) for order in orders]
    records = wait_for(lambda: finished(ids), timeout=20, what="all sent")

    assert {r.status.value for r in records} == {"sent"}
    assert control.token_requests() == 1
    assert {c["auth"] for c in control.calls()} == {"bearer"}
    assert sum("fetched a new Tango OAuth token" in w.log() for w in workers) == 1
