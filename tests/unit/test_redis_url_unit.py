"""REDIS_URL as tango-resend reads it: one Redis (redis://, rediss://, unix://) or Sentinel in
kombu's spelling; bad URLs are refused at settings time, naming the variable and never the
password; the broker is configured from the same reading."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import redis

from worker.core.redis_url import RedisUrlError, parse_redis_url
from worker.core.settings import ConfigurationError, Settings, load_settings
from worker.queueing.app import celery_config
from worker.state.connection import redis_client, worth_retrying


def test_kombus_sentinel_spelling_with_the_password_first_and_the_database_last() -> None:
    target = parse_redis_url(
        "sentinel://:s3cret@10.0.0.1:26379;sentinel://10.0.0.2;sentinel://10.0.0.3:26380/4"
    )
    assert target.is_sentinel
    assert target.sentinels == (("10.0.0.1", 26379), ("10.0.0.2", 26379), ("10.0.0.3", 26380))
    assert (target.db, target.username, target.password) == (4, None, "s3cret")
    assert target.redacted() == (
        "sentinel://:***@10.0.0.1:26379;sentinel://:***@10.0.0.2:26379;"
        "sentinel://:***@10.0.0.3:26380/4"
    )


def test_a_sentinel_url_may_repeat_the_database_on_every_host_but_not_contradict_it() -> None:
    same = parse_redis_url("sentinel://h1:1/2;sentinel://h2:2/2")
    assert same.db == 2
    with pytest.raises(RedisUrlError, match="different databases"):
        parse_redis_url("sentinel://h1:1/2;sentinel://h2:2/3")
    with pytest.raises(RedisUrlError, match="different passwords"):
        parse_redis_url("sentinel://:a@h1:1;sentinel://:b@h2:2")


def test_rediss_with_an_acl_user_verifies_against_the_ca_file_or_the_system() -> None:
    target = parse_redis_url("rediss://app:p%40ss@redis.example.com:6380/1", tls_ca_file="/ca.pem")
    assert (target.username, target.password, target.port, target.db) == (
        "app",
        "p@ss",
        6380,
        1,
    )
    assert target.tls is not None
    assert target.tls.redis_kwargs() == {
        "ssl_cert_reqs": ssl.CERT_REQUIRED,
        "ssl_ca_certs": "/ca.pem",
    }
    system = parse_redis_url("rediss://redis.example.com/0")
    assert system.tls is not None and system.tls.ca_file is None
    named = parse_redis_url("rediss://h/0?ssl_ca_certs=/other.pem", tls_ca_file="/ca.pem")
    assert named.tls is not None and named.tls.ca_file == "/other.pem"
    assert "p@ss" not in target.redacted() and "app:***@" in target.redacted()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://localhost:6379", "must start with redis://"),
        ("redis://h1:1;redis://h2:2", "only sentinel:// URLs"),
        ("redis://localhost:6379/zero", "database must be a number"),
        ("redis://localhost:port/0", "port that is not a number"),
        ("redis://localhost/0?ssl_ca_certs=/ca.pem", "need rediss://"),
        ("rediss://localhost/0?ssl_cert_reqs=maybe", "required, optional or none"),
        ("redis://localhost/0?socket_timeout=1", "unknown parameter"),
        ("sentinel://h1:1;redis://h2:2/0", "every host of a sentinel URL"),
        ("sentinel://:26379/0", "names no host"),
    ],
)
def test_a_bad_url_is_refused_with_what_is_wrong(url: str, message: str) -> None:
    with pytest.raises(RedisUrlError, match=message):
        parse_redis_url(url)


def test_settings_name_the_variable_and_never_the_password(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("REDIS_URL", "sentinel://:hunter2@h1:1;sentinel://:other@h2:2/0")
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    assert "REDIS_URL" in str(caught.value) and "hunter2" not in str(caught.value)
    monkeypatch.setenv("REDIS_URL", "rediss://localhost:6380/0")
    monkeypatch.setenv("REDIS_TLS_CA_FILE", str(tmp_path / "missing.pem"))
    with pytest.raises(ConfigurationError, match=r"REDIS_TLS_CA_FILE: .*not a readable file"):
        load_settings()


def test_sentinel_settings_reach_the_broker_and_the_state_alike() -> None:
    settings = Settings(
        redis_url="sentinel://:data-pw@h1:26379;sentinel://h2:26380/3",
        redis_sentinel_master="tango-primary",
        redis_sentinel_password="sentinel-pw",
    )
    config = celery_config(settings)
    assert config["broker_url"] == "sentinel://:data-pw@h1:26379/3"
    options = config["broker_transport_options"]
    assert options["master_name"] == "tango-primary"
    assert options["sentinels"] == [["h1", 26379], ["h2", 26380]]
    assert options["sentinel_kwargs"]["password"] == "sentinel-pw"
    client = redis_client(settings)
    pool = client.connection_pool
    assert pool.service_name == "tango-primary"  # type: ignore[attr-defined]
    assert pool.connection_kwargs["password"] == "data-pw"
    assert pool.connection_kwargs["db"] == 3
    client.close()


def test_a_refused_password_or_certificate_is_not_retried() -> None:
    assert not worth_retrying(redis.AuthenticationError("invalid username-password pair"))
    refused = redis.ConnectionError("certificate verify failed")
    refused.__cause__ = ssl.SSLCertVerificationError("self-signed certificate")
    assert not worth_retrying(refused)
    assert worth_retrying(redis.ConnectionError("Connection refused"))
    assert worth_retrying(redis.TimeoutError("Timeout reading from socket"))
