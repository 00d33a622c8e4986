"""The `tango-resend` command line: `main` is the console script (`worker.cli:main`).

`entry.py` holds the command group, `cmd_*.py` the commands by topic, `common.py` what they
share; `doctor.py`, `bulk.py`, `recovery.py` and `demo.py` are the plain code behind `doctor`,
`enqueue --file`, `enqueue --orders-between` and `demo`. `main` is imported on first use, so
`import worker.cli.bulk` stays light.

The command line comes with the `worker` extra (`pip install 'tango-resend[worker]'`); the
base install is an application's producer, and `main` says so rather than fail on an import.
"""

from __future__ import annotations

import importlib.util
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from worker.cli.entry import main

__all__ = ["main"]


# The packages the command line needs beyond the base install, and the extra that brings them.
_CLI_PACKAGES = ("click", "rich", "celery", "requests")
EXTRA_HINT = (
    "tango-resend: the command line, the worker and the receiver need the worker and web "
    "extras; this is the producer install (enqueue_resend & co. for applications). "
    "Install them with: pip install 'tango-resend[worker,web]'"
)


def __getattr__(name: str) -> Any:
    if name == "main":
        missing = [
            package for package in _CLI_PACKAGES if importlib.util.find_spec(package) is None
        ]
        if missing:
            return _missing_extra
        from worker.cli.entry import main

        return main
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _missing_extra() -> None:
    print(EXTRA_HINT, file=sys.stderr)
    raise SystemExit(2)
