"""Who may do what: API keys, their roles per collection, and the admin key of a fresh install.

A key is `rag_<id>_<secret>`: the id finds the row, the secret is checked against a keyed hash
(HMAC-SHA256 with `<data_dir>/auth.secret`, compared in constant time). The secret is 256 random
bits, so a fast keyed hash is enough: a slow hash protects guessable passwords, and a copy of the
database is useless without the secret file. Keys are shown once, at creation.

Roles: `read` (search, ask, read documents, jobs, questions, traces and usage), `write` (plus
upload and delete documents), `admin` (everything, every collection, keys, creating and deleting
collections). A read/write key holds its role on every collection or on a listed set of existing
collections; a grant belongs to that collection (not its name) and ends when it is deleted. Anything a
key may not read is reported exactly as if it did not exist (404), so a key learns nothing about
other tenants; a key that may read a collection but not change it gets 403.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import socket
from collections.abc import Iterable
from dataclasses import dataclass

from rag import store
from rag.errors import NotFound, RagError
from rag.settings import Settings
from rag.store import Connections
from rag.store.dialect import dialect
from rag.store.files import write_atomic
from rag.store.pg_schema import ADMIN_KEY_LOCK

log = logging.getLogger(__name__)

ROLES = ("read", "write", "admin")
_RANK = {"read": 1, "write": 2, "admin": 3}
PREFIX = "rag_"


class Forbidden(RagError):
    code = "forbidden"
    status = 403


class Unauthorized(RagError):
    code = "unauthorized"
    status = 401


@dataclass(frozen=True)
class Principal:
    """The caller of one request: a key's role and grants (`grants` None: `role` on every collection)."""

    key_id: str
    role: str
    grants: dict[str, str] | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def role_on(self, collection: str) -> str | None:
        if self.is_admin:
            return "admin"
        return self.role if self.grants is None else self.grants.get(collection)

    def can_read(self, collection: str) -> bool:
        return self.role_on(collection) is not None

    def visible(self, collections: Iterable[str]) -> list[str]:
        return [c for c in collections if self.can_read(c)]

    def scope(self) -> list[str] | None:
        """Collections this key may read, or None for all of them."""
        if self.is_admin or self.grants is None:
            return None
        return sorted(self.grants)

    def require(self, collection: str, need: str = "read", *, missing: NotFound | None = None) -> None:
        """Raises `missing` (default: collection not found) when the key may not read `collection`,
        and 403 when it may read but `need` is more than its role there."""
        have = self.role_on(collection)
        if have is None:
            raise missing or NotFound(f"collection {collection!r} does not exist", code="collection_not_found")
        if _RANK[have] < _RANK[need]:
            raise Forbidden(f"this key may {have} collection {collection!r}, not {need} it")

    def require_admin(self) -> None:
        if not self.is_admin:
            raise Forbidden("this needs an admin key")


OPEN = Principal("anonymous", "admin")  # RAG_AUTH=off: one trusted user may do everything


@dataclass(frozen=True)
class NewKey:
    record: store.KeyRecord
    key: str  # the whole key, shown once


