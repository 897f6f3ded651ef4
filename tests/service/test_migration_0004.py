"""Migration 0004 fills in ``merchants.name_masked`` for the individual businesses already
stored: the owner's name, decrypted with the settings' key ring, masked wherever the
business's name holds it; a row sealed under another key is left for its next write."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from service.crypto import KeyRing, load_keyring
from service.db.base import utcnow
from service.db.engine import make_engine
from service.db.migrate import upgrade
from service.personal_data import seal
from service.settings import load_settings
from tests.fixtures.factories import random_uscc

KEY = "migration-test-master-key-0123456789abcdefghijkl"
OTHER_KEY = "another-master-key-entirely-0123456789abcdefghij"

INSERT = text(
    "INSERT INTO merchants (uscc, name, entity_type, registration_status, "
    "legal_representative_enc, legal_representative_masked, legacy_code, org_code_warning, "
    "created_at, updated_at, data_updated_at) VALUES (:uscc, :name, :entity_type, 'ACTIVE', "
    ":enc, :masked, 0, 0, :now, :now, :now)"
)


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("CREDITSHARE_MASTER_KEY", KEY)
    monkeypatch.setenv("CREDITSHARE_DATA_DIR", str(tmp_path))
    url = f"sqlite:///{tmp_path / 'upgrade.db'}"
    monkeypatch.setenv("CREDITSHARE_DATABASE_URL", url)
    upgrade(url, "0003")
    return url


def _other_keyring(monkeypatch: pytest.MonkeyPatch) -> KeyRing:
    with monkeypatch.context() as scoped:
        scoped.setenv("CREDITSHARE_MASTER_KEY", OTHER_KEY)
        return load_keyring(load_settings())


def test_existing_individual_businesses_get_their_owner_masked(
    database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    keyring = load_keyring(load_settings())
    other = _other_keyring(monkeypatch)
    rows = {
        "named-after-owner": (
            random_uscc("92"),
            "张建国",
            "INDIVIDUAL_BUSINESS",
            "张建国",
            keyring,
        ),
        "owner-in-trade-name": (
            random_uscc("92"),
            "河西区张建国小吃店",
            "INDIVIDUAL_BUSINESS",
            "张建国",
            keyring,
        ),
        "trade-name-only": (
            random_uscc("92"),
            "和平区测试小吃店",
            "INDIVIDUAL_BUSINESS",
            "李四",
            keyring,
        ),
        "92-typed-company": (random_uscc("92"), "王五五商店", "COMPANY", "王五五", keyring),
        "company": (random_uscc("91"), "赵六六科技有限公司", "COMPANY", "赵六六", keyring),
        "other-key": (random_uscc("92"), "孙七七", "INDIVIDUAL_BUSINESS", "孙七七", other),
    }
    engine = make_engine(database, pool_size=1)
    try:
        with engine.begin() as connection:
            for uscc, name, entity_type, owner, ring in rows.values():
                enc = seal(ring, owner, uscc=uscc, field="legal_representative")
                connection.execute(
                    INSERT,
                    {
                        "uscc": uscc,
                        "name": name,
                        "entity_type": entity_type,
                        "enc": enc,
                        "masked": owner,
                        "now": utcnow(),
                    },
                )
        upgrade(database)
        with engine.connect() as connection:
            selected = connection.execute(text("SELECT uscc, name_masked FROM merchants"))
            masked = {str(uscc): name for uscc, name in selected}
    finally:
        engine.dispose()
    got = {label: masked[row[0]] for label, row in rows.items()}
    assert got == {
        "named-after-owner": "张**",
        "owner-in-trade-name": "河西区张**小吃店",
        "trade-name-only": None,
        "92-typed-company": "王**商店",
        "company": None,  # a company's representative is public registry data
        "other-key": None,  # left to its next write, logged
    }
