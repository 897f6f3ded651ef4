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
