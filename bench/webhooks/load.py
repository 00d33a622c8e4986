"""A signed-webhook storm: C keep-alive senders post N distinct signed webhooks.

`python -m bench.webhooks.load --url URL --secret whsec_... --count N --senders C --tag T`
prints one JSON line: {"sent", "seconds", "requests_per_s", "p50_ms", "p99_ms", "statuses"}.
Every webhook is signed before the clock starts (the senders only send), names a distinct
order, and has its own webhook-id, so none is a redelivery or a coalesced duplicate.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from urllib.parse import urlsplit

from standardwebhooks.webhooks import Webhook

Request = tuple[bytes, dict[str, str]]


def signed_requests(secret: str, count: int, tag: str) -> list[Request]:
    """`count` webhooks for distinct orders, signed now (well inside the 5-minute tolerance)."""
    signer = Webhook(secret)
    now = datetime.now(UTC)
    made = []
    for n in range(count):
        body = json.dumps({"referenceOrderID": f"RA251130-{tag}-{n}"}).encode()
        webhook_id = f"msg_{uuid.uuid4().hex}"
        headers = {
            "content-type": "application/json",
            "webhook-id": webhook_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signer.sign(webhook_id, now, body.decode()),
        }
        made.append((body, headers))
    return made


def _raw(host: str, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    """The whole HTTP/1.1 request as bytes, so that sending costs the client next to nothing."""
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _read_response(connection: socket.socket, buffer: bytearray) -> int:
    """Read one response (Content-Length framed) off a keep-alive connection; its status."""
    while b"\r\n\r\n" not in buffer:
        chunk = connection.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        buffer += chunk
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        chunk = connection.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        rest += chunk
    buffer[:] = rest[length:]
    return status


def storm(url: str, requests: list[Request], senders: int) -> dict[str, object]:
    """Send every request once over `senders` keep-alive connections; time each answer.

    Requests are sent as prepared bytes over plain sockets: an HTTP library's own work per
    request would make the client, not the receiver, what is measured.
    """
    parts = urlsplit(url)
    host, port, path = parts.hostname or "127.0.0.1", parts.port or 80, parts.path or "/"
    prepared = [_raw(f"{host}:{port}", path, body, headers) for body, headers in requests]
    lock = threading.Lock()
    cursor = {"next": 0}
    latencies: list[float] = []
    statuses: Counter[int] = Counter()

    def sender() -> None:
        connection = socket.create_connection((host, port), timeout=30)
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buffer = bytearray()
        mine: list[float] = []
        codes: Counter[int] = Counter()
        while True:
            with lock:
                index = cursor["next"]
                cursor["next"] += 1
            if index >= len(prepared):
                break
            started = time.perf_counter()
            connection.sendall(prepared[index])
            codes[_read_response(connection, buffer)] += 1
            mine.append(time.perf_counter() - started)
        connection.close()
        with lock:
            latencies.extend(mine)
            statuses.update(codes)

    threads = [threading.Thread(target=sender) for _ in range(senders)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    ordered = sorted(latencies)
    if not ordered:
        raise RuntimeError("no request was answered")
    return {
        "sent": len(ordered),
        "seconds": round(elapsed, 3),
        "requests_per_s": round(len(ordered) / elapsed, 1),
        "p50_ms": round(1000 * statistics.median(ordered), 2),
        "p99_ms": round(1000 * ordered[max(0, int(len(ordered) * 0.99) - 1)], 2),
        "statuses": {str(code): count for code, count in sorted(statuses.items())},
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.webhooks.load")
    parser.add_argument("--url", required=True)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--senders", type=int, default=8)
    parser.add_argument("--tag", default=uuid.uuid4().hex[:6])
    parser.add_argument("--warmup", type=int, default=200)
    args = parser.parse_args()
    tag = "".join(ch for ch in args.tag if ch.isdigit()) or "1"
    if args.warmup:
        storm(args.url, signed_requests(args.secret, args.warmup, f"9{tag}"), args.senders)
    result = storm(args.url, signed_requests(args.secret, args.count, tag), args.senders)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
