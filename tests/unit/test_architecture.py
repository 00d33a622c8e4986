"""The package layout's rules (docs/how-it-works.md, "Architecture"), checked on the source itself.

- The pure modules (the resend policy, request validation, the Tango error tree, the exception
  root) import no Celery, nor does any module of the resend layer below the Celery glue (the
  executor, the outcome hook): they run and test without a broker.
- The `worker.*` modules import each other without a cycle, counting imports inside functions
  (those run later, but a cycle through them still ties two modules together).
- The public import paths users' code and deployments name keep working after every move.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "worker"

PURE_MODULES = (
    "worker",
    "worker.resend.decision",
    "worker.resend.validation",
    "worker.tango.errors",
    "worker.tango.error_mapping",
    "worker.tango.timeparse",
    "worker.state.keys",
    "worker.state.records",
    "worker.state.wakeup",
    "worker.runtime",
    "worker.core.errors",
    "worker.core.hooks",
)

PUBLIC_NAMES = (
    "enqueue_resend",
    "get_resend",
    "cancel_resend",
    "retry_resend",
    "submit_resend",
    "submit_resend_async",
    "InvalidResendRequest",
    "EnqueueError",
    "RedisUnavailable",
    "NotRetryable",
    "ResendRecord",
    "ResendStatus",
    "ConfigurationError",
    "TangoResendError",
    "resend_finished",
    "app",
)


def loaded_after_import(modules: tuple[str, ...]) -> set[str]:
    """The top-level packages in `sys.modules` after a fresh interpreter imports `modules`."""
    code = (
        "import importlib, json, sys\n"
        f"for name in {list(modules)!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return set(json.loads(result.stdout))


def test_the_pure_modules_import_no_celery() -> None:
    loaded = loaded_after_import(PURE_MODULES)

    assert "celery" not in loaded
    assert "kombu" not in loaded
    assert "worker.queueing.app" not in loaded


def resend_layer_files() -> list[Path]:
    """`worker/resend` below the Celery glue: all of it but the producer, which publishes
    tasks and so sits above `queueing` (see LAYERS), and the retry, which submits through it."""
    return [
        path
        for path in sorted((PACKAGE / "resend").rglob("*.py"))
        if path.stem not in ("producer", "retry")
    ]


def resend_layer_modules() -> tuple[str, ...]:
    return tuple(module_name(path) for path in resend_layer_files())


def test_the_executor_and_the_resend_layer_import_no_celery() -> None:
    """One run of a request, the policy and the outcome hook (`resend_finished`, a `Hook` of
    ours, no longer Celery's signal) load no Celery, no kombu and none of our Celery glue."""
    modules = resend_layer_modules()
    assert "worker.resend.executor" in modules and "worker.resend.callbacks" in modules
    assert "worker.resend.run.settle" in modules  # the run's phases, one module each
    loaded = loaded_after_import(modules)

    assert not {name for name in loaded if name.split(".")[0] in ("celery", "kombu")}
    assert not {name for name in loaded if name.startswith("worker.queueing")}


def test_no_resend_layer_module_imports_celery_even_inside_a_function() -> None:
    """The check above sees only what importing runs; this one reads every import statement,
    those inside functions included (they would load Celery later, mid-work)."""
    offending = []
    for path in resend_layer_files():
        module = module_name(path)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        offending += [
            f"{module} -> {target}"
            for node in runtime_imports(tree)
            for target in imported_modules(node, package)
            if target.split(".")[0] in ("celery", "kombu")
        ]

    assert offending == []


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def runtime_imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import that can run: at module level or in a function; not `if TYPE_CHECKING`."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and type_checking_only(node):
            yield from (child for s in node.orelse for child in runtime_imports_in(s))
            continue
        yield from runtime_imports_in(node)


def runtime_imports_in(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    if isinstance(node, ast.Import | ast.ImportFrom):
        yield node
    else:
        yield from runtime_imports(node)


def imported_modules(node: ast.Import | ast.ImportFrom, package: str) -> Iterator[str]:
    """The modules an import statement loads (`from a import b` counts `a.b` when `b` is a
    module of `a`, else `a`); relative imports resolved against `package`."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
    module = ".".join([*base, *([node.module] if node.module else [])])
    for alias in node.names:
        submodule = f"{module}.{alias.name}"
        yield submodule if is_module(submodule) else module


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        graph[name] = {
            target
            for node in runtime_imports(tree)
            for target in imported_modules(node, package)
            if target.split(".")[0] == "worker" and target != name
        }
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None (depth-first search, three colours)."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := visit(target)) is not None:
                return cycle
        path.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module)) is not None:
            return cycle
    return None


def test_the_graph_sees_function_level_imports() -> None:
    """The check below is only as good as the graph: it must see imports inside functions."""
    graph = import_graph()

    assert "worker.cli.entry" in graph["worker.cli"], "the lazy `main` in a function"
    assert "worker.resend.producer" in graph["worker.cli.common"]
    assert len(graph) > 60


def test_worker_modules_import_each_other_without_a_cycle() -> None:
    assert find_cycle(import_graph()) is None


# Layers, bottom up (docs/how-it-works.md, "Architecture"): a module imports only its own
# layer or lower.
# The producer publishes tasks, so it sits above the Celery glue; the rest of `resend` below.
LAYERS = {
    "worker.sandbox": 0,
    "worker.core": 0,
    "worker.state": 1,
    "worker.tango": 2,
    "worker.runtime": 3,
    "worker.resend": 4,
    "worker.queueing": 5,
    "worker.resend.producer": 6,
    "worker.resend.retry": 6,
    "worker.cli": 7,
    "worker.web": 7,
    "worker.__main__": 8,
    "worker": 8,
}


def layer(module: str) -> int:
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        if (prefix := ".".join(parts[:end])) in LAYERS:
            return LAYERS[prefix]
    raise AssertionError(f"{module} is in no layer")


def test_no_module_imports_a_higher_layer() -> None:
    upward = [
        f"{module} -> {target}"
        for module, targets in import_graph().items()
        for target in sorted(targets)
        if layer(target) > layer(module)
    ]

    assert upward == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("name", PUBLIC_NAMES)
def test_each_public_name_imports_from_worker(name: str) -> None:
    import worker

    assert name in worker.__all__
    exec(f"from worker import {name}", {})


def test_the_public_paths_still_resolve() -> None:
    """`tango_resend` re-exports the API; the console script, `python -m worker`, uvicorn's
    `worker.web:create_app` and `celery -A worker` (which finds `worker.app`) resolve."""
    import tango_resend
    import worker
    from worker.cli import main
    from worker.cli.entry import main as entry_main
    from worker.web import create_app
    from worker.web.app import create_app as app_create_app

    for name in tango_resend.__all__:
        assert getattr(tango_resend, name) is getattr(worker, name)
    with (ROOT / "pyproject.toml").open("rb") as pyproject:
        scripts = tomllib.load(pyproject)["project"]["scripts"]
    assert scripts == {"tango-resend": "worker.cli:main"}
    assert main is entry_main
    assert create_app is app_create_app
    assert worker.app.main == "tango_resend"
    # The hook's path before the package layout, which the README once documented.
    from worker.callbacks import resend_finished

    assert resend_finished is worker.resend_finished


def test_python_m_worker_is_the_command_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "worker", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.startswith("Usage: tango-resend")


def test_the_task_names_queued_messages_carry_are_unchanged() -> None:
    import tasks.callbacks
    import tasks.resend

    assert tasks.resend.send_resend.name == "tango_resend.send_resend"
    assert tasks.callbacks.deliver_outcome.name == "tango_resend.deliver_outcome"
    assert list(tasks.resend.app.conf.include)[:2] == ["tasks.resend", "tasks.callbacks"]
