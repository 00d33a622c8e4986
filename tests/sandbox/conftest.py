"""Fixtures for the Tango sandbox tests: real servers on loopback, real HTTP clients."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

# Lets `pytest tests/sandbox` work without an installed package or a root conftest.
_REPO_ROOT = str(Path(__file__).resolve().parents[2])
if _REPO_ROOT not in sys.path:
    sys.path.insert(0, _REPO_ROOT)

from worker.sandbox import SandboxControl, SandboxServer  # noqa: E402

PLATFORM_AUTH = ("sandbox-platform", "sandbox-key")


@pytest.fixture
def make_server() -> Iterator[Callable[..., SandboxServer]]:
    """Starts sandboxes with custom settings; all are stopped after the test."""
    started: list[SandboxServer] = []

    def _make(**settings: Any) -> SandboxServer:
        server = SandboxServer(**settings).start()
        started.append(server)
        return server

    yield _make
    for server in started:
        server.stop()


@pytest.fixture
def server(make_server: Callable[..., SandboxServer]) -> SandboxServer:
    """A sandbox with production settings (30 s window)."""
    return make_server()


@pytest.fixture
def control(server: SandboxServer) -> Iterator[SandboxControl]:
    """The control client of ``server``."""
    with SandboxControl(server.control_url) as sandbox_control:
        yield sandbox_control


@pytest.fixture
def new_session() -> Iterator[Callable[..., requests.Session]]:
    """Opens requests sessions (platform Basic auth by default); all closed after the test."""
    opened: list[requests.Session] = []

    def _new(auth: tuple[str, str] | None = PLATFORM_AUTH) -> requests.Session:
        session = requests.Session()
        session.auth = auth
        opened.append(session)
        return session

    yield _new
    for session in opened:
        session.close()


@pytest.fixture
def tango(new_session: Callable[..., requests.Session]) -> requests.Session:
    """A session authenticated with the sandbox's platform name and key."""
    return new_session()
