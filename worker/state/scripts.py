"""The Lua scripts, loaded from `worker/state/lua/*.lua` and called with named arguments.

Each script opens by naming its arguments, one per line, in order:

    local record_key = KEYS[1]
    local request_id = ARGV[1]
    local ttl_seconds = tonumber(ARGV[2])

and uses only those names below. A line `--! include <helper>` is replaced by the file
`lua/lib/<helper>.lua` (shared functions, which take everything they use as parameters), once
per script. Python callers pass `keys={name: value}` and `args={name: value}`: a name the
script does not declare, or one it declares and the caller leaves out, is a `ScriptCallError`
before anything reaches Redis. That keeps the two sides from drifting apart the way positional
lists did (an argument added in the middle shifts every one after it, silently).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Protocol

from worker.core.errors import TangoResendError
from worker.state.thread_connections import ThreadConnections, thread_connections

ScriptValue = str | int | float

_DECLARATION = re.compile(r"^local (\w+) = (?:tonumber\()?(KEYS|ARGV)\[(\d+)\]\)?\s*(?:--.*)?$")
_INCLUDE = re.compile(r"^--! include (\w+)\s*$")


class ScriptCallError(TangoResendError, TypeError):
    """A script was called with names it does not declare, or without names it does: a bug in
    the caller, found before anything reached Redis."""


class _Registered(Protocol):
    registered_client: Any

    def __call__(
        self, keys: list[str], args: list[ScriptValue], client: Any | None = None
    ) -> Any: ...


class _Registrar(Protocol):
    def register_script(self, script: str) -> Any: ...


@dataclass(frozen=True)
class LuaScript:
    """One script's source, with its helpers included, and the names of its KEYS and ARGV."""

    name: str
    source: str
    key_names: tuple[str, ...]
    arg_names: tuple[str, ...]

    def bind(self, client: _Registrar) -> BoundScript:
        """The script registered on a Redis client (sync or asyncio: an asyncio client's
        script returns an awaitable). A plain sync client's calls go over a connection of
        the calling thread's own (`thread_connections`)."""
        return BoundScript(self, client.register_script(self.source), thread_connections(client))


class BoundScript:
    """A script on one client, called with named KEYS and ARGV."""

    def __init__(
        self,
        script: LuaScript,
        registered: _Registered,
        connections: ThreadConnections | None = None,
    ) -> None:
        self.script = script
        self._registered = registered
        self._connections = connections

    def __call__(self, keys: Mapping[str, str], args: Mapping[str, ScriptValue]) -> Any:
        ordered_keys, ordered_args = self._ordered(keys, args)
        if self._connections is not None:
            return self._connections.evalsha(self._registered, ordered_keys, ordered_args)
        return self._registered(keys=ordered_keys, args=ordered_args)

    def call_then(
        self, keys: Mapping[str, str], args: Mapping[str, ScriptValue], *command: Any
    ) -> tuple[Any, Any]:
        """Call the script with `command` right behind it on the same connection (WAIT, which
        answers for the writes of the connection it is sent on); returns both replies."""
        ordered_keys, ordered_args = self._ordered(keys, args)
        if self._connections is not None:
            script_reply, command_reply = self._connections.evalsha_then(
                self._registered, ordered_keys, ordered_args, *command
            )
            return script_reply, command_reply
        # Any other sync client: a pipeline sends both on one connection, in one round trip.
        with self._registered.registered_client.pipeline(transaction=False) as pipe:
            self._registered(keys=ordered_keys, args=ordered_args, client=pipe)
            pipe.execute_command(*command)
            script_reply, command_reply = pipe.execute()
        return script_reply, command_reply

    def queue(
        self, pipeline: Any, keys: Mapping[str, str], args: Mapping[str, ScriptValue]
    ) -> None:
        """Add a call to a pipeline of this script's client (`client.pipeline()`): it runs
        when the pipeline is executed, atomically on its own and in order with the
        pipeline's other commands, and its reply takes its place in `execute()`'s list."""
        ordered_keys, ordered_args = self._ordered(keys, args)
        self._registered(keys=ordered_keys, args=ordered_args, client=pipeline)

    async def queue_async(
        self, pipeline: Any, keys: Mapping[str, str], args: Mapping[str, ScriptValue]
    ) -> None:
        """`queue`, on a pipeline of an asyncio client."""
        ordered_keys, ordered_args = self._ordered(keys, args)
        await self._registered(keys=ordered_keys, args=ordered_args, client=pipeline)

    def _ordered(
        self, keys: Mapping[str, str], args: Mapping[str, ScriptValue]
    ) -> tuple[list[str], list[ScriptValue]]:
        script = self.script
        _check_names(script, "KEYS", script.key_names, keys)
        _check_names(script, "ARGV", script.arg_names, args)
        return [keys[name] for name in script.key_names], [args[name] for name in script.arg_names]


def _check_names(
    script: LuaScript, kind: str, declared: tuple[str, ...], given: Mapping[str, Any]
) -> None:
    # Lengths first: the common, correct call costs one comparison per argument list.
    if len(given) == len(declared) and all(name in given for name in declared):
        return
    missing = sorted(set(declared) - set(given))
    unknown = sorted(set(given) - set(declared))
    raise ScriptCallError(
        f"{script.name}.lua {kind}: missing {missing or 'none'}, not declared {unknown or 'none'}"
    )


def _lua_dir() -> Any:
    return resources.files("worker.state").joinpath("lua")


def _read(*parts: str) -> str:
    return str(_lua_dir().joinpath(*parts).read_text(encoding="utf-8"))


def _expand(text: str, included: set[str] | None = None) -> str:
    """Replace each `--! include helper` line with the helper, once per script (a helper's
    own includes count: one included twice is left out the second time)."""
    included = set() if included is None else included
    lines = []
    for line in text.splitlines():
        match = _INCLUDE.match(line)
        if not match:
            lines.append(line)
            continue
        helper = match.group(1)
        if helper not in included:
            included.add(helper)
            lines.append(_expand(_read("lib", f"{helper}.lua"), included).rstrip("\n"))
    return "\n".join(lines) + "\n"


def _declared(text: str, name: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    names: dict[str, list[str]] = {"KEYS": [], "ARGV": []}
    for line in text.splitlines():
        match = _DECLARATION.match(line)
        if not match:
            continue
        variable, kind, index = match.group(1), match.group(2), int(match.group(3))
        if index != len(names[kind]) + 1:
            raise ValueError(f"{name}.lua: {variable} is {kind}[{index}], out of order")
        names[kind].append(variable)
    return tuple(names["KEYS"]), tuple(names["ARGV"])


def helper_source(helper: str) -> str:
    """A shared helper's source (`lua/lib/<helper>.lua`, its own includes expanded): for a
    test that runs one helper on its own."""
    return _expand(_read("lib", f"{helper}.lua"), {helper})


@cache
def load(name: str) -> LuaScript:
    """The script `lua/<name>.lua`, helpers included and arguments named."""
    text = _read(f"{name}.lua")
    key_names, arg_names = _declared(text, name)
    return LuaScript(name, _expand(text), key_names, arg_names)


def helper_names() -> list[str]:
    """Every shared helper in `lua/lib/`."""
    return sorted(
        entry.name.removesuffix(".lua")
        for entry in _lua_dir().joinpath("lib").iterdir()
        if entry.name.endswith(".lua")
    )


def script_names() -> list[str]:
    """Every script this package ships (the helpers in `lib/` are not scripts)."""
    return sorted(
        entry.name.removesuffix(".lua")
        for entry in _lua_dir().iterdir()
        if entry.name.endswith(".lua")
    )
