"""Our tasks share one result backend across the pool's threads (results are never kept)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from celery.backends.base import DisabledBackend

from tasks.callbacks import deliver_outcome
from tasks.resend import send_resend


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
