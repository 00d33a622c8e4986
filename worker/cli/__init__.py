"""The `tango-resend` command line: `main` is the console script (`worker.cli:main`).

`entry.py` holds the command group, `cmd_*.py` the commands by topic, `common.py` what they
share; `doctor.py`, `bulk.py` and `demo.py` are the plain code behind `doctor`, `enqueue --file`
and `demo`. `main` is imported on first use, so `import worker.cli.bulk` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from worker.cli.entry import main

__all__ = ["main"]


def __getattr__(name: str) -> Any:
    if name == "main":
        from worker.cli.entry import main

        return main
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
