"""Routing rules: header facts + directory → recipients (pure functions)."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.errors import Reason
from routing import Directory, DirectoryError, Role, RouteError, RoutingInput, route

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
