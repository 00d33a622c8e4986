"""The README's examples, as tests run them."""

from __future__ import annotations

from tests.support.processes import REPO_ROOT


def readme_block(start: str, end: str, fence: str) -> str:
    """The code of the ```FENCE block between the README's `start` and `end` markers."""
    text = (REPO_ROOT / "README.md").read_text()
    block = text.split(start)[1].split(end)[0]
    return block.split(f"```{fence}\n")[1].split("```")[0]
