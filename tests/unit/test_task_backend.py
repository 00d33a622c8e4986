"""Our tasks share one result backend across the pool's threads (results are never kept)."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from celery.backends.base import DisabledBackend

from tasks.callbacks import deliver_outcome
from tasks.resend import send_resend

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("task", [send_resend, deliver_outcome])
def test_every_pool_thread_uses_the_same_disabled_backend(task: Any) -> None:
    seen: list[Any] = []
    threads = [threading.Thread(target=lambda: seen.append(task.backend)) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert isinstance(task.backend, DisabledBackend)
    # Celery would otherwise build one per thread, on the thread's first task (5 ms each).
    assert all(backend is task.backend for backend in seen)


def test_importing_the_tasks_reads_no_configuration() -> None:
    # The apps read their settings on first use: a process (the bench, a test) may set the
    # environment after importing them. Giving a task its backend at import broke that once.
    code = (
        "import tasks.resend, tasks.callbacks, bench.naive_app\n"
        "from worker.queueing.app import app\n"
        "assert not app.configured and not bench.naive_app.app.configured, 'configured'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT)
