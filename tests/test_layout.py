"""Module boundaries: what each package may import, read from the source itself."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# package -> the first-party packages it must never import
FORBIDDEN = {
    "common": {"auth", "chat", "app", "routes", "middlewares"},
    "auth": {"chat", "app", "routes"},
    "storage": {"auth", "chat", "common", "app", "routes", "middlewares"},
}


def imported(path: Path) -> set[str]:
    """Return the top-level names of the modules a file imports."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_package_imports_only_what_lies_below_it(package: str) -> None:
    files = sorted((ROOT / package).glob("*.py"))
    assert files
    crossings = {
        f"{path.relative_to(ROOT)} imports {name}"
        for path in files
        for name in imported(path) & FORBIDDEN[package]
    }
    assert not crossings


def test_the_check_sees_both_kinds_of_import() -> None:
    assert {"chat", "functools"} <= imported(ROOT / "app.py")
