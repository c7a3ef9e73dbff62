"""The PostgreSQL schema, and the only place it changes: numbered migrations, as for SQLite.

Same tables, columns and meanings as `rag.store.migrations` (read the comments there), in
Postgres types, plus what only this backend has:

* `chunk_vectors.embedding` (pgvector `vector`) with `collection` beside it, searched through an
  HNSW index (cosine) per dimension, created by `ensure_vector_index` for the embedder in use (an
  HNSW index needs a fixed dimension; the column does not, so collections of another embedder
  still work, by exact scan);
* the lexical side as BM25 computed in SQL from stored term statistics: `chunk_postings` (term,
  chunk, count) from the same analyzer as the embedded backend (jieba-segmented, OpenCC-folded
  terms) and `chunks.term_total` (the chunk's length in terms). Scores equal bm25s' `lucene` BM25
  (see `rag.index.pgsearch`);
* `ingestion_jobs` carries its upload (`job_payloads`, in the same transaction as the job row:
  any worker on any machine can run it) and a lease (`claimed_by`, `lease_until`) for workers
  that claim with `FOR UPDATE SKIP LOCKED`;
* what several servers share beyond the data (p005, also in SQLite's m012): `servers` (heartbeats:
  a dead server's questions end `interrupted`), `rate_windows` and `question_slots` (a key's limits,
  counted once across servers).

`migrate()` runs under a transaction-level advisory lock, so several processes starting together
apply each migration once. Never edit or renumber a migration that has shipped; append one.
"""

from __future__ import annotations

from rag.store.connection import Connection
from rag.store.db import transaction, utcnow
from rag.store.migrations import M011_CONVERSATIONS, M012_SERVERS, QUESTION_STATUSES, Migration, SchemaError

MIGRATE_LOCK = 0x7261_6701  # pg_advisory_xact_lock key: "rag" 1
VECTOR_INDEX_LOCK = 0x7261_6702
ADMIN_KEY_LOCK = 0x7261_6703  # the first start's admin key (rag.service.auth)
SLOTS_LOCK = 0x7261_6704  # with a key's hash: its question slots (rag.store.limits)

