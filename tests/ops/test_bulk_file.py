"""`tango-resend enqueue --file`: good, bad and duplicate rows; dry runs; a 100,000-row file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from tests.support.cli import CliRun, explain, json_out
from tests.support.processes import REPO_ROOT, child_env
from worker import get_resend
from worker.cli import bulk
from worker.runtime import current_runtime

pytestmark = pytest.mark.integration

HEADER = "referenceOrderID,newEmail,newMobile,newEtid,newDeliveryMethod"
# (row number, line): row 1 is the first line after the header.
ROWS = [
    "RA251125-5001-01,pat@example.com,,,",  # 1 good
    "RA25-bad,,,,",  # 2 bad id
    "RA251125-5001-02,,,,",  # 3 good
    "RA251125-5001-03,not-an-email,,,",  # 4 bad email
    "RA251125-5001-04,,4155550123,X1,FAX",  # 5 three bad fields
    "RA251125-5001-01,pat@example.com,,,",  # 6 duplicate of row 1
    "RA251125-5001-05,,,,,surplus",  # 7 a cell the header has no column for
    ",,,,",  # 8 no order id
    "RA251125-5001-06,,+14155550123,,PHONE",  # 9 good
    "  RA251125-5001-02  ,,,,",  # 10 duplicate of row 3 once trimmed
    "RA251125-5001-07,,,E000042,",  # 11 good, after every bad row
]
EXPECTED_REJECTED = [
    {
        "row": 2,
        "errors": "referenceOrderID: must look like RA180426-1401-64 "
        "(RA, 6 digits, -, digits, -, digits)",
    },
    {"row": 4, "errors": "newEmail: is not a valid email address"},
    {
        "row": 5,
        "errors": "newMobile: must be a phone number in E.164 form, e.g. +14155550123; "
        "newEtid: must be a template id like E000000 (E and 6 digits); "
        "newDeliveryMethod: must be one of EMAIL, PHONE, NONE",
    },
    {"row": 7, "errors": "(extra cells): is not a field of a resend request"},
    {"row": 8, "errors": "referenceOrderID: is required: the order's id, e.g. RA180426-1401-64"},
]
GOOD_ORDERS = {
    "RA251125-5001-01": {"newEmail": "pat@example.com"},
    "RA251125-5001-02": {},
    "RA251125-5001-06": {"newMobile": "+14155550123", "newDeliveryMethod": "PHONE"},
    "RA251125-5001-07": {"newEtid": "E000042"},
}


def write_csv(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def prefixed_keys(client: redis.Redis, env: dict[str, str]) -> set[str]:
    return {str(key) for key in client.keys(f"{env['REDIS_KEY_PREFIX']}:*")} | {
        str(key) for key in client.keys(f"{env['RESEND_QUEUE']}*")
    }


@pytest.mark.parametrize("per_round_trip", [1, 3, bulk.ROWS_PER_ROUND_TRIP])
def test_good_bad_and_duplicate_rows(
    settings_env: dict[str, str],
    run_cli: CliRun,
    redis_client: redis.Redis,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    per_round_trip: int,
) -> None:
    """The same outcome whether rows go to Redis one per round trip, a few (bad rows among
    good ones, and duplicates, inside one round trip and across two) or all at once."""
    monkeypatch.setattr(bulk, "ROWS_PER_ROUND_TRIP", per_round_trip)
    csv_file = write_csv(tmp_path / "resends.csv", HEADER, ROWS)

    dry = run_cli("enqueue", "--file", str(csv_file), "--dry-run", "--json")
    assert dry.exit_code == 2, "rows were rejected: " + explain(dry)
    dry_summary = json_out(dry)
    assert dry_summary["rejected"] == EXPECTED_REJECTED
    assert dry_summary["accepted"] + dry_summary["coalesced"] == 6, "every good row counted"
    assert prefixed_keys(redis_client, settings_env) == set(), "a dry run stores nothing"

    real = run_cli("enqueue", "--file", str(csv_file), "--json")
    assert real.exit_code == 2, "rows were rejected, the good ones queued: " + explain(real)
    real_summary = json_out(real)
    queued_as = real_summary.pop("requests")
    assert real_summary == {
        "accepted": 4,
        "coalesced": 2,
        "already_queued": 0,
        "recent": 0,
        "rejected": EXPECTED_REJECTED,
        "rejected_total": 5,
    }
    assert len(queued_as) == 6 and sum(item["coalesced"] for item in queued_as) == 2

    runtime = current_runtime()
    stored = {}
    for order, fields in GOOD_ORDERS.items():
        (request_id,) = runtime.records.ids_for_order(order)
        record = get_resend(request_id)
        assert record is not None and record.status.value == "queued"
        assert record.request == fields
        stored[order] = record
    assert stored["RA251125-5001-01"].merges == 1 and stored["RA251125-5001-02"].merges == 1
    for bad_order in ("RA251125-5001-03", "RA251125-5001-04", "RA251125-5001-05"):
        assert runtime.records.ids_for_order(bad_order) == []
    # One task message per stored request; duplicates queue nothing.
    assert redis_client.llen(settings_env["RESEND_QUEUE"]) == 4

    again = run_cli("enqueue", "--file", str(csv_file), "--json")
    again_summary = json_out(again)
    # The same file again: every row carries its key (file content + row), so nothing new.
    assert again_summary.pop("requests") == [
        {**item, "coalesced": False, "already_queued": True} for item in queued_as
    ]
    assert again_summary == {
        "accepted": 0,
        "coalesced": 0,
        "already_queued": 6,
        "recent": 0,
        "rejected": EXPECTED_REJECTED,
        "rejected_total": 5,
    }

    text = run_cli("enqueue", "--file", str(csv_file))
    assert text.exit_code == 2, explain(text)
    assert text.stdout.splitlines()[0] == (
        "0 queued, 0 coalesced into pending requests, 6 already queued by an earlier run, "
        "5 rejected"
    )
    assert "  row 4: newEmail: is not a valid email address" in text.stdout.splitlines()
    assert "not-an-email" not in text.stdout, "rejected values are not echoed"


def test_unusable_files_exit_2_and_store_nothing(
    settings_env: dict[str, str], run_cli: CliRun, redis_client: redis.Redis, tmp_path: Path
) -> None:
    unknown_column = write_csv(
        tmp_path / "unknown.csv", "referenceOrderID,newEmail,note", ["RA251125-5001-01,,hi"]
    )
    result = run_cli("enqueue", "--file", str(unknown_column), "--json")
    assert result.exit_code == 2 and "unknown: note" in result.stderr
    no_order_column = write_csv(tmp_path / "no-id.csv", "newEmail", ["pat@example.com"])
    assert run_cli("enqueue", "--file", str(no_order_column)).exit_code == 2
    missing = run_cli("enqueue", "--file", str(tmp_path / "absent.csv"))
    assert missing.exit_code == 2
    not_utf8 = tmp_path / "latin1.csv"
    not_utf8.write_bytes(b"referenceOrderID,newEmail\nRA251125-5001-01,jos\xe9@example.com\n")
    assert run_cli("enqueue", "--file", str(not_utf8)).exit_code == 2
    with_fields = write_csv(tmp_path / "ok.csv", HEADER, ROWS[:1])
    mixed = run_cli("enqueue", "--file", str(with_fields), "--email", "pat@example.com")
    assert mixed.exit_code == 2
    assert prefixed_keys(redis_client, settings_env) == set()


def test_header_with_a_byte_order_mark_and_fewer_columns(
    settings_env: dict[str, str], run_cli: CliRun, tmp_path: Path
) -> None:
    path = tmp_path / "excel.csv"
    path.write_text("referenceOrderID,newEtid\nRA251125-5101-01,E000001\n", encoding="utf-8-sig")
    result = run_cli("enqueue", "--file", str(path), "--json")
    summary = json_out(result)
    assert summary.pop("requests")[0]["row"] == 1
    assert summary == {
        "accepted": 1,
        "coalesced": 0,
        "already_queued": 0,
        "recent": 0,
        "rejected": [],
        "rejected_total": 0,
    }


PEAK_RSS_SCRIPT = """
import resource, subprocess, sys
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
sys.stdout.write(done.stdout)
sys.stderr.write(done.stderr)
# Linux reports kilobytes: the peak of the one child this process ran.
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)
sys.exit(done.returncode)
"""


def peak_rss_of_dry_run(csv_file: Path, env: dict[str, str]) -> tuple[dict[str, object], int]:
    """`python -m worker enqueue --file F --dry-run --json` in its own process: summary, peak KB."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            PEAK_RSS_SCRIPT,
            sys.executable,
            "-m",
            "worker",
            "enqueue",
            "--file",
            str(csv_file),
            "--dry-run",
            "--json",
        ],
        env=child_env(env),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode in (0, 2), done.stderr  # 2: a row was rejected
    return json.loads(done.stdout), int(done.stderr.strip().splitlines()[-1])


