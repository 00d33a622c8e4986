"""Secrets shown in our docs and examples never work, and API tokens are long enough."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest

from worker.core.settings import (
    API_TOKEN_MIN_LENGTH,
    PUBLISHED_WEBHOOK_SECRETS,
    ConfigurationError,
    is_published_webhook_secret,
    load_settings,
    webhook_key,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
# Everything a reader copies settings from.
DOCUMENTS = ("README.md", ".env.example", "docker-compose.yml", "docs/**/*", "Procfile*")
WHSEC_LITERAL = re.compile(r"whsec_[A-Za-z0-9+/=]+")
PUBLISHED = "whsec_ZGV2ZWxvcG1lbnQtb25seS1zZWNyZXQtY2hhbmdlLW1l"


def documented_secrets() -> dict[str, str]:
    """Every `whsec_` literal of valid form in the docs, with the file it is in."""
    found: dict[str, str] = {}
    for pattern in DOCUMENTS:
        for path in sorted(REPO_ROOT.glob(pattern)):
            if not path.is_file():
                continue
            for literal in WHSEC_LITERAL.findall(path.read_text(errors="replace")):
                if webhook_key(literal) is not None:
                    found[literal] = str(path.relative_to(REPO_ROOT))
    return found


def test_every_secret_in_the_docs_is_refused() -> None:
    """Given any whsec_ secret a doc or example shows, it is on the refused list, so a
    future example copied into a deployment can never become a working secret."""
    unlisted = {
        literal: where
        for literal, where in documented_secrets().items()
        if not is_published_webhook_secret(literal)
    }

    assert not unlisted, (
        f"add these to worker/core/settings.py PUBLISHED_WEBHOOK_SECRETS: {unlisted}"
    )


def test_the_list_holds_the_published_secret_and_only_valid_ones() -> None:
    assert PUBLISHED in PUBLISHED_WEBHOOK_SECRETS
    assert all(webhook_key(secret) is not None for secret in PUBLISHED_WEBHOOK_SECRETS)


@pytest.mark.parametrize(
    "secret",
    [
        PUBLISHED,
        PUBLISHED + "=",
        "whsec_" + base64.b64encode(webhook_key(PUBLISHED) or b"").decode(),
    ],
    ids=["as published", "padded", "re-encoded"],
)
def test_the_receiver_refuses_a_published_secret_saying_how_to_make_one(
    monkeypatch: pytest.MonkeyPatch, secret: str
) -> None:
    monkeypatch.setenv("WEBHOOK_SECRET", secret)
    settings = load_settings()

    with pytest.raises(ConfigurationError) as refused:
        settings.require_webhook_secret()

    message = str(refused.value)
    assert "WEBHOOK_SECRET" in message and "tango-resend gen-secret" in message
    assert secret not in message


def test_the_published_secret_is_refused_even_with_unsigned_mode_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WEBHOOK_SECRET", PUBLISHED)
    monkeypatch.setenv("WEBHOOK_ALLOW_UNSIGNED", "true")

    with pytest.raises(ConfigurationError, match="gen-secret"):
        load_settings().require_webhook_secret()


def test_a_secret_of_ones_own_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    own = "whsec_" + base64.b64encode(b"a secret nobody has published 0123").decode()
    monkeypatch.setenv("WEBHOOK_SECRET", own)

    load_settings().require_webhook_secret()  # does not raise


@pytest.mark.parametrize("token", ["e2e-token", "x" * (API_TOKEN_MIN_LENGTH - 1)])
def test_a_short_api_token_is_refused_naming_api_token(
    monkeypatch: pytest.MonkeyPatch, token: str
) -> None:
    monkeypatch.setenv("API_TOKEN", token)

    with pytest.raises(ConfigurationError) as refused:
        load_settings()

    message = str(refused.value)
    assert f"API_TOKEN: must be at least {API_TOKEN_MIN_LENGTH} characters" in message
    assert token not in message


def test_an_api_token_of_32_characters_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    token = "Zq8-vT3kLw0pXn5RbY7cHs2aJm9eUf4d"[:API_TOKEN_MIN_LENGTH]
    monkeypatch.setenv("API_TOKEN", token)

    settings = load_settings()

    assert settings.api_token is not None and settings.api_token.get_secret_value() == token