class KeyService:
    def __init__(self, settings: Settings, db: Connections):
        self.settings = settings
        self.db = db
        self._pepper = _load_or_create_secret(settings, db)

    def _hash(self, secret: str) -> bytes:
        return hmac.new(self._pepper, secret.encode(), hashlib.sha256).digest()

    def create(self, role: str, *, collections: list[str] | None = None, grants: dict[str, str] | None = None,
               name: str = "") -> NewKey:
        """A new key with `role` on `collections` (all when None), or with per-collection `grants`."""
        if role not in ROLES:
            raise RagError(f"role must be one of {', '.join(ROLES)}", code="invalid_role", status=422)
        if grants is None and collections:
            grants = {c: role for c in collections}
        if role == "admin":
            grants = None
        for c, r in (grants or {}).items():
            store.validate_collection_name(c)
            if r not in ("read", "write"):
                raise RagError("a grant's role is read or write (admin keys hold every collection)",
                               code="invalid_role", status=422)
        if grants:
            role = "write" if "write" in grants.values() else "read"  # the key's highest role, for listings
        key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
        record = store.insert_key(self.db.get(), key_id, name=name[:200], role=role, grants=grants,
                                  secret_hash=self._hash(secret))
        return NewKey(record, f"{PREFIX}{key_id}_{secret}")

    def list(self) -> list[store.KeyRecord]:
        return store.list_keys(self.db.get())

    def revoke(self, key_id: str) -> store.KeyRecord:
        return store.revoke_key(self.db.get(), key_id)

    def authenticate(self, token: str) -> Principal | None:
        """The key's principal, or None for anything that is not an active key."""
        if self.settings.admin_key and hmac.compare_digest(token.encode(), self.settings.admin_key.encode()):
            return Principal("env-admin", "admin")
        parts = token.split("_", 2)
        if len(parts) != 3 or f"{parts[0]}_" != PREFIX or not parts[1] or not parts[2]:
            return None
        record = store.find_key(self.db.get(), parts[1])
        if record is None or record.revoked_at is not None:
            return None
        if not hmac.compare_digest(record.secret_hash, self._hash(parts[2])):
            return None
        return Principal(record.id, record.role, record.grants)

    def bootstrap(self) -> None:
        """A fresh install gets an admin key in `<data_dir>/admin.key` (0600), unless RAG_ADMIN_KEY
        provides one or an active admin key exists already. The key itself is never logged.

        Several servers starting at once on one empty Postgres: the check and the creation run in one
        transaction under an advisory lock, so exactly one of them creates the key; its name records
        where it was written (host and path), which the others log."""
        if self.settings.admin_key:
            if len(self.settings.admin_key) < 16:
                raise RagError("RAG_ADMIN_KEY must be at least 16 characters", code="weak_admin_key", status=500)
            return
        conn = self.db.get()
        with store.transaction(conn):
            if dialect(conn) == "postgres":
                conn.execute("SELECT pg_advisory_xact_lock(?)", (ADMIN_KEY_LOCK,))
            existing = store.first_active_admin(conn)
            if existing is not None:
                log.info("an admin key exists already: %s (key id %s)", existing.name, existing.id)
                return
            path = self.settings.admin_key_path
            new = self.create("admin", name=f"admin (first start, in {socket.gethostname()}:{path})")
            # written before the row commits: a failed write leaves no key nobody can read
            write_atomic(path, (new.key + "\n").encode(), mode=0o600)
        log.warning("created the admin key: it is in %s (mode 0600); create other keys with `rag keys create`", path)


def open_keys(settings: Settings) -> KeyService:
    """The key service over the configured database, without loading any model (`rag keys`)."""
    from rag.store import open_store

    return KeyService(settings, open_store(settings))


def _load_or_create_secret(settings: Settings, db: Connections) -> bytes:
    """The install's key-hashing secret: a 0600 file under `data_dir`, or, with Postgres, a row every
    process shares (the first one to start writes it)."""
    conn = db.get()
    if dialect(conn) == "postgres":
        with store.transaction(conn):
            conn.execute("INSERT INTO install_secrets (name, value) VALUES ('auth', ?) ON CONFLICT DO NOTHING",
                         (secrets.token_bytes(32),))
            return bytes(conn.execute("SELECT value FROM install_secrets WHERE name = 'auth'").fetchone()[0])
    data = install_secret(settings, conn)
    if data is None:
        data = secrets.token_bytes(32)
        write_atomic(settings.data_dir / "auth.secret", data, mode=0o600)
    return data


def install_secret(settings: Settings, conn: store.Connection) -> bytes | None:
    """The key-hashing secret where this install keeps it, without making one (None: no key was ever made)."""
    if dialect(conn) == "postgres":
        row = conn.execute("SELECT value FROM install_secrets WHERE name = 'auth'").fetchone()
        return None if row is None else bytes(row[0])
    try:
        data = (settings.data_dir / "auth.secret").read_bytes()
    except FileNotFoundError:
        return None
    return data if len(data) >= 32 else None


def adopt_secret(settings: Settings, conn: store.Connection, secret: bytes) -> None:
    """Makes `secret` this install's key-hashing secret (`rag import --include-keys`, which checks that no
    key here depends on the old one). With Postgres inside the caller's transaction."""
    if dialect(conn) == "postgres":
        conn.execute("INSERT INTO install_secrets (name, value) VALUES ('auth', ?)"
                     " ON CONFLICT (name) DO UPDATE SET value = excluded.value", (secret,))
        return
    write_atomic(settings.data_dir / "auth.secret", secret, mode=0o600)