P001_INITIAL = """
CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE collections (
    name        TEXT PRIMARY KEY NOT NULL,
    uid         TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    created_at  TEXT NOT NULL,
    change_seq  BIGINT NOT NULL DEFAULT 0 CHECK (change_seq >= 0),
    embed_model TEXT,
    embed_dim   INTEGER CHECK (embed_dim IS NULL OR embed_dim > 0),
    -- BM25's collection statistics, kept in the transactions that add and delete documents:
    -- chunks (N) and the sum of their lengths in terms (avgdl = lex_terms / lex_chunks).
    lex_chunks  BIGINT NOT NULL DEFAULT 0 CHECK (lex_chunks >= 0),
    lex_terms   BIGINT NOT NULL DEFAULT 0 CHECK (lex_terms >= 0)
);
INSERT INTO collections (name, uid, description, created_at)
VALUES ('default', md5(random()::text || clock_timestamp()::text), 'Created at installation.',
        to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'));

CREATE TABLE documents (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    collection  TEXT NOT NULL REFERENCES collections(name) ON DELETE CASCADE,
    filename    TEXT NOT NULL,
    format      TEXT NOT NULL,
    sha256      TEXT NOT NULL CHECK (length(sha256) = 64),
    size_bytes  BIGINT NOT NULL CHECK (size_bytes >= 0),
    page_count  INTEGER NOT NULL DEFAULT 0,
    title       TEXT,
    encoding    TEXT,
    language    TEXT,
    chunk_count INTEGER NOT NULL DEFAULT 0,
    created_at  TEXT NOT NULL,
    status      TEXT NOT NULL DEFAULT 'ready' CHECK (status IN ('ready')),
    UNIQUE (collection, sha256)
);

CREATE TABLE chunks (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    document_id  BIGINT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    collection   TEXT NOT NULL,
    ordinal      INTEGER NOT NULL,
    text         TEXT NOT NULL,
    char_start   INTEGER NOT NULL,
    char_end     INTEGER NOT NULL,
    page         INTEGER,
    section_path TEXT NOT NULL DEFAULT '[]',
    token_count  INTEGER NOT NULL,
    prev_id      BIGINT,
    next_id      BIGINT,
    term_total   INTEGER,  -- the chunk's length in terms (BM25's dl); NULL until its postings are stored
    UNIQUE (document_id, ordinal)
);
CREATE INDEX chunks_by_collection ON chunks (collection, id);

CREATE TABLE chunk_vectors (
    chunk_id   BIGINT PRIMARY KEY REFERENCES chunks(id) ON DELETE CASCADE,
    collection TEXT NOT NULL,
    model      TEXT NOT NULL,
    dim        INTEGER NOT NULL CHECK (dim > 0),
    embedding  vector NOT NULL CHECK (vector_dims(embedding) = dim)
);
CREATE INDEX chunk_vectors_by_collection ON chunk_vectors (collection);

-- One row per (term, chunk), carrying what scoring needs (the chunk's length and document), so a
-- query reads only its terms' rows, from the primary key alone (index-only scans).
CREATE TABLE chunk_postings (
    collection  TEXT NOT NULL,
    term        TEXT NOT NULL,
    chunk_id    BIGINT NOT NULL REFERENCES chunks(id) ON DELETE CASCADE,
    tf          INTEGER NOT NULL CHECK (tf > 0),
    term_total  INTEGER NOT NULL CHECK (term_total > 0),
    document_id BIGINT NOT NULL,
    PRIMARY KEY (collection, term, chunk_id) INCLUDE (tf, term_total, document_id)
);
CREATE INDEX chunk_postings_by_chunk ON chunk_postings (chunk_id);

CREATE TABLE chunk_windows (
    chunk_id   BIGINT NOT NULL REFERENCES chunks(id) ON DELETE CASCADE,
    n          INTEGER NOT NULL CHECK (n >= 0),
    char_start INTEGER NOT NULL,
    char_end   INTEGER NOT NULL CHECK (char_end > char_start),
    dim        INTEGER NOT NULL CHECK (dim > 0),
    vector     BYTEA NOT NULL CHECK (length(vector) = dim * 4),
    PRIMARY KEY (chunk_id, n)
);

CREATE TABLE ingestion_jobs (
    rowid         BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    id            TEXT PRIMARY KEY NOT NULL,
    collection    TEXT NOT NULL,
    filename      TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed', 'cancelled')),
    document_id   BIGINT,
    progress      TEXT NOT NULL DEFAULT '{}',
    error_code    TEXT,
    error_message TEXT,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    started_at    TEXT,
    finished_at   TEXT,
    claimed_by    TEXT,
    lease_until   TIMESTAMPTZ,
    attempts      INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX ingestion_jobs_by_collection ON ingestion_jobs (collection, created_at);
CREATE INDEX ingestion_jobs_unfinished ON ingestion_jobs (status, rowid) WHERE status IN ('queued', 'running');

-- An upload's bytes until its job ends (then deleted).
CREATE TABLE job_payloads (
    job_id TEXT PRIMARY KEY REFERENCES ingestion_jobs(id) ON DELETE CASCADE,
    data   BYTEA NOT NULL
);

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
    seconds              DOUBLE PRECISION,
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

CREATE TABLE model_calls (
    id                   BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    question_id          TEXT NOT NULL REFERENCES questions(id) ON DELETE CASCADE,
    n                    INTEGER NOT NULL,
    purpose              TEXT NOT NULL,
    model_id             TEXT NOT NULL,
    runtime              TEXT NOT NULL DEFAULT '',
    server               TEXT NOT NULL DEFAULT '',
    status               TEXT NOT NULL DEFAULT 'ok' CHECK (status IN ('ok', 'failed')),
    prompt_tokens        INTEGER NOT NULL CHECK (prompt_tokens >= 0),
    completion_tokens    INTEGER NOT NULL CHECK (completion_tokens >= 0),
    cached_prompt_tokens INTEGER NOT NULL DEFAULT 0,
    wall_ms              DOUBLE PRECISION NOT NULL,
    created_at           TEXT NOT NULL,
    UNIQUE (question_id, n)
);

CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL DEFAULT '',
    role        TEXT NOT NULL CHECK (role IN ('read', 'write', 'admin')),
    grants      TEXT,
    secret_hash BYTEA NOT NULL,
    created_at  TEXT NOT NULL,
    revoked_at  TEXT
);

-- Settings every process must share (the key-hashing secret), written once by the first process.
CREATE TABLE install_secrets (
    name  TEXT PRIMARY KEY NOT NULL,
    value BYTEA NOT NULL
);
"""

