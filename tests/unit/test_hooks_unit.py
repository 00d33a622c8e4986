"""`worker.core.hooks.Hook`, behind the public `resend_finished`, connects, sends and
disconnects as Celery's `Signal` (which `resend_finished` was) does: each scenario runs
against both, so receivers written for the signal keep working."""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import Any

import pytest
from celery.utils.dispatch import Signal

import worker
import worker.callbacks
from worker.core.hooks import Hook
from worker.resend.callbacks import resend_finished

Factory = Callable[[], Any]
FACTORIES: dict[str, Factory] = {
    "hook": lambda: Hook("test"),
    "celery-signal": lambda: Signal(name="test", providing_args=["record"]),
}


@pytest.fixture(params=sorted(FACTORIES))
def hook(request: pytest.FixtureRequest) -> Any:
    return FACTORIES[request.param]()


def test_a_receiver_gets_the_hook_the_sender_and_the_named_arguments(hook: Any) -> None:
    seen: list[dict[str, Any]] = []

    def receive(**kwargs: Any) -> str:
        seen.append(kwargs)
        return "answer"

    hook.connect(receive, weak=False)
    responses = hook.send(sender=None, record="r1")

    assert seen == [{"signal": hook, "sender": None, "record": "r1"}]
    assert responses == [(receive, "answer")]


def test_connect_works_as_a_decorator_with_and_without_options(hook: Any) -> None:
    calls: list[str] = []

    @hook.connect
    def plain(**_: Any) -> None:
        calls.append("plain")

    @hook.connect(weak=False, dispatch_uid="with-options")
    def with_options(**_: Any) -> None:
        calls.append("with options")

    hook.send(sender=None)

    assert calls == ["plain", "with options"]
    assert callable(plain) and callable(with_options), "the decorator returns the function"


def test_weak_receivers_go_when_collected_strong_ones_stay(hook: Any) -> None:
    calls: list[str] = []

    def make(name: str) -> Callable[..., None]:
        def receive(**_: Any) -> None:
            calls.append(name)

        return receive

    hook.connect(make("weak"))  # nothing else holds it
    hook.connect(make("strong"), weak=False)
    gc.collect()
    hook.send(sender=None)

    assert calls == ["strong"]


def test_a_bound_method_is_held_weakly_and_known_by_its_object(hook: Any) -> None:
    calls: list[int] = []

    class Listener:
        def __init__(self, number: int) -> None:
            self.number = number

        def receive(self, **_: Any) -> None:
            calls.append(self.number)

    listener = Listener(1)
    hook.connect(listener.receive)
    hook.connect(listener.receive)  # a new bound method object, the same receiver
    hook.send(sender=None)
    assert calls == [1]

    del listener
    gc.collect()
    hook.send(sender=None)
    assert calls == [1]


def test_one_connection_per_receiver_or_dispatch_uid(hook: Any) -> None:
    calls: list[str] = []

    def receive(**_: Any) -> None:
        calls.append("receive")

    def other(**_: Any) -> None:
        calls.append("other")

    hook.connect(receive, weak=False)
    hook.connect(receive, weak=False)
    hook.connect(other, weak=False, dispatch_uid="uid")
    hook.connect(receive, weak=False, dispatch_uid="uid")  # the uid is taken: ignored
    hook.send(sender=None)

    assert calls == ["receive", "other"]
    assert hook.disconnect(dispatch_uid="uid") is True
    assert hook.disconnect(dispatch_uid="uid") is False


def test_a_receiver_for_one_sender_hears_only_that_sender(hook: Any) -> None:
    heard: list[object] = []
    mine, theirs = object(), object()

    def receive(sender: object, **_: Any) -> None:
        heard.append(sender)

    def everyone(sender: object, **_: Any) -> None:
        heard.append(("everyone", sender))

    hook.connect(receive, sender=mine, weak=False)
    hook.connect(everyone, weak=False)
    hook.send(sender=theirs)
    hook.send(sender=mine)

    assert heard == [("everyone", theirs), mine, ("everyone", mine)]
    assert hook.has_listeners(mine) and hook.has_listeners(theirs)


def test_a_failing_receiver_is_returned_not_raised_and_the_others_still_run(hook: Any) -> None:
    calls: list[str] = []

    def broken(**_: Any) -> None:
        raise RuntimeError("receiver bug")

    def fine(**_: Any) -> None:
        calls.append("fine")

    hook.connect(broken, weak=False)
    hook.connect(fine, weak=False)
    responses = hook.send(sender=None)

    assert calls == ["fine"]
    assert responses[0][0] is broken and isinstance(responses[0][1], RuntimeError)
    assert responses[1] == (fine, None)


def test_disconnect_removes_a_receiver_once(hook: Any) -> None:
    def receive(**_: Any) -> None:
        raise AssertionError("disconnected")

    hook.connect(receive, weak=False)

    assert hook.disconnect(receive) is True
    assert hook.disconnect(receive) is False
    assert hook.send(sender=None) == []
    assert not hook.has_listeners()


def test_a_receiver_without_keyword_arguments_is_refused(hook: Any) -> None:
    def positional_only(record: object) -> None:
        pass

    with pytest.raises(ValueError):
        hook.connect(positional_only, weak=False)


def test_resend_finished_is_a_hook_at_every_public_path() -> None:
    assert isinstance(resend_finished, Hook)
    assert worker.resend_finished is resend_finished
    assert worker.callbacks.resend_finished is resend_finished
