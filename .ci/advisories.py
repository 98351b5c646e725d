#!/usr/bin/env python3
"""Fail when a pinned requirement has a known advisory, checked offline (no dependencies).

The advisory data is a copy of the PyPA advisory database's `vulns/<package>/*.yaml` (OSV in
YAML) beside the repository, in ../shared/advisories (see its README). Only the standard library
is used, so `.ci/run` can check the pins before it builds the venv; `tests/test_advisories.py`
checks the small YAML reader and the version ordering against `packaging` on the real data.
Exit codes: 0 no known advisory, 1 a pin is affected, 2 missing or unreadable data.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "advisories"
DEFAULT_REQUIREMENTS = (ROOT / "requirements.txt", ROOT / "requirements-dev.txt")

# PEP 440 versions, as packaging.version.VERSION_PATTERN reads them (case-insensitive).
_VERSION = re.compile(
    r"""^\s*v?(?:(?P<epoch>[0-9]+)!)?(?P<release>[0-9]+(?:\.[0-9]+)*)
    (?:[-_.]?(?P<pre_l>alpha|a|beta|b|preview|pre|c|rc)[-_.]?(?P<pre_n>[0-9]+)?)?
    (?:-(?P<post_n1>[0-9]+)|[-_.]?(?P<post_l>post|rev|r)[-_.]?(?P<post_n2>[0-9]+)?)?
    (?:[-_.]?(?P<dev_l>dev)[-_.]?(?P<dev_n>[0-9]+)?)?
    (?:\+[a-z0-9]+(?:[-_.][a-z0-9]+)*)?\s*$""",
    re.VERBOSE | re.IGNORECASE,
)
_PRE_RANK = {"a": 0, "alpha": 0, "b": 1, "beta": 1, "c": 2, "rc": 2, "pre": 2, "preview": 2}
VersionKey = tuple[object, ...]


def version_key(text: str) -> VersionKey:
    """Return a sort key ordering versions as PEP 440 does (local labels are ignored)."""
    m = _VERSION.match(text)
    if m is None:
        raise ValueError(f"not a PEP 440 version: {text!r}")
    release = [int(part) for part in m["release"].split(".")]
    while len(release) > 1 and release[-1] == 0:
        release.pop()
    post = m["post_n1"] or m["post_n2"] or ("0" if m["post_l"] else None)
    dev = m["dev_n"] or ("0" if m["dev_l"] else None)
    if m["pre_l"]:
        pre: tuple[int, ...] = (1, _PRE_RANK[m["pre_l"].lower()], int(m["pre_n"] or 0))
    elif dev is not None and post is None:
        pre = (0,)  # 1.0.dev1 comes before 1.0a1
    else:
        pre = (2,)
    return (
        int(m["epoch"] or 0),
        tuple(release),
        pre,
        (1, int(post)) if post is not None else (0,),
        (0, int(dev)) if dev is not None else (1,),
    )


def normalize(name: str) -> str:
    """Return a project name as PEP 503 compares it."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass
class Affected:
    """One `affected` entry: a package, its listed versions and its ECOSYSTEM ranges' events."""

    package: str = ""
    versions: list[str] = field(default_factory=list)
    ranges: list[list[tuple[str, str]]] = field(default_factory=list)


@dataclass
class Advisory:
    """What the check needs from one advisory file."""

    id: str
    aliases: list[str]
    withdrawn: bool
    affected: list[Affected]


def _scalar(raw: str) -> str:
    raw = raw.strip()
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        return raw[1:-1]
    return raw


def parse_advisory(text: str) -> Advisory:
    """Read the fields the check needs from one OSV YAML file, as the database writes them."""
    adv = Advisory(id="", aliases=[], withdrawn=False, affected=[])
    top = ""  # the current top-level key
    sub = ""  # the current key of an `affected` entry
    rng: list[tuple[str, str]] | None = None  # the current range's events, if ECOSYSTEM
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line.startswith((" ", "-")):  # a top-level key
            top, _, value = line.partition(":")
            if top == "id":
                adv.id = _scalar(value)
            elif top == "withdrawn":
                adv.withdrawn = True
            continue
        if top == "aliases" and line.startswith("- "):
            adv.aliases.append(_scalar(line[2:]))
        if top != "affected":
            continue
        if line.startswith("- "):  # a new entry: its first key sits after the dash
            adv.affected.append(Affected())
            line = "  " + line[2:]
        if not adv.affected:
            raise ValueError("affected entry expected")
        entry = adv.affected[-1]
        if re.match(r"^  [a-z_]+:", line):
            sub = line.strip().split(":", 1)[0]
            rng = None
        elif sub == "package" and line.startswith("    name:"):
            entry.package = _scalar(line.split(":", 1)[1])
        elif sub == "versions" and line.startswith("  - "):
            entry.versions.append(_scalar(line[4:]))
        elif sub == "ranges" and line.startswith("  - type:"):
            rng = [] if _scalar(line.split(":", 1)[1]) == "ECOSYSTEM" else None
            if rng is not None:
                entry.ranges.append(rng)
        elif sub == "ranges" and rng is not None and line.startswith("    - "):
            kind, _, value = line[6:].partition(":")
            rng.append((kind.strip(), _scalar(value)))
    if not adv.id:
        raise ValueError("no id")
    return adv


