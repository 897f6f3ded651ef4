"""Settings refuse unsafe production configurations with a clear message."""

from __future__ import annotations

import pytest

from service.settings import Settings, SettingsError, load_settings

GOOD_KEY = "k" * 40


def test_dev_defaults() -> None:
    settings = Settings()
    assert settings.env == "dev"
    assert settings.effective_database_url.startswith("sqlite:///")
    assert settings.issuer == "http://127.0.0.1:8000"


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"public_url": "http://api.example.com"}, "https"),
        ({"master_key": None}, "MASTER_KEY is required"),
        ({"master_key": "changethis"}, "placeholder"),
        ({"master_key": "short"}, "placeholder"),
    ],
)
def test_prod_refuses_unsafe(
    monkeypatch: pytest.MonkeyPatch, overrides: dict[str, object], fragment: str
) -> None:
    values: dict[str, object] = {
        "env": "prod",
        "public_url": "https://api.example.com",
        "master_key": GOOD_KEY,
    }
    values.update(overrides)
    for key, value in values.items():
        env = f"CREDITSHARE_{key.upper()}"
        if value is None:
            monkeypatch.delenv(env, raising=False)
        else:
            monkeypatch.setenv(env, str(value))
    with pytest.raises(SettingsError, match=fragment):
        load_settings()


def test_prod_accepts_safe_and_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CREDITSHARE_ENV", "prod")
    monkeypatch.setenv("CREDITSHARE_MASTER_KEY", GOOD_KEY)
    monkeypatch.setenv("CREDITSHARE_PUBLIC_URL", "http://127.0.0.1:8000")
    assert load_settings().env == "prod"
    monkeypatch.setenv("CREDITSHARE_PUBLIC_URL", "https://credit.example.gov.cn/")
    assert load_settings().issuer == "https://credit.example.gov.cn"


def test_token_lifetime_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CREDITSHARE_ACCESS_TOKEN_TTL", "3600")
    with pytest.raises(SettingsError):
        load_settings()


@pytest.mark.parametrize(
    ("variable", "value", "fragment"),
    [
        ("PUBLIC_URL", "notaurl", "absolute http:// or https://"),
        ("PUBLIC_URL", "ftp://api.example.com", "absolute http:// or https://"),
        ("PUBLIC_URL", "https://api.example.com/?x=1", "query"),
        ("PUBLIC_URL", "https://user:pw@api.example.com", "credentials"),
        ("PUBLIC_URL", "https://api.example.com:99999", "not a valid URL"),
        ("DATABASE_URL", "mysql://u:s3cret-pw@db/x", "sqlite:///... or postgresql://"),
        ("REDIS_URL", "http://cache:6379", "redis://"),
        ("LOG_LEVEL", "LOUD", "DEBUG, INFO"),
    ],
)
def test_malformed_settings_are_refused_without_echoing_them(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, fragment: str
) -> None:
    monkeypatch.setenv(f"CREDITSHARE_{variable}", value)
    with pytest.raises(SettingsError) as refused:
        load_settings()
    message = str(refused.value)
    assert f"CREDITSHARE_{variable}" in message
    assert fragment in message
    assert value not in message  # a URL may carry a password


@pytest.mark.parametrize(
    ("variable", "value", "field", "expected"),
    [
        ("PUBLIC_URL", "https://api.example.com/", "public_url", "https://api.example.com"),
        ("PUBLIC_URL", "http://127.0.0.1:8000", "public_url", "http://127.0.0.1:8000"),
        (
            "DATABASE_URL",
            "postgresql://postgres@db/cs",
            "database_url",
            "postgresql://postgres@db/cs",
        ),
        ("DATABASE_URL", "sqlite:////var/cs.db", "database_url", "sqlite:////var/cs.db"),
        ("REDIS_URL", "", "redis_url", None),
        ("REDIS_URL", "rediss://cache:6380/1", "redis_url", "rediss://cache:6380/1"),
        ("LOG_LEVEL", "warning", "log_level", "WARNING"),
    ],
)
def test_well_formed_settings_are_taken(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, field: str, expected: object
) -> None:
    monkeypatch.setenv(f"CREDITSHARE_{variable}", value)
    assert getattr(load_settings(), field) == expected
