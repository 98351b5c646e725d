"""Settings: one frozen dataclass, loaded from the environment and an optional `.env` (envparse)."""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web
from cryptography.fernet import Fernet
from envparse import ConfigurationError, Env

T = TypeVar("T")

FERNET_HINT = (
    "generate one with: python -c "
    "'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
)


class SettingsError(Exception):
    """A setting is missing or has a bad value; the message says how to fix it."""


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything the app is configured with; built once at start-up."""

    secret_key: str
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1  # processes serving PORT together (SO_REUSEPORT); more than 1 needs Redis
    data_dir: Path = Path("data")
    mongodb_uri: str = ""
    mongodb_db: str = "chat"
    mongodb_timeout_ms: int = 3000
    cookie_secure: bool = False
    session_max_age: int = 14 * 24 * 3600
    password_min_length: int = 10
    argon2_time_cost: int = 3
    argon2_memory_kib: int = 65536
    hash_concurrency: int = 2
    hash_queue: int = 16
    history_page_size: int = 50
    ws_queue_size: int = 1024
    ws_heartbeat: float = 25.0
    ws_direct_writes: bool = True
    trust_proxy: bool = False
    allowed_hosts: tuple[str, ...] = ()  # empty: HOST, localhost and the loopback addresses
    redis_url: str = ""
    login_limit_account: int = 5
    login_limit_address: int = 20
    login_window: int = 900
    login_delay_max: float = 10.0
    signup_limit_address: int = 10
    signup_window: int = 3600
    room_limit_user: int = 10
    room_window: int = 3600
    edit_window: int = 900
    signup_mode: str = "invite"
    invite_ttl: int = 7 * 24 * 3600
    message_burst: int = 10
    message_per_minute: int = 100
    sockets_per_user: int = 20
    sockets_per_address: int = 100
    presence_ttl: float = 30.0
    body_timeout: float = 20.0
    body_min_rate: int = 100
    webhook_allow_private: bool = False  # outgoing webhooks may reach loopback/private addresses
    webhook_timeout: float = 7.0
    webhook_backoff: float = 1.0  # seconds before the 2nd try, doubled before the 3rd
    upload_max_mb: int = 25
    upload_quota_mb: int = 1024
    upload_rate_mb: int = 25  # megabytes a second one process reads of all uploads (0: no limit)
    log_level: str = "INFO"
    log_format: str = "text"
    metrics: bool = True
    metrics_token: str = ""  # empty: /metrics only for loopback clients

    @property
    def backend(self) -> str:
        """Name the storage backend these settings select."""
        return "mongodb" if self.mongodb_uri else "sqlite"

    @property
    def cookie_name(self) -> str:
        """Name the session cookie: `__Host-` when Secure, so no subdomain or http page sets it."""
        return "__Host-chat_session" if self.cookie_secure else "chat_session"

    @property
    def hosts(self) -> tuple[str, ...]:
        """Return the Host entries requests may carry: ALLOWED_HOSTS, or the local defaults."""
        if self.allowed_hosts:
            return self.allowed_hosts
        own = f"[{self.host}]" if ":" in self.host else self.host
        return tuple(dict.fromkeys((own.lower(), "localhost", "127.0.0.1", "[::1]")))


SETTINGS_KEY = web.AppKey("settings", Settings)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_LOG_LEVELS = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}
LOG_FORMATS = ("text", "json")
METRICS_TOKEN_MIN = 16
SIGNUP_MODES = ("invite", "open", "closed")
MAX_WORKERS = 64


def _read(env: Env, name: str, parse: Callable[[str], T], default: T, fix: str) -> T:
    """Read one variable and parse it, turning any failure into a SettingsError."""
    raw = env.str(name, default="")
    if raw == "":
        return default
    try:
        return parse(raw.strip())
    except (ValueError, ConfigurationError) as exc:
        raise SettingsError(f"{name}={raw!r} is not valid: {exc}; {fix}") from None


def signup_mode(raw: str) -> str:
    """Parse a sign-up mode: invite, open or closed."""
    value = raw.strip().lower()
    if value not in SIGNUP_MODES:
        raise ValueError("expected " + ", ".join(SIGNUP_MODES))
    return value


def worker_count(raw: str) -> int:
    """Parse a number of worker processes: a whole number from 1 to MAX_WORKERS."""
    if not raw.strip().isdigit() or not 1 <= int(raw) <= MAX_WORKERS:
        raise ValueError(f"expected a whole number from 1 to {MAX_WORKERS}")
    return int(raw)


def _bool(raw: str) -> bool:
    value = raw.lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError("expected true or false")


def _int_in(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        value = int(raw)
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}")
        return value

    return parse


def _float_in(low: float, high: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        value = float(raw)
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}")
        return value

    return parse


def _log_level(raw: str) -> str:
    value = raw.upper()
    if value not in _LOG_LEVELS:
        raise ValueError("expected one of " + ", ".join(sorted(_LOG_LEVELS)))
    return value


def _log_format(raw: str) -> str:
    value = raw.lower()
    if value not in LOG_FORMATS:
        raise ValueError("expected " + " or ".join(LOG_FORMATS))
    return value


def metrics_token(raw: str) -> str:
    """Parse METRICS_TOKEN: at least METRICS_TOKEN_MIN visible ASCII characters, no spaces."""
    if len(raw) < METRICS_TOKEN_MIN or not all("!" <= c <= "~" for c in raw):
        raise ValueError(f"expected {METRICS_TOKEN_MIN} or more visible ASCII characters")
    return raw


def _fernet_key(raw: str) -> str:
    try:
        Fernet(raw.encode())
    except (ValueError, TypeError):
        raise ValueError("not a Fernet key (32 url-safe base64-encoded bytes)") from None
    return raw


def _mongodb_uri(raw: str) -> str:
    if not raw.startswith(("mongodb://", "mongodb+srv://")):
        raise ValueError("expected a mongodb:// or mongodb+srv:// URI")
    return raw


_HOST_ENTRY = re.compile(r"(?:[a-z0-9_.-]+|\[[0-9a-f:.]+\])(?::[0-9]{1,5})?")


def allowed_hosts(raw: str) -> tuple[str, ...]:
    """Parse ALLOWED_HOSTS: comma-separated `name`, `name:port`, `[v6]`, `[v6]:port`, or `*`."""
    entries = tuple(dict.fromkeys(e.strip().lower() for e in raw.split(",") if e.strip()))
    for entry in entries:
        if entry != "*" and not _HOST_ENTRY.fullmatch(entry):
            raise ValueError(f"{entry!r} is not a host name, host:port or *")
        port = entry.rpartition("]")[2].rpartition(":")[2] if ":" in entry else ""
        if port and not 1 <= int(port) <= 65535:
            raise ValueError(f"{entry!r} has no valid port")
    if not entries:
        raise ValueError("name at least one host")
    return entries


def _redis_url(raw: str) -> str:
    if not raw.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError("expected a redis://, rediss:// or unix:// URL")
    return raw


def _stored_secret_key(data_dir: Path) -> str:
    """Return the secret key kept in DATA_DIR, creating it on first start."""
    path = data_dir / "secret_key"
    try:
        if path.exists():
            return _fernet_key(path.read_text().strip())
        data_dir.mkdir(parents=True, exist_ok=True)
        key = Fernet.generate_key().decode()
        # Created with 0600 so other local users cannot read the session key.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process sharing DATA_DIR made it first
            return _fernet_key(path.read_text().strip())
        with os.fdopen(fd, "w") as fh:
            fh.write(key + "\n")
        logging.getLogger(__name__).info("generated a new SECRET_KEY in %s", path)
        return key
    except OSError as exc:
        raise SettingsError(
            f"cannot keep the generated SECRET_KEY in {path}: {exc.strerror}; "
            f"make DATA_DIR writable or set SECRET_KEY ({FERNET_HINT})"
        ) from None
    except ValueError:
        raise SettingsError(
            f"{path} does not hold a valid Fernet key; delete it or set SECRET_KEY ({FERNET_HINT})"
        ) from None


def load_settings(env_file: str | os.PathLike[str] | None = ".env", **overrides: Any) -> Settings:
    """Build Settings from the environment; a `.env` file only fills what the environment lacks."""
    if env_file is not None and Path(env_file).is_file():
        Env.read_envfile(str(env_file))  # uses os.environ.setdefault: the real environment wins
    env = Env()
    d = Settings.__dataclass_fields__
    values: dict[str, Any] = {
        "host": _read(env, "HOST", str, d["host"].default, "give a host name or IP address"),
        "port": _read(env, "PORT", _int_in(1, 65535), d["port"].default, "use a TCP port number"),
        "workers": _read(env, "WORKERS", worker_count, 1, "e.g. WORKERS=2 (with REDIS_URL)"),
        "data_dir": _read(env, "DATA_DIR", Path, d["data_dir"].default, "give a directory path"),
        "mongodb_uri": _read(
            env, "MONGODB_URI", _mongodb_uri, "", "leave it empty for the embedded SQLite store"
        ),
        "mongodb_db": _read(env, "MONGODB_DB", str, d["mongodb_db"].default, "name a database"),
        "mongodb_timeout_ms": _read(
            env,
            "MONGODB_TIMEOUT_MS",
            _int_in(100, 60000),
            d["mongodb_timeout_ms"].default,
            "give milliseconds",
        ),
        "session_max_age": _read(
            env,
            "SESSION_MAX_AGE",
            _int_in(60, 366 * 24 * 3600),
            d["session_max_age"].default,
            "give seconds",
        ),
        "password_min_length": _read(
            env,
            "PASSWORD_MIN_LENGTH",
            _int_in(1, 256),
            d["password_min_length"].default,
            "give a length",
        ),
        "argon2_time_cost": _read(
            env, "ARGON2_TIME_COST", _int_in(1, 20), d["argon2_time_cost"].default, "give a count"
        ),
        "argon2_memory_kib": _read(
            env,
            "ARGON2_MEMORY_KIB",
            _int_in(8, 4 * 1024 * 1024),
            d["argon2_memory_kib"].default,
            "give KiB",
        ),
        "hash_concurrency": _read(
            env, "HASH_CONCURRENCY", _int_in(1, 64), d["hash_concurrency"].default, "give a count"
        ),
        "hash_queue": _read(
            env, "HASH_QUEUE", _int_in(0, 10000), d["hash_queue"].default, "give a count"
        ),
        "login_delay_max": _read(
            env, "LOGIN_DELAY_MAX", _float_in(0, 60), d["login_delay_max"].default, "give seconds"
        ),
        "history_page_size": _read(
            env,
            "HISTORY_PAGE_SIZE",
            _int_in(1, 100),
            d["history_page_size"].default,
            "give a count",
        ),
        "ws_queue_size": _read(
            env, "WS_QUEUE_SIZE", _int_in(1, 100000), d["ws_queue_size"].default, "give a count"
        ),
        "ws_heartbeat": _read(
            env, "WS_HEARTBEAT", _float_in(1, 3600), d["ws_heartbeat"].default, "give seconds"
        ),
        "ws_direct_writes": _read(env, "WS_DIRECT_WRITES", _bool, True, "use true or false"),
        "trust_proxy": _read(env, "TRUST_PROXY", _bool, False, "use true or false"),
        "allowed_hosts": _read(
            env, "ALLOWED_HOSTS", allowed_hosts, (), "e.g. chat.example.com,localhost"
        ),
        **{
            name: _read(env, name.upper(), _int_in(1, 10_000_000), d[name].default, "give a count")
            for name in (
                "login_limit_account",
                "login_limit_address",
                "signup_limit_address",
                "room_limit_user",
                "message_burst",
                "message_per_minute",
                "sockets_per_user",
                "sockets_per_address",
            )
        },
        **{
            name: _read(
                env, name.upper(), _int_in(1, 7 * 24 * 3600), d[name].default, "give seconds"
            )
            for name in ("login_window", "signup_window", "room_window")
        },
        "edit_window": _read(
            env, "EDIT_WINDOW", _int_in(0, 7 * 24 * 3600), d["edit_window"].default, "give seconds"
        ),
        "signup_mode": _read(
            env, "SIGNUP_MODE", signup_mode, d["signup_mode"].default, "use invite, open or closed"
        ),
        "invite_ttl": _read(
            env, "INVITE_TTL", _int_in(60, 365 * 24 * 3600), d["invite_ttl"].default, "give seconds"
        ),
        "redis_url": _read(
            env, "REDIS_URL", _redis_url, "", "leave it empty to run a single process"
        ),
        "presence_ttl": _read(
            env, "PRESENCE_TTL", _float_in(1, 600), d["presence_ttl"].default, "give seconds"
        ),
        "body_timeout": _read(
            env, "BODY_TIMEOUT", _float_in(1, 3600), d["body_timeout"].default, "give seconds"
        ),
        "body_min_rate": _read(
            env,
            "BODY_MIN_RATE",
            _int_in(0, 10_000_000),
            d["body_min_rate"].default,
            "give bytes a second (0: no minimum)",
        ),
        "webhook_allow_private": _read(
            env, "WEBHOOK_ALLOW_PRIVATE", _bool, False, "use true or false"
        ),
        "webhook_timeout": _read(
            env,
            "WEBHOOK_TIMEOUT",
            _float_in(0.05, 60),
            d["webhook_timeout"].default,
            "give seconds",
        ),
        "webhook_backoff": _read(
            env, "WEBHOOK_BACKOFF", _float_in(0, 60), d["webhook_backoff"].default, "give seconds"
        ),
        "upload_max_mb": _read(
            env, "UPLOAD_MAX_MB", _int_in(1, 10_000), d["upload_max_mb"].default, "give megabytes"
        ),
        "upload_quota_mb": _read(
            env,
            "UPLOAD_QUOTA_MB",
            _int_in(0, 10_000_000),
            d["upload_quota_mb"].default,
            "give megabytes per person (0: no quota)",
        ),
        "upload_rate_mb": _read(
            env,
            "UPLOAD_RATE_MB",
            _int_in(0, 100_000),
            d["upload_rate_mb"].default,
            "give megabytes a second (0: no limit)",
        ),
        "log_level": _read(env, "LOG_LEVEL", _log_level, d["log_level"].default, "e.g. INFO"),
        "log_format": _read(env, "LOG_FORMAT", _log_format, "text", "use text or json"),
        "metrics": _read(env, "METRICS", _bool, True, "use true or false"),
        "metrics_token": _read(
            env,
            "METRICS_TOKEN",
            metrics_token,
            "",
            "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'",
        ),
    }
    # Behind a proxy (Heroku) the site is served over HTTPS, so the cookie is Secure by default.
    values["cookie_secure"] = _read(
        env, "COOKIE_SECURE", _bool, values["trust_proxy"], "use true or false"
    )
    secret = _read(env, "SECRET_KEY", _fernet_key, "", FERNET_HINT)
    values.update(overrides)
    if "secret_key" not in overrides:
        if not secret and values["mongodb_uri"]:
            raise SettingsError(f"SECRET_KEY is required when MONGODB_URI is set; {FERNET_HINT}")
        values["secret_key"] = secret or _stored_secret_key(Path(values["data_dir"]))
    return Settings(**values)
