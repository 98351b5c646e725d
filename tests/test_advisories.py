"""`.ci/advisories.py`: a pinned version with a known advisory fails CI, checked offline."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / ".ci"))
import advisories  # noqa: E402

SCRIPT = ROOT / ".ci" / "advisories.py"
DATA = advisories.DEFAULT_DATA
needs_data = pytest.mark.skipif(
    not DATA.is_dir() and not os.environ.get("CI"), reason=f"no advisory data in {DATA}"
)

ADVISORY = """\
id: PYSEC-2099-1
modified: 2099-01-01T00:00:00Z
aliases:
- CVE-2099-0001
details: A made-up flaw, for the test; this line is long enough to be folded
  onto a second line, as the database writes them.
affected:
- package:
    ecosystem: PyPI
    name: {name}
    purl: pkg:pypi/{name}
  ranges:
  - type: GIT
    events:
    - introduced: "0"
    - fixed: 0123456789abcdef
    repo: https://example.com/x
  - type: ECOSYSTEM
    events:
    - introduced: "{introduced}"
    - fixed: {fixed}
  versions:
  - "0.1"
{extra}"""


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the checker as `.ci/run` does, with the system's python3 semantics (no packages)."""
    base = {k: v for k, v in os.environ.items() if k != "CI"}
    return subprocess.run(
        [sys.executable, "-S", str(SCRIPT), *args],
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        check=False,
    )


def fake(tmp_path: Path, name: str = "aiohttp", **fields: str) -> Path:
    """Write one advisory for name into a fake advisory folder; return the folder."""
    values = {"name": name, "introduced": "3.0", "fixed": "3.14.6", "extra": ""} | fields
    folder = tmp_path / "advisories" / name
    folder.mkdir(parents=True)
    (folder / "PYSEC-2099-1.yaml").write_text(ADVISORY.format(**values))
    return folder.parent


def test_a_pin_inside_an_advisory_range_fails(tmp_path: Path) -> None:
    result = run("--data", str(fake(tmp_path)))  # aiohttp==3.14.5 is pinned
    assert result.returncode == 1, result.stderr
    assert "aiohttp==3.14.5 has PYSEC-2099-1 (CVE-2099-0001); fixed in 3.14.6" in result.stderr


def test_a_listed_version_fails_and_names_are_compared_normalized(tmp_path: Path) -> None:
    reqs = tmp_path / "requirements.txt"
    reqs.write_text("# pins\nJinja2==3.1.6\n-r dev.txt\n")
    (tmp_path / "dev.txt").write_text("aiohttp_session==2.12.1  # comment\n")
    extra = '  - "3.1.6"\n'
    data = fake(tmp_path, "jinja2", introduced="9.0", fixed="9.1", extra=extra)
    result = run("--data", str(data), str(reqs))
    assert result.returncode == 1 and "Jinja2==3.1.6 has PYSEC-2099-1" in result.stderr


@pytest.mark.parametrize(
    ("introduced", "fixed"), [("0", "3.14.5"), ("3.14.6", "3.15"), ("0", "3.9.10"), ("3.15a1", "4")]
)
def test_a_pin_outside_the_range_passes(tmp_path: Path, introduced: str, fixed: str) -> None:
    # 3.9.10 < 3.14.5 only when compared as versions, not as strings.
    result = run("--data", str(fake(tmp_path, introduced=introduced, fixed=fixed)))
    assert result.returncode == 0, result.stderr


def test_a_withdrawn_advisory_does_not_fail(tmp_path: Path) -> None:
    data = fake(tmp_path, extra="withdrawn: '2099-02-02T00:00:00Z'\n")
    assert run("--data", str(data)).returncode == 0


def test_missing_data_is_skipped_locally_but_fails_in_ci(tmp_path: Path) -> None:
    local = run("--data", str(tmp_path / "nowhere"))
    assert local.returncode == 0 and "skipped outside CI" in local.stderr
    ci = run("--data", str(tmp_path / "nowhere"), env={"CI": "true"})
    assert ci.returncode == 2 and "no advisory data" in ci.stderr


@needs_data
def test_todays_pins_have_no_known_advisory() -> None:
    result = run()
    assert result.returncode == 0, result.stderr


@needs_data
def test_every_real_advisory_is_read() -> None:
    files = sorted(DATA.rglob("*.yaml"))
    assert files
    for file in files:
        text = file.read_text()
        adv = advisories.parse_advisory(text)
        assert adv.id == file.stem
        assert [advisories.normalize(a.package) for a in adv.affected] == [file.parent.name]
        listed = sum(len(a.versions) for a in adv.affected)
        lines, counted, inside = text.splitlines(), 0, False
        for line in lines:  # every "  - x" line right under a "  versions:" line
            inside = line == "  versions:" or (inside and line.startswith("  - "))
            counted += inside and line.startswith("  - ")
        assert listed == counted, file
        assert any(a.ranges for a in adv.affected) or listed


@needs_data
def test_versions_are_ordered_as_packaging_orders_them() -> None:
    seen = {"1.0.dev1", "1.0a1", "1.0a2.dev1", "1.0b1", "1.0rc1", "1.0", "1.0.0", "1.0.post1"}
    seen |= {
        "1.0-1",
        "1!0.1",
        "2.9",
        "2.10",
        "0.7.0b3",
        "1.0.post1.dev2",
        "1.0c1",
    }  # no local labels
    for file in DATA.rglob("*.yaml"):
        for a in advisories.parse_advisory(file.read_text()).affected:
            seen |= set(a.versions) | {v for r in a.ranges for _, v in r}
    seen |= {v for _, _, v in advisories.read_pins(ROOT / "requirements-dev.txt")}
    versions = sorted(seen)
    for x, y in itertools.combinations(versions, 2):
        kx, ky = advisories.version_key(x), advisories.version_key(y)
        assert (kx < ky, kx == ky) == (Version(x) < Version(y), Version(x) == Version(y)), (x, y)
