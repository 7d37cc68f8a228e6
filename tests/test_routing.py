"""Routing rules: header facts + directory → recipients (pure functions)."""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import pytest

from broker.errors import Reason
from routing import (
    Agency,
    AmqpEndpoint,
    CertificateFiles,
    Directory,
    DirectoryError,
    Role,
    RouteError,
    RoutingInput,
    Subscription,
    route,
)
from signing.devpki import issue, setup_ca

DIRECTORY = """
[[agency]]
kennung = "osi:portal"
name = "Portal"
may_send = ["meldung.anmeldung.0200", "gewerbe.anmeldung.0100"]

[[agency]]
kennung = "psw:02000000"
name = "Meldebehörde Hamburg"
accepts = ["meldung.anmeldung.0200"]
regions = ["02000000"]

[[agency]]
kennung = "psw:01060063"
name = "Meldebehörde Norderstedt"
accepts = ["meldung.anmeldung.0200@1.1"]
regions = ["01060"]
endpoint = { kind = "amqp", test = false }

[[agency]]
kennung = "gew:02000000"
name = "Gewerbeamt Hamburg"
accepts = ["gewerbe.anmeldung.0100"]
regions = ["02000000"]

[[agency]]
kennung = "fa:02000000"
name = "Finanzamt Hamburg"
notify = ["gewerbe.anmeldung.*"]

[[agency]]
kennung = "ihk:02000000"
name = "Handelskammer Hamburg"
notify = ["gewerbe.anmeldung.0100"]

[[agency]]
kennung = "stat:nord"
name = "Statistikamt Nord"
notify = ["gewerbe.*"]
endpoint = { kind = "amqp", test = false }
"""


@pytest.fixture
def directory(tmp_path: Path) -> Directory:
    path = tmp_path / "directory.toml"
    path.write_text(DIRECTORY, encoding="utf-8")
    return Directory.load(path)


def _message(**kw: object) -> RoutingInput:
    defaults: dict[str, object] = {
        "author": "osi:portal",
        "nachrichtentyp": "meldung.anmeldung.0200",
        "version": "1.1",
    }
    defaults.update(kw)
    return RoutingInput(**defaults)  # type: ignore[arg-type]


def _kennungen(recipients: tuple[object, ...]) -> list[str]:
    return [r.kennung for r in recipients]  # type: ignore[attr-defined]


def test_explicit_reader_receives_the_message(directory: Directory) -> None:
    recipients = route(_message(readers=("psw:02000000",), facts={"ags": "01060063"}), directory)

    assert _kennungen(recipients) == ["psw:02000000"]
    assert recipients[0].role is Role.READER


def test_reader_that_does_not_accept_the_type_is_refused(directory: Directory) -> None:
    with pytest.raises(RouteError) as err:
        route(_message(readers=("gew:02000000",)), directory)

    assert err.value.reason is Reason.READER_DOES_NOT_ACCEPT


def test_reader_that_does_not_accept_the_version_is_refused(directory: Directory) -> None:
    with pytest.raises(RouteError) as err:
        route(_message(readers=("psw:01060063",), version="1.0"), directory)

    assert err.value.reason is Reason.READER_DOES_NOT_ACCEPT


def test_without_reader_the_agency_of_the_region_receives_it(directory: Directory) -> None:
    recipients = route(_message(facts={"ags": "01060063"}), directory)

    assert _kennungen(recipients) == ["psw:01060063"]
    assert recipients[0].role is Role.RESPONSIBLE


def test_region_prefix_covers_the_municipalities_below_it(directory: Directory) -> None:
    assert _kennungen(route(_message(facts={"ags": "01060099"}), directory)) == ["psw:01060063"]


def test_fan_out_copies_go_to_every_notified_agency(directory: Directory) -> None:
    recipients = route(
        _message(nachrichtentyp="gewerbe.anmeldung.0100", version="1.0", facts={"ags": "02000000"}),
        directory,
    )

    assert _kennungen(recipients) == ["gew:02000000", "fa:02000000", "ihk:02000000", "stat:nord"]
    assert [r.role for r in recipients[1:]] == [Role.NOTIFIED] * 3


def test_unauthorized_sender_is_refused(directory: Directory) -> None:
    with pytest.raises(RouteError) as err:
        route(_message(author="psw:02000000", facts={"ags": "02000000"}), directory)

    assert err.value.reason is Reason.AUTHOR_NOT_AUTHORIZED


def test_unknown_author_is_refused(directory: Directory) -> None:
    with pytest.raises(RouteError) as err:
        route(_message(author="psw:99999999"), directory)

    assert err.value.reason is Reason.AUTHOR_UNKNOWN


def test_no_responsible_agency_is_no_route(directory: Directory) -> None:
    with pytest.raises(RouteError) as err:
        route(_message(facts={"ags": "09162000"}), directory)

    assert err.value.reason is Reason.NO_ROUTE
    assert "09162000" in err.value.detail


def test_no_region_and_no_reader_is_no_route(directory: Directory) -> None:
    with pytest.raises(RouteError) as err:
        route(_message(facts={}), directory)

    assert err.value.reason is Reason.NO_ROUTE


def test_test_message_goes_only_to_test_endpoints(directory: Directory) -> None:
    recipients = route(
        _message(
            nachrichtentyp="gewerbe.anmeldung.0100",
            version="1.0",
            facts={"ags": "02000000"},
            test=True,
        ),
        directory,
    )

    assert _kennungen(recipients) == ["gew:02000000", "fa:02000000", "ihk:02000000"]
    assert all(r.test for r in recipients)


