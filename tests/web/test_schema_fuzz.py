"""Fuzz the receiver from its own OpenAPI schema: no 5xx, and answers match the schema."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import positive_data_acceptance

from worker.runtime import reset_runtime
from worker.settings import reset_settings_cache
from worker.web import create_app


@pytest.mark.parametrize("mode", ["signed", "unsigned"])
def test_no_server_errors_and_answers_match_the_schema(
    mode: str, web_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every operation of the live schema, with generated valid and invalid inputs.

    Unsigned mode lets generated bodies past the signature to validation and enqueueing.
    """
    if mode == "unsigned":
        monkeypatch.delenv("WEBHOOK_SECRET")
        monkeypatch.setenv("WEBHOOK_ALLOW_UNSIGNED", "true")
        reset_settings_cache()
        reset_runtime()
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app())
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/webhooks/resends", "/healthz"}
    cases = st.one_of(*(op.as_strategy() for op in operations))

    @given(case=cases)
    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    def call(case: schemathesis.Case) -> None:
        # Schema-valid data may still be refused (422): an address email-validator rejects,
        # or an E.164-shaped number that belongs to no country; acceptance is not demanded.
        case.call_and_validate(excluded_checks=[positive_data_acceptance])

    call()


def test_stateful_webhook_then_read_back(
    web_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Follow the OpenAPI link from a 202 to GET /resends/{id}: sequences of calls, not just
    single ones, never give a 5xx and always match the schema."""
    monkeypatch.delenv("WEBHOOK_SECRET")
    monkeypatch.setenv("WEBHOOK_ALLOW_UNSIGNED", "true")
    reset_settings_cache()
    reset_runtime()
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app())
    base = schema.as_state_machine()
    token = web_env["API_TOKEN"]

    class WebhookThenRead(base):  # type: ignore[misc, valid-type]
        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, object]:
            kwargs = dict(super().get_call_kwargs(case))
            if case.path.startswith("/resends/"):
                kwargs["headers"] = {**(case.headers or {}), "Authorization": f"Bearer {token}"}
            return kwargs

        def validate_response(
            self, response: object, case: schemathesis.Case, **kwargs: object
        ) -> None:
            case.validate_response(response, excluded_checks=[positive_data_acceptance])

    WebhookThenRead.run(
        settings=settings(
            max_examples=25,
            stateful_step_count=4,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
    )
