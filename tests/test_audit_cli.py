"""``xbroker audit verify|seal|prune`` against a trail made with the development PKI."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.cli import main
from broker.stores.audit import AuditTrail
from broker.stores.journal import EventKind, StatusEvent
from routing import read_parties
from signing import Signer
from signing.devpki import init_dev_pki
from signing.keyfiles import party_paths

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
BROKER = "xbr:broker"


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("audit-cli")
    init_dev_pki(root / "pki", [(BROKER, "xbroker"), *read_parties(EXAMPLES / "directory.toml")])
    path = root / "xbroker.toml"
    path.write_text(
        f'state_dir = "{root}"\npki_dir = "{root / "pki"}"\n'
        f'directory = "{EXAMPLES / "directory.toml"}"\nbroker_kennung = "{BROKER}"\n'
    )
    return path


def _write_trail(config: Path, events: int) -> Path:
    cert, key = party_paths(config.parent / "pki", BROKER)
    path = config.parent / "audit.jsonl"
    path.unlink(missing_ok=True)
    trail = AuditTrail(path, issuer=BROKER, sign=Signer.from_files(key, cert).sign)
    for n in range(events):
        trail.record(StatusEvent(f"uuid-{n}", EventKind.RECEIVED))
    trail.close()
    return path


def test_verify_passes_an_untouched_trail(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write_trail(config, 3)

    code = main(["--config", str(config), "audit", "verify"])

    assert code == 0
    assert capsys.readouterr().out.startswith("OK ")


def test_verify_names_the_altered_line(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write_trail(config, 3)
    path.write_bytes(path.read_bytes().replace(b"uuid-1", b"uuid-7"))

    code = main(["--config", str(config), "audit", "verify"])

    assert code == 1
    assert "line 2 (entry 2): altered" in capsys.readouterr().out


def test_prune_then_verify_passes(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write_trail(config, 3)

    assert main(["--config", str(config), "audit", "prune", "--days", "-1"]) == 0
    assert main(["--config", str(config), "audit", "verify"]) == 0
    assert "pruned through entry 4" in capsys.readouterr().out


def test_verify_takes_the_trails_of_several_hosts(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hosts = []
    for host in ("host-a", "host-b"):
        path = _write_trail(config, 3)
        hosts.append(path.rename(tmp_path / f"{host}.jsonl"))

    assert main(["--config", str(config), "audit", "verify", *map(str, hosts)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in out] == [["OK", f"{p}:"] for p in hosts]

    hosts[1].write_bytes(hosts[1].read_bytes().replace(b"uuid-1", b"uuid-7"))
    assert main(["--config", str(config), "audit", "verify", *map(str, hosts)]) == 1
    out = capsys.readouterr().out
    assert f"OK {hosts[0]}" in out
    assert f"BROKEN {hosts[1]}: line 2 (entry 2): altered" in out
