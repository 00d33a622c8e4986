"""An order's history of requests, and which statuses are final. (worker.state.records against a
real Redis.)"""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.support.record_store import ORDER, OTHER_ORDER, T0, create, new_record
from worker.state.records import RecordStore, ResendStatus


def test_ids_for_order_are_oldest_first_and_per_order(store: RecordStore) -> None:
    middle = new_record(T0 + timedelta(seconds=1))
    newest = new_record(T0 + timedelta(minutes=5))
    oldest = new_record(T0 - timedelta(days=1))
    other_order = new_record(T0, order=OTHER_ORDER)
    for record in (middle, newest, oldest, other_order):
        create(store, record)

    assert store.ids_for_order(ORDER) == [oldest.id, middle.id, newest.id]
    assert store.ids_for_order(OTHER_ORDER) == [other_order.id]
    assert store.ids_for_order("RA000000-0-0") == []


def test_ids_for_order_orders_by_sub_second_creation_time(store: RecordStore) -> None:
    later = new_record(T0 + timedelta(milliseconds=2))
    earlier = new_record(T0 + timedelta(milliseconds=1))
    create(store, later)
    create(store, earlier)

    assert store.ids_for_order(ORDER) == [earlier.id, later.id]


@pytest.mark.parametrize(
    ("status", "final"),
    [
        (ResendStatus.QUEUED, False),
        (ResendStatus.DEFERRED, False),
        (ResendStatus.RETRYING, False),
        (ResendStatus.SENT, True),
        (ResendStatus.FAILED, True),
        (ResendStatus.CANCELLED, True),
    ],
)
def test_only_sent_failed_and_cancelled_are_final(status: ResendStatus, final: bool) -> None:
    assert status.is_final is final
