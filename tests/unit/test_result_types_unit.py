"""The typed results: each enum holds exactly the words its Lua script answers with (so parsing
a reply never meets a word it lacks), and the values that reach JSON, metrics and the CLI are
the strings they always were (a public contract; a `StrEnum` is equal to its word)."""

from __future__ import annotations

import json
import re
from enum import StrEnum

from worker.resend.callbacks import DeliveryOutcome
from worker.state import scripts
from worker.state.gate import Verdict
from worker.state.metrics import DeferralReason, ProbeResult
from worker.state.records import (
    AttemptOutcome,
    BeginVerdict,
    CancelResult,
    FinishResult,
    ResendStatus,
    SubmissionOutcome,
    finish_result_from_reply,
)


def lua(name: str) -> str:
    return scripts.load(name).source


def first_words(script: str) -> set[str]:
    """The literal word each `return {'word', ...}` or `return 'word'` of a script starts with."""
    return set(re.findall(r"return \{?'([a-z_]+)'", script))


def values(enum: type[StrEnum]) -> set[str]:
    return {member.value for member in enum}


def test_the_gate_verdicts_are_the_gate_scripts_words() -> None:
    assert values(Verdict) == first_words(lua("gate_start"))


def test_the_begin_verdicts_are_the_begin_scripts_words() -> None:
    assert values(BeginVerdict) == first_words(lua("begin"))


def test_the_finish_results_are_the_finish_scripts_words() -> None:
    """Besides these, FINISH answers with the final status a request already had."""
    assert values(FinishResult) == first_words(lua("finish"))


def test_the_submission_outcomes_are_the_create_scripts_words() -> None:
    words = set(re.findall(r"return \{\w+, '([a-z_]+)'", lua("create")))

    assert values(SubmissionOutcome) == words == {"created", "idempotent", "merged", "recent"}


def test_the_delivery_outcomes_cover_the_settle_scripts_words() -> None:
    # SETTLE also echoes back the result it was given when that is `delivered` or `gone`.
    assert values(DeliveryOutcome) == first_words(lua("outbox_settle")) | {"delivered", "gone"}


def test_a_finish_reply_is_a_result_or_the_status_the_request_had() -> None:
    assert finish_result_from_reply("done") is FinishResult.DONE
    assert finish_result_from_reply("in_flight") is FinishResult.IN_FLIGHT
    assert finish_result_from_reply("sent") is ResendStatus.SENT
    assert finish_result_from_reply(b"cancelled".decode()) is ResendStatus.CANCELLED


def test_the_public_words_are_unchanged() -> None:
    """`cancel_resend`'s answers, `Submission.outcome`, the metrics' labels and the attempt
    log's words, exactly as the README and the dashboards name them."""
    assert values(CancelResult) == {"cancelled", "in_flight", "sent", "failed", "unknown"}
    assert values(DeferralReason) == {"lock", "cooldown", "rate_limit", "turn"}
    assert DeferralReason.WINDOW == "lock", "our window keeps its old metric label"
    assert values(ProbeResult) == {"sent", "confirmed", "inconclusive"}
    assert values(AttemptOutcome) == {
        "sent",
        "confirmed",
        "deferred",
        "retrying",
        "failed",
        "unauthorized",
        "interrupted",
    }
    # `tango_resend_callbacks_total` counts a retry as "retried", every other outcome by name.
    assert DeliveryOutcome.RETRYING.metric_label == "retried"
    assert DeliveryOutcome.DUPLICATE.metric_label == "duplicate"


def test_a_result_reads_as_its_word_in_json_text_and_comparisons() -> None:
    result = CancelResult.IN_FLIGHT

    assert result == "in_flight"
    assert str(result) == f"{result}" == "in_flight"
    assert json.dumps({"result": result}) == '{"result": "in_flight"}'
