"""Every benchmark module imports: `make bench` is not part of `make test`, so a name moved
elsewhere (the helpers bench shares with tests live in tests/support) would otherwise only
show when someone next runs the benchmarks."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import bench


def _bench_modules() -> list[str]:
    return sorted(
        module.name
        for module in pkgutil.walk_packages(bench.__path__, prefix="bench.")
        if module.name != "bench.__main__"
    )


@pytest.mark.parametrize("name", _bench_modules())
def test_a_bench_module_imports(name: str) -> None:
    importlib.import_module(name)


def test_the_bench_entry_point_imports() -> None:
    importlib.import_module("bench.__main__")