def test_a_100k_row_file_streams_in_flat_memory(tmp_path: Path) -> None:
    """No Redis is touched by a dry run, so this needs none."""
    env = {"REDIS_URL": "redis://127.0.0.1:1/0"}  # nothing listens: any Redis use would fail
    small = write_csv(
        tmp_path / "small.csv",
        "referenceOrderID,newEmail,newEtid",
        [f"RA251125-{n}-01,user{n}@example.com,E000001" for n in range(10)],
    )
    big = tmp_path / "big.csv"
    with big.open("w", encoding="utf-8") as handle:
        handle.write("referenceOrderID,newEmail,newEtid\n")
        for n in range(100_000):
            handle.write(f"RA251125-{n}-01,user{n}@example.com,E000001\n")
        handle.write("RA-bad,user@example.com,E000001\n")

    small_summary, small_peak_kb = peak_rss_of_dry_run(small, env)
    big_summary, big_peak_kb = peak_rss_of_dry_run(big, env)

    assert small_summary == {
        "accepted": 10,
        "coalesced": 0,
        "already_queued": 0,
        "recent": 0,
        "rejected": [],
        "rejected_total": 0,
    }
    assert big_summary["accepted"] == 100_000 and big_summary["coalesced"] == 0
    assert big_summary["rejected"] == [
        {
            "row": 100_001,
            "errors": "referenceOrderID: must look like RA180426-1401-64 "
            "(RA, 6 digits, -, digits, -, digits)",
        }
    ]
    assert big_peak_kb < 150 * 1024, f"peak RSS {big_peak_kb / 1024:.0f} MB"
    # Flat: the file (about 4 MB) adds almost nothing over the interpreter and its imports.
    grown_mb = (big_peak_kb - small_peak_kb) / 1024
    assert grown_mb < 20, f"memory grew {grown_mb:.0f} MB for 100,000 rows"
