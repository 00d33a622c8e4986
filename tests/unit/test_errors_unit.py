"""One exception root: every exception tango-resend defines is a `TangoResendError`, so an
application catches all of ours (and nothing else's) with one clause; the built-in bases
callers already catch (`ValueError`, `RuntimeError`) are kept."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import tango_resend
import worker
from worker.core.errors import RedisUnavailable, TangoResendError


def defined_exceptions() -> list[type[BaseException]]:
    """Every public exception class defined in a `worker` module (the sandbox is a stand-in
    for Tango, not part of what we raise; `worker.__main__` would run the command line)."""
    found: list[type[BaseException]] = []
    for module_info in pkgutil.walk_packages(worker.__path__, "worker."):
        name = module_info.name
        if name.startswith("worker.sandbox") or name == "worker.__main__":
            continue
        module = importlib.import_module(name)
        for attribute, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == name
                and not attribute.startswith("_")
            ):
                found.append(value)
    return found


def test_the_walk_finds_the_exceptions_of_every_layer() -> None:
    names = {cls.__name__ for cls in defined_exceptions()}

    assert {
        "TangoResendError",
        "RedisUnavailable",
        "ConfigurationError",
        "TangoError",
        "TangoCooldownError",
        "TokenUnavailable",
        "InvalidResendRequest",
        "EnqueueError",
        "NotRetryable",
        "BulkInputError",
        "SignatureError",
    } <= names


@pytest.mark.parametrize("cls", defined_exceptions(), ids=lambda cls: cls.__qualname__)
def test_every_exception_we_define_is_a_tango_resend_error(cls: type[BaseException]) -> None:
    assert issubclass(cls, TangoResendError)


def test_the_root_is_importable_from_the_public_paths() -> None:
    from worker import TangoResendError as from_worker

    assert from_worker is TangoResendError
    assert tango_resend.TangoResendError is TangoResendError
    assert issubclass(TangoResendError, Exception)


def test_the_built_in_bases_callers_catch_are_kept() -> None:
    from worker import EnqueueError, InvalidResendRequest, NotRetryable

    assert issubclass(InvalidResendRequest, ValueError)
    assert issubclass(NotRetryable, ValueError)
    assert issubclass(RedisUnavailable, RuntimeError)
    assert issubclass(EnqueueError, RedisUnavailable)
    error = InvalidResendRequest({"newEmail": "is not a valid email address"})
    with pytest.raises(ValueError, match="newEmail"):
        raise error


def test_redis_unavailable_keeps_its_old_import_paths() -> None:
    """It moved to the lowest layer; the producer's path and `worker`'s still name it."""
    from worker.resend.producer import RedisUnavailable as from_producer

    assert from_producer is RedisUnavailable
    assert worker.RedisUnavailable is RedisUnavailable


def test_the_doctors_redis_error_is_a_redis_unavailable() -> None:
    from worker.cli.doctor import RedisUnreachable

    assert issubclass(RedisUnreachable, RedisUnavailable)
