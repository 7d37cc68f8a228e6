"""The example manifests for published releases (examples/standards/) are usable as they are.

The releases' XSDs are not in the repository, so these tests check everything a manifest
says that does not need them: it parses, its XPaths compile, its samples exist and are
messages of the types it declares, and its header rules read the samples.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from broker.errors import Reason
from xta_schemas import MessageError
from xta_schemas.header import HeaderReader
from xta_schemas.manifest import MANIFEST_NAME, Manifest, read_manifest
from xta_schemas.model import Header, MessageType, NamedBy
from xta_schemas.samples import read_sample
from xta_schemas.standard import HeaderXPaths

EXAMPLES = Path(__file__).parent.parent / "examples" / "standards"
FOLDERS = sorted(path.parent for path in EXAMPLES.glob(f"*/{MANIFEST_NAME}"))
# Served from the published releases with their own messages (tests/test_xoev_releases.py),
# so they ship no samples of ours.
WITH_RELEASE_INSTANCES = {"xwasser-1.0.0", "xdomea-3.0.0", "xbau-2.6"}
WITH_SAMPLES = [folder for folder in FOLDERS if folder.name not in WITH_RELEASE_INSTANCES]
XJUSTIZ = [folder for folder in FOLDERS if folder.name.startswith("xjustiz-")]
# The participant the XJustiz samples' free-text sender is, for the directory of these tests.
KANZLEI = ("Kanzlei Muster und Partner", "jus:kanzlei-muster")


def _samples(manifest: Manifest) -> list[Path]:
    return sorted(
        path for pattern in manifest.standard.samples for path in manifest.folder.glob(pattern)
    )


def _text(xpath: etree.XPath, node: etree._Element) -> str:
    found = xpath(node)
    assert isinstance(found, list) and len(found) == 1, f"{xpath.path} selects {found!r}"
    item = found[0]
    if isinstance(item, etree._Element):
        return "".join(str(part) for part in item.itertext()).strip()
    return str(item)


def test_there_are_example_manifests() -> None:
    assert {folder.name for folder in FOLDERS} >= {"xjustiz-3.7.0", "xjustiz-3.2.1"}


def test_readme_names_every_example() -> None:
    readme = (EXAMPLES / "README.md").read_text(encoding="utf-8")
    for folder in FOLDERS:
        assert f"`{folder.name}/`" in readme


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda folder: folder.name)
def test_example_manifest_parses_and_its_xpaths_compile(folder: Path) -> None:
    manifest = read_manifest(folder)
    assert folder.name == f"{manifest.standard.name}-{manifest.standard.version}"
    HeaderXPaths(manifest)
    for name in manifest.standard.schemas:
        assert not Path(name).is_absolute() and ".." not in Path(name).parts


@pytest.mark.parametrize("folder", WITH_SAMPLES, ids=lambda folder: folder.name)
def test_example_samples_are_messages_of_declared_types(folder: Path) -> None:
    manifest = read_manifest(folder)
    samples = _samples(manifest)
    assert samples, f"{folder} has no sample"
    for path in samples:
        qname = etree.QName(read_sample(path))
        assert qname.namespace == manifest.standard.namespace
        assert qname.localname in manifest.message_types


def _header(manifest: Manifest, root: etree._Element, aliases: dict[str, str]) -> Header:
    """``root``'s header read by the manifest's rules, the directory knowing ``aliases``."""
    reader = HeaderReader(manifest, f"{manifest.standard.name}/{manifest.standard.version}")
    local = etree.QName(root).localname
    expected = MessageType(code=manifest.message_types[local], root=local)
    return reader.read(root, expected, aliases=aliases.get)


@pytest.mark.parametrize("folder", WITH_SAMPLES, ids=lambda folder: folder.name)
def test_example_header_rules_read_the_samples(folder: Path) -> None:
    manifest = read_manifest(folder)
    for path in _samples(manifest):
        root = read_sample(path)
        header = _header(manifest, root, dict([KANZLEI]))
        assert header.uuid and header.created.tzinfo is not None
        assert header.author.named_by in {NamedBy.KENNUNG, NamedBy.FREE_TEXT}, path.name
        assert header.readers, path.name
        if manifest.standard.version_in_message:
            stated = etree.XPath(
                manifest.standard.version_in_message, namespaces=manifest.namespaces
            )
            expected = manifest.standard.message_version or manifest.standard.version
            assert _text(stated, root) == expected


@pytest.mark.parametrize("folder", XJUSTIZ, ids=lambda folder: folder.name)
def test_xjustiz_reads_a_court_code_as_the_courts_kennung(folder: Path) -> None:
    manifest = read_manifest(folder)
    [path] = [p for p in _samples(manifest) if "sonstig" not in p.name]

    header = _header(manifest, read_sample(path), {})

    assert (header.author.kennung, header.author.named_by) == ("jus:K1101", NamedBy.KENNUNG)
    assert [reader.kennung for reader in header.readers] == ["jus:K1201"]


@pytest.mark.parametrize("folder", XJUSTIZ, ids=lambda folder: folder.name)
def test_xjustiz_reads_a_free_text_sender_as_the_participant_the_directory_names(
    folder: Path,
) -> None:
    manifest = read_manifest(folder)
    [path] = [p for p in _samples(manifest) if "sonstiger-absender" in p.name]

    header = _header(manifest, read_sample(path), dict([KANZLEI]))

    assert header.author.kennung == KANZLEI[1]
    assert (header.author.name, header.author.named_by) == (KANZLEI[0], NamedBy.FREE_TEXT)
    assert f"{KANZLEI[0]!r} is {KANZLEI[1]} by the directory" in header.notes()


@pytest.mark.parametrize("folder", XJUSTIZ, ids=lambda folder: folder.name)
def test_xjustiz_refuses_a_free_text_sender_the_directory_does_not_know(folder: Path) -> None:
    manifest = read_manifest(folder)
    [path] = [p for p in _samples(manifest) if "sonstiger-absender" in p.name]

    with pytest.raises(MessageError) as caught:
        _header(manifest, read_sample(path), {})

    assert caught.value.reason is Reason.AUTHOR_UNKNOWN
    assert "Kanzlei Muster und Partner" in caught.value.detail
