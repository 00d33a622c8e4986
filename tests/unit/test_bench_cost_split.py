"""The cost split's categories (bench/cost_sampler.py): a frame's by its file, a stack's by its
innermost frame that has one; and the sampler charging a busy thread's CPU to its code."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from types import FrameType

import pytest

from bench.cost_sampler import (
    CELERY,
    HTTP,
    OTHER,
    OURS,
    PROFILER,
    REDIS_CLIENT,
    Classifier,
    Sampler,
)
from bench.scenarios.cost import interpolate

ROOT = "/srv/tango-resend"
STDLIB = "/usr/lib/python3.11"
SITE = f"{ROOT}/.venv/lib/python3.11/site-packages"


@pytest.fixture
def classifier() -> Classifier:
    return Classifier(ROOT, stdlib=STDLIB)


@pytest.mark.parametrize(
    ("filename", "category"),
    [
        (f"{ROOT}/worker/resend/executor.py", OURS),
        (f"{ROOT}/tasks/resend.py", OURS),
        (f"{ROOT}/bench/naive_app.py", OTHER),  # the plain task's own code
        (f"{SITE}/redis/connection.py", REDIS_CLIENT),
        (f"{SITE}/redis/_parsers/hiredis.py", REDIS_CLIENT),
        (f"{SITE}/hiredis/__init__.py", REDIS_CLIENT),
        (f"{SITE}/requests/sessions.py", HTTP),
        (f"{SITE}/urllib3/connectionpool.py", HTTP),
        (f"{STDLIB}/http/client.py", HTTP),
        (f"{SITE}/celery/app/trace.py", CELERY),
        (f"{SITE}/kombu/transport/redis.py", CELERY),
        (f"{SITE}/billiard/einfo.py", CELERY),
        (f"{SITE}/amqp/__init__.py", CELERY),
        (f"{SITE}/vine/promises.py", CELERY),
        (f"{SITE}/click/core.py", CELERY),
        ("/usr/lib/python3/dist-packages/kombu/messaging.py", CELERY),
        # No category: their time goes to the caller's.
        (f"{SITE}/pydantic/main.py", None),
        (f"{SITE}/click_didyoumean/__init__.py", None),
        (f"{SITE}/six.py", None),
        (f"{STDLIB}/socket.py", None),
        (f"{STDLIB}/ssl.py", None),
        (f"{STDLIB}/email/feedparser.py", None),
        (f"{STDLIB}/json/encoder.py", None),
        (f"{STDLIB}/concurrent/futures/thread.py", None),
        ("<frozen importlib._bootstrap>", None),
        ("<string>", None),
        ("", None),
        ("/elsewhere/worker/executor.py", None),  # another checkout's worker/ is not ours
    ],
)
def test_a_file_has_the_category_of_its_package(
    classifier: Classifier, filename: str, category: str | None
) -> None:
    assert classifier.file_category(filename) == category


def _stack(*filenames: str) -> FrameType:
    """A real stack of frames, outermost first, each function compiled under one of
    `filenames`: the innermost one's frame (above it: this module's and pytest's)."""
    namespace: dict[str, object] = {"sys": sys}
    for depth, filename in enumerate(filenames):
        last = depth == len(filenames) - 1
        body = "return sys._getframe()" if last else f"return f{depth + 1}()"
        exec(compile(f"def f{depth}():\n    {body}\n", filename, "exec"), namespace)
    first = namespace["f0"]
    assert callable(first)
    frame = first()
    assert isinstance(frame, FrameType)
    return frame


@pytest.mark.parametrize(
    ("filenames", "category"),
    [
        # Celery runs our task, which calls redis-py, which writes to a socket: Redis client.
        (
            [
                f"{SITE}/celery/app/trace.py",
                f"{ROOT}/worker/a.py",
                f"{SITE}/redis/client.py",
                f"{STDLIB}/socket.py",
            ],
            REDIS_CLIENT,
        ),
        # http.client parsing headers with the email package, under requests: HTTP.
        (
            [
                f"{ROOT}/worker/tango/client.py",
                f"{SITE}/requests/sessions.py",
                f"{STDLIB}/http/client.py",
                f"{STDLIB}/email/feedparser.py",
            ],
            HTTP,
        ),
        # Our code in json and pydantic: ours.
        (
            [
                f"{SITE}/celery/app/trace.py",
                f"{ROOT}/worker/state/records.py",
                f"{SITE}/pydantic/main.py",
                f"{STDLIB}/json/encoder.py",
            ],
            OURS,
        ),
        # Celery's own work in the standard library: Celery.
        ([f"{SITE}/kombu/asynchronous/hub.py", f"{STDLIB}/selectors.py"], CELERY),
        # A pool thread waiting for its next task: nothing but the standard library.
        ([f"{STDLIB}/threading.py", f"{STDLIB}/concurrent/futures/thread.py"], OTHER),
    ],
)
def test_a_stack_has_the_category_of_its_innermost_frame_that_has_one(
    classifier: Classifier, filenames: list[str], category: str
) -> None:
    assert classifier.stack_category(_stack(*filenames)) == category


def test_no_stack_is_other(classifier: Classifier) -> None:
    assert classifier.stack_category(None) == OTHER


def test_the_sampler_charges_a_busy_threads_cpu_to_its_code() -> None:
    namespace: dict[str, object] = {"time": time}
    source = "def spin(until):\n    while time.monotonic() < until:\n        pass\n"
    exec(compile(source, f"{ROOT}/worker/busy.py", "exec"), namespace)
    spin = namespace["spin"]
    assert callable(spin)
    sampler = Sampler(Classifier(ROOT), interval=0.001, snapshot=0.02).start()
    busy = threading.Thread(target=_run, args=(spin, time.monotonic() + 0.4))
    busy.start()
    busy.join()
    sampler.stop()
    worker_cpu = sum(seconds for name, seconds in sampler.totals.items() if name != PROFILER)
    assert sampler.totals[OURS] >= 0.1
    assert sampler.totals[OURS] >= 0.7 * worker_cpu
    assert sampler.snapshots and sampler.snapshots[-1][2][0] == sampler.totals[OURS]


def _run(spin: Callable[[float], None], until: float) -> None:
    spin(until)


def test_interpolate_between_samples_and_clamp_outside() -> None:
    times, values = [1.0, 2.0, 4.0], [10.0, 20.0, 40.0]
    assert interpolate(times, values, 1.5) == pytest.approx(15.0)
    assert interpolate(times, values, 3.0) == pytest.approx(30.0)
    assert interpolate(times, values, 0.0) == 10.0
    assert interpolate(times, values, 9.0) == 40.0
