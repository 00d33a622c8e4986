"""Redis set-ups of a test's own, as production runs them: a primary, a replica and three
`redis-server --sentinel` processes (`SentinelTopology`), or a Redis that speaks only TLS and
has an ACL user (`TlsRedis`), all on free loopback ports and started by the test.

    with SentinelTopology(tmp_path / "ha") as ha:
        settings = {**base, **ha.settings(db=0)}      # REDIS_URL=sentinel://...;..., master
        old = ha.kill_primary()                         # SIGKILL (or how="segfault")
        new = ha.wait_for_promotion(old)                # the replica, once a sentinel says so
        ha.restart(old)                                 # rejoins as a replica of `new`

    with TlsRedis(tmp_path / "tls") as tls:
        settings = {"REDIS_URL": tls.url(db=0), "REDIS_TLS_CA_FILE": str(tls.ca_file)}

Sentinel timings are short (down after 1 s, failover timeout 3 s), so a promotion takes a few
seconds. Nothing here touches the shared Redis of TEST_REDIS_URL.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import redis

from tests.support.processes import free_port
from tests.support.redis_server import REDIS_SERVER
from tests.support.waiting import wait_for

MASTER_NAME = "mymaster"


class RedisNode:
    """One `redis-server` (data node or sentinel) from a config file in `workdir`."""

    def __init__(
        self,
        workdir: Path,
        name: str,
        config: list[str],
        *,
        sentinel: bool = False,
        port: int | None = None,
        password: str | None = None,
        client_options: dict[str, object] | None = None,
    ) -> None:
        self.workdir = workdir
        self.name = name
        self.port = port or free_port()
        self.sentinel = sentinel
        self.password = password
        self.client_options = client_options or {}
        self.config_path = workdir / f"{name}.conf"
        self.log_path = workdir / f"{name}.log"
        self.config = config
        # The plain-TCP port in the config file; 0 for a node that speaks only TLS.
        self.listen_port = self.port
        self.process: subprocess.Popen[bytes] | None = None

    def write_config(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        lines = [
            f"port {self.listen_port}",
            "bind 127.0.0.1",
            f"dir {self.workdir}",
            f"logfile {self.log_path}",
            "daemonize no",
            *self.config,
        ]
        self.config_path.write_text("\n".join(lines) + "\n")

    def start(self, timeout: float = 20.0) -> Self:
        """Start from the config file (written on the first start; a sentinel, or a node that
        Sentinel reconfigured, rewrites its own, and a restart reads what it rewrote)."""
        if not self.config_path.exists():
            self.write_config()
        arguments = [REDIS_SERVER, str(self.config_path)]
        if self.sentinel:
            arguments.append("--sentinel")
        self.process = subprocess.Popen(
            arguments,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        process = self.process

        def answers() -> bool:
            if process.poll() is not None:
                log = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
                raise AssertionError(f"{self.name} exited:\n{log}")
            with contextlib.closing(self.client()) as client:
                try:
                    return bool(client.ping())
                except redis.RedisError:
                    return False

        wait_for(answers, timeout=timeout, interval=0.05, what=f"{self.name} to answer")
        return self

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def client(self, **options: object) -> redis.Redis:
        """An administrator's client of this node (its password, if any)."""
        merged: dict[str, object] = {
            "host": "127.0.0.1",
            "port": self.port,
            "decode_responses": True,
            "socket_timeout": 5,
            "socket_connect_timeout": 2,
            "password": self.password,
            **self.client_options,
            **options,
        }
        return redis.Redis(**merged)  # type: ignore[arg-type]

    def kill(self) -> float:
        """SIGKILL: no AOF flush, no goodbye to replicas or clients; returns when (time.time())."""
        killed_at = time.time()
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        return killed_at

    def segfault(self) -> float:
        """`DEBUG SEGFAULT`, as an operator would crash it with redis-cli."""
        killed_at = time.time()
        with contextlib.closing(self.client()) as client, contextlib.suppress(redis.RedisError):
            client.execute_command("DEBUG", "SEGFAULT")
        if self.process is not None:
            self.process.wait(timeout=20)
        return killed_at

    def stop(self, timeout: float = 20.0) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def role(self) -> str | None:
        """`master` or `slave`, None when it does not answer."""
        with contextlib.closing(self.client()) as client:
            try:
                return str(client.execute_command("ROLE")[0])
            except redis.RedisError:
                return None