P002_KEY_GRANTS = """
-- As SQLite's m009: a grant refers to its collection's uid and is deleted with the collection.
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
SELECT k.id, c.uid, g.value FROM api_keys k, json_each_text(k.grants::json) g JOIN collections c ON c.name = g.key
WHERE k.grants IS NOT NULL AND g.value IN ('read', 'write');
ALTER TABLE api_keys DROP COLUMN grants;
"""


# A rating of a question's answer, one per key and question (rag.store.migrations m010 says why).
P003_QUESTION_FEEDBACK = """
CREATE TABLE question_feedback (
    question_id TEXT NOT NULL REFERENCES questions(id) ON DELETE CASCADE,
    key_id      TEXT NOT NULL,
    rating      TEXT NOT NULL CHECK (rating IN ('up', 'down')),
    comment     TEXT NOT NULL DEFAULT '',
    created_at  TEXT NOT NULL,
    PRIMARY KEY (question_id, key_id)
);
"""

# As SQLite's m012: the servers' heartbeats, the process answering each question, and `interrupted`.
P005_SERVERS = M012_SERVERS + f"""
ALTER TABLE questions DROP CONSTRAINT questions_status_check;
ALTER TABLE questions ADD CONSTRAINT questions_status_check {QUESTION_STATUSES};
"""

MIGRATIONS: list[Migration] = [
    Migration(1, "p001_initial", P001_INITIAL),
    Migration(2, "p002_key_grants", P002_KEY_GRANTS),
    Migration(3, "p003_question_feedback", P003_QUESTION_FEEDBACK),
    Migration(4, "p004_conversations", M011_CONVERSATIONS),  # SQLite's SQL is Postgres' too
    Migration(5, "p005_servers", P005_SERVERS),
]


def latest_version() -> int:
    return MIGRATIONS[-1].version


def current_version(conn: Connection) -> int:
    exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()[0]
    if not exists:
        return 0
    return int(conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()[0])


def migrate(conn: Connection) -> list[int]:
    """Applies pending migrations, each in its own transaction with its `schema_migrations` row."""
    applied: list[int] = []
    for m in MIGRATIONS:
        with transaction(conn):
            conn.execute("SELECT pg_advisory_xact_lock(?)", (MIGRATE_LOCK,))
            conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations ("
                         " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)")
            version = current_version(conn)
            if version > latest_version():
                raise SchemaError(f"database schema version {version} is newer than this code ({latest_version()}); "
                                  "upgrade the service")
            if m.version <= version:
                continue
            if isinstance(m.apply, str):
                conn.execute(m.apply)
            else:
                m.apply(conn)
            conn.execute("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                         (m.version, m.name, utcnow()))
            applied.append(m.version)
    recorded = dict(conn.execute("SELECT version, name FROM schema_migrations").fetchall())
    for m in MIGRATIONS:
        if m.version in recorded and recorded[m.version] != m.name:
            raise SchemaError(f"migration {m.version} is recorded as {recorded[m.version]!r} but the code calls it {m.name!r}")
    return applied


def ensure_vector_index(conn: Connection, dim: int) -> None:
    """The HNSW (cosine) index for vectors of `dim` (a partial expression index: HNSW needs a fixed
    dimension). Created once, by whichever process comes first."""
    dim = int(dim)
    name = f"chunk_vectors_hnsw_{dim}"
    with transaction(conn):
        conn.execute("SELECT pg_advisory_xact_lock(?)", (VECTOR_INDEX_LOCK,))
        if conn.execute("SELECT to_regclass(?) IS NOT NULL", (name,)).fetchone()[0]:
            return
        # over existing rows the graph is built in memory when it fits (the default 64 MB does not at 100k)
        conn.execute("SET LOCAL maintenance_work_mem = '1GB'")
        conn.execute(f"CREATE INDEX {name} ON chunk_vectors USING hnsw ((embedding::vector({dim})) vector_cosine_ops)"
                     f" WHERE dim = {dim}")
