"""`manage.py backup` and `restore`: a copy of a live chat loses nothing it acknowledged, and a
restore refuses a damaged backup, a store it would overwrite, a running chat and MongoDB."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType
from yarl import URL

import manage
from harness import (
    CSRF_RE,
    PASSWORD,
    ROOT,
    AppProcess,
    app_env,
    browser_session,
    open_socket,
    sign_up,
)
from settings import Settings
from storage.backup import DATABASE, FORMAT, FORMAT_VERSION, MANIFEST
from storage.sqlite import MIGRATIONS, SqliteStore

CHAT_VARS = [name.upper() for name in Settings.__dataclass_fields__]
UPLOAD = b"\x89PNG not really, but bytes all the same"
UPLOAD_NAME = (
    f"uploads/{hashlib.sha256(UPLOAD).hexdigest()[:2]}/{hashlib.sha256(UPLOAD).hexdigest()}"
)
SENDERS = 3
# The load's bound: fewer writes than the app makes between WAL checkpoints (1000), so recent
# messages are in the WAL only, which a copy of the file alone would lose.
MAX_PER_SENDER = 200
KEY = "ZmDfcTF7_60GrrY167zsiPd67pEvs0aGOv2oasOM1Pg="

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Run:
    """Run `manage.main` in this process on a DATA_DIR; return the exit code, stdout and stderr."""
    for name in CHAT_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no .env

    def cli(*argv: str, data_dir: Path, **env: str) -> tuple[int, str, str]:
        monkeypatch.setenv("DATA_DIR", str(data_dir))
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        capsys.readouterr()
        code = manage.main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return cli


def make_store(data_dir: Path, messages: int = 3, upload: bool = True) -> None:
    """Fill a SQLite store: alice, MESSAGES messages in #general, and one upload."""

    async def fill() -> None:
        store = SqliteStore(data_dir / DATABASE)
        await store.setup()
        try:
            await store.users.create("alice", "alice@example.com", "not-a-real-hash")
            for i in range(messages):
                await store.messages.add("general", "alice", f"message {i}", f"c{i}")
        finally:
            await store.close()

    asyncio.run(fill())
    if upload:
        (data_dir / UPLOAD_NAME).parent.mkdir(parents=True)
        (data_dir / UPLOAD_NAME).write_bytes(UPLOAD)


def rows(data_dir: Path) -> list[tuple[Any, ...]]:
    """Return the stored messages and accounts, as they are in the file."""
    db = sqlite3.connect(data_dir / DATABASE)
    try:
        found = db.execute("SELECT room, seq, user, text, client_id FROM messages ORDER BY id")
        return [*found, *db.execute("SELECT login, email FROM users ORDER BY id")]
    finally:
        db.close()


@pytest.fixture
def chat(tmp_path: Path) -> Path:
    """A DATA_DIR holding a small chat."""
    data = tmp_path / "chat"
    make_store(data)
    return data


def write_backup(path: Path, files: dict[str, bytes], **manifest: Any) -> None:
    """Write a tar file laid out as a backup, with a manifest true to FILES unless overridden."""
    listed = {
        name: {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        for name, data in files.items()
    }
    document = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created_at": "2026-12-01T00:00:00Z",
        "schema_version": len(MIGRATIONS),
        "counts": {"users": 1, "rooms": 1, "messages": 3},
        "files": listed,
        **manifest,
    }
    with tarfile.open(path, "w") as tar:
        for name, data in [*files.items(), (MANIFEST, json.dumps(document).encode())]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def database_bytes(tmp_path: Path, change: Callable[[sqlite3.Connection], None]) -> bytes:
    """Return a chat database file after CHANGE, made in a scratch directory."""
    scratch = tmp_path / "scratch"
    make_store(scratch, upload=False)
    db = sqlite3.connect(scratch / DATABASE)
    db.execute("PRAGMA journal_mode = DELETE")
    change(db)
    db.commit()
    db.close()
    return (scratch / DATABASE).read_bytes()


# A backup of a live chat, under load


