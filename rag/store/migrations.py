"""The database schema, and the only place it changes: numbered migrations applied in order.

To change the schema, append a `Migration(N, "mNNN_name", ...)` to `MIGRATIONS` (never edit or
renumber one that has shipped). Each migration runs in its own transaction together with its
`schema_migrations` row and `PRAGMA user_version = N`, so a crash leaves the database either
before or after it, never half-way. `migrate()` is idempotent and safe to call from several
processes at once (the version is re-read after taking the write lock).

A migration is SQL text (several statements allowed; never `BEGIN`/`COMMIT`) or a function
`(conn) -> None` that must not commit.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass

from rag.errors import RagError
from rag.store.connection import Connection
from rag.store.db import transaction, utcnow


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    apply: str | Callable[[Connection], None]  # shared with rag.store.pg_schema


M001_INITIAL = """
-- A named set of documents. Search never crosses collections.
-- uid: random, never reused; derived index files live under <index_dir>/<uid>/ so a collection
--      deleted and re-created under the same name can never pick up the old files.
-- change_seq: bumped in the same transaction as every document add/delete; derived indexes
--      record the seq they include.
-- embed_model/embed_dim: the embedder every vector in the collection comes from (NULL while empty).
CREATE TABLE collections (
    name        TEXT PRIMARY KEY NOT NULL,
    uid         TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    created_at  TEXT NOT NULL,
    change_seq  INTEGER NOT NULL DEFAULT 0 CHECK (change_seq >= 0),
    embed_model TEXT,
    embed_dim   INTEGER CHECK (embed_dim IS NULL OR embed_dim > 0)
);

INSERT INTO collections (name, uid, description, created_at)
VALUES ('default', lower(hex(randomblob(16))), 'Created at installation.',
        strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));

CREATE TABLE documents (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    collection  TEXT NOT NULL REFERENCES collections(name) ON DELETE CASCADE,
    filename    TEXT NOT NULL,
    format      TEXT NOT NULL,
    sha256      TEXT NOT NULL CHECK (length(sha256) = 64),
    size_bytes  INTEGER NOT NULL CHECK (size_bytes >= 0),
    page_count  INTEGER NOT NULL DEFAULT 0,
    title       TEXT,
    encoding    TEXT,
    chunk_count INTEGER NOT NULL DEFAULT 0,
    created_at  TEXT NOT NULL,
    status      TEXT NOT NULL DEFAULT 'ready' CHECK (status IN ('ready')),
    UNIQUE (collection, sha256)
);

-- id is the FAISS id. AUTOINCREMENT: ids are never reused, so a stale index can never mistake
-- a new chunk for a deleted one with the same id.
CREATE TABLE chunks (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    document_id  INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    collection   TEXT NOT NULL,
    ordinal      INTEGER NOT NULL,
    text         TEXT NOT NULL,
    char_start   INTEGER NOT NULL,
    char_end     INTEGER NOT NULL,
    page         INTEGER,
    section_path TEXT NOT NULL DEFAULT '[]',
    token_count  INTEGER NOT NULL,
    prev_id      INTEGER,
    next_id      INTEGER,
    UNIQUE (document_id, ordinal)
);
CREATE INDEX chunks_by_collection ON chunks (collection, id);

-- The embedding of each chunk, so FAISS can be rebuilt without re-embedding.
-- vector: little-endian float32, dim * 4 bytes, exactly as the embedder produced it.
CREATE TABLE chunk_vectors (
    chunk_id INTEGER PRIMARY KEY REFERENCES chunks(id) ON DELETE CASCADE,
    model    TEXT NOT NULL,
    dim      INTEGER NOT NULL CHECK (dim > 0),
    vector   BLOB NOT NULL CHECK (length(vector) = dim * 4)
);

-- Cached lexical analysis of each chunk (a derived cache, rebuilt from chunks.text when missing
-- or when `analyzer` differs from the running code), so start-up never re-runs jieba/OpenCC on
-- the whole corpus. terms: distinct terms joined by ' '; tfs: uint16 LE counts, same order.
CREATE TABLE chunk_terms (
    chunk_id INTEGER PRIMARY KEY REFERENCES chunks(id) ON DELETE CASCADE,
    analyzer TEXT NOT NULL,
    terms    TEXT NOT NULL,
    tfs      BLOB NOT NULL
);

