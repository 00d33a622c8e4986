"""Unit tests for worker.core.settings: defaults, variable names, .env, secrets and error
messages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from worker.core.settings import (
    TANGO_SANDBOX_BASE_URL,
    ConfigurationError,
    Settings,
    get_settings,
    load_settings,
    reset_settings_cache,
)

PLATFORM_KEY = "pk-Sup3rS3cret-value"
CLIENT_SECRET = "cs-An0therS3cret-value"


def set_env(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    for name, value in values.items():
        monkeypatch.setenv(name, value)


def test_defaults() -> None:
    settings = load_settings()

    assert str(settings.redis_url) == "redis://localhost:6379/0"
    assert settings.resend_cooldown_seconds == 30.0
    assert settings.resend_max_retries == 5
    assert str(settings.tango_base_url).rstrip("/") == TANGO_SANDBOX_BASE_URL
    assert TANGO_SANDBOX_BASE_URL == "https://integration-api.tangocard.com/raas/v2"
    assert settings.tango_platform_name is None
    assert settings.tango_platform_key is None
    assert settings.tango_client_id is None
    assert settings.tango_client_secret is None
    assert settings.tango_token_url is None
    assert settings.uses_oauth is False
    assert settings.has_tango_credentials is False


@pytest.mark.parametrize(
    ("variable", "value", "attribute", "expected"),
    [
        (
            "REDIS_URL",
            "redis://redis.internal:6380/3",
            "redis_url",
            "redis://redis.internal:6380/3",
        ),
        (
            "TANGO_BASE_URL",
            "http://127.0.0.1:8099/raas/v2",
            "tango_base_url",
            "http://127.0.0.1:8099/raas/v2",
        ),
        ("TANGO_PLATFORM_NAME", "acme", "tango_platform_name", "acme"),
        ("TANGO_CLIENT_ID", "client-1", "tango_client_id", "client-1"),
        (
            "TANGO_TOKEN_URL",
            "https://auth.example.com/oauth/token",
            "tango_token_url",
            "https://auth.example.com/oauth/token",
        ),
        ("TANGO_TIMEOUT_SECONDS", "4.5", "tango_timeout_seconds", 4.5),
        ("RESEND_COOLDOWN_SECONDS", "2", "resend_cooldown_seconds", 2.0),
        # Our window's name in code; the variable keeps its name (docs/how-it-works.md, the
        # glossary).
        ("RESEND_COOLDOWN_SECONDS", "2", "resend_window_seconds", 2.0),
        ("RESEND_MAX_RETRIES", "0", "resend_max_retries", 0),
    ],
)
def test_each_variable_is_read_under_its_exact_name(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, attribute: str, expected: Any
) -> None:
    # Credentials come in sets; complete the set so that only `variable` is under test.
    companions = {
        "TANGO_PLATFORM_NAME": {"TANGO_PLATFORM_KEY": PLATFORM_KEY},
        "TANGO_CLIENT_ID": {
            "TANGO_CLIENT_SECRET": CLIENT_SECRET,
            "TANGO_TOKEN_URL": "https://auth.example.com/t",
        },
        "TANGO_TOKEN_URL": {"TANGO_CLIENT_ID": "c", "TANGO_CLIENT_SECRET": CLIENT_SECRET},
    }
    set_env(monkeypatch, **{variable: value}, **companions.get(variable, {}))

    settings = load_settings()

    actual = getattr(settings, attribute)
    assert (str(actual) if not isinstance(expected, int | float) else actual) == expected


@pytest.mark.parametrize(
    ("variable", "attribute"),
    [("TANGO_PLATFORM_KEY", "tango_platform_key"), ("TANGO_CLIENT_SECRET", "tango_client_secret")],
)
def test_secrets_are_read_as_secret_str(
    monkeypatch: pytest.MonkeyPatch, variable: str, attribute: str
) -> None:
    set_env(
        monkeypatch,
        TANGO_PLATFORM_NAME="acme",
        TANGO_PLATFORM_KEY=PLATFORM_KEY,
        TANGO_CLIENT_ID="client-1",
        TANGO_CLIENT_SECRET=CLIENT_SECRET,
        TANGO_TOKEN_URL="https://auth.example.com/t",
    )

    secret = getattr(load_settings(), attribute)

    assert isinstance(secret, SecretStr)
    assert (
        secret.get_secret_value()
        == {
            "TANGO_PLATFORM_KEY": PLATFORM_KEY,
            "TANGO_CLIENT_SECRET": CLIENT_SECRET,
        }[variable]
    )


def test_lowercase_names_with_a_prefix_are_not_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the documented names count: near misses are ignored, not guessed."""
    set_env(monkeypatch, RESEND_MAX_RETRY="9", TANGO_RESEND_COOLDOWN_SECONDS="9", REDIS="x")

    settings = load_settings()

    assert settings.resend_max_retries == 5
    assert settings.resend_cooldown_seconds == 30.0


