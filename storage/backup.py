"""Back up and restore the SQLite store: one tar file with the database, its uploads, a manifest.

The database is copied with SQLite's online backup API in one step: that reads one snapshot of the
file and its WAL while the chat (another process) goes on writing. Uploads, kept under
`DATA_DIR/uploads` under names that never change content, are copied after the snapshot, so every
upload the snapshot refers to is there (later ones may be too). The manifest, written last, lists
every file with its size and SHA-256, so a restore refuses a damaged or incomplete backup. The
secret key is left out: a backup travels, and the key with the backup's session ids would let its
holder forge a session cookie. Restoring without the key loses nothing (sessions are server-side);
people log in again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import io
import json
import os
import shutil
import sqlite3
import stat
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import IO, Any

from storage.sqlite import MIGRATIONS

FORMAT = "aiohttp-chat backup"
FORMAT_VERSION = 1
DATABASE = "chat.sqlite3"
UPLOADS = "uploads"
MANIFEST = "manifest.json"
MANIFEST_MAX = 64 * 1024 * 1024  # bytes: a manifest lists every upload, never near this
CHUNK = 1024 * 1024
COUNTED = ("users", "rooms", "messages")


class BackupError(Exception):
    """A backup or restore was refused; the message says why and what to do."""


@dataclasses.dataclass(frozen=True)
class Summary:
    """What a backup holds, from its manifest."""

    created_at: str
    schema_version: int
    counts: dict[str, int]
    uploads: int
    upload_bytes: int
    replaced: Path | None = None


def backup(data_dir: Path, target: Path, *, force: bool = False) -> Summary:
    """Write a backup of the store in DATA_DIR to TARGET, a tar file (gzipped if .tar.gz/.tgz)."""
    source = data_dir / DATABASE
    if not source.is_file():
        raise BackupError(f"no SQLite database at {source}: nothing to back up (check DATA_DIR)")
    if target.is_dir():
        raise BackupError(f"{target} is a directory: give a file name, e.g. {target / 'chat.tar'}")
    store_files = {
        (data_dir / n).resolve() for n in (DATABASE, f"{DATABASE}-wal", f"{DATABASE}-shm")
    }
    if target.resolve() in store_files:
        raise BackupError(f"{target} is the database itself: give another path")
    if target.exists() and not force:
        raise BackupError(f"{target} exists: give another path, or pass --force to replace it")
    if not target.parent.is_dir():
        raise BackupError(f"no directory {target.parent} to write {target.name} in")
    try:
        work = Path(tempfile.mkdtemp(prefix=".chat-backup-", dir=target.parent))
    except OSError as exc:
        raise BackupError(f"cannot write in {target.parent}: {exc.strerror}") from None
    try:
        snapshot, archive = work / DATABASE, work / "backup.tar"
        schema, counts = _snapshot(source, snapshot)
        try:
            gzip = target.name.endswith((".tar.gz", ".tgz"))
            manifest = _write_archive(archive, snapshot, data_dir / UPLOADS, schema, counts, gzip)
            os.replace(archive, target)
        except OSError as exc:
            raise BackupError(
                f"cannot write the backup to {target}: {exc.strerror or exc}"
            ) from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return _summary(manifest)


def restore(source: Path, data_dir: Path, *, force: bool = False) -> Summary:
    """Replace the store in DATA_DIR with the backup at SOURCE, after checking it whole."""
    if not source.is_file():
        raise BackupError(f"no backup at {source}" + (" (a directory)" if source.is_dir() else ""))
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        # In DATA_DIR, so that moving the restored files into place is a rename.
        work = Path(tempfile.mkdtemp(prefix=".restore-", dir=data_dir))
    except OSError as exc:
        raise BackupError(f"cannot write in {data_dir}: {exc.strerror}") from None
    try:
        manifest = _unpack(source, work)
        _check_database(work / DATABASE, source)
        summary = _summary(manifest)
        target = data_dir / DATABASE
        held = _target_holds(target, data_dir / UPLOADS)
        if held and not force:
            raise BackupError(
                f"{data_dir} already holds a chat ({held}): restoring would replace it; "
                "pass --force to do so (the replaced files are kept aside)"
            )
        replaced = _swap(work, data_dir, keep=bool(held))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return dataclasses.replace(summary, replaced=replaced)


# Backing up


def _snapshot(source: Path, snapshot: Path) -> tuple[int, dict[str, int]]:
    """Copy one consistent snapshot of the database; return its schema version and counts."""
    try:
        src = sqlite3.connect(_uri(source), uri=True, timeout=10)
    except sqlite3.Error as exc:
        raise BackupError(f"cannot open {source}: {exc}") from None
    dst = sqlite3.connect(snapshot)
    try:
        # One step (pages=-1) reads one snapshot: WAL readers do not block the chat's writers,
        # whereas a backup in several steps starts over whenever another process writes.
        src.backup(dst, pages=-1)
        # The copy keeps no WAL: one self-contained file.
        dst.execute("PRAGMA journal_mode = DELETE")
        return _verify(dst, source)
    except sqlite3.Error as exc:
        raise BackupError(f"cannot back up {source}: {exc}") from None
    finally:
        dst.close()
        src.close()


def _write_archive(
    archive: Path,
    snapshot: Path,
    uploads: Path,
    schema: int,
    counts: dict[str, int],
    gzip: bool,
) -> dict[str, Any]:
    """Write the tar file: the database, the uploads, then the manifest; return the manifest."""
    mode = "w:gz" if gzip else "w"
    files: dict[str, dict[str, Any]] = {}
    # 0600: a backup holds password hashes and session ids.
    fd = os.open(archive, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as raw:
        with tarfile.open(fileobj=raw, mode=mode) as tar:
            with open(snapshot, "rb") as file:
                files[DATABASE] = _add_open(tar, file, DATABASE)
            for path, name in _uploads(uploads):
                added = _add_upload(tar, path, name)
                if added is not None:
                    files[name] = added
            sizes = [v["size"] for k, v in files.items() if k != DATABASE]
            manifest = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "created_at": _now(),
                "schema_version": schema,
                "counts": counts,
                "uploads": {"files": len(sizes), "bytes": sum(sizes)},
                "files": files,
            }
            _add_bytes(tar, MANIFEST, json.dumps(manifest, indent=1).encode())
        raw.flush()
        os.fsync(raw.fileno())
    return manifest


def _uploads(root: Path) -> Iterator[tuple[Path, str]]:
    """Walk DATA_DIR/uploads: regular files only, never a link, nor a hidden (partial) file."""
    if not root.is_dir() or root.is_symlink():
        return
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            raise BackupError(f"cannot read {folder}: {exc.strerror}") from None
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir(follow_symlinks=False):
                stack.append(Path(entry.path))
            elif entry.is_file(follow_symlinks=False):
                relative = Path(entry.path).relative_to(root).as_posix()
                yield Path(entry.path), f"{UPLOADS}/{relative}"


def _add_upload(tar: tarfile.TarFile, path: Path, name: str) -> dict[str, Any] | None:
    """Add one upload, unless it went away meanwhile or became something else than a file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None  # deleted since the walk
    except OSError as exc:
        raise BackupError(f"cannot read {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
            return None
        return _add_open(tar, file, name)


def _add_open(tar: tarfile.TarFile, file: IO[bytes], name: str) -> dict[str, Any]:
    """Add an open file as NAME, hashing what is written."""
    info = tarfile.TarInfo(name)
    info.size = os.fstat(file.fileno()).st_size
    info.mode = 0o600
    info.mtime = int(dt.datetime.now(dt.UTC).timestamp())
    reader = _Hashing(file)
    tar.addfile(info, reader)
    return {"size": info.size, "sha256": reader.digest.hexdigest()}


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    """Add a small file made in memory."""
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o600
    info.mtime = int(dt.datetime.now(dt.UTC).timestamp())
    tar.addfile(info, io.BytesIO(data))


class _Hashing:
    """A reader that hashes what passes through it."""

    def __init__(self, file: IO[bytes]) -> None:
        self.file = file
        self.digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.file.read(size)
        self.digest.update(data)
        return data


# Restoring


def _unpack(source: Path, work: Path) -> dict[str, Any]:
    """Extract the backup into WORK, checking every name, size and hash against its manifest."""
    bad = f"{source} is not a backup made by manage.py backup, or it is damaged"
    found: dict[str, dict[str, Any]] = {}
    manifest: dict[str, Any] | None = None
    try:
        tar = tarfile.open(source, mode="r:*")
    except FileNotFoundError:
        raise BackupError(f"no backup at {source}") from None
    except PermissionError as exc:
        raise BackupError(f"cannot read {source}: {exc.strerror}") from None
    except (tarfile.TarError, EOFError, OSError, zlib.error):
        raise BackupError(f"{bad}: it is not a tar file") from None
    try:
        with tar:
            for member in tar:
                name = member.name
                if not member.isfile() or not _allowed(name):
                    raise BackupError(f"{bad}: unexpected entry {name!r}")
                if name in found or (name == MANIFEST and manifest is not None):
                    raise BackupError(f"{bad}: {name!r} appears twice")
                file = tar.extractfile(member)
                assert file is not None  # a regular file
                if name == MANIFEST:
                    if member.size > MANIFEST_MAX:
                        raise BackupError(f"{bad}: its manifest is too big")
                    manifest = _parse_manifest(file.read(), bad)
                else:
                    found[name] = {"size": member.size, "sha256": _extract(file, work / name)}
    except _Unwritable as exc:
        raise BackupError(f"cannot restore into {work.parent}: {exc}") from None
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        reason = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise BackupError(f"{bad}: {reason}") from None
    if manifest is None:
        raise BackupError(f"{bad}: it has no {MANIFEST}")
    if found != manifest["files"]:
        missing = sorted(set(manifest["files"]) - set(found))
        damaged = sorted(k for k in found if manifest["files"].get(k) != found[k])
        what = f"missing {missing[:3]}" if missing else f"its content differs: {damaged[:3]}"
        raise BackupError(f"{bad}: {what}")
    return manifest


class _Unwritable(Exception):
    """Writing a restored file failed (not the backup's fault)."""


def _extract(file: IO[bytes], destination: Path) -> str:
    """Copy one entry out of the archive; return its SHA-256."""
    digest = hashlib.sha256()
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        out = open(destination, "xb")  # closed below; write errors are told from read errors
    except OSError as exc:
        raise _Unwritable(exc.strerror or str(exc)) from None
    with out:
        while chunk := file.read(CHUNK):  # a damaged archive fails here
            digest.update(chunk)
            try:
                out.write(chunk)
            except OSError as exc:
                raise _Unwritable(exc.strerror or str(exc)) from None
        try:
            out.flush()
            os.fsync(out.fileno())
        except OSError as exc:
            raise _Unwritable(exc.strerror or str(exc)) from None
    return digest.hexdigest()


def _allowed(name: str) -> bool:
    """Say whether an entry's name is one a backup has: never absolute, never `..`."""
    if name in (MANIFEST, DATABASE):
        return True
    path = PurePosixPath(name)
    parts = path.parts
    return (
        len(parts) >= 2
        and parts[0] == UPLOADS
        and not path.is_absolute()
        and all(p not in ("", ".", "..") and not p.startswith(".") for p in parts)
        and "\\" not in name
    )


def _parse_manifest(raw: bytes, bad: str) -> dict[str, Any]:
    """Read the manifest; refuse one of another format or a newer version."""
    try:
        manifest = json.loads(raw)
        ok = (
            isinstance(manifest, dict)
            and manifest.get("format") == FORMAT
            and isinstance(manifest.get("format_version"), int)
            and isinstance(manifest.get("files"), dict)
            and isinstance(manifest.get("counts"), dict)
        )
    except (ValueError, UnicodeDecodeError):
        ok = False
    if not ok:
        raise BackupError(f"{bad}: its manifest cannot be read")
    if manifest["format_version"] > FORMAT_VERSION:
        raise BackupError(
            f"the backup is of format {manifest['format_version']}, newer than this release"
            f" reads ({FORMAT_VERSION}): restore it with the release that made it, or newer"
        )
    if DATABASE not in manifest["files"]:
        raise BackupError(f"{bad}: it holds no {DATABASE}")
    return manifest


def _check_database(path: Path, source: Path) -> None:
    """Refuse a database that fails SQLite's integrity check or is newer than this code."""
    try:
        conn = sqlite3.connect(_uri(path), uri=True)
    except sqlite3.Error as exc:
        raise BackupError(f"the database in {source} cannot be opened: {exc}") from None
    try:
        schema, _ = _verify(conn, source)
    except sqlite3.Error as exc:
        raise BackupError(f"the database in {source} is damaged: {exc}") from None
    finally:
        conn.close()
    if schema > len(MIGRATIONS):
        raise BackupError(
            f"the backup's schema version is {schema}, newer than this release's "
            f"({len(MIGRATIONS)}): upgrade the chat first, then restore"
        )


def _verify(conn: sqlite3.Connection, where: Path) -> tuple[int, dict[str, int]]:
    """Run SQLite's integrity check; return the schema version and the counts."""
    problems = [row[0] for row in conn.execute("PRAGMA integrity_check(10)")]
    if problems != ["ok"]:
        raise BackupError(f"the database in {where} is damaged: {'; '.join(problems[:3])}")
    (schema,) = conn.execute("PRAGMA user_version").fetchone()
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if not set(COUNTED) <= tables:
        raise BackupError(f"{where} is not the chat's database (it has no messages table)")
    counts = {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in COUNTED}
    return int(schema), counts


def _target_holds(target: Path, uploads: Path) -> str:
    """Describe what the store in DATA_DIR holds ('' when nothing); refuse while it is in use.

    A running chat keeps connections open, and SQLite will not take a database out of WAL mode
    while another connection has it open; doing so also folds the WAL into the file, which can
    then be moved as one.
    """
    held: list[str] = []
    if target.exists() and target.stat().st_size > 0:
        try:
            conn = sqlite3.connect(_uri(target), uri=True, timeout=0)
        except sqlite3.Error as exc:
            return f"a {DATABASE} that cannot be opened: {exc}"
        try:
            conn.execute("PRAGMA journal_mode = DELETE").fetchall()
            counts = {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in COUNTED}
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise BackupError(
                    f"{target} is in use: stop the chat (every process on this DATA_DIR), "
                    "then restore"
                ) from None
            return f"a {DATABASE} that cannot be read: {exc}"
        except sqlite3.DatabaseError as exc:
            return f"a {DATABASE} that cannot be read: {exc}"
        finally:
            conn.close()
        if counts["users"] or counts["messages"]:
            held.append(
                f"{_plural(counts['users'], 'account')}, {_plural(counts['messages'], 'message')}"
            )
    if uploads.is_dir() and any(True for _ in _uploads(uploads)):
        held.append("uploads")
    return ", ".join(held)


def _swap(work: Path, data_dir: Path, *, keep: bool) -> Path | None:
    """Move the restored files into DATA_DIR; the replaced ones into DATA_DIR/replaced-<time>."""
    target = data_dir / DATABASE
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    aside = data_dir / f"replaced-{stamp}"
    old = [data_dir / n for n in (DATABASE, f"{DATABASE}-wal", f"{DATABASE}-shm", UPLOADS)]
    try:
        if keep:
            aside.mkdir()
        for path in old:
            if path.exists() or path.is_symlink():
                if keep:
                    os.replace(path, aside / path.name)
                elif path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()  # an empty store, or a stale -wal/-shm that must not be replayed
        if (work / UPLOADS).is_dir():
            os.replace(work / UPLOADS, data_dir / UPLOADS)
        # The database last: until it is in place a chat started by mistake finds no data.
        os.replace(work / DATABASE, target)
        with contextlib.suppress(OSError):
            dir_fd = os.open(data_dir, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
    except OSError as exc:
        raise BackupError(
            f"restoring into {data_dir} failed midway: {exc.strerror or exc}"
            + (f"; the replaced files are in {aside}" if keep else "")
        ) from None
    return aside if keep else None


def _summary(manifest: dict[str, Any]) -> Summary:
    """Summarise a manifest."""
    uploads = manifest.get("uploads") or {}
    return Summary(
        created_at=str(manifest.get("created_at", "?")),
        schema_version=int(manifest.get("schema_version", 0)),
        counts={k: int(manifest["counts"].get(k, 0)) for k in COUNTED},
        uploads=int(uploads.get("files", 0)),
        upload_bytes=int(uploads.get("bytes", 0)),
    )


def _uri(path: Path) -> str:
    """Return an SQLite URI that opens an existing file read-write, never creating one."""
    return path.resolve().as_uri() + "?mode=rw"  # as_uri escapes a ? or # in the path


def _now() -> str:
    """Return the time now, UTC, as ISO 8601 with a Z."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _plural(count: int, noun: str) -> str:
    """Return e.g. '1 message' or '2 messages'."""
    return f"{count} {noun}{'' if count == 1 else 's'}"
