"""``xbroker schemas``: list the standards in service, check a message, load a standard,
draft the manifest of a published release (``init``).

``check`` answers what the broker would answer about a message's content: which
standard and message type it is, whether its header is usable and whether it is valid.
It does not verify signatures; the last ds:Signature among the root's children (where a
signature is verified) is removed first, as the broker validates only what the
signature covers. Nor does it know the directory: a message that
names no author shows "(its signer)", and a party named in free text shows that text in
parentheses, where the broker puts the kennung the directory maps it to.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lxml import etree

from broker.errors import ConfigurationError
from broker.settings import load_settings
from signing.errors import XmlError
from signing.parser import parse_untrusted
from xta_schemas import Catalog, MessageError, Standard, StandardLoadError
from xta_schemas.catalog import standard_folders
from xta_schemas.manifest import MANIFEST_NAME
from xta_schemas.samples import read_sample
from xta_schemas.scaffold import default_identity, render, survey, unfilled

__all__ = ["CheckResult", "check_message", "register"]

_DSIG_SIGNATURE = "{http://www.w3.org/2000/09/xmldsig#}Signature"

_SIGNER = "(its signer)"

EXIT_VALID = 0
EXIT_INVALID = 1
EXIT_ERROR = 2


@dataclass(slots=True)
class CheckResult:
    """What ``schemas check`` found about one message."""

    file: str
    valid: bool
    signature_removed: bool = False
    standard: str | None = None
    nachrichtentyp: str | None = None
    uuid: str | None = None
    author: str | None = None
    readers: list[str] = field(default_factory=list)
    routing_facts: dict[str, str] = field(default_factory=dict)
    code: str | None = None
    detail: str | None = None
    issues: list[dict[str, Any]] = field(default_factory=list)


def check_message(catalog: Catalog, data: bytes, name: str) -> CheckResult:
    """Identify, read the header of and validate one message, as the broker would."""
    result = CheckResult(file=name, valid=False)
    try:
        root = parse_untrusted(data)
    except XmlError as exc:
        result.code, result.detail = exc.reason.value, str(exc)
        return result
    signatures = root.findall(_DSIG_SIGNATURE)
    if signatures:  # the message's own: the last at the root; any other is content
        root.remove(signatures[-1])
        result.signature_removed = True
    try:
        standard, message_type = catalog.identify(root)
        result.standard, result.nachrichtentyp = standard.key, message_type.code
        header = standard.header(root, signer=_SIGNER, aliases=lambda text: f"({text})")
        result.uuid = header.uuid
        result.author = _party(header.author.kennung, header.author.name)
        result.readers = [_party(reader.kennung, reader.name) for reader in header.readers]
        standard.validate(root)
        result.routing_facts = standard.routing_facts(root)
    except MessageError as exc:
        result.code, result.detail = exc.reason.value, exc.detail
        result.issues = [asdict(issue) for issue in exc.issues]
        return result
    result.valid = True
    return result


def _party(kennung: str, name: str | None) -> str:
    return f"{kennung} ({name})" if name else kennung


def register(subparsers: Any) -> None:
    """Add ``schemas list|check|load|init`` to the xbroker CLI."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--standard-dir",
        action="append",
        type=Path,
        default=[],
        dest="standard_dirs",
        metavar="DIR",
        help="also load the standard(s) in DIR (repeatable)",
    )
    common.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser = subparsers.add_parser("schemas", help="list, check and load XÖV standards")
    actions = parser.add_subparsers(dest="schemas_action", required=True, metavar="ACTION")
    actions.add_parser("list", parents=[common], help="list the standards in service").set_defaults(
        func=_list
    )
    check = actions.add_parser(
        "check", parents=[common], help="check a message (signed or unsigned) against its standard"
    )
    check.add_argument("file", type=Path, help="XML message; '-' reads standard input")
    check.set_defaults(func=_check)
    load = actions.add_parser(
        "load", parents=[common], help="load an external standard folder and report on it"
    )
    load.add_argument("directory", type=Path, help="a standard folder, or a folder of them")
    load.set_defaults(func=_load)
    init = actions.add_parser(
        "init", help="draft manifest.toml for a release folder from what its XSDs declare"
    )
    init.add_argument("directory", type=Path, help="the release's folder (its XSDs, unchanged)")
    init.add_argument("--name", help="standard name (default: from a folder like xjustiz-3.7.0)")
    init.add_argument("--version", help="standard version (default: from the folder name)")
    init.add_argument(
        "--namespace",
        help="the release's namespace (default: the one with the most global elements)",
    )
    init.add_argument(
        "--write", action="store_true", help="write DIR/manifest.toml instead of printing it"
    )
    init.add_argument("--force", action="store_true", help="with --write: replace a manifest")
    init.add_argument(
        "--allow-incomplete",
        action="store_true",
        help="exit 0 even when the draft has XPaths left to fill in (it will not load so)",
    )
    init.set_defaults(func=_init)


def _catalog(args: argparse.Namespace, extra: tuple[Path, ...] = ()) -> Catalog | None:
    """Bundled standards, those of the settings (``standard_dirs``), and the options'."""
    try:
        configured = load_settings(getattr(args, "config", None)).standard_dirs
    except ConfigurationError as exc:
        print(f"xbroker: {exc}", file=sys.stderr)
        return None
    try:
        return Catalog.load([*configured, *args.standard_dirs, *extra])
    except StandardLoadError as exc:
        print(f"xbroker: cannot load standards: {exc}", file=sys.stderr)
        return None