def test_test_message_without_any_test_endpoint_is_no_route(directory: Directory) -> None:
    with pytest.raises(RouteError) as err:
        route(_message(facts={"ags": "01060063"}, test=True), directory)

    assert err.value.reason is Reason.NO_ROUTE


def test_invalid_directory_names_entry_and_field(tmp_path: Path) -> None:
    path = tmp_path / "directory.toml"
    path.write_text(
        '[[agency]]\nkennung = "psw:1"\nname = "A"\n\n'
        '[[agency]]\nkennung = "psw:2"\nname = "B"\nregions = ["Hamburg"]\n',
        encoding="utf-8",
    )

    with pytest.raises(DirectoryError) as err:
        Directory.load(path)

    assert "agency[1] (psw:2).regions" in str(err.value)


def test_unknown_field_in_directory_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "directory.toml"
    path.write_text('[[agency]]\nkennung = "psw:1"\nname = "A"\nacepts = ["x"]\n', encoding="utf-8")

    with pytest.raises(DirectoryError) as err:
        Directory.load(path)

    assert "agency[0] (psw:1).acepts" in str(err.value)


def test_duplicate_agency_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "directory.toml"
    path.write_text('[[agency]]\nkennung = "psw:1"\nname = "A"\n' * 2, encoding="utf-8")

    with pytest.raises(DirectoryError, match="listed twice"):
        Directory.load(path)


def _scanned(directory: Directory, region: str | None, typ: str, version: str) -> list[str]:
    """Who a scan of every entry finds, the rule as written: the indexes must agree."""
    responsible = [
        a.kennung for a in directory if a.responsible_for(region) and a.accepts_type(typ, version)
    ]
    notified = [a.kennung for a in directory if a.notified_of(typ, version)]
    return [*responsible, "|", *notified]


def test_the_indexes_find_exactly_what_a_scan_of_every_agency_finds() -> None:
    rng = random.Random(7)
    types = ["meldung.anmeldung.0200", "meldung.abmeldung.0200", "bau.antrag.0200"]
    patterns = [*types, "meldung.*", "*.0200", "bau.antra?.0200", "[mb]*"]
    regions = ["*", "01", "0106", "01060", "01060063", "02000000", "020000001234"]
    agencies = [
        Agency(
            kennung=f"t:a{index}",
            name=f"Agency {index}",
            certificates=(),
            accepts=tuple(
                Subscription(type=rng.choice(patterns), versions=rng.choice([(), ("1.1",)]))
                for _ in range(rng.randint(0, 2))
            ),
            regions=tuple(rng.sample(regions, rng.randint(0, 2))),
            notify=tuple(Subscription(type=rng.choice(patterns)) for _ in range(rng.randint(0, 1))),
            may_send=(),
            endpoint=AmqpEndpoint(),
        )
        for index in range(300)
    ]
    directory = Directory(agencies)
    asked = [None, "", "0", "01", "010600", "01060063", "02000000", "99", "0200000012345678"]
    for region in asked:
        for typ in [*types, "gewerbe.anmeldung.0100"]:
            for version in ("1.1", "1.0"):
                indexed = [
                    *(a.kennung for a in directory.responsible(region or None, typ, version)),
                    "|",
                    *(a.kennung for a in directory.notified(typ, version)),
                ]
                assert indexed == _scanned(directory, region or None, typ, version), (
                    region,
                    typ,
                    version,
                )


def test_certificate_files_are_read_again_only_when_they_change(tmp_path: Path) -> None:
    setup_ca(tmp_path / "pki")
    first, _ = issue(tmp_path / "pki" / "ca", "t:one", "One", tmp_path / "one", "ec")
    second, _ = issue(tmp_path / "pki" / "ca", "t:two", "Two", tmp_path / "two", "ec")
    file = tmp_path / "agency.crt"
    shutil.copyfile(first, file)
    files = CertificateFiles()

    read = files.get(file)
    assert files.get(file) is read  # unchanged: not read again
    shutil.copyfile(second, file)
    os.utime(file, ns=(1, 1))  # another time, whatever the clock's resolution
    replaced = files.get(file)

    assert replaced.fingerprint != read.fingerprint
    assert replaced.certificate is not None
    assert replaced.certificate.subject != read.certificate.subject  # type: ignore[union-attr]


def test_certificate_paths_resolve_against_the_folder_unless_absolute(tmp_path: Path) -> None:
    setup_ca(tmp_path / "pki")
    crt, _ = issue(tmp_path / "pki" / "ca", "t:one", "One", tmp_path / "issued", "ec")
    (tmp_path / "certs").mkdir()
    shutil.copyfile(crt, tmp_path / "certs" / "relative.crt")
    path = tmp_path / "directory.toml"
    path.write_text(
        '[[agency]]\nkennung = "psw:rel"\nname = "R"\ncertificates = ["certs/relative.crt"]\n'
        f'[[agency]]\nkennung = "psw:abs"\nname = "A"\ncertificates = ["{crt}"]\n',
        encoding="utf-8",
    )
    files = CertificateFiles()

    directory = Directory.load(path, tmp_path, certificates=files)

    relative, absolute = (directory.get(k) for k in ("psw:rel", "psw:abs"))
    assert relative is not None and absolute is not None
    assert relative.certificates[0].source == str(tmp_path / "certs" / "relative.crt")
    assert absolute.certificates[0].source == str(crt)
    assert relative.fingerprints == absolute.fingerprints  # the same certificate, twice
