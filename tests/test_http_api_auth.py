"""Tokens for the HTTP API: stored only as SHA-256, read from a TOML file."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.errors import ConfigurationError
from broker.http_api import TokenTable, hash_token


def test_a_token_maps_to_its_kennung_through_its_hash() -> None:
    table = TokenTable({hash_token("s3cret"): "osi:hh-portal"})

    assert table.lookup("s3cret") == "osi:hh-portal"


def test_an_unknown_token_maps_to_nobody() -> None:
    table = TokenTable({hash_token("s3cret"): "osi:hh-portal"})

    assert table.lookup("s3cret ") is None


def test_the_tokens_file_holds_hashes_not_tokens(tmp_path: Path) -> None:
    path = tmp_path / "tokens.toml"
    path.write_text(f'[tokens]\n"{hash_token("s3cret")}" = "psw:02000000"\n')

    assert TokenTable.from_file(path).lookup("s3cret") == "psw:02000000"


def test_a_tokens_file_with_a_plain_token_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tokens.toml"
    path.write_text('[tokens]\n"s3cret" = "psw:02000000"\n')

    with pytest.raises(ConfigurationError, match="SHA-256"):
        TokenTable.from_file(path)