-- Ingestion jobs are history: they survive the deletion of their document and of their
-- collection (no foreign keys), so a client polling a job always gets an answer.
CREATE TABLE ingestion_jobs (
    id            TEXT PRIMARY KEY NOT NULL,
    collection    TEXT NOT NULL,
    filename      TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed')),
    document_id   INTEGER,
    progress      TEXT NOT NULL DEFAULT '{}',
    error_code    TEXT,
    error_message TEXT,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    started_at    TEXT,
    finished_at   TEXT
);
CREATE INDEX ingestion_jobs_by_collection ON ingestion_jobs (collection, created_at);
CREATE INDEX ingestion_jobs_unfinished ON ingestion_jobs (status) WHERE status IN ('queued', 'running');
"""


M002_LEDGER = """
-- One row per question asked. Totals are the sums over model_calls, kept here for cheap listing.
-- status: running while the loop runs; answered | abstained | stopped (a budget ended it) | failed.
-- budget/options: the exact settings the loop ran with (JSON), so `rag replay` can re-run it.
-- result/trace: the final response object and the full audit trace (JSON), also for failures.
CREATE TABLE questions (
    id                   TEXT PRIMARY KEY NOT NULL,
    collection           TEXT NOT NULL,
    question             TEXT NOT NULL,
    status               TEXT NOT NULL CHECK (status IN ('running', 'answered', 'abstained', 'stopped', 'failed')),
    answer               TEXT,
    abstained            INTEGER,
    stopped_by           TEXT,
    error_code           TEXT,
    error_message        TEXT,
    model_calls          INTEGER NOT NULL DEFAULT 0,
    prompt_tokens        INTEGER NOT NULL DEFAULT 0,
    completion_tokens    INTEGER NOT NULL DEFAULT 0,
    cached_prompt_tokens INTEGER NOT NULL DEFAULT 0,
    seconds              REAL,
    budget               TEXT NOT NULL,
    options              TEXT NOT NULL,
    models               TEXT NOT NULL DEFAULT '{}',
    result               TEXT,
    trace                TEXT,
    created_at           TEXT NOT NULL,
    finished_at          TEXT
);
CREATE INDEX questions_by_collection ON questions (collection, created_at);
CREATE INDEX questions_by_time ON questions (created_at);