class SentinelTopology:
    """A primary, a replica and three sentinels (quorum 2) on loopback.

    `password`: `requirepass` of the data nodes (REDIS_URL carries it); `sentinel_password`:
    the sentinels' own `requirepass` (REDIS_SENTINEL_PASSWORD)."""

    def __init__(
        self,
        workdir: Path,
        *,
        master_name: str = MASTER_NAME,
        password: str | None = None,
        sentinel_password: str | None = None,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 3000,
        appendonly: bool = True,
        appendfsync: str = "everysec",
        data_node_config: tuple[str, ...] = (),
    ) -> None:
        self.workdir = workdir
        self.master_name = master_name
        self.password = password
        self.sentinel_password = sentinel_password
        data_config = [
            f"appendonly {'yes' if appendonly else 'no'}",
            f"appendfsync {appendfsync}",
            'save ""',
            "maxmemory-policy noeviction",
            "enable-debug-command local",
            # A replica answers reads while it resyncs: a client that lands on it sees the
            # data as of its last sync, not an error (Redis's default).
            "replica-serve-stale-data yes",
            *data_node_config,
        ]
        if password:
            data_config += [f"requirepass {password}", f"masterauth {password}"]
        primary_port = free_port()
        self.nodes = [
            RedisNode(workdir, "redis-a", data_config, port=primary_port, password=password),
            RedisNode(
                workdir,
                "redis-b",
                [*data_config, f"replicaof 127.0.0.1 {primary_port}"],
                password=password,
            ),
        ]
        sentinel_config = [
            f"sentinel monitor {master_name} 127.0.0.1 {primary_port} 2",
            f"sentinel down-after-milliseconds {master_name} {down_after_ms}",
            f"sentinel failover-timeout {master_name} {failover_timeout_ms}",
            f"sentinel parallel-syncs {master_name} 1",
        ]
        if password:
            sentinel_config.append(f"sentinel auth-pass {master_name} {password}")
        if sentinel_password:
            sentinel_config.append(f"requirepass {sentinel_password}")
            sentinel_config.append(f"sentinel sentinel-pass {sentinel_password}")
        self.sentinels = [
            RedisNode(
                workdir,
                f"sentinel-{index}",
                list(sentinel_config),
                sentinel=True,
                password=sentinel_password,
            )
            for index in range(1, 4)
        ]

    # --- life ---------------------------------------------------------------------------

    def start(self) -> Self:
        for node in self.nodes:
            node.start()
        self.wait_replicated()
        for sentinel in self.sentinels:
            sentinel.start()
        # Ready once every sentinel knows the replica and the other sentinels: only then can
        # a quorum agree on a failover.
        wait_for(self._sentinels_see_everyone, timeout=30, interval=0.1, what="sentinels ready")
        return self

    def stop(self) -> None:
        for node in [*self.sentinels, *self.nodes]:
            node.stop()

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()

    # --- what clients are given ----------------------------------------------------------

    def url(self, db: int = 0) -> str:
        """REDIS_URL in kombu's spelling: every sentinel, the data nodes' password first."""
        auth = f":{self.password}@" if self.password else ""
        hosts = [f"sentinel://127.0.0.1:{node.port}" for node in self.sentinels]
        hosts[0] = hosts[0].replace("sentinel://", f"sentinel://{auth}", 1)
        return ";".join(hosts) + f"/{db}"

    def settings(self, db: int = 0) -> dict[str, str]:
        """The settings that point tango-resend at this set."""
        settings = {"REDIS_URL": self.url(db), "REDIS_SENTINEL_MASTER": self.master_name}
        if self.sentinel_password:
            settings["REDIS_SENTINEL_PASSWORD"] = self.sentinel_password
        return settings

    # --- who is who ---------------------------------------------------------------------

    def sentinel_client(self, node: RedisNode | None = None) -> redis.Redis:
        return (node or self.sentinels[0]).client()

    def primary_address(self) -> tuple[str, int] | None:
        """The primary as the first sentinel that answers names it."""
        for sentinel in self.sentinels:
            if not sentinel.alive:
                continue
            with contextlib.closing(sentinel.client()) as client:
                try:
                    address = client.execute_command(
                        "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name
                    )
                except redis.RedisError:
                    continue
            if address:
                return str(address[0]), int(address[1])
        return None

    def primary(self) -> RedisNode:
        address = self.primary_address()
        for node in self.nodes:
            if address is not None and node.port == address[1]:
                return node
        raise AssertionError(f"no sentinel names a primary we started ({address})")

    def replicas(self) -> list[RedisNode]:
        primary = self.primary()
        return [node for node in self.nodes if node is not primary]

    def primary_client(self) -> redis.Redis:
        return self.primary().client()

    # --- failures -------------------------------------------------------------------------

    def kill_primary(self, how: str = "sigkill") -> RedisNode:
        """Crash the primary: `sigkill`, or `segfault` (`DEBUG SEGFAULT`, as redis-cli would).
        Returns the dead node; `killed_at` holds when."""
        node = self.primary()
        self.killed_at = node.kill() if how == "sigkill" else node.segfault()
        return node

    def wait_for_promotion(self, old: RedisNode, timeout: float = 30.0) -> RedisNode:
        """The node that replaced `old`, once a sentinel names it and it answers as primary;
        `promoted_at` holds when that was first seen (time.time())."""

        def promoted() -> RedisNode | None:
            address = self.primary_address()
            if address is None or address[1] == old.port:
                return None
            node = next((n for n in self.nodes if n.port == address[1]), None)
            return node if node is not None and node.role() == "master" else None

        wait_for(promoted, timeout=timeout, interval=0.05, what="a sentinel to promote a replica")
        self.promoted_at = time.time()
        new = promoted()
        assert new is not None
        return new

    def restart(self, node: RedisNode) -> RedisNode:
        """Start a killed node again; the sentinels turn it into a replica of the primary."""
        return node.start()

    def wait_replicated(self, timeout: float = 20.0) -> None:
        """Until every live replica is connected and has the primary's whole stream."""

        def caught_up() -> bool:
            primary = next((n for n in self.nodes if n.alive and n.role() == "master"), None)
            if primary is None:
                return False
            with contextlib.closing(primary.client()) as client:
                info = client.info("replication")
            replicas = [n for n in self.nodes if n is not primary and n.alive]
            offset = int(info.get("master_repl_offset", 0))
            seen = [info[k] for k in info if k.startswith("slave") and isinstance(info[k], dict)]
            online = [s for s in seen if s.get("state") == "online" and int(s["offset"]) >= offset]
            return len(online) >= len(replicas)

        wait_for(caught_up, timeout=timeout, interval=0.05, what="replicas to catch up")

    def _sentinels_see_everyone(self) -> bool:
        for sentinel in self.sentinels:
            with contextlib.closing(sentinel.client()) as client:
                try:
                    master = client.execute_command("SENTINEL", "MASTER", self.master_name)
                except redis.RedisError:
                    return False
            fields = (
                master
                if isinstance(master, dict)
                else dict(zip(master[::2], master[1::2], strict=False))
            )
            if (
                int(fields.get("num-slaves", 0)) < 1
                or int(fields.get("num-other-sentinels", 0)) < 2
            ):
                return False
        return True


