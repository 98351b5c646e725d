"""Reading posted form fields."""

from __future__ import annotations

from collections.abc import Mapping


def field(form: Mapping[str, object], name: str) -> str:
    """Return a posted text field, '' when missing or not text."""
    value = form.get(name, "")
    return value if isinstance(value, str) else ""