def _describe(standard: Standard) -> dict[str, Any]:
    return {
        "key": standard.key,
        "title": standard.title,
        "namespace": standard.namespace,
        "folder": str(standard.folder),
        "message_types": sorted(standard.message_types),
        "routing_facts": sorted(standard.manifest.routing),
        "schema_files": [str(path) for path in standard.schema_files],
        "samples": [str(path) for path in standard.samples],
        "load_seconds": round(standard.load_seconds, 3),
    }


def _list(args: argparse.Namespace) -> int:
    catalog = _catalog(args)
    if catalog is None:
        return EXIT_ERROR
    described = [_describe(standard) for standard in catalog.standards]
    if args.json:
        print(json.dumps(described, indent=2, ensure_ascii=False))
        return EXIT_VALID
    for item in described:
        print(f"{item['key']:<16} {item['namespace']}  {item['title']}")
        for code in item["message_types"]:
            print(f"{'':<16}   {code}")
    return EXIT_VALID


def _check(args: argparse.Namespace) -> int:
    catalog = _catalog(args)
    if catalog is None:
        return EXIT_ERROR
    try:
        data = sys.stdin.buffer.read() if str(args.file) == "-" else args.file.read_bytes()
    except OSError as exc:
        print(f"xbroker: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return EXIT_ERROR
    result = check_message(catalog, data, str(args.file))
    if args.json:
        print(json.dumps(asdict(result), indent=2, ensure_ascii=False))
    else:
        _print_check(result)
    return EXIT_VALID if result.valid else EXIT_INVALID


def _print_check(result: CheckResult) -> None:
    print(f"{'valid' if result.valid else 'invalid'}: {result.file}")
    rows = [
        ("signature", "removed before validation" if result.signature_removed else None),
        ("standard", result.standard),
        ("nachrichtentyp", result.nachrichtentyp),
        ("uuid", result.uuid),
        ("author", result.author),
        ("readers", ", ".join(result.readers) or None),
        ("routing facts", ", ".join(f"{k}={v}" for k, v in result.routing_facts.items()) or None),
        ("code", result.code),
        ("detail", result.detail),
    ]
    for label, value in rows:
        if value:
            print(f"  {label:<15} {value}")
    if result.issues:
        print("  issues:")
        for issue in result.issues:
            line = f"line {issue['line']} " if issue["line"] is not None else ""
            print(f"    {line}{issue['path']}: {issue['reason']}")


def _load(args: argparse.Namespace) -> int:
    try:
        folders = {folder.resolve() for folder in standard_folders(args.directory)}
    except StandardLoadError as exc:
        print(f"xbroker: {exc}", file=sys.stderr)
        return EXIT_ERROR
    catalog = _catalog(args, (args.directory,))
    if catalog is None:
        return EXIT_ERROR
    report = []
    for standard in catalog.standards:
        if standard.folder not in folders:
            continue
        item = _describe(standard)
        started = time.perf_counter()
        item["report_schema_problem"] = standard.prepare_report()
        item["report_seconds"] = round(time.perf_counter() - started, 3)
        item["sample_results"] = [
            asdict(check_message(catalog, etree.tostring(read_sample(path)), str(path)))
            for path in standard.samples
        ]
        report.append(item)
    all_valid = all(r["valid"] for item in report for r in item["sample_results"])
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        for item in report:
            print(f"loaded {item['key']} from {item['folder']}")
            print(f"  namespace      {item['namespace']}")
            print(f"  message types  {', '.join(item['message_types'])}")
            print(f"  routing facts  {', '.join(item['routing_facts']) or '(none)'}")
            print(f"  load time      {item['load_seconds']:.2f} s")
            problem = item["report_schema_problem"]
            print(
                f"  report schema  built in {item['report_seconds']:.2f} s"
                if problem is None
                else f"  report schema  unavailable, reports use lxml's messages: {problem}"
            )
            print(f"  schema files   {len(item['schema_files'])}")
            for path in item["schema_files"]:
                print(f"    {path}")
            for sample in item["sample_results"]:
                verdict = "valid" if sample["valid"] else f"INVALID ({sample['detail']})"
                print(f"  sample         {sample['file']}: {verdict}")
    return EXIT_VALID if all_valid else EXIT_INVALID


def _init(args: argparse.Namespace) -> int:
    try:
        draft = survey(args.directory, args.namespace)
    except StandardLoadError as exc:
        print(f"xbroker: {exc}", file=sys.stderr)
        return EXIT_ERROR
    name, version = default_identity(args.directory)
    text = render(draft, args.name or name, args.version or version)
    target = args.directory / MANIFEST_NAME
    if not args.write:
        print(text, end="")
    elif target.exists() and not args.force:
        print(f"xbroker: {target} exists; --force replaces it", file=sys.stderr)
        return EXIT_ERROR
    else:
        target.write_text(text, encoding="utf-8")
    notes = [
        f"{len(draft.entries)} entry schemas, {len(draft.roots)} message types "
        f"in {draft.namespace}",
        "header: XÖV g2g, the defaults read it"
        if draft.g2g_header
        else "header: not XÖV g2g, write the [header] XPaths",
    ]
    if draft.unresolved_urls:
        notes.append(f"{len(draft.unresolved_urls)} URL imports have no local file: add them")
    if args.write:
        notes.append(f"written {target}; check it with: xbroker schemas load {args.directory}")
    todo = unfilled(text)
    notes += [f"{target}:{number}: fill in: {line}" for number, line in todo]
    print("\n".join(notes), file=sys.stderr)
    return EXIT_INVALID if todo and not args.allow_incomplete else EXIT_VALID
