"""Process settings, read once from the environment (and `.env`) at process start."""

from __future__ import annotations

import base64
import binascii
import os
from functools import lru_cache
from typing import Self

from pydantic import (
    AnyHttpUrl,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from worker.core.errors import TangoResendError
from worker.core.named_tokens import (
    DEFAULT_NAME,
    READ_NAME,
    NamedToken,
    check_unique,
    parse_named_tokens,
    read_entries,
)
from worker.core.redis_url import RedisTarget, parse_redis_url
from worker.core.secret_strength import GENERATE_TOKEN_HINT, weak_key_reason, weak_token_reason
from worker.core.web_settings import WebSettings

TANGO_SANDBOX_BASE_URL = "https://integration-api.tangocard.com/raas/v2"

# Webhook secrets that were ever shown in this repository's docs or examples (README,
# docker-compose.yml, .env.example): anyone can sign with them, so no receiver may accept one.
# Every `whsec_` literal in the docs must be listed here (tests/unit/test_published_secrets.py).
PUBLISHED_WEBHOOK_SECRETS = frozenset(
    {
        "whsec_ZGV2ZWxvcG1lbnQtb25seS1zZWNyZXQtY2hhbmdlLW1l",
    }
)
# A bearer token shorter than this could be guessed or brute-forced over the network.
API_TOKEN_MIN_LENGTH = 32


def webhook_key(secret: str) -> bytes | None:
    """The HMAC key a Standard Webhooks secret (`whsec_` + base64, at least 16 bytes) stands
    for; None when `secret` is not of that form."""
    if not secret.startswith("whsec_"):
        return None
    try:
        key = base64.b64decode(secret.removeprefix("whsec_") + "==", validate=False)
    except (binascii.Error, ValueError):
        return None
    return key if len(key) >= 16 else None


def is_published_webhook_secret(secret: str) -> bool:
    """True when `secret` signs like one of PUBLISHED_WEBHOOK_SECRETS (same key)."""
    key = webhook_key(secret)
    return key is not None and key in {webhook_key(known) for known in PUBLISHED_WEBHOOK_SECRETS}


class ConfigurationError(TangoResendError):
    """Raised when a setting is missing or invalid; the message names the variable."""


class Settings(WebSettings, BaseSettings):
    """Every knob of tango-resend. Field `foo_bar` is read from the variable `FOO_BAR`."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True
    )

    redis_url: str = Field(
        default="redis://localhost:6379/0",
        repr=False,  # may hold a password
        description="Broker and all state (order windows, records, OAuth token): redis://, "
        "rediss:// (TLS), unix:// or sentinel://host:port;sentinel://host:port/db.",
    )
    # Sentinel: the name the sentinels monitor the primary under, and the sentinels' own
    # password (`requirepass` in sentinel.conf) when they have one; the data nodes' password
    # is the one in REDIS_URL.
    redis_sentinel_master: str = Field(default="mymaster", min_length=1, pattern=r"^[\w.\-:]+$")
    redis_sentinel_password: SecretStr | None = None
    # rediss://: the CA bundle (PEM) that signed the server's certificate; unset, the system's
    # CAs are used (a managed Redis with a public certificate needs nothing).
    redis_tls_ca_file: str | None = None
    redis_key_prefix: str = Field(default="tango-resend", min_length=1, pattern=r"^[\w.\-:]+$")
    resend_queue: str = Field(default="tango-resend", min_length=1, pattern=r"^[\w.\-]+$")
    # Durable before acting: with N > 0, a 202 (or a returned id), a call to Tango and a
    # reported final status each wait until Redis says N replicas hold the write (`WAIT N
    # timeout`); short of that, nothing is promised or called. 0 acts on the primary's word
    # alone, which a failover can take back (docs/guarantees.md, "Redis set-ups").
    redis_wait_replicas: int = Field(default=0, ge=0, le=16)
    # Under the clients' 10 s socket timeout, so a WAIT is answered, never cut off.
    redis_wait_timeout_ms: int = Field(default=500, ge=1, le=5_000)

    tango_base_url: AnyHttpUrl = Field(default=AnyHttpUrl(TANGO_SANDBOX_BASE_URL))
    tango_platform_name: str | None = None
    tango_platform_key: SecretStr | None = None
    tango_client_id: str | None = None
    tango_client_secret: SecretStr | None = None
    tango_token_url: AnyHttpUrl | None = None
    tango_oauth_scope: str = "raas.all"
    tango_oauth_audience: str = "https://api.tangocard.com/"
    tango_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    tango_connect_timeout_seconds: float = Field(default=3.05, gt=0, le=60)

    # A call that provably never reached Tango (unreachable, credentials refused, 503, 429)
    # is tried again with capped, jittered backoff, capped at this many seconds ...
    tango_outage_retry_max_seconds: float = Field(default=30.0, gt=0, le=3600)
    # ... until this long after the request's first try; then it fails, naming the URL and
    # the last error (docs/guarantees.md, "Bad days at Tango").
    tango_outage_patience_seconds: float = Field(default=3600.0, gt=0, le=7 * 86400)

    # Fleet-wide calls per second to Tango (its guidance: 1 or less); 0 turns the limit off.
    tango_rate_limit: float = Field(default=1.0, ge=0, le=1000)
    # No longer used: every wait is parked in Redis's due index (docs/how-it-works.md, "Waiting").
    # Still accepted so that existing deployments' settings keep loading.
    resend_park_after_seconds: float = Field(default=10.0, ge=0, le=150)
    # A released or running request unheard of for this long (its message lost, its worker
    # killed) is released again; a call in flight and a message still queued are exempt.
    resend_lease_seconds: float = Field(default=15.0, ge=1, le=600)
    # Our per-order window (`resend_window_seconds`); the field keeps the name its variable,
    # RESEND_COOLDOWN_SECONDS, has had since the first release, which deployments set.
    resend_cooldown_seconds: float = Field(default=30.0, gt=0, le=3600)
    resend_max_retries: int = Field(default=5, ge=0, le=100)
    resend_backoff_base_seconds: float = Field(default=1.0, gt=0, le=600)
    resend_backoff_max_seconds: float = Field(default=60.0, gt=0, le=3600)
    # A deferral must never fire early; this small positive jitter only spreads waiters out.
    resend_defer_jitter_seconds: float = Field(default=0.05, ge=0, le=5)
    # Guards against an endless loop if Tango keeps answering with its cooldown error.
    resend_max_cooldown_deferrals: int = Field(default=10, ge=1, le=1000)
    # After a call whose outcome is unknown, ask Tango again this long after giving up on it
    # (a probe; its cooldown answer can prove the first call resent). Capped so the probe
    # still reaches Tango inside the first call's window (docs/how-it-works.md, "Exactly once
    # in practice").
    resend_probe_delay_seconds: float = Field(default=3.0, ge=0, le=60)
    # The deployment declares that only tango-resend resends its orders (no portal use, no
    # other integration or deployment on the account): a probe's refusal can then prove that
    # our ambiguous call acted, whatever the last-sent time's precision (docs/how-it-works.md,
    # "Exactly once at any timestamp precision"). Off: only a precise last-sent time proves it.
    resend_exclusive: bool = False
    # How long after its longest call a call whose outcome is unknown may still act inside
    # Tango (a stalled backend): until then it counts as possibly acting, for the refusal proof.
    resend_stall_bound_seconds: float = Field(default=120.0, ge=0, le=3600)
    resend_record_ttl_seconds: int = Field(default=30 * 24 * 3600, ge=60)
    resend_idempotency_ttl_seconds: int = Field(default=24 * 3600, ge=1)
    # The recent-resend guard: a request for an order sent to the same recipient within this
    # many seconds is answered with that request and not queued (0: off). Forced requests pass.
    resend_recent_seconds: int = Field(default=0, ge=0, le=7 * 24 * 3600)

    webhook_secret: SecretStr | None = None
    webhook_allow_unsigned: bool = False
    webhook_max_body_bytes: int = Field(default=64 * 1024, ge=1024, le=1024 * 1024)
    api_token: SecretStr | None = None
    # A second bearer token that may only read (the REST API's GETs, a read-only console).
    api_read_token: SecretStr | None = None
    # Named tokens, `name:token:role` entries or a file of them (worker/core/named_tokens.py).
    api_tokens: SecretStr | None = None
    _named_tokens: tuple[NamedToken, ...] | None = PrivateAttr(default=None)
    # Honour X-Forwarded-For and X-Forwarded-Proto (whom the throttles count and the logs
    # name, the console's Secure cookie, HSTS) only when a proxy we trust sets them; off, a
    # client could. The name is older than its reach: it covers the whole web process.
    console_trust_proxy: bool = False

    # Serve Prometheus metrics from each worker on this port (the web app serves /metrics).
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    log_format: str = Field(default="text", pattern=r"^(text|json)$")
    # Outcome callbacks: a Standard-Webhooks-signed POST when a request is sent, fails or is
    # cancelled; delivered at least once, retried with backoff.
    result_webhook_url: AnyHttpUrl | None = None
    result_webhook_secret: SecretStr | None = None
    result_webhook_max_attempts: int = Field(default=20, ge=1, le=1000)
    # Delivery threads per worker, apart from the resend pool: a slow endpoint holds at most
    # this many threads of a worker, and never a resend's.
    result_webhook_concurrency: int = Field(default=1, ge=1, le=16)

    broker_visibility_timeout_seconds: int = Field(default=300, ge=2, le=300)
    worker_concurrency: int = Field(default=16, ge=1, le=512)
    log_level: str = Field(default="INFO", pattern=r"^(?i:debug|info|warning|error|critical)$")

    @field_validator(
        "redis_sentinel_password",
        "redis_tls_ca_file",
        "tango_platform_name",
        "tango_platform_key",
        "tango_client_id",
        "tango_client_secret",
        "tango_token_url",
        "webhook_secret",
        "api_token",
        "api_read_token",
        "api_tokens",
        "result_webhook_url",
        "result_webhook_secret",
        "metrics_port",
        mode="before",
    )
    @classmethod
    def _empty_means_unset(cls, value: object) -> object:
        # `VAR=` in a .env or compose file must not become an empty password or token.
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("redis_url")
    @classmethod
    def _readable_redis_url(cls, value: str) -> str:
        parse_redis_url(value)  # raises RedisUrlError (a ValueError) naming what is wrong
        return value.strip()

    @field_validator("redis_tls_ca_file")
    @classmethod
    def _readable_ca_file(cls, value: str | None) -> str | None:
        if value is not None and not os.access(value, os.R_OK):
            raise ValueError(f"{value} is not a readable file (a PEM bundle of CA certificates)")
        return value

    @field_validator("webhook_secret", "result_webhook_secret")
    @classmethod
    def _standard_webhooks_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        key = webhook_key(value.get_secret_value())
        if key is None:
            raise ValueError("must be whsec_ followed by at least 16 base64-encoded bytes")
        weakness = weak_key_reason(key)
        if weakness is not None:
            raise ValueError(f"{weakness}: make one with `tango-resend gen-secret`")
        return value

    @field_validator("api_token", "api_read_token")
    @classmethod
    def _long_api_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        if len(value.get_secret_value()) < API_TOKEN_MIN_LENGTH:
            raise ValueError(
                f"must be at least {API_TOKEN_MIN_LENGTH} characters; {GENERATE_TOKEN_HINT}"
            )
        weakness = weak_token_reason(value.get_secret_value())
        if weakness is not None:
            raise ValueError(f"{weakness}, so it is easy to guess; {GENERATE_TOKEN_HINT}")
        return value

    @model_validator(mode="after")
    def _credentials_come_in_complete_sets(self) -> Self:
        basic = {
            "TANGO_PLATFORM_NAME": self.tango_platform_name,
            "TANGO_PLATFORM_KEY": self.tango_platform_key,
        }
        oauth = {
            "TANGO_CLIENT_ID": self.tango_client_id,
            "TANGO_CLIENT_SECRET": self.tango_client_secret,
            "TANGO_TOKEN_URL": self.tango_token_url,
        }
        if self.result_webhook_url and not self.result_webhook_secret:
            raise ValueError("RESULT_WEBHOOK_SECRET must be set together with RESULT_WEBHOOK_URL")
        for group in (basic, oauth):
            given = [name for name, value in group.items() if value]
            missing = [name for name, value in group.items() if not value]
            if given and missing:
                raise ValueError(
                    f"{', '.join(missing)} must be set together with {', '.join(given)}"
                )
        return self

    @model_validator(mode="after")
    def _read_token_beside_api_token(self) -> Self:
        if self.api_read_token is None:
            return self
        if self.api_token is None and self.api_tokens is None:
            raise ValueError("API_READ_TOKEN needs API_TOKEN: without it the API is off")
        if self.api_token and (
            self.api_read_token.get_secret_value() == self.api_token.get_secret_value()
        ):
            raise ValueError("API_READ_TOKEN must differ from API_TOKEN")
        return self

    @model_validator(mode="after")
    def _named_tokens_are_valid(self) -> Self:
        try:
            self.named_tokens()
        except ValueError as error:
            raise ValueError(f"API_TOKENS: {error}") from None
        return self

    def named_tokens(self) -> tuple[NamedToken, ...]:
        """Every bearer token the API and the console accept, with its name and role:
        API_TOKEN as `default`, API_READ_TOKEN as `read`, and API_TOKENS's entries (a file it
        names is read on each call: settings are read once per process, and so is this).

        Raises:
            ValueError: API_TOKENS is malformed, or repeats a name or a token.
        """
        if self._named_tokens is not None:
            return self._named_tokens
        tokens: list[NamedToken] = []
        if self.api_token is not None:
            tokens.append(NamedToken(DEFAULT_NAME, self.api_token, "write"))
        if self.api_read_token is not None:
            tokens.append(NamedToken(READ_NAME, self.api_read_token, "read"))
        if self.api_tokens is not None:
            text = read_entries(self.api_tokens.get_secret_value().strip())
            tokens.extend(parse_named_tokens(text, API_TOKEN_MIN_LENGTH))
        check_unique(tokens)
        self._named_tokens = tuple(tokens)
        return self._named_tokens

    @property
    def api_enabled(self) -> bool:
        """The REST API and the console exist with at least one token (API_TOKEN or
        API_TOKENS)."""
        return self.api_token is not None or self.api_tokens is not None

    @model_validator(mode="after")
    def _no_weak_or_reused_token(self) -> Self:
        # One leaked secret must not open two doors: a sender that can sign webhooks must not
        # thereby hold the API's token, and the other way round. Named tokens are held to
        # API_TOKEN's standard.
        signing = {
            "WEBHOOK_SECRET": self.webhook_secret,
            "RESULT_WEBHOOK_SECRET": self.result_webhook_secret,
        }
        try:
            named = self.named_tokens()
        except ValueError:  # malformed: `_named_tokens_are_valid` says how
            return self
        own_settings = {id(self.api_token), id(self.api_read_token)}
        for token in named:
            where = _where(token)
            for secret_name, secret in signing.items():
                if secret and token.token.get_secret_value() == secret.get_secret_value():
                    raise ValueError(f"{where} must differ from {secret_name}")
            # API_TOKEN's and API_READ_TOKEN's own field validators have said it already.
            weakness = weak_token_reason(token.token.get_secret_value())
            if weakness is not None and id(token.token) not in own_settings:
                raise ValueError(f"{where} {weakness}, so it is easy to guess")
        return self

    @property
    def redis_target(self) -> RedisTarget:
        """The Redis (or Sentinel-managed set) that REDIS_URL names."""
        return parse_redis_url(self.redis_url, tls_ca_file=self.redis_tls_ca_file)

    @property
    def resend_window_seconds(self) -> float:
        """How long our per-order window lasts after a resend (docs/how-it-works.md,
        "Architecture": the glossary); set by RESEND_COOLDOWN_SECONDS."""
        return self.resend_cooldown_seconds

    @property
    def uses_oauth(self) -> bool:
        return bool(self.tango_client_id and self.tango_client_secret and self.tango_token_url)

    @property
    def has_tango_credentials(self) -> bool:
        return self.uses_oauth or bool(self.tango_platform_name and self.tango_platform_key)

    def require_webhook_secret(self) -> None:
        """Raise ConfigurationError unless webhooks can be verified (or unsigned ones allowed)
        with a secret of our own: one published in our docs would let anyone sign."""
        if self.webhook_secret is not None and is_published_webhook_secret(
            self.webhook_secret.get_secret_value()
        ):
            raise ConfigurationError(
                "WEBHOOK_SECRET is the example secret published in tango-resend's docs: anyone "
                "can sign webhooks with it. Make a secret of your own with `tango-resend "
                "gen-secret` and set WEBHOOK_SECRET to it (and give it to your senders)"
            )
        if self.webhook_secret is None and not self.webhook_allow_unsigned:
            raise ConfigurationError(
                "WEBHOOK_SECRET is not set: the receiver will not accept unsigned webhooks. "
                "Set WEBHOOK_SECRET (whsec_...), or WEBHOOK_ALLOW_UNSIGNED=true for local "
                "development only"
            )

    def require_tango_credentials(self) -> None:
        """Raise ConfigurationError unless Basic or OAuth credentials are configured."""
        if not self.has_tango_credentials:
            raise ConfigurationError(
                "Tango credentials are missing: set TANGO_PLATFORM_NAME and TANGO_PLATFORM_KEY "
                "(HTTP Basic) or TANGO_CLIENT_ID, TANGO_CLIENT_SECRET and TANGO_TOKEN_URL (OAuth)"
            )


def _where(token: NamedToken) -> str:
    """Where a token comes from, for messages (never the token itself)."""
    if token.name == DEFAULT_NAME and token.role == "write":
        return "API_TOKEN"
    if token.name == READ_NAME and token.role == "read":
        return "API_READ_TOKEN"
    return f"API_TOKENS: the token of {token.name!r}"


def describe_validation_error(error: ValidationError) -> str:
    """Name each bad variable without echoing its value, which may be a secret."""
    problems = []
    for item in error.errors(include_input=False, include_url=False):
        field = str(item["loc"][0]) if item["loc"] else ""
        variable = field.upper() if field else "settings"
        message = item["msg"].removeprefix("Value error, ")
        problems.append(f"{variable}: {message}" if field else message)
    return "Invalid configuration: " + "; ".join(problems)


def load_settings() -> Settings:
    """Read settings from the environment, raising ConfigurationError with a readable message."""
    try:
        return Settings()
    except ValidationError as error:
        raise ConfigurationError(describe_validation_error(error)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings of this process, read once."""
    return load_settings()


def reset_settings_cache() -> None:
    """Forget the cached settings (tests change the environment between cases)."""
    get_settings.cache_clear()
