"""The `resend_finished` hook in a real worker process sees who asked for the request: the
run's record carries the audit fields the record's hash keeps beside its document."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.processes import StartedProcesses, worker_arguments
from tests.support.records import finished
from tests.support.waiting import wait_for
from worker import enqueue_resend, get_resend
from worker.sandbox import SandboxControl

pytestmark = pytest.mark.integration

ORDER = "RA251206-0101-01"

# A user's module connecting a receiver, imported before the worker starts (as an application
# that runs the worker from its own code does); each record it hears is a line in `heard`.
RECEIVER = """
import json
from worker import resend_finished

@resend_finished.connect
def note(sender, record, **_):
    with open({heard!r}, "a") as out:
        out.write(json.dumps({{"id": record.id, "origin": record.origin,
                              "forced": record.forced}}) + "\\n")
"""


def test_the_hook_in_a_worker_process_sees_the_requests_origin(
    control: SandboxControl,
    settings_env: dict[str, str],
    processes: StartedProcesses,
    tmp_path: Path,
) -> None:
    heard = tmp_path / "heard.jsonl"
    (tmp_path / "hook_receiver.py").write_text(RECEIVER.format(heard=str(heard)))
    control.add_order(ORDER)
    launcher = (
        f"import sys; sys.path.insert(0, {str(tmp_path)!r}); import hook_receiver; "
        "import runpy; runpy.run_module('worker', run_name='__main__', alter_sys=True)"
    )
    processes.worker(settings_env, command=["-c", launcher, *worker_arguments("w1")])
    request_id = enqueue_resend(ORDER, origin="billing-job")
    wait_for(lambda: finished([request_id]), timeout=30, what="the resend")
    wait_for(lambda: heard.exists() and heard.read_text(), timeout=10, what="the hook")

    stored = get_resend(request_id)
    assert stored is not None and stored.origin == "python billing-job"
    lines = [json.loads(line) for line in heard.read_text().splitlines()]
    assert lines == [{"id": request_id, "origin": stored.origin, "forced": stored.forced}]
