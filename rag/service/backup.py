"""`rag backup` / `rag restore` of the embedded backend's data dir, safe while a server runs and ingests.

What a backup holds, and why it is consistent with itself:

* `rag.sqlite3`: the database, copied with SQLite's online backup API in one step, so it is one
  committed state (WAL: the server's writers do not wait for it). It is the source of truth.
* `uploads/<job id>`: the stored bytes of every job that is queued or running *in that copy*, so a
  restored server re-runs them as it does after a crash. Upload bytes are durable before their job
  row is committed and deleted only after the job is done, so they are copied before the database
  (everything present then) and the ones that appeared meanwhile right after it; a job that
  finished in between leaves its bytes gone and the whole backup is taken again.
* `indexes/<uid>/dense-<seq>-<crc>.faiss`: a collection's saved FAISS file only when its seq is the
  copied database's `change_seq` for that collection, i.e. exactly the copied chunks. Otherwise
  none: the derived indexes are rebuilt from the stored vectors at the restored server's start
  (`IndexManager.open`, the same repair a crash gets), and BM25 always is.
* `auth.secret` and `admin.key`: the key-hashing secret (without it no stored key verifies) and the
  admin key a first start wrote.
* `manifest.json`, written last: format and version, time, counts, and each file's size and sha256.
  The prepared-model cache (`models/`) is not part of a backup: it is rebuilt by `rag models prepare`.

A backup is written to `.<name>.partial-<random>` next to its target and swapped into place only
when complete (`renameat2(RENAME_EXCHANGE)` where the platform has it), so a backup killed at any
point leaves the previous one at the target untouched. `restore` verifies every checksum before it
touches anything, copies into a temp folder next to the data dir and swaps it in the same way.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import datetime as dt
import errno
import hashlib
import json
import os
import shutil
import sqlite3
import uuid
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from rag import __version__
from rag.errors import Conflict, NotFound, RagError
from rag.index.dense import saved_files
from rag.settings import Settings
from rag.store import StoreLocation
from rag.store.datadir_lock import LOCK_NAME, DataDirLock
from rag.store.files import fsync_dir

FORMAT = "rag-backup"
VERSION = 1
MANIFEST = "manifest.json"
DB_NAME = "rag.sqlite3"
SECRETS = ("auth.secret", "admin.key")  # top-level files of a data dir a backup carries, mode kept
ATTEMPTS = 5  # a job finishing between the upload and database copies costs one more attempt

Step = Callable[[str], None]


class BackupDamaged(RagError):
    """A backup whose manifest is missing or unreadable, or whose files differ from it."""

    code = "backup_damaged"
    status = 422


class BackupUnsupported(RagError):
    code = "backup_unsupported"
    status = 422


@dataclass(frozen=True)
class BackupSummary:
    path: Path
    collections: int
    documents: int
    chunks: int
    pending_jobs: int
    files: int
    bytes: int
    indexes_copied: int  # collections whose FAISS file came along; the others are rebuilt at start


# ------------------------------------------------------------------------------------------- backup


def create_backup(settings: Settings, target: Path, *, on_step: Step | None = None) -> BackupSummary:
    """Writes a complete backup of `settings.data_dir` to `target`, replacing an earlier backup there."""
    step = on_step or (lambda _: None)
    _require_embedded(settings, "`rag backup`", "pg_dump -Fc")
    source = Path(settings.data_dir)
    if not (source / DB_NAME).is_file():
        raise NotFound(f"{source} has no database ({DB_NAME}): nothing to back up", code="data_dir_empty")
    target = Path(target).absolute()
    _check_replaceable(target)
    _remove_stale(target, "partial")
    with DataDirLock(source, exclusive=False):
        for attempt in range(1, ATTEMPTS + 1):
            staging = _temp_beside(target, "partial")
            try:
                summary = _stage(source, staging, step)
            except _UploadGone:
                shutil.rmtree(staging, ignore_errors=True)
                step(f"a job finished while its bytes were copied: attempt {attempt + 1}")
                continue
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            _swap_into_place(staging, target)
            step(f"backup complete: {target}")
            return BackupSummary(target, *summary)
    raise Conflict(f"jobs kept finishing during {ATTEMPTS} attempts to copy their bytes; try again",
                   code="backup_busy")


class _UploadGone(Exception):
    pass


def _stage(source: Path, staging: Path, step: Step) -> tuple:
    (staging / "uploads").mkdir(parents=True)
    early = _copy_uploads(source / "uploads", staging / "uploads", None)
    step(f"uploads: {len(early)} file(s) copied")
    db = staging / DB_NAME
    _online_copy(source / DB_NAME, db)
    step(f"database: {db.stat().st_size:,} bytes copied")
    with closing(sqlite3.connect(db)) as conn:
        if (check := conn.execute("PRAGMA integrity_check").fetchone()[0]) != "ok":
            raise BackupDamaged(f"the copied database fails its integrity check: {check}")
        pending = {r[0] for r in conn.execute("SELECT id FROM ingestion_jobs WHERE status IN ('queued', 'running')")}
        collections = conn.execute("SELECT name, uid, change_seq FROM collections").fetchall()
        documents = conn.execute("SELECT count(*) FROM documents").fetchone()[0]
        chunks = conn.execute("SELECT count(*) FROM chunks").fetchone()[0]
    late = _copy_uploads(source / "uploads", staging / "uploads", pending - early)
    if pending - early - late:
        raise _UploadGone()
    for name in early - pending:
        (staging / "uploads" / name).unlink()  # done, or not yet acknowledged, in the copied database
    copied = _copy_indexes(source / "indexes", staging / "indexes", collections)
    step(f"indexes: {copied} of {len(collections)} collection(s) copied, the others rebuilt at start")
    for name in SECRETS:
        if (source / name).is_file():
            shutil.copy2(source / name, staging / name)
    files = _checksums(staging)
    manifest = {
        "format": FORMAT, "version": VERSION, "created_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        "rag_version": __version__, "source": str(source),
        "counts": {"collections": len(collections), "documents": documents, "chunks": chunks,
                   "pending_jobs": len(pending)},
        "collections": [{"name": n, "uid": u, "change_seq": s,
                         "index": "copied" if (staging / "indexes" / u).is_dir() else "rebuilt at start"}
                        for n, u, s in collections],
        "files": files,
    }
    _write_durably(staging / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode())
    _fsync_tree(staging)
    return (len(collections), documents, chunks, len(pending), len(files),
            sum(f["bytes"] for f in files.values()), copied)


def _online_copy(src: Path, dst: Path) -> None:
    """SQLite's backup API, all pages in one step: one committed state, the server's writers unblocked
    (WAL). The copy is switched to a rollback journal so it is a single self-contained file."""
    with closing(sqlite3.connect(src, timeout=30)) as s, \
            closing(sqlite3.connect(dst)) as d:
        s.backup(d)
        d.execute("PRAGMA journal_mode = DELETE")


def _copy_uploads(src: Path, dst: Path, only: set[str] | None) -> set[str]:
    """Copies stored upload bytes (`only`: just these names); a file deleted meanwhile is skipped.
    Temp files of an upload being written (dot-names) are not stored uploads yet."""
    names = only if only is not None else {p.name for p in src.iterdir()} if src.is_dir() else set()
    copied = set()
    for name in sorted(names):
        if name.startswith("."):
            continue
        try:
            shutil.copyfile(src / name, dst / name)
        except FileNotFoundError:
            continue
        copied.add(name)
    return copied


def _copy_indexes(src: Path, dst: Path, collections: list) -> int:
    copied = 0
    for _, uid, seq in collections:
        exact = [p for s, p in saved_files(src / uid) if s == seq]
        if not exact:
            continue
        (dst / uid).mkdir(parents=True, exist_ok=True)
        try:
            shutil.copyfile(exact[0], dst / uid / exact[0].name)
            copied += 1
        except FileNotFoundError:  # superseded by a newer save meanwhile: rebuilt at start instead
            shutil.rmtree(dst / uid)
    return copied


# ------------------------------------------------------------------------------------------ restore


@dataclass(frozen=True)
class RestoreSummary:
    data_dir: Path
    manifest: dict


def verify_backup(backup: Path) -> dict:
    """The backup's manifest, after checking every file against it (sizes, sha256, nothing missing
    and nothing added). Raises `backup_damaged` or `backup_unsupported`."""
    backup = Path(backup)
    try:
        manifest = json.loads((backup / MANIFEST).read_text())
        files = manifest["files"]
    except FileNotFoundError:
        raise BackupDamaged(f"{backup} is not a backup: no {MANIFEST} (an unfinished backup has none)") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise BackupDamaged(f"{backup / MANIFEST} is unreadable: {exc}") from None
    if manifest.get("format") != FORMAT or not isinstance(manifest.get("version"), int):
        raise BackupDamaged(f"{backup / MANIFEST} is not a {FORMAT} manifest")
    if manifest["version"] > VERSION:
        raise BackupUnsupported(f"backup format {manifest['version']} is newer than this version reads ({VERSION}); "
                                f"restore it with rag {manifest.get('rag_version')} or later")
    actual = _checksums(backup)
    problems = [f"{name}: missing" for name in sorted(set(files) - set(actual))]
    problems += [f"{name}: not in the manifest" for name in sorted(set(actual) - set(files))]
    problems += [f"{name}: sha256 {actual[name]['sha256'][:12]}…, the manifest says {files[name]['sha256'][:12]}…"
                 for name in sorted(set(files) & set(actual)) if actual[name] != files[name]]
    if problems:
        raise BackupDamaged(f"{backup} differs from its manifest: " + "; ".join(problems[:5])
                            + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""))
    return manifest


def restore_backup(settings: Settings, backup: Path, *, force: bool = False, on_step: Step | None = None) -> RestoreSummary:
    """Replaces `settings.data_dir` with the verified backup. Refuses a folder a process uses, and a
    non-empty one unless `force` (its prepared models, `models/`, are kept)."""
    step = on_step or (lambda _: None)
    _require_embedded(settings, "`rag restore`", "pg_restore")
    backup = Path(backup).absolute()
    manifest = verify_backup(backup)
    step(f"verified {len(manifest['files'])} file(s) against the manifest")
    target = Path(settings.data_dir).absolute()
    _remove_stale(target, "restoring")
    with DataDirLock(target, exclusive=True):
        leftovers = [p.name for p in target.iterdir() if p.name != LOCK_NAME]
        if leftovers and not force:
            raise Conflict(f"{target} is not empty ({', '.join(sorted(leftovers)[:5])}); "
                           "restore into an empty folder, or pass --force to replace it", code="data_dir_not_empty")
        staging = _temp_beside(target, "restoring")
        try:
            _copy_verified(backup, staging, manifest["files"])
            if (target / "models").is_dir():
                os.rename(target / "models", staging / "models")  # a cache worth keeping (minutes to prepare)
            _fsync_tree(staging)
            _swap_into_place(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    step(f"restored into {target}; indexes not in the backup are rebuilt at the next start")
    return RestoreSummary(target, manifest)


def _copy_verified(backup: Path, staging: Path, files: dict) -> None:
    """Copies the files, hashing what was written: a file changed since `verify_backup` is refused too."""
    staging.mkdir(parents=True)
    for name, expected in files.items():
        dst = staging / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(backup / name, dst)
        if _file_sum(dst) != expected:
            raise BackupDamaged(f"{backup / name} changed while it was restored")


# ------------------------------------------------------------------------------------------- shared


def _require_embedded(settings: Settings, command: str, tool: str) -> None:
    if StoreLocation.from_settings(settings).shared:
        raise RagError(f"{command} copies the embedded store (SQLite under RAG_DATA_DIR); with RAG_DATABASE_URL "
                       f"use PostgreSQL's {tool} (README: Backups)", code="invalid_setting")


def _check_replaceable(target: Path) -> None:
    """A backup replaces only an earlier backup (or an empty folder), never other files."""
    if target.is_dir() and any(target.iterdir()) and not (target / MANIFEST).is_file():
        raise Conflict(f"{target} exists and is not a backup (no {MANIFEST}); choose another folder",
                       code="backup_target_not_empty")
    if target.exists() and not target.is_dir():
        raise Conflict(f"{target} exists and is not a folder", code="backup_target_not_empty")


def _temp_beside(target: Path, kind: str) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    return target.parent / f".{target.name}.{kind}-{uuid.uuid4().hex[:12]}"


def _remove_stale(target: Path, kind: str) -> None:
    """Temp folders a killed backup or restore of this target left behind."""
    if target.parent.is_dir():
        for p in target.parent.glob(f".{target.name}.{kind}-*"):
            shutil.rmtree(p, ignore_errors=True)


def _swap_into_place(staging: Path, target: Path) -> None:
    """Makes the complete `staging` folder `target`: an atomic exchange where the kernel offers one,
    else two renames (a crash between them leaves the old folder as `.<name>.replaced-*`)."""
    if target.exists():
        if not _exchange(staging, target):
            old = _temp_beside(target, "replaced")
            os.rename(target, old)
            os.rename(staging, target)
            staging = old
        fsync_dir(target.parent)
        shutil.rmtree(staging, ignore_errors=True)  # now the previous contents
    else:
        os.rename(staging, target)
    fsync_dir(target.parent)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Linux `renameat2(RENAME_EXCHANGE)`: both names swap at once. False where it is not available."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError, TypeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _file_sum(path: Path) -> dict:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return {"bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def _checksums(folder: Path) -> dict[str, dict]:
    """Every file under `folder` but the manifest, by its relative POSIX path."""
    return {p.relative_to(folder).as_posix(): _file_sum(p)
            for p in sorted(folder.rglob("*")) if p.is_file() and p.relative_to(folder).as_posix() != MANIFEST}


def _write_durably(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _fsync_tree(folder: Path) -> None:
    for p in sorted(folder.rglob("*"), reverse=True):
        if p.is_file():
            with open(p, "rb") as fh:
                os.fsync(fh.fileno())
        else:
            fsync_dir(p)
    fsync_dir(folder)
