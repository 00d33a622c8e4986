"""`API_TOKENS`: named tokens parsed and checked at start-up, resolved by one function
(`worker.web.api_tokens.identify`), with API_TOKEN and API_READ_TOKEN as `default` and
`read`; and the recent-resend guard's setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.core.settings import ConfigurationError, load_settings
from worker.web.api_tokens import Identity, Role, identify, identify_authorization

ALICE = "alice-token-7hQ2-named-tokens-unit-000001"
BOB = "bob-token-8mW3-named-tokens-unit-00000002"
LEGACY = "legacy-api-token-named-tokens-unit-0000003"
LEGACY_READ = "legacy-read-token-named-tokens-unit-00004"


def test_entries_resolve_to_their_name_and_role(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_TOKENS", f"alice:{ALICE}:write,\n bob:{BOB}:read")
    settings = load_settings()
    assert settings.api_enabled
    assert identify(settings, ALICE) == Identity("alice", Role.WRITE)
    assert identify(settings, BOB) == Identity("bob", Role.READ)
    assert identify(settings, ALICE + "x") is None
    assert identify(settings, "") is None
    assert identify_authorization(settings, f"Bearer {BOB}") == Identity("bob", Role.READ)
    assert identify_authorization(settings, f"Basic {BOB}") is None


def test_api_token_and_api_read_token_are_default_and_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("API_TOKEN", LEGACY)
    monkeypatch.setenv("API_READ_TOKEN", LEGACY_READ)
    monkeypatch.setenv("API_TOKENS", f"alice:{ALICE}:write")
    settings = load_settings()
    assert identify(settings, LEGACY) == Identity("default", Role.WRITE)
    assert identify(settings, LEGACY_READ) == Identity("read", Role.READ)
    assert identify(settings, ALICE) == Identity("alice", Role.WRITE)


def test_a_file_of_entries(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    listing = tmp_path / "tokens"
    listing.write_text(f"# agents\nalice:{ALICE}:write  # Alice Example\n\nbob:{BOB}:read\n")
    monkeypatch.setenv("API_TOKENS", str(listing))
    settings = load_settings()
    assert [token.name for token in settings.named_tokens()] == ["alice", "bob"]
    assert ALICE not in repr(settings.named_tokens()) and ALICE not in repr(settings)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (f"alice:{ALICE}", "must be name:token:role"),
        (f"alice:{ALICE}:admin", "the role must be write or read"),
        ("alice:short:write", "at least 32 characters"),
        (f"al ice:{ALICE}:write,x", "must be name:token:role"),
        (f"alice:{ALICE}:write,alice:{BOB}:read", "the name 'alice' is given twice"),
        (f"alice:{ALICE}:write,bob:{ALICE}:read", "also another name's token"),
        (f"default:{ALICE}:write", "the name 'default' is given twice"),
        ("/nonexistent/tokens-file", "cannot be read"),
    ],
)
def test_bad_entries_are_refused_naming_the_entry_not_its_token(
    monkeypatch: pytest.MonkeyPatch, value: str, message: str
) -> None:
    monkeypatch.setenv("API_TOKEN", LEGACY)
    monkeypatch.setenv("API_TOKENS", value)
    with pytest.raises(ConfigurationError) as raised:
        load_settings()
    assert "API_TOKENS" in str(raised.value) and message in str(raised.value)
    assert ALICE not in str(raised.value) and BOB not in str(raised.value)


def test_the_recent_guard_is_off_by_default_and_refuses_a_negative_span(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert load_settings().resend_recent_seconds == 0
    monkeypatch.setenv("RESEND_RECENT_SECONDS", "600")
    assert load_settings().resend_recent_seconds == 600
    monkeypatch.setenv("RESEND_RECENT_SECONDS", "-1")
    with pytest.raises(ConfigurationError, match="RESEND_RECENT_SECONDS"):
        load_settings()
