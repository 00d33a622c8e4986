"""The record's stored document (worker/state/record_codec.py): a positional array that reads
back equal to the record stored, smaller than the JSON object it replaced, and that still reads
documents earlier versions stored as objects."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.resend.run import gate as gate_phase
from worker.resend.run import settle as settle_phase
from worker.state import record_codec
from worker.state.record_model import AttemptEntry, AttemptOutcome, ResendRecord, ResendStatus

T0 = datetime(2026, 11, 29, 19, 43, 4, 53294, tzinfo=UTC)


def waiting() -> ResendRecord:
    return ResendRecord(
        id="3f9a0c1b2d4e.RA251125-1001-12",
        reference_order_id="RA251125-1001-12",
        request={"newEmail": "jane@example.com"},
        status=ResendStatus.DEFERRED,
        lock_deferrals=1,
        created_at=T0,
        updated_at=T0 + timedelta(milliseconds=3),
        next_attempt_at=T0 + timedelta(seconds=1800, microseconds=7),
        reason="the order's window is held",
    )


def finished() -> ResendRecord:
    record = waiting()
    record.status = ResendStatus.SENT
    record.attempts = 2
    record.transient_failures = 1
    record.sent_at = T0 + timedelta(seconds=31)
    record.next_attempt_at = None
    record.reason = None
    record.error = {}  # data, not a default: must read back as stored
    record.response = {"referenceOrderID": "RA251125-1001-12", "status": "COMPLETE"}
    record.tango_request_ids = ["t-1", "t-2"]
    record.attempt_log = [
        AttemptEntry(at=T0 + timedelta(seconds=1), outcome=AttemptOutcome.RETRYING, status=502),
        AttemptEntry(
            at=T0 + timedelta(seconds=31),
            outcome=AttemptOutcome.CONFIRMED,
            status=403,
            i18n_key="403.005",
            tango_request_id="t-2",
            probe=True,
        ),
    ]
    record.confirmed_by = "cooldown"
    record.unresolved_call_started_at = 0.0
    record.retry_of = "0123456789ab.RA251125-1001-12"
    return record


def round_trip(record: ResendRecord) -> ResendRecord:
    return record_codec.decode(
        record_codec.encode(record), record.id, record.status.value, record.merges
    )


@pytest.mark.parametrize("make", [waiting, finished])
def test_a_record_reads_back_equal(make: object) -> None:
    record = make()  # type: ignore[operator]
    assert round_trip(record) == record
    assert round_trip(record).model_dump_json() == record.model_dump_json()


def test_the_document_leaves_out_names_defaults_and_what_the_hash_holds() -> None:
    record = waiting()
    doc = record_codec.encode(record)

    assert json.loads(doc)[0] == record_codec.FORMAT
    for held_elsewhere in (record.id, '"deferred"', "lock_deferrals", "null,null,null]"):
        assert held_elsewhere not in doc
    assert len(doc) < len(record.model_dump_json()) / 3


def test_every_field_of_the_record_is_stored_or_held_by_the_hash() -> None:
    stored = set(record_codec._FIELDS) | set(record_codec._HELD_ELSEWHERE)
    assert stored == set(ResendRecord.model_fields)
    assert set(record_codec._ATTEMPT_FIELDS) == set(AttemptEntry.model_fields)


def test_a_document_an_earlier_version_stored_as_an_object_still_reads() -> None:
    record = finished()
    legacy = record.model_dump_json()

    assert record_codec.decode(legacy, record.id, "sent", 3) == record.model_copy(
        update={"merges": 3}
    )


@pytest.mark.parametrize("reason", [*record_codec._COMMON_REASONS, "cooldown: retry at 12:00:05"])
def test_a_common_reason_is_stored_as_a_number_and_any_reason_reads_back(reason: str) -> None:
    record = waiting()
    record.reason = reason
    stored = json.loads(record_codec.encode(record))[11]

    assert stored == record_codec._REASON_CODES.get(reason, reason)
    assert round_trip(record).reason == reason


def test_the_executors_reasons_are_the_common_ones() -> None:
    """The sentences the executor writes most: a change of wording there stores the new
    wording whole (nothing breaks), but loses the saving, so the two are kept together."""
    source = "".join(Path(phase.__file__).read_text() for phase in (gate_phase, settle_phase))
    for reason in record_codec._COMMON_REASONS[:3]:
        assert f'"{reason}"' in source


def test_an_unknown_format_is_refused_not_misread() -> None:
    with pytest.raises(ValueError, match="unknown document format"):
        record_codec.decode('[9,"RA251125-1001-12"]', "r", "queued", 0)


def test_chunks_join_back_and_a_whole_legacy_doc_is_read() -> None:
    assert record_codec.stored_doc({"dn": "2", "d1": "[1,", "d2": '"x"]'}) == '[1,"x"]'
    assert record_codec.stored_doc({"doc": "{}"}) == "{}"
    assert record_codec.stored_doc({"status": "queued"}) is None


@given(
    offsets=st.lists(st.integers(min_value=0, max_value=10**12), min_size=3, max_size=3),
    counts=st.lists(st.integers(min_value=0, max_value=50), min_size=4, max_size=4),
    reason=st.one_of(st.none(), st.text(max_size=40)),
    body=st.dictionaries(st.sampled_from(["newEmail", "newPhone", "newEtid"]), st.text()),
)
def test_any_record_reads_back_equal(
    offsets: list[int], counts: list[int], reason: str | None, body: dict[str, str]
) -> None:
    updated, sent, next_attempt = (T0 + timedelta(microseconds=n) for n in offsets)
    record = ResendRecord(
        id="r",
        reference_order_id="RA251125-1001-12",
        request=body,
        created_at=T0,
        updated_at=updated,
        sent_at=sent if counts[0] % 2 else None,
        next_attempt_at=next_attempt if counts[1] % 2 else None,
        attempts=counts[0],
        transient_failures=counts[1],
        cooldown_deferrals=counts[2],
        lock_deferrals=counts[3],
        reason=reason,
    )
    assert round_trip(record) == record


def test_window_deferrals_is_the_code_name_of_the_public_lock_deferrals() -> None:
    """The record's JSON keeps `lock_deferrals` (stored records, every API); code counts
    window deferrals under the glossary's name, which reads and writes that field."""
    record = waiting()
    record.lock_deferrals = 0

    record.window_deferrals += 2

    assert record.lock_deferrals == 2
    dumped = record.model_dump(mode="json")
    assert dumped["lock_deferrals"] == 2 and "window_deferrals" not in dumped
    assert round_trip(record).window_deferrals == 2