-- Every model call, written (committed) as soon as it returns, so a question that fails or whose
-- streaming client disconnects still accounts for what it cost.
CREATE TABLE model_calls (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    question_id          TEXT NOT NULL REFERENCES questions(id) ON DELETE CASCADE,
    n                    INTEGER NOT NULL,
    purpose              TEXT NOT NULL,
    model_id             TEXT NOT NULL,
    prompt_tokens        INTEGER NOT NULL CHECK (prompt_tokens >= 0),
    completion_tokens    INTEGER NOT NULL CHECK (completion_tokens >= 0),
    cached_prompt_tokens INTEGER NOT NULL DEFAULT 0,
    wall_ms              REAL NOT NULL,
    created_at           TEXT NOT NULL,
    UNIQUE (question_id, n)
);
"""


M003_CHUNK_WINDOWS = """
-- Sub-chunk windows of chunks longer than the window size (see rag.index.windows): their spans
-- within the chunk's text and their vectors (float32 LE, as in chunk_vectors). A chunk without
-- rows here is its own only window. The chunk's vector in chunk_vectors is their pooled mean.
-- A rowid table: WITHOUT ROWID stored these 1.5 KB rows at 3x their size.
CREATE TABLE chunk_windows (
    chunk_id   INTEGER NOT NULL REFERENCES chunks(id) ON DELETE CASCADE,
    n          INTEGER NOT NULL CHECK (n >= 0),
    char_start INTEGER NOT NULL,
    char_end   INTEGER NOT NULL CHECK (char_end > char_start),
    dim        INTEGER NOT NULL CHECK (dim > 0),
    vector     BLOB NOT NULL CHECK (length(vector) = dim * 4),
    PRIMARY KEY (chunk_id, n)
);
"""


M004_CALL_RUNTIME = """
-- Which runtime served each model call (transformers | llamacpp): with two runtimes and two
-- generators, the model id alone no longer says how a call was computed. '' for calls recorded
-- before this migration.
ALTER TABLE model_calls ADD COLUMN runtime TEXT NOT NULL DEFAULT '';
"""


M005_API_KEYS = """
-- API keys. Only a keyed hash of the secret is stored (HMAC-SHA256 with the install's auth secret,
-- `<data_dir>/auth.secret`), never the key. grants: JSON {collection: role} with role read|write,
-- or NULL for every collection; admin keys may do everything. A revoked key keeps its row
-- (history: questions and usage stay attributable) and never authenticates again.
CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL DEFAULT '',
    role        TEXT NOT NULL CHECK (role IN ('read', 'write', 'admin')),
    grants      TEXT,
    secret_hash BLOB NOT NULL,
    created_at  TEXT NOT NULL,
    revoked_at  TEXT
);
"""


M006_DOCUMENT_LANGUAGE = """
-- The language of a document's text (rag.text.lang: zh-Hans | zh-Hant | en), detected at ingestion
-- over an evenly spaced sample of its chunks. NULL for documents stored before this migration.
ALTER TABLE documents ADD COLUMN language TEXT;
"""


M007_JOB_CANCELLED = """
-- A job a client cancelled (DELETE /v1/jobs/{id}) finishes as `cancelled`. SQLite cannot change a
-- CHECK constraint in place: the table is rebuilt with the same columns, rows and indexes.
CREATE TABLE ingestion_jobs_new (
    id            TEXT PRIMARY KEY NOT NULL,
    collection    TEXT NOT NULL,
    filename      TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed', 'cancelled')),
    document_id   INTEGER,
    progress      TEXT NOT NULL DEFAULT '{}',
    error_code    TEXT,
    error_message TEXT,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    started_at    TEXT,
    finished_at   TEXT
);
INSERT INTO ingestion_jobs_new (id, collection, filename, status, document_id, progress, error_code, error_message,
                                created_at, updated_at, started_at, finished_at)
    SELECT id, collection, filename, status, document_id, progress, error_code, error_message,
           created_at, updated_at, started_at, finished_at FROM ingestion_jobs ORDER BY rowid;