def in_range(version: str, events: list[tuple[str, str]]) -> bool:
    """Return whether version lies in an OSV ECOSYSTEM range (introduced, fixed, last_affected)."""
    key = version_key(version)
    order = {"introduced": 0, "fixed": 1, "last_affected": 2, "limit": 3}
    points = sorted(
        ((version_key(v) if v != "0" else (), order.get(kind, 3), kind) for kind, v in events),
        key=lambda p: (p[0], p[1]),
    )
    affected = False
    for point, _, kind in points:
        if kind == "introduced" and key >= point:
            affected = True
        elif kind == "fixed" and key >= point:
            affected = False
        elif kind == "last_affected" and key > point:
            affected = False
    return affected


def fixed_versions(entry: Affected) -> list[str]:
    """Return the versions the entry's ranges name as fixed."""
    return [v for events in entry.ranges for kind, v in events if kind == "fixed"]


def is_affected(entry: Affected, version: str) -> bool:
    """Return whether a version is listed in the entry or lies in one of its ranges."""
    key = version_key(version)
    listed = any(_same(v, key) for v in entry.versions)
    return listed or any(in_range(version, events) for events in entry.ranges)


def _same(listed: str, key: VersionKey) -> bool:
    try:
        return version_key(listed) == key
    except ValueError:
        return False  # a listed tag that is not a version names no PyPI release


def read_pins(path: Path, seen: set[Path] | None = None) -> Iterator[tuple[Path, str, str]]:
    """Yield (file, name, version) for each `name==version` line, following `-r` includes."""
    seen = set() if seen is None else seen
    if path in seen:
        return
    seen.add(path)
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith(("-r ", "--requirement ")):
            yield from read_pins((path.parent / line.split(None, 1)[1]).resolve(), seen)
            continue
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*==\s*([^\s;]+)", line)
        if m:
            yield path, m[1], m[2]


def load_advisories(data: Path) -> dict[str, list[Advisory]]:
    """Read every advisory under data, by the normalized names of the packages they affect."""
    by_package: dict[str, list[Advisory]] = {}
    for file in sorted(data.rglob("*.yaml")):
        try:
            adv = parse_advisory(file.read_text())
        except (ValueError, OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"{file}: cannot read advisory: {exc}") from None
        for name in {normalize(a.package) for a in adv.affected if a.package}:
            by_package.setdefault(name, []).append(adv)
    return by_package


def check(requirements: list[Path], data: Path) -> list[str]:
    """Return one line per pinned requirement affected by a known, not withdrawn advisory."""
    advisories = load_advisories(data)
    found = []
    for path, name, version in (pin for req in requirements for pin in read_pins(req)):
        for adv in advisories.get(normalize(name), []):
            entries = [a for a in adv.affected if normalize(a.package) == normalize(name)]
            if adv.withdrawn or not any(is_affected(a, version) for a in entries):
                continue
            fixed = sorted({v for a in entries for v in fixed_versions(a)}, key=version_key)
            aliases = f" ({', '.join(adv.aliases)})" if adv.aliases else ""
            hint = f"; fixed in {', '.join(fixed)}" if fixed else "; no fixed version"
            found.append(f"{path.name}: {name}=={version} has {adv.id}{aliases}{hint}")
    return found


def main(argv: list[str] | None = None) -> int:
    """Check the pins; print what is affected and return the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("requirements", nargs="*", type=Path, default=list(DEFAULT_REQUIREMENTS))
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the advisory folder")
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        message = (
            f"advisories: no advisory data in {args.data} (see ../shared/advisories/README.md)"
        )
        if os.environ.get("CI", "").lower() in ("", "0", "false", "no"):
            print(f"{message}; skipped outside CI", file=sys.stderr)
            return 0
        print(f"{message}; CI must have it", file=sys.stderr)
        return 2
    try:
        found = check(args.requirements, args.data)
    except (ValueError, OSError) as exc:
        print(f"advisories: {exc}", file=sys.stderr)
        return 2
    for line in found:
        print(f"advisories: {line}", file=sys.stderr)
    if found:
        print("advisories: upgrade these pins to a fixed version", file=sys.stderr)
        return 1
    print(f"advisories: no known advisory for the pins ({args.data})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