async def log_in(session: aiohttp.ClientSession, url: str, login: str) -> None:
    """Log in through the real form."""
    async with session.get(url + "/login") as resp:
        match = CSRF_RE.search(await resp.text())
        assert match
    form = {"login": login, "password": PASSWORD, "csrf_token": match.group(1)}
    async with session.post(
        url + "/login", data=form, headers={"Origin": url}, allow_redirects=False
    ) as resp:
        assert resp.status == 302, await resp.text()


async def history(session: aiohttp.ClientSession, url: str) -> list[dict[str, Any]]:
    """Read all of #general over HTTP, page by page, oldest first."""
    found: list[dict[str, Any]] = []
    before = ""
    for _ in range(1000):
        async with session.get(f"{url}/rooms/general/messages?limit=100{before}") as resp:
            assert resp.status == 200
            page = await resp.json()
        found[:0] = page["messages"]
        if not page["has_more"]:
            return found
        before = f"&before={page['messages'][0]['seq']}"
    raise AssertionError("history did not end")


async def manage_process(*argv: str, cwd: Path, data_dir: Path) -> tuple[int, str]:
    """Run `python manage.py` as its own process, as an operator does; return code and stderr."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "manage.py"),
        *argv,
        cwd=cwd,
        env=app_env(DATA_DIR=str(data_dir)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        _, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, err.decode()


async def test_a_backup_under_load_restores_every_message_acknowledged_before_it(
    tmp_path: Path,
) -> None:
    live_dir, new_dir = tmp_path / "live", tmp_path / "new"
    live_dir.mkdir()
    new_dir.mkdir()
    (live_dir / "data" / UPLOAD_NAME).parent.mkdir(parents=True)
    (live_dir / "data" / UPLOAD_NAME).write_bytes(UPLOAD)
    archive = tmp_path / "chat.tar.gz"
    limits = {"MESSAGE_BURST": "10000", "MESSAGE_PER_MINUTE": "1000000", "LOG_LEVEL": "WARNING"}
    live = AppProcess(live_dir, **limits).start()
    acked: dict[tuple[str, str], int] = {}  # (sender, client_id) -> seq
    stop = asyncio.Event()
    sessions = [browser_session() for _ in range(SENDERS)]
    try:
        logins = [f"sender{n}" for n in range(SENDERS)]
        for s, login in zip(sessions, logins, strict=True):
            await sign_up(s, live.url, login)
        sockets = [await open_socket(s, live.url) for s in sessions]
        old_cookie = sessions[0].cookie_jar.filter_cookies(URL(live.url))["chat_session"].value

        async def sender(login: str, ws: aiohttp.ClientWebSocketResponse) -> None:
            for i in range(MAX_PER_SENDER):
                if stop.is_set():
                    return
                client_id = f"{login}-{i}"
                await ws.send_json({"type": "message", "text": f"n{i}", "client_id": client_id})
                for _ in range(100 * SENDERS):  # the others' messages come in between
                    msg = await ws.receive(timeout=10)
                    assert msg.type == WSMsgType.TEXT, msg
                    frame = json.loads(msg.data)
                    assert frame["type"] != "error", frame
                    if frame["type"] == "message" and frame["client_id"] == client_id:
                        acked[(login, client_id)] = frame["seq"]
                        break
                else:
                    raise AssertionError(f"no acknowledgement for {client_id}")
                await asyncio.sleep(0.01)  # spread the bounded load over the backup's run

        async def until(count: int) -> None:
            for _ in range(1200):
                if len(acked) >= count or all(t.done() for t in load):
                    return
                await asyncio.sleep(0.05)

        load = [
            asyncio.create_task(sender(login, ws))
            for login, ws in zip(logins, sockets, strict=True)
        ]
        await until(100)
        before = dict(acked)  # acknowledged before the backup began
        shutil.copy(live_dir / "data" / DATABASE, tmp_path / "file-alone.sqlite3")
        code, err = await manage_process(
            "backup", str(archive), cwd=tmp_path, data_dir=live_dir / "data"
        )
        during = len(acked) - len(before)
        await until(len(acked) + 50)  # and the chat goes on after it
        stop.set()
        async with asyncio.timeout(30):
            await asyncio.gather(*load)
        for ws in sockets:
            await ws.close()
    finally:
        stop.set()
        for s in sessions:
            await s.close()
        live.kill()
    assert (code, err) == (0, "")
    assert len(before) >= 100 and during > 0  # the chat really wrote while the backup ran
    alone = sqlite3.connect(tmp_path / "file-alone.sqlite3")
    try:
        (in_file,) = alone.execute("SELECT COUNT(*) FROM messages").fetchone()
    except sqlite3.OperationalError:  # even the tables may be in the WAL alone
        in_file = 0
    alone.close()
    assert in_file < len(before)  # copying the file, not its WAL, would have lost messages

    # A new machine: a fresh DATA_DIR with a secret key of its own.
    code, err = await manage_process(
        "restore", str(archive), cwd=tmp_path, data_dir=new_dir / "data"
    )
    assert (code, err) == (0, "")
    restored = AppProcess(new_dir, **limits).start()
    try:
        async with browser_session() as s:
            # The secret key is not in the backup: an old cookie logs no one in...
            s.cookie_jar.update_cookies({"chat_session": old_cookie}, URL(restored.url))
            async with s.get(restored.url + "/rooms/general", allow_redirects=False) as resp:
                assert resp.status in (302, 303) and "/login" in resp.headers["Location"]
            # ... but the account, with its password, and every message are there.
            await log_in(s, restored.url, logins[0])
            messages = await history(s, restored.url)
    finally:
        restored.kill()
    seqs = [m["seq"] for m in messages]
    assert seqs == list(range(1, len(seqs) + 1))  # no gap, no repeat
    stored = {(m["user"], m["client_id"]): m["seq"] for m in messages}
    assert before.items() <= stored.items()  # every acknowledged message, at its seq
    # One snapshot: the backup holds exactly what the live chat held up to its last seq.
    assert stored == {key: seq for key, seq in acked.items() if seq <= len(seqs)}
    assert (new_dir / "data" / UPLOAD_NAME).read_bytes() == UPLOAD


# Backing up and restoring, in this process


@pytest.mark.parametrize("name", ["chat.tar", "chat.tar.gz"])
def test_a_restore_gives_back_the_database_and_uploads_and_no_secret(
    run: Run, chat: Path, tmp_path: Path, name: str
) -> None:
    (chat / "secret_key").write_text(KEY + "\n")
    (chat / "uploads" / ".partial").write_bytes(b"an upload being written")
    (chat / "uploads" / "link").symlink_to(chat / "secret_key")
    archive = tmp_path / name
    code, out, err = run("backup", str(archive), data_dir=chat)
    assert (code, err) == (0, "")
    assert out == f"backed up 1 account, 1 room, 3 messages and 1 upload to {archive}\n"
    assert archive.stat().st_mode & 0o777 == 0o600  # it holds password hashes
    with tarfile.open(archive) as tar:
        contents = {m.name: tar.extractfile(m).read() for m in tar}  # type: ignore[union-attr]
    assert sorted(contents) == [DATABASE, MANIFEST, UPLOAD_NAME]
    assert not [n for n, data in contents.items() if KEY.encode() in data]
    manifest = json.loads(contents[MANIFEST])
    assert manifest["schema_version"] == len(MIGRATIONS)
    assert manifest["counts"] == {"users": 1, "rooms": 1, "messages": 3}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".chat-backup-")]

    fresh = tmp_path / "fresh"
    code, out, err = run("restore", str(archive), data_dir=fresh)
    assert (code, err) == (0, "")
    assert out.startswith("restored 1 account, 1 room, 3 messages and 1 upload, backed up ")
    assert rows(fresh) == rows(chat)
    assert (fresh / UPLOAD_NAME).read_bytes() == UPLOAD
    assert sorted(p.name for p in (fresh / "uploads").iterdir()) == [UPLOAD_NAME.split("/")[1]]
    assert (fresh / "secret_key").read_text().strip() != KEY  # a key of its own, made on load
    assert not [p for p in fresh.iterdir() if p.name.startswith(".restore-")]
    db = sqlite3.connect(fresh / DATABASE)
    assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    db.close()


def test_restore_refuses_a_store_that_holds_a_chat_unless_forced(
    run: Run, chat: Path, tmp_path: Path
) -> None:
    archive = tmp_path / "chat.tar"
    assert run("backup", str(archive), data_dir=chat)[0] == 0
    other = tmp_path / "other"
    make_store(other, messages=7, upload=False)
    kept = rows(other)
    code, out, err = run("restore", str(archive), data_dir=other)
    assert (code, out) == (1, "")
    assert "already holds a chat (1 account, 7 messages)" in err and "--force" in err
    assert rows(other) == kept and not (other / "uploads").exists()

    code, out, err = run("restore", str(archive), "--force", data_dir=other)
    assert (code, err) == (0, "")
    assert rows(other) == rows(chat)
    aside = [p for p in other.iterdir() if p.name.startswith("replaced-")]
    assert len(aside) == 1 and f"the files it replaced are in {aside[0]}" in out
    assert rows(aside[0]) == kept  # nothing is lost by forcing either


def test_restore_needs_no_force_over_a_store_that_holds_nothing(
    run: Run, chat: Path, tmp_path: Path
) -> None:
    archive = tmp_path / "chat.tar"
    assert run("backup", str(archive), data_dir=chat)[0] == 0
    empty = tmp_path / "empty"
    make_store(empty, messages=0, upload=False)
    db = sqlite3.connect(empty / DATABASE)
    db.execute("DELETE FROM users")
    db.commit()
    db.close()
    # A stale WAL of the replaced file must not be replayed onto the restored one.
    (empty / f"{DATABASE}-wal").write_bytes(b"stale")
    code, _, err = run("restore", str(archive), data_dir=empty)
    assert (code, err) == (0, "")
    assert rows(empty) == rows(chat)
    assert not (empty / f"{DATABASE}-wal").exists()
    assert not [p for p in empty.iterdir() if p.name.startswith("replaced-")]


DAMAGE = ["not a tar file", "truncated", "a changed byte", "no manifest", "another format"]


@pytest.mark.parametrize("damage", DAMAGE)
def test_restore_refuses_a_damaged_backup_and_changes_nothing(
    run: Run, chat: Path, tmp_path: Path, damage: str
) -> None:
    archive = tmp_path / "chat.tar"
    assert run("backup", str(archive), data_dir=chat)[0] == 0
    data = archive.read_bytes()
    if damage == "not a tar file":
        archive.write_bytes(b"SQLite format 3\x00" + os.urandom(4096))
    elif damage == "truncated":
        archive.write_bytes(data[: len(data) // 2])
    elif damage == "a changed byte":
        at = data.index(b"message 1")  # in the database's pages
        archive.write_bytes(data[:at] + b"M" + data[at + 1 :])
    elif damage == "no manifest":
        with tarfile.open(archive, "w") as tar:
            tar.add(chat / DATABASE, DATABASE)
    else:
        write_backup(archive, {DATABASE: (chat / DATABASE).read_bytes()}, format="something else")
    target = tmp_path / "target"
    code, out, err = run("restore", str(archive), data_dir=target)
    assert (code, out) == (1, "")
    assert "is not a backup made by manage.py backup, or it is damaged" in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert sorted(p.name for p in target.iterdir()) == ["secret_key"]  # no database, no leftovers


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (f"PRAGMA user_version = {len(MIGRATIONS) + 1}", "newer than this release's"),
        ("DROP TABLE messages", "is not the chat's database"),
    ],
)
def test_restore_refuses_a_database_newer_or_other_than_the_chats(
    run: Run, tmp_path: Path, change: str, expected: str
) -> None:
    archive = tmp_path / "chat.tar"
    write_backup(archive, {DATABASE: database_bytes(tmp_path, lambda db: db.execute(change))})
    code, _, err = run("restore", str(archive), data_dir=tmp_path / "target")
    assert code == 1 and expected in err
    assert not (tmp_path / "target" / DATABASE).exists()


def test_restore_refuses_a_database_that_fails_the_integrity_check(
    run: Run, tmp_path: Path
) -> None:
    def break_index(db: sqlite3.Connection) -> None:
        # The index, declared on text, holds other entries than the rows': a damaged file.
        db.execute("CREATE INDEX messages_text ON messages(text)")
        db.execute("PRAGMA writable_schema = ON")
        db.execute(
            "UPDATE sqlite_master SET sql = 'CREATE INDEX messages_text ON messages(client_id)'"
            " WHERE name = 'messages_text'"
        )

    archive = tmp_path / "chat.tar"
    write_backup(archive, {DATABASE: database_bytes(tmp_path, break_index)})
    code, _, err = run("restore", str(archive), data_dir=tmp_path / "target")
    assert code == 1 and "is damaged" in err and "Traceback" not in err, err
    assert not (tmp_path / "target" / DATABASE).exists()


@pytest.mark.parametrize("name", ["../escaped", "/tmp/escaped-absolute", "uploads/../../escaped"])
def test_restore_writes_nothing_outside_the_data_dir(run: Run, tmp_path: Path, name: str) -> None:
    archive = tmp_path / "chat.tar"
    write_backup(archive, {DATABASE: database_bytes(tmp_path, lambda db: None), name: b"x"})
    target = tmp_path / "a" / "target"
    code, _, err = run("restore", str(archive), data_dir=target)
    assert code == 1 and "unexpected entry" in err
    assert not (tmp_path / "a" / "escaped").exists() and not (tmp_path / "escaped").exists()
    assert not Path("/tmp/escaped-absolute").exists()
    assert not (target / DATABASE).exists()


def test_restore_refuses_while_the_chat_runs(run: Run, chat: Path, tmp_path: Path) -> None:
    archive = tmp_path / "chat.tar"
    assert run("backup", str(archive), data_dir=chat)[0] == 0
    served = tmp_path / "served"
    served.mkdir()
    app = AppProcess(served).start()
    try:
        code, _, err = run("restore", str(archive), "--force", data_dir=served / "data")
        assert code == 1 and "is in use: stop the chat" in err
    finally:
        assert app.terminate() == 0
        app.kill()
    assert not [p for p in (served / "data").iterdir() if p.name.startswith("replaced-")]
    assert run("restore", str(archive), data_dir=served / "data")[0] == 0  # once stopped


def test_backup_refusals_and_exit_codes(run: Run, chat: Path, tmp_path: Path) -> None:
    archive = tmp_path / "chat.tar"
    assert run("backup", str(archive), data_dir=chat)[0] == 0
    made = archive.read_bytes()
    code, _, err = run("backup", str(archive), data_dir=chat)
    assert code == 1 and "exists: give another path, or pass --force" in err
    assert archive.read_bytes() == made
    assert run("backup", str(archive), "--force", data_dir=chat)[0] == 0
    cases = [
        (tmp_path, "is a directory: give a file name"),
        (tmp_path / "missing" / "chat.tar", "no directory"),
        (chat / DATABASE, "is the database itself"),
    ]
    for path, expected in cases:
        code, out, err = run("backup", str(path), "--force", data_dir=chat)
        assert (code, out) == (1, "") and expected in err, err
    code, _, err = run("backup", str(tmp_path / "x.tar"), data_dir=tmp_path / "nothing-here")
    assert code == 1 and "no SQLite database at" in err
    assert not (tmp_path / "nothing-here" / DATABASE).exists()  # not created by looking
    code, _, err = run("restore", str(tmp_path / "missing.tar"), data_dir=chat)
    assert code == 1 and "no backup at" in err
    assert run("backup", data_dir=chat)[0] == 2  # PATH missing
    assert run("restore", "--help", data_dir=chat)[0] == 0
    assert rows(chat)  # untouched throughout


@pytest.mark.parametrize(
    ("command", "tool"), [("backup", "mongodump"), ("restore", "mongorestore")]
)
def test_on_mongodb_they_point_to_mongodump_and_mongorestore(
    run: Run, tmp_path: Path, command: str, tool: str
) -> None:
    code, out, err = run(
        command,
        str(tmp_path / "chat.tar"),
        data_dir=tmp_path / "data",
        MONGODB_URI="mongodb://127.0.0.1:9/",  # never connected to
        SECRET_KEY=KEY,
    )
    assert (code, out) == (2, "")
    assert f"{command} copies the SQLite store only" in err
    assert f'{tool} --uri "$MONGODB_URI"' in err and "--archive=chat.archive --gzip" in err
    assert not (tmp_path / "chat.tar").exists()


@pytest.fixture(autouse=True)
def _no_escape() -> Iterator[None]:
    """Remove what a failing traversal test may have written outside its directory."""
    yield
    Path("/tmp/escaped-absolute").unlink(missing_ok=True)
