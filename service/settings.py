"""Runtime settings: one pydantic-settings class read from ``CREDITSHARE_*`` variables.

The same settings drive the server and every command. In ``prod`` the class
refuses what is only acceptable on a developer's machine (plain-HTTP public
issuers, placeholder secrets, a generated master key), so that a mistake in a
deployment fails at start-up rather than in front of a platform.
"""

from __future__ import annotations

import ipaddress
from functools import cached_property
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER_SECRETS = frozenset(
    {"changethis", "change-me", "changeme", "secret", "password", "placeholder", "dev", "test"}
)
DEFAULT_DATA_DIR = Path("var")


class SettingsError(ValueError):
    """A setting that is unsafe or malformed for the selected environment."""


def _is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Settings(BaseSettings):
    """Every knob of creditshare. Field docs are the operator's reference."""

    model_config = SettingsConfigDict(env_prefix="CREDITSHARE_", extra="ignore", frozen=True)

    env: Literal["dev", "prod"] = "dev"
    database_url: str = Field(default="", description="sqlite:///... or postgresql://...")
    redis_url: str | None = None
    public_url: str = "http://127.0.0.1:8000"
    master_key: str | None = Field(default=None, repr=False)
    data_dir: Path = DEFAULT_DATA_DIR

    access_token_ttl: int = Field(default=600, ge=60, le=900)
    key_overlap_seconds: int = Field(default=86_400, ge=0)
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    max_import_bytes: int = Field(default=256 * 1_048_576, ge=1024)
    docs_enabled: bool | None = None
    db_pool_size: int = Field(default=20, ge=1, le=200)
    audit_seal_interval: float = Field(default=1.0, gt=0)
    audit_backlog_alarm_seconds: int = Field(default=60, ge=1)
    embedded_sequencer: bool = True
    ratelimit_nodes: int = Field(default=1, ge=1)
    ratelimit_quota_fail_closed: bool = False
    log_level: str = "INFO"
    trusted_proxies: int = Field(default=0, ge=0, le=5)
    token_requests_per_second_per_address: float = Field(default=50.0, gt=0)
    token_burst_per_address: int = Field(default=200, ge=1)
    token_failures_burst_per_address: int = Field(default=30, ge=1)

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        """An absolute http(s) URL without credentials, query or fragment: it is the issuer,
        the tokens' audience and the base of every problem ``type``."""
        value = value.strip().rstrip("/")
        try:
            url = urlsplit(value)
            url.port  # noqa: B018  (raises on a malformed port)
        except ValueError:
            raise ValueError("CREDITSHARE_PUBLIC_URL is not a valid URL") from None
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError("CREDITSHARE_PUBLIC_URL must be an absolute http:// or https:// URL")
        if url.username is not None or url.password is not None or url.query or url.fragment:
            raise ValueError(
                "CREDITSHARE_PUBLIC_URL must not carry credentials, a query or a fragment"
            )
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        """Empty (the embedded SQLite file), or a SQLite or PostgreSQL URL."""
        value = value.strip()
        if value and not value.startswith(
            ("sqlite:", "sqlite+", "postgresql:", "postgresql+", "postgres:")
        ):
            raise ValueError(
                "CREDITSHARE_DATABASE_URL must be a sqlite:///... or postgresql://... URL"
            )
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        """Unset or empty (in-process limiting), or a redis://, rediss:// or unix:// URL."""
        if value is None or not value.strip():
            return None
        value = value.strip()
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("CREDITSHARE_REDIS_URL must be a redis://, rediss:// or unix:// URL")
        return value

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError(
                "CREDITSHARE_LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL"
            )
        return level

    @model_validator(mode="after")
    def _refuse_unsafe_prod(self) -> Settings:
        if self.env != "prod":
            return self
        problems: list[str] = []
        url = urlsplit(self.public_url)
        if url.scheme != "https" and not _is_loopback_host(url.hostname):
            problems.append("CREDITSHARE_PUBLIC_URL must be https outside loopback in prod")
        if not self.master_key:
            problems.append("CREDITSHARE_MASTER_KEY is required in prod")
        elif self.master_key.strip().lower() in PLACEHOLDER_SECRETS or len(self.master_key) < 32:
            problems.append("CREDITSHARE_MASTER_KEY is a placeholder or shorter than 32 characters")
        if problems:
            raise SettingsError("; ".join(problems))
        return self

    @cached_property
    def effective_database_url(self) -> str:
        """The configured URL, or the embedded SQLite file under ``data_dir``."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'creditshare.db').as_posix()}"

    @property
    def issuer(self) -> str:
        return self.public_url

    @property
    def resource_identifier(self) -> str:
        return self.public_url

    @property
    def docs_are_enabled(self) -> bool:
        return True if self.docs_enabled is None else self.docs_enabled

    @property
    def is_sqlite(self) -> bool:
        return self.effective_database_url.startswith("sqlite")


def load_settings() -> Settings:
    """Read settings from the environment, raising :class:`SettingsError` with a clear message."""
    try:
        return Settings()
    except SettingsError:
        raise
    except ValidationError as exc:
        # Each problem on its own, without the value given (it may hold a password).
        problems = []
        for error in exc.errors(include_input=False, include_url=False):
            name = "CREDITSHARE_" + "_".join(str(part) for part in error["loc"]).upper()
            message = str(error["msg"]).removeprefix("Value error, ")
            problems.append(message if message.startswith(name) else f"{name}: {message}")
        raise SettingsError("; ".join(problems)) from None
    except ValueError as exc:
        raise SettingsError(str(exc)) from exc
