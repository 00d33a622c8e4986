"""An in-process hook: receivers connect to it, and each `send` calls them all.

Our own class rather than Celery's `celery.utils.dispatch.Signal`, which `resend_finished`
used to be: the layers below the Celery glue (the executor and the callbacks module, which
fire the hook) then import no Celery at all (docs/how-it-works.md, "Architecture"). It keeps
the part of `Signal` that receivers written for it rely on, so such code runs unchanged:

- `connect` as a call (`hook.connect(fn)`, `hook.connect(fn, weak=False)`) or a decorator
  (`@hook.connect`, `@hook.connect(sender=..., dispatch_uid=...)`), returning the receiver;
  receivers must take keyword arguments (ValueError otherwise), as `Signal` requires;
- weak references by default (a receiver that is garbage collected is dropped; `weak=False`
  keeps it), bound methods included;
- one connection per receiver (or per `dispatch_uid`) and sender; `sender=None` hears all;
- `send(sender, **named)` calls each receiver as `receiver(signal=hook, sender=sender,
  **named)` and returns `[(receiver, result)]`; a receiver's exception is logged and returned
  as its result, never raised into the sender's work;
- `disconnect(receiver=None, sender=None, dispatch_uid=None)` returns whether it removed one.

Celery's `retry=` option (call a failing receiver again and again until it succeeds) is not
kept: it would hold a resend thread hostage to a receiver's bug.
"""

from __future__ import annotations

import inspect
import logging
import threading
import weakref
from collections.abc import Callable, Hashable
from types import MethodType
from typing import Any, TypeVar, overload

logger = logging.getLogger("tango_resend.hooks")

Receiver = Callable[..., Any]
R = TypeVar("R", bound=Receiver)

# A connection is looked up by (receiver or dispatch_uid, sender); see `_key`.
_Key = tuple[Hashable, Hashable]


def _identity(target: object) -> Hashable:
    """One identity per receiver: a bound method is new on every attribute access, so it is
    known by its object and function."""
    if isinstance(target, MethodType):
        return (id(target.__self__), id(target.__func__))
    return id(target)


def _accepts_keywords(receiver: Receiver) -> bool:
    try:
        parameters = inspect.signature(receiver).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: let a call decide
        return True
    return any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters)


class Hook:
    """A named in-process hook (see the module docstring for its contract)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        # (key, a function returning the receiver, or None once a weak one is collected)
        self._receivers: list[tuple[_Key, Callable[[], Receiver | None]]] = []

    @overload
    def connect(
        self,
        receiver: R,
        sender: object = None,
        weak: bool = True,
        dispatch_uid: Hashable | None = None,
    ) -> R: ...

    @overload
    def connect(
        self,
        receiver: None = None,
        sender: object = None,
        weak: bool = True,
        dispatch_uid: Hashable | None = None,
    ) -> Callable[[R], R]: ...

    def connect(
        self,
        receiver: R | None = None,
        sender: object = None,
        weak: bool = True,
        dispatch_uid: Hashable | None = None,
    ) -> R | Callable[[R], R]:
        """Connect `receiver` (for `sender` only, unless None); without a receiver, return a
        decorator that connects the function it decorates with these options."""

        def connect_receiver(function: R) -> R:
            self._connect(function, sender, weak, dispatch_uid)
            return function

        if receiver is None:
            return connect_receiver
        return connect_receiver(receiver)

    def _connect(
        self, receiver: Receiver, sender: object, weak: bool, dispatch_uid: Hashable | None
    ) -> None:
        if not callable(receiver):
            raise TypeError(f"{self.name} receivers must be callable")
        if not _accepts_keywords(receiver):
            # `send` passes `signal=` and `sender=`: refuse now, not at the first outcome.
            raise ValueError(f"{self.name} receivers must accept keyword arguments")
        reference: Callable[[], Receiver | None]
        if not weak:

            def reference() -> Receiver:  # a strong reference, dereferenced like a weak one
                return receiver

        elif isinstance(receiver, MethodType):
            reference = weakref.WeakMethod(receiver)
        else:
            reference = weakref.ref(receiver)
        key = _key(receiver, sender, dispatch_uid)
        with self._lock:
            self._drop_dead()
            if all(existing != key for existing, _ in self._receivers):
                self._receivers.append((key, reference))

    def disconnect(
        self,
        receiver: Receiver | None = None,
        sender: object = None,
        dispatch_uid: Hashable | None = None,
    ) -> bool:
        """Disconnect a receiver (or the one connected with `dispatch_uid`) from `sender`;
        True when one was connected."""
        key = _key(receiver, sender, dispatch_uid)
        with self._lock:
            self._drop_dead()
            for index, (existing, _) in enumerate(self._receivers):
                if existing == key:
                    del self._receivers[index]
                    return True
        return False

    def has_listeners(self, sender: object = None) -> bool:
        return bool(self._live_receivers(sender))

    def send(self, sender: object, **named: Any) -> list[tuple[Receiver, Any]]:
        """Call every receiver for `sender`; returns [(receiver, its result or exception)]."""
        responses: list[tuple[Receiver, Any]] = []
        for receiver in self._live_receivers(sender):
            try:
                response = receiver(signal=self, sender=sender, **named)
            except Exception as error:  # a receiver's bug must not break the sender's work
                logger.exception("%s receiver %r raised: %r", self.name, receiver, error)
                responses.append((receiver, error))
            else:
                responses.append((receiver, response))
        return responses

    def _live_receivers(self, sender: object) -> list[Receiver]:
        sender_id = _identity(sender)
        none_id = _identity(None)
        with self._lock:
            self._drop_dead()
            references = [
                reference
                for (_, for_sender), reference in self._receivers
                if for_sender in (none_id, sender_id)
            ]
        # Dereferenced outside the lock: a receiver collected meanwhile is simply skipped.
        return [receiver for reference in references if (receiver := reference()) is not None]

    def _drop_dead(self) -> None:
        """Forget weak receivers that were garbage collected (the caller holds the lock)."""
        self._receivers = [entry for entry in self._receivers if entry[1]() is not None]

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.name}>"


def _key(receiver: Receiver | None, sender: object, dispatch_uid: Hashable | None) -> _Key:
    if dispatch_uid is not None:
        return (dispatch_uid, _identity(sender))
    return (_identity(receiver), _identity(sender))
