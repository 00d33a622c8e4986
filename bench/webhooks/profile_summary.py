"""Summarise a py-spy raw profile of `tango-resend web`: self time and our call tree's shares.

    pip install py-spy   # not a dependency: only this recipe needs it
    py-spy record -p <web pid> -r 250 -f raw -o web.raw -d 10   # during a storm
    python -m bench.webhooks.profile_summary web.raw > bench/results/webhook_profile.txt

Idle frames (threads waiting, the event loop's select) are left out, so the shares are of the
time the receiver was busy.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

_IDLE = ("wait (threading", "select (selectors", "_worker (concurrent", "run_forever", "_run_once")
_OURS_AND_LIBRARIES = (
    "worker/",
    "kombu",
    "celery",
    "fastapi",
    "starlette",
    "pydantic",
    "logging",
    "anyio",
    "redis",
    "standardwebhooks",
    "uvicorn",
)


def summarise(raw: str, top: int = 25) -> str:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack:
            continue
        frames = stack.split(";")
        if any(marker in frames[-1] for marker in _IDLE):
            continue
        samples = int(count)
        total += samples
        own[frames[-1]] += samples
        for function in {frame.split(":")[0] for frame in frames}:
            inclusive[function] += samples
    lines = [f"busy samples: {total}", "", "self time (top frames):"]
    lines += [f"{100 * n / total:5.1f}%  {frame}" for frame, n in own.most_common(top)]
    lines += ["", "inclusive time (our code and the libraries it calls):"]
    lines += [
        f"{100 * n / total:5.1f}%  {function})"
        for function, n in inclusive.most_common(200)
        if any(name in function for name in _OURS_AND_LIBRARIES)
    ][: top * 3]
    return "\n".join(lines) + "\n"


def main() -> None:
    print(summarise(Path(sys.argv[1]).read_text()), end="")


if __name__ == "__main__":
    main()