def test_a_dotenv_file_in_the_working_directory_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    Path(".env").write_text(
        "RESEND_MAX_RETRIES=7\n"
        "RESEND_COOLDOWN_SECONDS=12.5\n"
        "TANGO_PLATFORM_NAME=from-dotenv\n"
        f"TANGO_PLATFORM_KEY={PLATFORM_KEY}\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("RESEND_COOLDOWN_SECONDS", "3")  # the environment wins over .env

    settings = load_settings()

    assert settings.resend_max_retries == 7
    assert settings.resend_cooldown_seconds == 3.0
    assert settings.tango_platform_name == "from-dotenv"
    assert settings.tango_platform_key is not None
    assert settings.tango_platform_key.get_secret_value() == PLATFORM_KEY


def test_a_dotenv_file_elsewhere_is_not_read(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / ".env").write_text("RESEND_MAX_RETRIES=7\n", encoding="utf-8")

    assert load_settings().resend_max_retries == 5


def test_secrets_are_absent_from_repr_and_str(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(
        monkeypatch,
        TANGO_PLATFORM_NAME="acme",
        TANGO_PLATFORM_KEY=PLATFORM_KEY,
        TANGO_CLIENT_ID="client-1",
        TANGO_CLIENT_SECRET=CLIENT_SECRET,
        TANGO_TOKEN_URL="https://auth.example.com/t",
    )

    settings = load_settings()

    for text in (repr(settings), str(settings), repr(settings.model_dump()), f"{settings}"):
        assert PLATFORM_KEY not in text
        assert CLIENT_SECRET not in text
    assert settings.model_dump_json().count(PLATFORM_KEY) == 0


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("REDIS_URL", "not-a-url"),
        ("REDIS_URL", "http://localhost:6379/0"),
        ("TANGO_BASE_URL", "not a url"),
        ("RESEND_MAX_RETRIES", "-1"),
        ("RESEND_MAX_RETRIES", "1.5"),
        ("RESEND_MAX_RETRIES", "many"),
        ("TANGO_TIMEOUT_SECONDS", "abc"),
        ("TANGO_TIMEOUT_SECONDS", "0"),
        ("TANGO_TIMEOUT_SECONDS", "-3"),
        ("RESEND_COOLDOWN_SECONDS", "0"),
        ("RESEND_COOLDOWN_SECONDS", "7200"),
        ("TANGO_TOKEN_URL", "nope"),
    ],
)
def test_an_invalid_value_names_its_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)

    with pytest.raises(ConfigurationError) as caught:
        load_settings()

    message = str(caught.value)
    assert message.startswith("Invalid configuration: ")
    assert f"{variable}: " in message
    assert caught.value.__cause__ is None  # the pydantic error (holding the input) is dropped


