"""The offline bundle: exported by the CLI, verified with no database, and every edit of its
files (an event altered, deleted, inserted, duplicated or moved; a checkpoint forged; the
log cut short) reported with the first bad seq."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from audit.bundle import BundleError, verify_bundle
from audit.canonical import event_leaf_hash
from audit.note import format_checkpoint, sign_note, verifier_key
from service.cli import app as cli_app
from tests.audit.support import add_events, fresh_app
from tests.conftest import MASTER_KEY

OTHER = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"not the log key").digest())


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle of 30 events sealed in batches of 8, exported through the CLI."""
    tmp = tmp_path_factory.mktemp("bundle")
    with fresh_app(tmp, "bundle") as fresh:
        add_events(fresh.sessionmaker, 30, details={"who": "合规", "n": 7})
        assert fresh.sequencer(batch_size=8).drain() == 30
        add_events(fresh.sessionmaker, 2)  # unsealed: not part of the bundle
        env = {
            "CREDITSHARE_DATABASE_URL": fresh.url,
            "CREDITSHARE_MASTER_KEY": MASTER_KEY,
            "CREDITSHARE_DATA_DIR": str(tmp / "cli"),
            "CREDITSHARE_PUBLIC_URL": "http://testserver",
        }
        out = tmp / "out"
        result = CliRunner().invoke(cli_app, ["audit", "export", "--out", str(out)], env=env)
        assert result.exit_code == 0, result.output
        assert "wrote 30 events" in result.stdout
        again = CliRunner().invoke(cli_app, ["audit", "export", "--out", str(out)], env=env)
        assert again.exit_code == 2  # never writes into a non-empty directory
    return out


