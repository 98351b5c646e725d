"""Settings come from the environment and an optional .env; bad values stop start-up clearly."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from settings import Settings, SettingsError, load_settings

ALL_VARS = [
    "HOST", "PORT", "SECRET_KEY", "MONGODB_URI", "MONGODB_DB", "MONGODB_TIMEOUT_MS", "DATA_DIR",
    "COOKIE_SECURE", "SESSION_MAX_AGE", "PASSWORD_MIN_LENGTH", "ARGON2_TIME_COST",
    "ARGON2_MEMORY_KIB", "HISTORY_PAGE_SIZE", "WS_QUEUE_SIZE", "WS_HEARTBEAT", "WS_DIRECT_WRITES",
    "TRUST_PROXY", "REDIS_URL", "PRESENCE_TTL", "LOG_LEVEL", "LOGIN_LIMIT_ACCOUNT",
    "LOGIN_LIMIT_ADDRESS",
    "LOGIN_WINDOW", "SIGNUP_LIMIT_ADDRESS", "SIGNUP_WINDOW", "MESSAGE_BURST", "MESSAGE_PER_MINUTE",
    "SOCKETS_PER_USER", "SOCKETS_PER_ADDRESS", "ROOM_LIMIT_USER", "ROOM_WINDOW", "EDIT_WINDOW",
    "SIGNUP_MODE", "INVITE_TTL", "ALLOWED_HOSTS", "HASH_CONCURRENCY", "HASH_QUEUE",
    "LOGIN_DELAY_MAX", "BODY_TIMEOUT", "BODY_MIN_RATE", "LOG_FORMAT", "METRICS", "METRICS_TOKEN",
    "WEBHOOK_ALLOW_PRIVATE", "WEBHOOK_TIMEOUT", "WEBHOOK_BACKOFF",
    "UPLOAD_MAX_MB", "UPLOAD_QUOTA_MB", "UPLOAD_RATE_MB", "WORKERS",
]  # fmt: skip


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Start every test from an environment with none of our variables."""
    for name in ALL_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))


def test_defaults_generate_and_keep_a_secret_key(tmp_path: Path) -> None:
    first = load_settings(env_file=None)
    assert (first.host, first.port, first.backend) == ("127.0.0.1", 8080, "sqlite")
    assert first.data_dir == tmp_path / "data"
    key_file = tmp_path / "data" / "secret_key"
    assert key_file.read_text().strip() == first.secret_key
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    Fernet(first.secret_key.encode())
    assert load_settings(env_file=None).secret_key == first.secret_key  # kept across restarts


def test_environment_beats_env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("PORT=9001\nLOG_LEVEL=debug\nPASSWORD_MIN_LENGTH=12\n")
    monkeypatch.setenv("PORT", "9002")
    settings = load_settings(env_file=env_file)
    assert settings.port == 9002
    assert settings.log_level == "DEBUG"
    assert settings.password_min_length == 12
    for name in ("LOG_LEVEL", "PASSWORD_MIN_LENGTH"):
        monkeypatch.delenv(name)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PORT", "eighty"),
        ("PORT", "70000"),
        ("COOKIE_SECURE", "maybe"),
        ("SECRET_KEY", "too-short"),
        ("MONGODB_URI", "http://localhost"),
        ("LOG_LEVEL", "LOUD"),
        ("WS_QUEUE_SIZE", "0"),
        ("SESSION_MAX_AGE", "-1"),
        ("REDIS_URL", "localhost:6379"),
        ("MESSAGE_BURST", "0"),
        ("LOGIN_WINDOW", "soon"),
        ("ALLOWED_HOSTS", "https://chat.example.com"),
        ("ALLOWED_HOSTS", "chat.example.com:99999"),
        ("ALLOWED_HOSTS", " , "),
        ("HASH_CONCURRENCY", "0"),
        ("HASH_QUEUE", "-1"),
        ("LOGIN_DELAY_MAX", "forever"),
        ("LOG_FORMAT", "xml"),
        ("METRICS", "sometimes"),
        ("METRICS_TOKEN", "short"),
        ("METRICS_TOKEN", "has spaces in it, sixteen plus"),
        ("METRICS_TOKEN", "ünïcode-ünïcode-ünïcode"),
        ("WEBHOOK_ALLOW_PRIVATE", "perhaps"),
        ("WEBHOOK_TIMEOUT", "0"),
        ("WEBHOOK_BACKOFF", "-1"),
        ("WORKERS", "0"),
        ("WORKERS", "two"),
        ("WORKERS", "65"),
    ],
)
def test_bad_value_names_the_setting(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as info:
        load_settings(env_file=None)
    message = str(info.value)
    assert message.startswith(f"{name}=")
    assert "\n" not in message


def test_cookie_secure_follows_trust_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings(env_file=None)
    assert not settings.cookie_secure and settings.cookie_name == "chat_session"
    monkeypatch.setenv("TRUST_PROXY", "true")  # Heroku: served over HTTPS by its router
    settings = load_settings(env_file=None)
    assert settings.cookie_secure and settings.cookie_name == "__Host-chat_session"
    monkeypatch.setenv("COOKIE_SECURE", "false")  # an explicit setting wins
    assert not load_settings(env_file=None).cookie_secure


def test_allowed_hosts_are_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings(env_file=None).hosts == ("127.0.0.1", "localhost", "[::1]")
    monkeypatch.setenv("HOST", "0.0.0.0")
    assert load_settings(env_file=None).hosts == ("0.0.0.0", "localhost", "127.0.0.1", "[::1]")
    monkeypatch.setenv("ALLOWED_HOSTS", " Chat.Example.com, [::1]:8080,chat.example.com ,*")
    settings = load_settings(env_file=None)
    assert settings.hosts == ("chat.example.com", "[::1]:8080", "*")


def test_mongodb_requires_a_secret_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONGODB_URI", "mongodb://127.0.0.1:1/")
    with pytest.raises(SettingsError, match="SECRET_KEY is required when MONGODB_URI is set"):
        load_settings(env_file=None)


def test_mongodb_uri_with_a_secret_key_selects_mongodb(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONGODB_URI", "mongodb://127.0.0.1:1/")
    key = Fernet.generate_key().decode()
    monkeypatch.setenv("SECRET_KEY", key)
    settings = load_settings(env_file=None)
    assert settings.backend == "mongodb" and settings.secret_key == key


def test_env_example_lists_every_setting() -> None:
    example = (Path(__file__).parent.parent / ".env.example").read_text()
    for name in ALL_VARS:
        assert f"\n{name}=" in "\n" + example or f"\n# {name}=" in "\n" + example, name
    fields = {f.upper() for f in Settings.__dataclass_fields__}
    assert fields == set(ALL_VARS)


def test_log_format_and_metrics_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings(env_file=None)
    assert (settings.log_format, settings.metrics, settings.metrics_token) == ("text", True, "")
    monkeypatch.setenv("LOG_FORMAT", "JSON")
    monkeypatch.setenv("METRICS", "off")
    monkeypatch.setenv("METRICS_TOKEN", "abcdefghijklmnop")
    settings = load_settings(env_file=None)
    assert (settings.log_format, settings.metrics) == ("json", False)
    assert settings.metrics_token == "abcdefghijklmnop"


def test_settings_are_frozen() -> None:
    settings = Settings(secret_key="k")
    with pytest.raises(AttributeError):
        settings.port = 1  # type: ignore[misc]
    assert os.environ.get("PORT") is None