def make_certificates(directory: Path, common_name: str = "127.0.0.1") -> dict[str, Path]:
    """A CA and a server certificate it signed for `common_name` (and localhost), made with
    the `openssl` CLI; returns the paths: ca, cert, key."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = directory / "ca.key", directory / "ca.pem"
    key, csr, cert = directory / "server.key", directory / "server.csr", directory / "server.pem"
    extensions = directory / "server.ext"
    extensions.write_text(f"subjectAltName=IP:{common_name},DNS:localhost\n")

    def openssl(*arguments: str) -> None:
        subprocess.run(["openssl", *arguments], check=True, capture_output=True, timeout=60)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out",
            str(ca_cert), "-days", "2", "-subj", "/CN=tango-resend test CA")  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
            "-subj", f"/CN={common_name}")  # fmt: skip
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key),
            "-CAcreateserial", "-out", str(cert), "-days", "2",
            "-extfile", str(extensions))  # fmt: skip
    return {"ca": ca_cert, "cert": cert, "key": key}


class TlsRedis:
    """A Redis that listens only on TLS (`--port 0 --tls-port P`), its certificate signed by a
    CA of the test's own, with an ACL user `user` (full access) beside a disabled `default`
    user: what a managed Redis looks like."""

    def __init__(
        self,
        workdir: Path,
        *,
        user: str = "tango",
        password: str = "tls-user-secret-1",
        appendonly: bool = True,
    ) -> None:
        self.workdir = workdir
        self.user, self.password = user, password
        self.certificates = make_certificates(workdir / "tls")
        self.ca_file = self.certificates["ca"]
        port = free_port()
        config = [
            f"appendonly {'yes' if appendonly else 'no'}",
            'save ""',
            "maxmemory-policy noeviction",
            f"tls-port {port}",
            f"tls-cert-file {self.certificates['cert']}",
            f"tls-key-file {self.certificates['key']}",
            f"tls-ca-cert-file {self.ca_file}",
            # Servers check no client certificates: a managed Redis authenticates by ACL user.
            "tls-auth-clients no",
            "user default off",
            f"user {user} on >{password} ~* &* +@all",
        ]
        self.node = RedisNode(
            workdir,
            "redis-tls",
            config,
            port=port,
            client_options={
                "username": user,
                "password": password,
                "ssl": True,
                "ssl_ca_certs": str(self.ca_file),
            },
        )
        self.node.listen_port = 0
        self.port = port

    def start(self) -> Self:
        self.node.start()
        return self

    def stop(self) -> None:
        self.node.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()

    def url(self, db: int = 0, *, user: bool = True) -> str:
        """`rediss://user:password@127.0.0.1:port/db` (without credentials: `user=False`)."""
        auth = f"{self.user}:{self.password}@" if user else ""
        return f"rediss://{auth}127.0.0.1:{self.port}/{db}"

    def settings(self, db: int = 0) -> dict[str, str]:
        return {"REDIS_URL": self.url(db), "REDIS_TLS_CA_FILE": str(self.ca_file)}

    def client(self) -> redis.Redis:
        return self.node.client()
