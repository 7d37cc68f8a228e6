"""The example manifests for published releases (examples/standards/) are usable as they are.

The releases' XSDs are not in the repository, so these tests check everything a manifest
says that does not need them: it parses, its XPaths compile, its samples exist and are
messages of the types it declares, and its header rules read the samples.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from xta_schemas.manifest import MANIFEST_NAME, Manifest, read_manifest
from xta_schemas.samples import read_sample
from xta_schemas.standard import HeaderXPaths

EXAMPLES = Path(__file__).parent.parent / "examples" / "standards"
FOLDERS = sorted(path.parent for path in EXAMPLES.glob(f"*/{MANIFEST_NAME}"))
# Served from the published releases with their own messages (tests/test_xoev_releases.py),
# so they ship no samples of ours.
WITH_RELEASE_INSTANCES = {"xwasser-1.0.0", "xdomea-3.0.0", "xbau-2.6"}
WITH_SAMPLES = [folder for folder in FOLDERS if folder.name not in WITH_RELEASE_INSTANCES]


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


@pytest.mark.parametrize("folder", WITH_SAMPLES, ids=lambda folder: folder.name)
def test_example_header_rules_read_the_samples(folder: Path) -> None:
    manifest = read_manifest(folder)
    xp = HeaderXPaths(manifest)
    for path in _samples(manifest):
        root = read_sample(path)
        assert _text(xp.uuid, root)
        assert _text(xp.created, root)
        authors = xp.author(root)
        assert isinstance(authors, list) and isinstance(authors[0], etree._Element)
        assert xp.kennung_pattern.match(_text(xp.kennung, authors[0]))
        if manifest.standard.version_in_message:
            stated = etree.XPath(
                manifest.standard.version_in_message, namespaces=manifest.namespaces
            )
            expected = manifest.standard.message_version or manifest.standard.version
            assert _text(stated, root) == expected