def test_an_invalid_value_is_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A secret pasted into the wrong variable must not end up in a log line."""
    monkeypatch.setenv("TANGO_TIMEOUT_SECONDS", PLATFORM_KEY)
    monkeypatch.setenv("REDIS_URL", f"redis://:{CLIENT_SECRET}@localhost:notaport/0")

    with pytest.raises(ConfigurationError) as caught:
        load_settings()

    message = str(caught.value)
    assert "TANGO_TIMEOUT_SECONDS" in message
    assert "REDIS_URL" in message
    assert PLATFORM_KEY not in message
    assert CLIENT_SECRET not in message


@pytest.mark.parametrize(
    ("given", "missing"),
    [
        ({"TANGO_CLIENT_ID": "client-1"}, ["TANGO_CLIENT_SECRET", "TANGO_TOKEN_URL"]),
        ({"TANGO_CLIENT_SECRET": CLIENT_SECRET}, ["TANGO_CLIENT_ID", "TANGO_TOKEN_URL"]),
        (
            {"TANGO_CLIENT_ID": "client-1", "TANGO_CLIENT_SECRET": CLIENT_SECRET},
            ["TANGO_TOKEN_URL"],
        ),
        ({"TANGO_TOKEN_URL": "https://a.example/t"}, ["TANGO_CLIENT_ID", "TANGO_CLIENT_SECRET"]),
        ({"TANGO_PLATFORM_KEY": PLATFORM_KEY}, ["TANGO_PLATFORM_NAME"]),
        ({"TANGO_PLATFORM_NAME": "acme"}, ["TANGO_PLATFORM_KEY"]),
        ({"TANGO_PLATFORM_NAME": "acme", "TANGO_PLATFORM_KEY": ""}, ["TANGO_PLATFORM_KEY"]),
    ],
)
def test_half_set_credentials_name_the_missing_variables_without_secrets(
    monkeypatch: pytest.MonkeyPatch, given: dict[str, str], missing: list[str]
) -> None:
    set_env(monkeypatch, **given)

    with pytest.raises(ConfigurationError) as caught:
        load_settings()

    message = str(caught.value)
    missing_part = message.split(" must be set together with ")[0]
    for name in missing:
        assert name in missing_part
    for name, value in given.items():
        if value:
            assert name in message
    assert PLATFORM_KEY not in message
    assert CLIENT_SECRET not in message


def test_complete_oauth_settings_use_oauth(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(
        monkeypatch,
        TANGO_CLIENT_ID="client-1",
        TANGO_CLIENT_SECRET=CLIENT_SECRET,
        TANGO_TOKEN_URL="https://auth.example.com/t",
    )

    settings = load_settings()

    assert settings.uses_oauth is True
    assert settings.has_tango_credentials is True
    settings.require_tango_credentials()


def test_basic_settings_do_not_use_oauth(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, TANGO_PLATFORM_NAME="acme", TANGO_PLATFORM_KEY=PLATFORM_KEY)

    settings = load_settings()

    assert settings.uses_oauth is False
    assert settings.has_tango_credentials is True
    settings.require_tango_credentials()


def test_require_tango_credentials_without_any_names_both_ways() -> None:
    settings = load_settings()

    with pytest.raises(ConfigurationError) as caught:
        settings.require_tango_credentials()

    message = str(caught.value)
    for name in (
        "TANGO_PLATFORM_NAME",
        "TANGO_PLATFORM_KEY",
        "TANGO_CLIENT_ID",
        "TANGO_CLIENT_SECRET",
        "TANGO_TOKEN_URL",
    ):
        assert name in message


def test_settings_are_frozen() -> None:
    settings = load_settings()

    with pytest.raises(ValueError, match="frozen"):
        settings.resend_max_retries = 9  # type: ignore[misc]


def test_get_settings_reads_once_until_reset(monkeypatch: pytest.MonkeyPatch) -> None:
    first = get_settings()
    monkeypatch.setenv("RESEND_MAX_RETRIES", "9")

    assert get_settings() is first
    reset_settings_cache()
    assert get_settings().resend_max_retries == 9


def test_settings_class_reads_the_same_variables_as_load_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RESEND_MAX_RETRIES", "3")

    assert Settings().resend_max_retries == load_settings().resend_max_retries == 3
