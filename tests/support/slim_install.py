"""A virtualenv with tango-resend's base install only (the producer's), made offline: the
wheel built from this checkout, and exactly the distributions its base requirements need,
copied file for file from this test environment (where the lock file installed them)."""

from __future__ import annotations

import importlib.metadata
import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path

from packaging.requirements import Requirement

from tests.support.processes import REPO_ROOT


def base_closure(root: str = "tango-resend") -> set[str]:
    """The distributions `pip install tango-resend` (no extras) brings, by their names as
    installed here: requirements read from each one's metadata, markers evaluated for this
    interpreter and no extra."""
    wanted = [(root, frozenset[str]())]
    visited: set[tuple[str, frozenset[str]]] = set()
    while wanted:
        name, extras = wanted.pop()
        if (_normal(name), extras) in visited:
            continue
        visited.add((_normal(name), extras))
        distribution = importlib.metadata.distribution(name)
        for line in distribution.requires or []:
            requirement = Requirement(line)
            active = requirement.marker is None or any(
                requirement.marker.evaluate({"extra": extra}) for extra in (extras or {""})
            )
            if active:
                wanted.append((requirement.name, frozenset(requirement.extras)))
    return {name for name, _ in visited}


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def make_slim_venv(folder: Path) -> Path:
    """A virtualenv in `folder` with the wheel of this checkout and its base closure; returns
    its python."""
    # Built from a copy, as the README's install snippet builds it: a build leaves files behind.
    project, wheel_dir = folder / "project", folder / "dist"
    project.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, project / name)
    for package in ("worker", "tasks", "tango_resend"):
        shutil.copytree(
            REPO_ROOT / package, project / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheel_dir), "."],
        cwd=project,
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = wheel_dir.glob("tango_resend-*.whl")
    env_dir = folder / "venv"
    venv.EnvBuilder(with_pip=True, symlinks=True).create(env_dir)
    python = env_dir / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    for name in sorted(base_closure() - {"tango-resend"}):
        _copy_distribution(name, site)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return python


def _copy_distribution(name: str, site: Path) -> None:
    """Every file an installed distribution owns under site-packages (its code and its
    .dist-info), copied into `site`: the same as installing that distribution's wheel."""
    distribution = importlib.metadata.distribution(name)
    for relative in distribution.files or []:
        if relative.parts[0] == ".." or "__pycache__" in relative.parts:
            continue  # scripts outside site-packages; byte code is made again
        source = Path(str(distribution.locate_file(relative)))
        target = site / relative
        if source.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
