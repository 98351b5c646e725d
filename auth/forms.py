"""Validation of the sign-up and login forms, with one message per field."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping

from yarl import URL

from common.forms import field

LOGIN_RE = re.compile(r"[A-Za-z0-9_.-]{3,32}")
EMAIL_RE = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
PASSWORD_MAX = 256
EMAIL_MAX = 254

Errors = dict[str, str]


def clean_login(login: str) -> str:
    """Return a login as typed, NFKC-normalised (fullwidth `ａｌｉｃｅ` is `alice`) and trimmed."""
    return unicodedata.normalize("NFKC", login).strip()


def new_password_errors(password: str, confirm: str, min_password: int) -> Errors:
    """Return the errors of a new password typed twice (sign-up, password change)."""
    if len(password) < min_password:
        return {"password": f"Use at least {min_password} characters."}
    if len(password) > PASSWORD_MAX:
        return {"password": f"Use at most {PASSWORD_MAX} characters."}
    if confirm != password:
        return {"password_confirm": "The two passwords differ."}
    return {}


def validate_signup(form: Mapping[str, object], min_password: int) -> tuple[dict[str, str], Errors]:
    """Return the cleaned sign-up values and the errors per field."""
    values = {
        "login": clean_login(field(form, "login")),
        "email": field(form, "email").strip(),
        "password": field(form, "password"),
        "password_confirm": field(form, "password_confirm"),
    }
    errors: Errors = {}
    if not LOGIN_RE.fullmatch(values["login"]):
        errors["login"] = "Use 3 to 32 letters, digits, dots, dashes or underscores."
    if len(values["email"]) > EMAIL_MAX or not EMAIL_RE.fullmatch(values["email"]):
        errors["email"] = "Enter an email address like name@example.com."
    errors.update(new_password_errors(values["password"], values["password_confirm"], min_password))
    return values, errors


def safe_next(target: str, default: str) -> str:
    """Return `target` when it is a path on this site, else `default` (no open redirects)."""
    if not target.startswith("/") or target.startswith(("//", "/\\")):
        return default
    if any(c in target for c in "\\\r\n\t") or any(ord(c) < 0x20 for c in target):
        return default
    try:
        url = URL(target)
    except ValueError:
        return default
    if url.is_absolute() or url.scheme or url.host:
        return default
    return target
