"""Fuzz the receiver from its own OpenAPI schema: no 5xx, and answers match the schema."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.support.settings import apply_settings
from worker.web.app import create_app


@pytest.mark.parametrize("mode", ["signed", "unsigned", "api"])
def test_no_server_errors_and_answers_match_the_schema(
    mode: str, web_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every operation of the live schema, with generated valid and invalid inputs.

    Unsigned mode lets generated bodies past the signature to validation and enqueueing; api
    mode also sends the API token, so the REST API's routes get past their bearer check.
    """
    if mode in {"unsigned", "api"}:
        monkeypatch.delenv("WEBHOOK_SECRET")
        apply_settings({"WEBHOOK_ALLOW_UNSIGNED": "true"}, monkeypatch.setenv)
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app())
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {
        "/webhooks/resends",
        "/healthz",
        "/resends",
        "/resends/{request_id}",
        "/resends/{request_id}/cancel",
        "/resends/{request_id}/retry",
        "/orders/{referenceOrderID}/resends",
    }
    cases = st.one_of(*(op.as_strategy() for op in operations))
    token = web_env["API_TOKEN"]

    @given(case=cases)
    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    def call(case: schemathesis.Case) -> None:
        # Schema-valid data may still be refused (422): an address email-validator rejects,
        # or an E.164-shaped number that belongs to no country; acceptance is not demanded.
        if mode == "api" and not case.path.startswith("/webhooks"):
            case.headers = {**(case.headers or {}), "authorization": f"Bearer {token}"}
        case.call_and_validate(excluded_checks=[positive_data_acceptance])

    call()


def test_stateful_webhook_then_read_back(
    web_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Follow the OpenAPI links from a 202 (of the webhook, and of POST /resends) to
    GET /resends/{id}, its cancel and its retry: sequences of calls, not just single ones,
    never give a 5xx and always match the schema."""
    monkeypatch.delenv("WEBHOOK_SECRET")
    apply_settings({"WEBHOOK_ALLOW_UNSIGNED": "true"}, monkeypatch.setenv)
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app())
    base = schema.as_state_machine()
    token = web_env["API_TOKEN"]
    answered: set[tuple[str, str, int]] = set()

    class WebhookThenRead(base):  # type: ignore[misc, valid-type]
        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, object]:
            kwargs = dict(super().get_call_kwargs(case))
            if not case.path.startswith("/webhooks"):
                kwargs["headers"] = {**(case.headers or {}), "Authorization": f"Bearer {token}"}
            return kwargs

        def validate_response(
            self, response: object, case: schemathesis.Case, **kwargs: object
        ) -> None:
            answered.add((case.method, case.path, response.status_code))  # type: ignore[attr-defined]
            case.validate_response(response, excluded_checks=[positive_data_acceptance])

    WebhookThenRead.run(
        settings=settings(
            max_examples=25,
            stateful_step_count=4,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
    )
    # The links were followed with ids that exist: answers other than 401/404/422 came back.
    followed = {(method, path) for method, path, status in answered if status in {200, 202, 409}}
    assert {
        ("POST", "/resends"),
        ("GET", "/resends/{request_id}"),
        ("POST", "/resends/{request_id}/cancel"),
    } <= followed, sorted(answered)