DROP TABLE ingestion_jobs;
ALTER TABLE ingestion_jobs_new RENAME TO ingestion_jobs;
CREATE INDEX ingestion_jobs_by_collection ON ingestion_jobs (collection, created_at);
CREATE INDEX ingestion_jobs_unfinished ON ingestion_jobs (status) WHERE status IN ('queued', 'running');
"""


M008_CALL_SERVER = """
-- Which server answered each model call (the base URL of an OpenAI-compatible server; '' for an
-- in-process runtime), and whether the call failed (a server that went away mid-answer): a failed
-- call is recorded with what it had cost when it failed.
ALTER TABLE model_calls ADD COLUMN server TEXT NOT NULL DEFAULT '';
ALTER TABLE model_calls ADD COLUMN status TEXT NOT NULL DEFAULT 'ok' CHECK (status IN ('ok', 'failed'));
"""


M009_KEY_GRANTS = """
-- A grant belongs to one collection, not to a name: it refers to the collection's uid (new at
-- every creation) and goes with it when the collection is deleted, so a collection created later
-- under the same name is not readable by an old key. `scoped` says the key holds only its listed
-- grants (0: its role on every collection). Grants whose collection no longer existed are dropped.
CREATE TABLE key_grants (
    key_id         TEXT NOT NULL REFERENCES api_keys(id) ON DELETE CASCADE,
    collection_uid TEXT NOT NULL REFERENCES collections(uid) ON DELETE CASCADE,
    role           TEXT NOT NULL CHECK (role IN ('read', 'write')),
    PRIMARY KEY (key_id, collection_uid)
);
CREATE INDEX key_grants_collection ON key_grants(collection_uid);
ALTER TABLE api_keys ADD COLUMN scoped INTEGER NOT NULL DEFAULT 0 CHECK (scoped IN (0, 1));
UPDATE api_keys SET scoped = 1 WHERE grants IS NOT NULL;
INSERT INTO key_grants (key_id, collection_uid, role)
SELECT k.id, c.uid, g.value FROM api_keys k, json_each(k.grants) g JOIN collections c ON c.name = g.key
WHERE k.grants IS NOT NULL AND g.value IN ('read', 'write');
ALTER TABLE api_keys DROP COLUMN grants;
"""


M010_QUESTION_FEEDBACK = """
-- A rating of a question's answer (up or down, an optional comment) by a key that may read its
-- collection: one per key and question, the latest replacing the earlier. Kept with the ledger so
-- an export joins question, answer, citations, context and ratings into evaluation data.
CREATE TABLE question_feedback (
    question_id TEXT NOT NULL REFERENCES questions(id) ON DELETE CASCADE,
    key_id      TEXT NOT NULL,
    rating      TEXT NOT NULL CHECK (rating IN ('up', 'down')),
    comment     TEXT NOT NULL DEFAULT '',
    created_at  TEXT NOT NULL,
    PRIMARY KEY (question_id, key_id)
);
"""


M011_CONVERSATIONS = """
-- Conversations: a collection's sequence of questions. A turn is an ordinary question (its ledger row,
-- calls, trace, replay and usage unchanged) with a parent: its conversation and its index there (0, 1, ...).
-- Deleting a collection deletes its conversations; deleting a conversation keeps its questions in the
-- ledger (their cost stays counted), no longer reachable as turns.
CREATE TABLE conversations (
    id          TEXT PRIMARY KEY NOT NULL,
    collection  TEXT NOT NULL REFERENCES collections(name) ON DELETE CASCADE,
    title       TEXT NOT NULL DEFAULT '',
    created_at  TEXT NOT NULL
);
CREATE INDEX conversations_by_collection ON conversations (collection, created_at);
ALTER TABLE questions ADD COLUMN conversation_id TEXT;
ALTER TABLE questions ADD COLUMN turn INTEGER;
-- one question per turn: two turns asked at once in one conversation cannot take the same index
CREATE UNIQUE INDEX questions_by_turn ON questions (conversation_id, turn) WHERE conversation_id IS NOT NULL;
"""


M012_SERVERS = """
-- Every process that answers questions (`rag serve`, `rag ask`, `rag mcp`, ...) has a row while it lives:
-- where it runs and its heartbeat (seconds since the epoch by the database's clock), renewed a few
-- times per `RAG_SERVER_LEASE_S`. A question records the process answering it, so when that process
-- dies (its heartbeat older than the lease, or, on its own host, its pid gone) another one closes the
-- question as `interrupted`, its model calls kept in the ledger (rag.store.servers).
CREATE TABLE servers (
    id         TEXT PRIMARY KEY NOT NULL,
    host       TEXT NOT NULL,
    pid        INTEGER NOT NULL,
    data_dir   TEXT NOT NULL,
    started_at TEXT NOT NULL,
    heartbeat  DOUBLE PRECISION NOT NULL
);
ALTER TABLE questions ADD COLUMN server_id TEXT;
CREATE INDEX questions_running ON questions (server_id) WHERE status = 'running';

-- Per-key limits shared by every server of a Postgres store (rag.store.limits; the embedded store's one
-- process counts in memory): a fixed window per key and limit (requests, model calls, upload bytes),
-- started at its first use (`started`: seconds since the epoch, the database's clock) ...
CREATE TABLE rate_windows (
    key_id  TEXT NOT NULL,
    name    TEXT NOT NULL,
    started DOUBLE PRECISION NOT NULL,
    used    BIGINT NOT NULL CHECK (used >= 0),
    PRIMARY KEY (key_id, name)
);
-- ... and a key's questions in flight, one row per running question, gone with its server's row.
CREATE TABLE question_slots (
    id        TEXT PRIMARY KEY NOT NULL,
    key_id    TEXT NOT NULL,
    server_id TEXT NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
    taken_at  TEXT NOT NULL
);
CREATE INDEX question_slots_by_key ON question_slots (key_id);
"""
QUESTION_STATUSES_BEFORE_M012 = "CHECK (status IN ('running', 'answered', 'abstained', 'stopped', 'failed'))"
QUESTION_STATUSES = "CHECK (status IN ('running', 'answered', 'abstained', 'stopped', 'failed', 'interrupted'))"


def m012_servers(conn: Connection) -> None:
    """The servers table, and `interrupted` among the question statuses. SQLite cannot change a CHECK
    constraint in place and rebuilding `questions` would cascade-delete its calls and feedback (a DROP
    deletes its rows first): the constraint's text is widened in the schema itself, SQLite's documented
    procedure for a change that leaves every stored row valid (a new value allowed, none removed)."""
    for stmt in _statements(M012_SERVERS):
        conn.execute(stmt)
    (version,) = conn.execute("PRAGMA schema_version").fetchone()
    conn.execute("PRAGMA writable_schema = ON")
    try:
        changed = conn.execute("UPDATE sqlite_master SET sql = replace(sql, ?, ?) WHERE type = 'table'"
                               " AND name = 'questions' AND instr(sql, ?) > 0",
                               (QUESTION_STATUSES_BEFORE_M012, QUESTION_STATUSES, QUESTION_STATUSES_BEFORE_M012)).rowcount
        conn.execute(f"PRAGMA schema_version = {int(version) + 1}")
    finally:
        conn.execute("PRAGMA writable_schema = OFF")
    if changed != 1:
        raise SchemaError("m012: the questions table's status constraint is not the one m002 created")


MIGRATIONS: list[Migration] = [
    Migration(1, "m001_initial", M001_INITIAL),
    Migration(2, "m002_ledger", M002_LEDGER),
    Migration(3, "m003_chunk_windows", M003_CHUNK_WINDOWS),
    Migration(4, "m004_call_runtime", M004_CALL_RUNTIME),
    Migration(5, "m005_api_keys", M005_API_KEYS),
    Migration(6, "m006_document_language", M006_DOCUMENT_LANGUAGE),
    Migration(7, "m007_job_cancelled", M007_JOB_CANCELLED),
    Migration(8, "m008_call_server", M008_CALL_SERVER),
    Migration(9, "m009_key_grants", M009_KEY_GRANTS),
    Migration(10, "m010_question_feedback", M010_QUESTION_FEEDBACK),
    Migration(11, "m011_conversations", M011_CONVERSATIONS),
    Migration(12, "m012_servers", m012_servers),
]


class SchemaError(RagError):
    code = "schema_error"
    status = 500


def _statements(script: str) -> list[str]:
    """Splits SQL text into complete statements (respects `;` inside strings and triggers)."""
    out: list[str] = []
    buf = ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                out.append(buf.strip())
            buf = ""
    if buf.strip() and not all(
        ln.strip().startswith("--") or not ln.strip() for ln in buf.splitlines()
    ):
        raise SchemaError(f"incomplete SQL statement in migration: {buf.strip()[:80]!r}")
    return out


def _check_list() -> None:
    for i, m in enumerate(MIGRATIONS, start=1):
        if m.version != i:
            raise SchemaError(f"MIGRATIONS[{i - 1}] has version {m.version}; versions must be 1, 2, 3, ... in order")


def current_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def latest_version() -> int:
    return MIGRATIONS[-1].version if MIGRATIONS else 0


def migrate(conn: sqlite3.Connection) -> list[int]:
    """Applies every pending migration, each in its own transaction. Returns the versions applied.

    Raises `SchemaError` if the database is newer than this code, or if a recorded migration
    name differs from the code's (a renumbered or edited migration).
    """
    _check_list()
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
    )
    applied: list[int] = []
    for m in MIGRATIONS:
        with transaction(conn):
            version = current_version(conn)
            if version > latest_version():
                raise SchemaError(
                    f"database schema version {version} is newer than this code ({latest_version()}); upgrade the service"
                )
            if m.version <= version:
                continue
            if m.version != version + 1:
                raise SchemaError(f"database at version {version} cannot apply migration {m.version}")
            if isinstance(m.apply, str):
                for stmt in _statements(m.apply):
                    conn.execute(stmt)
            else:
                m.apply(conn)
            conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (m.version, m.name, utcnow()),
            )
            conn.execute(f"PRAGMA user_version = {int(m.version)}")
            applied.append(m.version)
    recorded = dict(conn.execute("SELECT version, name FROM schema_migrations").fetchall())
    for m in MIGRATIONS:
        if m.version in recorded and recorded[m.version] != m.name:
            raise SchemaError(
                f"migration {m.version} is recorded as {recorded[m.version]!r} but the code calls it {m.name!r}"
            )
    return applied
