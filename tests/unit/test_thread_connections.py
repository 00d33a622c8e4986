"""Scripts on a thread's own connection: one per thread, kept across calls, given back when
the thread ends, loaded again after Redis forgot them, reconnected after Redis restarted."""

from __future__ import annotations

import gc
import os
import threading
import uuid
import weakref
from typing import Any

import redis

from tests.support.redis_db import TEST_REDIS_URL
from tests.support.redis_server import RedisServer
from worker import runtime
from worker.core.settings import Settings
from worker.state import scripts
from worker.state.thread_connections import thread_connections

_TOUCH = "return redis.call('INCR', KEYS[1])"


def _named_client() -> tuple[redis.Redis, str]:
    """A client of a pool of its own whose connections carry a name, to count them."""
    name = f"tc-{uuid.uuid4().hex[:8]}"
    return redis.Redis.from_url(TEST_REDIS_URL, client_name=name), name


def _connections(name: str, redis_client: redis.Redis) -> int:
    return sum(1 for entry in redis_client.client_list() if entry["name"] == name)


def _touch(client: redis.Redis) -> scripts.BoundScript:
    return scripts.LuaScript("touch", _TOUCH, ("counter",), ()).bind(client)


def _in_thread(call: Any) -> Any:
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(call()))
    thread.start()
    thread.join()
    return result[0]


def test_each_thread_keeps_one_connection_of_its_own(redis_client: redis.Redis) -> None:
    client, name = _named_client()
    touch = _touch(client)
    for _ in range(5):
        touch({"counter": "c"}, {})
    assert _connections(name, redis_client) == 1
    started = threading.Event()
    finish = threading.Event()

    def other_thread() -> None:
        for _ in range(5):
            touch({"counter": "c"}, {})
        started.set()
        finish.wait(10)

    thread = threading.Thread(target=other_thread)
    thread.start()
    assert started.wait(10)
    assert _connections(name, redis_client) == 2
    finish.set()
    thread.join()
    assert redis_client.get("c") == "10"
    client.close()


def test_every_script_of_a_client_shares_the_threads_connection(
    redis_client: redis.Redis,
) -> None:
    client, name = _named_client()
    _touch(client)({"counter": "c"}, {})
    scripts.load("lock_release_if_owner").bind(client)({"lock_key": "l"}, {"owner": "me"})
    assert _connections(name, redis_client) == 1
    assert thread_connections(client) is thread_connections(client)
    client.close()


def test_a_threads_connection_goes_back_to_the_pool_when_the_thread_ends(
    redis_client: redis.Redis,
) -> None:
    client, name = _named_client()
    touch = _touch(client)
    for _ in range(3):
        _in_thread(lambda: touch({"counter": "c"}, {}))
        gc.collect()
    # Each thread took the connection the one before gave back.
    assert _connections(name, redis_client) == 1
    assert not client.connection_pool._in_use_connections
    client.close()


def test_a_script_redis_forgot_is_loaded_again(redis_client: redis.Redis) -> None:
    client, name = _named_client()
    touch = _touch(client)
    touch({"counter": "c"}, {})
    redis_client.script_flush()
    assert touch({"counter": "c"}, {}) == 2
    assert _connections(name, redis_client) == 1  # loaded on the thread's own connection
    client.close()


def test_a_restarted_redis_is_reconnected_to(own_redis: RedisServer) -> None:
    client = runtime.redis_client(Settings(redis_url=own_redis.url()))  # the worker's options
    touch = _touch(client)
    assert touch({"counter": "c"}, {}) == 1
    own_redis.restart()  # the thread's connection is dead, and the script forgotten
    assert touch({"counter": "c"}, {}) == 2  # the server's append-only file kept it
    client.close()


def test_other_clients_use_redis_pys_own_call(redis_client: redis.Redis) -> None:
    assert thread_connections(redis_client.pipeline()) is None
    single = redis.Redis.from_url(TEST_REDIS_URL, single_connection_client=True)
    assert thread_connections(single) is None
    single.close()


def test_a_forked_child_opens_its_own_connection(redis_client: redis.Redis) -> None:
    client, name = _named_client()
    touch = _touch(client)
    touch({"counter": "c"}, {})
    child = os.fork()
    if child == 0:  # pragma: no cover (runs in the child)
        code = 1
        try:
            touch({"counter": "c"}, {})
            # The parent's connection and the child's own: two.
            code = 0 if _connections(name, redis.Redis.from_url(TEST_REDIS_URL)) == 2 else 3
        finally:
            os._exit(code)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert touch({"counter": "c"}, {}) == 3
    client.close()


def test_a_client_no_longer_used_is_not_kept_alive(redis_client: redis.Redis) -> None:
    client, _ = _named_client()
    touch = _touch(client)
    touch({"counter": "c"}, {})
    gone = weakref.ref(client)
    del client, touch
    gc.collect()
    assert gone() is None
