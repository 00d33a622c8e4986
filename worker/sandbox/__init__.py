"""A loopback simulator of the Tango RaaS v2 endpoints the worker uses, with test controls.

Standard library only on the server side. Start one with ``SandboxServer`` (or
``main_serve`` from the CLI), point the worker at its ``base_url`` and
``token_url``, and steer it with ``SandboxControl`` or ``SandboxServer.state``.
"""

from .client import SandboxControl
from .models import SandboxConfig
from .server import SandboxServer, main_serve
from .state import SandboxState

__all__ = ["SandboxConfig", "SandboxControl", "SandboxServer", "SandboxState", "main_serve"]
