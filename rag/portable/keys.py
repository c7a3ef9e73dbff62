"""API keys in an export (`--include-keys` on both commands): keyed hashes, never a key.

A key's hash is an HMAC with its install's secret (`rag.service.auth`), so hashes alone would be
useless elsewhere: the export carries the secret they were made with, and an import adopts it. That
is only safe where no key of the target depends on another secret: a target whose secret differs and
that has keys of its own is refused (`key_secret_mismatch`); import keys before a new deployment's
first start, or create keys there instead. A key already there (same id) is kept as it is; a grant
follows its collection by name to the imported collection (grants of collections not imported are
dropped, and a collection export carries only the keys granted something in it, and admin keys).
"""

from __future__ import annotations

from pathlib import Path

from rag.errors import Conflict
from rag.portable.format import KEY_SECRET, KEYS, Manifest, MemberWriter, read_jsonl
from rag.service.auth import adopt_secret, install_secret
from rag.settings import Settings
from rag.store import Connection, find_key, insert_key, list_keys


def write_keys(conn: Connection, out: Path, manifest: Manifest, secret: bytes) -> None:
    """The keys that matter to the exported collections, and the secret they were hashed with."""
    names = {c.name for c in manifest.collections}
    rows = MemberWriter(out, KEYS)
    for k in list_keys(conn):
        grants = None if k.grants is None else {c: r for c, r in k.grants.items() if c in names}
        if grants == {} and k.grants:  # scoped to collections this export does not carry
            continue
        rows.row({"id": k.id, "name": k.name, "role": k.role, "grants": grants, "secret_hash": k.secret_hash.hex(),
                  "created_at": k.created_at, "revoked_at": k.revoked_at})
    manifest.members[KEYS] = rows.close()
    raw = MemberWriter(out, KEY_SECRET)
    raw.write(secret, 1)
    manifest.members[KEY_SECRET] = raw.close()
    manifest.keys = True


def import_keys(conn: Connection, root: Path, settings: Settings) -> int:
    """Inside the import's transaction: the keys it lacks, then their secret made this install's. Returns keys added."""
    secret = (root / KEY_SECRET).read_bytes()
    here = install_secret(settings, conn)
    if here is not None and here != secret and list_keys(conn):
        raise Conflict("this store hashes its keys with another secret and has keys of its own: import keys into a "
                       "deployment before its first start, or import without --include-keys and create keys here",
                       code="key_secret_mismatch")
    existing = {r[0] for r in conn.execute("SELECT name FROM collections")}
    added = 0
    for row in read_jsonl(root, KEYS):
        if find_key(conn, row["id"]) is not None:
            continue
        grants = None if row["grants"] is None else {c: r for c, r in row["grants"].items() if c in existing}
        insert_key(conn, row["id"], name=row["name"], role=row["role"], grants=grants,
                   secret_hash=bytes.fromhex(row["secret_hash"]), created_at=row["created_at"],
                   revoked_at=row["revoked_at"])
        added += 1
    if here != secret:
        adopt_secret(settings, conn, secret)
    return added
