"""Mentions: the `@login`s of a message that name someone who may see its room."""

from __future__ import annotations

import re

from storage.base import DIRECT, Room, Store, login_key

MENTIONS_MAX = 20  # logins looked up per message; more `@`s than this are not mentions
# `@login` not inside a word or an e-mail address (`a@b.c`), of the login characters sign-up
# accepts; a trailing dot ends a sentence, not the login.
MENTION_RE = re.compile(r"(?<![\w@.])@([A-Za-z0-9_.-]{3,33})(?![A-Za-z0-9_.-])")
# Code is quoted, not addressed: `@alice` in a code span or a fenced block mentions nobody.
CODE_RE = re.compile(r"```.*?(?:```|$)|`[^`\n]*`", re.S)


def candidates(text: str) -> list[str]:
    """Return the distinct `@logins` of a text outside code, first written first (bounded)."""
    if "@" not in text:
        return []
    found: dict[str, str] = {}
    for match in MENTION_RE.finditer(CODE_RE.sub(" ", text)):
        login = match.group(1).rstrip(".")
        if 3 <= len(login) <= 32:
            found.setdefault(login_key(login), login)
            if len(found) >= MENTIONS_MAX:
                break
    return list(found.values())


async def find_mentions(store: Store, room: Room | None, text: str) -> tuple[str, ...]:
    """Return, sorted, the logins of active accounts a text mentions that may see the room."""
    logins = candidates(text)
    if not logins or room is None:
        return ()
    peers = {login_key(p) for p in room.peers}
    found: set[str] = set()
    for login in logins:
        user = await store.users.find_by_login(login)
        if user is None or not user.active:
            continue
        if room.kind == DIRECT:
            if login_key(user.login) not in peers:
                continue
        elif room.private and not await store.rooms.is_member(room.slug, user.login):
            continue
        found.add(user.login)
    return tuple(sorted(found))