@pytest.fixture
def bundle(pristine: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(pristine, copy)
    return copy


def _lines(bundle: Path) -> list[bytes]:
    return (bundle / "events.ndjson").read_bytes().splitlines()


def _write(bundle: Path, lines: list[bytes]) -> None:
    (bundle / "events.ndjson").write_bytes(b"".join(line + b"\n" for line in lines))


def _edit_event(bundle: Path, seq: int, change: Callable[[dict[str, object]], None]) -> None:
    lines = _lines(bundle)
    event = orjson.loads(lines[seq - 1])
    change(event)
    lines[seq - 1] = orjson.dumps(event)
    _write(bundle, lines)


def _verify_cli(bundle: Path, *args: str) -> tuple[int, dict[str, object]]:
    result = CliRunner().invoke(cli_app, ["audit", "verify", "--bundle", str(bundle), *args])
    return result.exit_code, json.loads(result.stdout) if result.stdout.strip() else {}


def test_a_pristine_bundle_verifies_offline(bundle: Path) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["format"] == "creditshare-audit-bundle/1"
    assert (manifest["size"], manifest["events"], manifest["checkpoints"]) == (30, 30, 4)
    assert (bundle / "leaves.bin").stat().st_size == 30 * 32
    code, result = _verify_cli(bundle)
    assert code == 0
    assert result == {"ok": True, "checked": 30, "first_bad_seq": None, "problem": None}
    lines = _lines(bundle)
    assert [orjson.loads(x)["seq"] for x in lines] == list(range(1, 31))
    leaves = (bundle / "leaves.bin").read_bytes()
    for i, line in enumerate(lines):
        assert event_leaf_hash(orjson.loads(line)) == leaves[32 * i : 32 * i + 32]
    ranged = verify_bundle(bundle, from_seq=10, to_seq=12)
    assert (ranged.ok, ranged.checked) == (True, 3)


def _alter(bundle: Path) -> int:
    _edit_event(bundle, 11, lambda e: e["details"].update(who="someone"))  # type: ignore[attr-defined]
    return 11


def _alter_time(bundle: Path) -> int:
    _edit_event(
        bundle, 30, lambda e: e.update(occurred_at=str(e["occurred_at"]).replace("Z", "0Z"))
    )
    return 30


def _delete(bundle: Path) -> int:
    lines = _lines(bundle)
    del lines[19]
    _write(bundle, lines)
    return 20


def _delete_and_renumber(bundle: Path) -> int:
    lines = _lines(bundle)
    del lines[4]
    renumbered = []
    for line in lines:
        event = orjson.loads(line)
        if event["seq"] > 5:
            event["seq"] -= 1
        renumbered.append(orjson.dumps(event))
    _write(bundle, renumbered)
    return 5


def _duplicate(bundle: Path) -> int:
    lines = _lines(bundle)
    lines.insert(7, lines[6])
    _write(bundle, lines)
    return 7


def _insert_and_renumber(bundle: Path) -> int:
    lines = _lines(bundle)
    forged = orjson.loads(lines[2])
    forged["id"] = "evt_forged"
    out = []
    for line in lines:
        event = orjson.loads(line)
        if event["seq"] == 3:
            out.append(orjson.dumps({**forged, "seq": 3}))
        if event["seq"] >= 3:
            event["seq"] += 1
        out.append(orjson.dumps(event))
    _write(bundle, out)
    return 3


def _swap(bundle: Path) -> int:
    lines = _lines(bundle)
    a, b = orjson.loads(lines[16]), orjson.loads(lines[17])
    a["seq"], b["seq"] = b["seq"], a["seq"]
    lines[16], lines[17] = orjson.dumps(b), orjson.dumps(a)
    _write(bundle, lines)
    return 17


def _reorder_lines(bundle: Path) -> int:
    lines = _lines(bundle)
    lines[16], lines[17] = lines[17], lines[16]
    _write(bundle, lines)
    return 17


def _forged_checkpoint(bundle: Path) -> int:
    origin = json.loads((bundle / "keys.json").read_text())["origin"]
    note = sign_note(format_checkpoint(origin, 16, bytes(32)), origin, OTHER)
    path = bundle / "checkpoints.ndjson"
    lines = path.read_bytes().splitlines()
    lines[1] = orjson.dumps({**orjson.loads(lines[1]), "signed_note": note})
    path.write_bytes(b"".join(x + b"\n" for x in lines))
    return 9


def _garbled_line(bundle: Path) -> int:
    lines = _lines(bundle)
    lines[12] = b'{"seq": 13, "id": '
    _write(bundle, lines)
    return 13


def _leaves_lost(bundle: Path) -> int:
    (bundle / "leaves.bin").unlink()
    _edit_event(bundle, 11, lambda e: e.update(status=418))
    return 9  # without the stored leaves only the signed roots speak: batch 9..16


EDITS: dict[str, Callable[[Path], int]] = {
    f.__name__.lstrip("_"): f
    for f in (
        _alter,
        _alter_time,
        _delete,
        _delete_and_renumber,
        _duplicate,
        _insert_and_renumber,
        _swap,
        _reorder_lines,
        _forged_checkpoint,
        _garbled_line,
        _leaves_lost,
    )
}


@pytest.mark.parametrize("edit", list(EDITS))
def test_an_edited_bundle_is_reported_with_the_first_bad_seq(bundle: Path, edit: str) -> None:
    expected = EDITS[edit](bundle)
    code, result = _verify_cli(bundle)
    assert code == 1, result
    assert result["ok"] is False
    assert result["first_bad_seq"] == expected, result
    assert result["problem"]


def test_a_bundle_cut_short_with_its_checkpoints_needs_a_known_checkpoint(
    bundle: Path, tmp_path: Path
) -> None:
    checkpoints = (bundle / "checkpoints.ndjson").read_bytes().splitlines()
    latest = orjson.loads(checkpoints[-1])["signed_note"]
    _write(bundle, _lines(bundle)[:16])
    (bundle / "checkpoints.ndjson").write_bytes(b"".join(x + b"\n" for x in checkpoints[:2]))
    (bundle / "leaves.bin").write_bytes((bundle / "leaves.bin").read_bytes()[: 16 * 32])
    assert _verify_cli(bundle)[0] == 0  # consistent in itself: truncation needs outside knowledge
    note = tmp_path / "latest.note"
    note.write_text(latest)
    code, result = _verify_cli(bundle, "--checkpoint", str(note))
    assert code == 1
    assert result["first_bad_seq"] == 17


def test_trusted_keys_replace_the_bundle_keys(bundle: Path) -> None:
    keys = json.loads((bundle / "keys.json").read_text())
    genuine = list(keys["verifier_keys"].values())
    assert _verify_cli(bundle, *[f"--trusted-key={k}" for k in genuine])[0] == 0
    impostor = verifier_key(keys["origin"], OTHER.public_key())
    code, result = _verify_cli(bundle, f"--trusted-key={impostor}")
    assert code == 1
    assert "not authentic" in str(result["problem"])
    # An attacker who re-signs everything with their own key and swaps keys.json is
    # caught by the pinned key, never by the bundle's own.
    keys["verifier_keys"] = {"k": impostor}
    (bundle / "keys.json").write_text(json.dumps(keys))
    assert _verify_cli(bundle)[0] == 1
    assert _verify_cli(bundle, *[f"--trusted-key={k}" for k in genuine])[0] == 0


def test_an_unreadable_bundle_is_exit_code_2(bundle: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    (bundle / "keys.json").unlink()
    result = runner.invoke(cli_app, ["audit", "verify", "--bundle", str(bundle)])
    assert result.exit_code == 2
    assert "keys.json" in result.output
    with pytest.raises(BundleError, match="manifest"):
        verify_bundle(tmp_path / "nowhere")
    nowhere = runner.invoke(cli_app, ["audit", "verify", "--bundle", str(tmp_path / "nowhere")])
    assert nowhere.exit_code == 2
    assert "no bundle directory" in nowhere.output
    assert (
        runner.invoke(
            cli_app,
            ["audit", "verify", "--bundle", str(bundle), "--from-seq", "5", "--to-seq", "2"],
        ).exit_code
        == 2
    )


def test_integers_beyond_64_bits_are_read_exactly(bundle: Path) -> None:
    """orjson would read them as floats; the reader must not report a genuine event."""
    lines = _lines(bundle)
    assert b"9" * 25 not in lines[0]
    event = orjson.loads(lines[0])
    event["details"]["n"] = 9**30  # what a genuine event might hold, hashed exactly
    from audit.bundle import _parse

    text = json.dumps(event).encode()
    assert _parse(text) == event
    assert _parse(b"not json") is None
