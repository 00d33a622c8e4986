"""Reading resend records (`RecordStore`'s reads, worker/state/records.py): one record, many,
an order's history, a page of ids by time. Nothing here writes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import redis

from worker.state import record_codec
from worker.state.durability import NotReplicated, ReplicaWait
from worker.state.keys import RedisKeys
from worker.state.record_model import ResendRecord


class RecordReads:
    """The reads of `RecordStore`, which sets these attributes."""

    _client: redis.Redis
    _keys: RedisKeys
    # REDIS_WAIT_REPLICAS: a final status is reported only once on replicas; None: not waited.
    _wait: ReplicaWait | None

    def get(self, request_id: str) -> ResendRecord | None:
        found = self.get_many([request_id])
        return found[0] if found else None

    def get_reported(self, request_id: str) -> ResendRecord | None:
        """`get`, for a record about to be reported outside (the CLI, the API, an outcome
        callback): with REDIS_WAIT_REPLICAS set, a final status is returned only once it is
        on that many replicas, since a failover could still take it back.

        Raises:
            NotReplicated: the record is final, and its final status not yet on the
                replicas (read it again later).
        """
        if self._wait is None:
            return self.get(request_id)
        key = self._keys.record(request_id)
        (fields,), confirmed = self._wait.read_confirmed(
            self._client, self._keys.replication_barrier, lambda pipe: pipe.hgetall(key)
        )
        record = self._decoded(request_id, fields)
        if record is not None and record.status.is_final and not confirmed:
            raise NotReplicated(f"request {request_id} is {record.status.value}", 0, self._wait)
        return record

    def get_many(self, request_ids: list[str]) -> list[ResendRecord]:
        """Records for many ids in one round trip; unknown or expired ones are skipped."""
        with self._client.pipeline(transaction=False) as pipe:
            for request_id in request_ids:
                pipe.hgetall(self._keys.record(request_id))
            rows = pipe.execute()
        records = []
        for request_id, fields in zip(request_ids, rows, strict=True):
            record = self._decoded(request_id, fields)
            if record is not None:
                records.append(record)
        return records

    @staticmethod
    def _decoded(request_id: str, fields: Mapping[str, Any]) -> ResendRecord | None:
        doc, status = record_codec.stored_doc(fields), fields.get("status")
        if doc is None or status is None:
            return None
        merges = int(fields.get("merges") or 0)
        record = record_codec.decode(doc, request_id, str(status), merges)
        return record_codec.with_audit(record, fields)

    def callers_sharing(self, request_id: str) -> int:
        """How many callers share a request: the one that created it and each identical
        request merged into it since (0 when there is no such request)."""
        fields = self._client.hmget(self._keys.record(request_id), "status", "merges")
        if fields[0] is None:
            return 0
        return 1 + int(fields[1] or 0)

    def ids_by_time(
        self, since: float | None, newest_first: bool, offset: int, count: int
    ) -> list[str]:
        """Request ids created at or after `since` (epoch seconds), a page at a time."""
        low = "-inf" if since is None else repr(since)
        if newest_first:
            ids = self._client.zrevrangebyscore(
                self._keys.requests_by_time, "+inf", low, start=offset, num=count
            )
        else:
            ids = self._client.zrangebyscore(
                self._keys.requests_by_time, low, "+inf", start=offset, num=count
            )
        return [str(item) for item in ids]

    def first_waiting(self, reference_order_id: str) -> str | None:
        """The request of the order whose turn it is (the head of its queue), if any."""
        head = self._client.zrangebyscore(
            self._keys.order_fifo(reference_order_id), "(0", "+inf", start=0, num=1
        )
        return str(head[0]) if head else None

    def ids_for_order(self, reference_order_id: str) -> list[str]:
        """Request ids for one order, oldest first (by creation time)."""
        return [request_id for request_id, _ in self.order_history_times(reference_order_id)]

    def order_history_times(self, reference_order_id: str) -> list[tuple[str, float]]:
        """(request id, creation time in epoch seconds) for every request of one order,
        oldest first: the scores the time index gives them, read without their records."""
        keys = self._keys
        with self._client.pipeline(transaction=False) as pipe:
            pipe.zrange(keys.order_requests(reference_order_id), 0, -1, withscores=True)
            pipe.zrange(keys.order_fifo(reference_order_id), 0, -1, withscores=True)
            legacy, entries = pipe.execute()
        # An earlier version's history scores creation times; the order's sorted set scores a
        # finished request minus its creation time and a waiting one its place in the queue,
        # whose creation time the time index holds (none there: older than the TTL, first).
        created = {str(member): float(score) for member, score in legacy}
        created.update({str(member): -float(score) for member, score in entries if score < 0})
        waiting = [str(member) for member, score in entries if score > 0]
        if waiting:
            times = self._client.zmscore(keys.requests_by_time, waiting)
            for request_id, at in zip(waiting, times, strict=True):
                created[request_id] = -math.inf if at is None else float(at)
        return sorted(created.items(), key=lambda entry: (entry[1], entry[0]))
