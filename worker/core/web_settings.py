"""Settings of the web process (`tango-resend web`): what it trusts, how long it waits for a
client, and which port serves what. Part of `Settings` (worker/core/settings.py); kept apart
because the rest of tango-resend never reads them. docs/security.md says what each one
trusts, beside a reverse proxy's equivalent."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings

from worker.core.secret_strength import GENERATE_TOKEN_HINT, weak_token_reason

ONE_YEAR_SECONDS = 365 * 24 * 3600


class WebSettings(BaseSettings):
    """The web process's knobs; field `foo_bar` is read from the variable `FOO_BAR`."""

    # With CONSOLE_TRUST_PROXY=true: how many proxies of ours stand in front. The client is
    # the address that many places from the END of X-Forwarded-For, the one our nearest proxy
    # appended; everything before it was written by the client and is never believed.
    trusted_proxy_hops: int = Field(default=1, ge=1, le=16)
    # A client must send its request line and headers within this long of connecting (or of
    # starting its next request on a kept-alive connection), and its body within this long of
    # its headers; else the connection is closed. (nginx: client_header_timeout and
    # client_body_timeout, though nginx times each read, not the whole.)
    web_header_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    web_body_timeout_seconds: float = Field(default=20.0, gt=0, le=600)
    # Connections and requests in progress per process, beyond which a new request gets 503
    # at once (uvicorn's limit_concurrency; nginx: limit_conn, worker_connections).
    web_max_concurrency: int = Field(default=1000, ge=1, le=100_000)
    # Strict-Transport-Security max-age, sent on answers to requests that came over HTTPS
    # (directly, or by a trusted proxy's X-Forwarded-Proto); 0 sends none.
    web_hsts_seconds: int = Field(default=ONE_YEAR_SECONDS, ge=0, le=2 * ONE_YEAR_SECONDS)
    # Serve /docs and /redoc (every file they load from our own origin); false turns them
    # off (/openapi.json, plain JSON, is always served).
    web_docs: bool = True
    # A second port for the office: the console, the REST API, /docs, /metrics (and /healthz)
    # listen there, and the main port keeps only the webhook route and /healthz.
    web_internal_port: int | None = Field(default=None, ge=1, le=65535)
    # Its address; the main port's (`--host`) when unset.
    web_internal_host: str | None = None

    # A console session ends after this long without a page view or action (and after 8
    # hours whatever happens).
    console_idle_timeout_seconds: int = Field(default=1800, ge=1, le=8 * 3600)
    # The key of the HMAC that Redis keeps of session cookies and tokens; derived from
    # WEBHOOK_SECRET when unset (docs/security.md, "Sessions").
    console_session_secret: SecretStr | None = Field(default=None, min_length=32)
    # Failed bearer tokens and console sign-ins, all clients together, per minute beyond
    # which only clients that signed in successfully of late may try (the per-client
    # throttle stops one client; this stops many).
    auth_failures_per_minute: int = Field(default=60, ge=1, le=100_000)

    @field_validator(
        "web_internal_port", "web_internal_host", "console_session_secret", mode="before"
    )
    @classmethod
    def _blank_web_setting_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("console_session_secret")
    @classmethod
    def _hard_to_guess(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            weakness = weak_token_reason(value.get_secret_value())
            if weakness is not None:
                raise ValueError(f"{weakness}, so it is easy to guess; {GENERATE_TOKEN_HINT}")
        return value
