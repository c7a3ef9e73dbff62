"""Several servers on one PostgreSQL, what the scale-out issue's fleet items promise: exactly one admin
key at a first start on an empty store, a dead server's questions closed as `interrupted` by another
one, and a key's limits counted once across servers.
"""

from __future__ import annotations

import threading
from contextlib import closing

import psycopg


def test_first_start_of_several_servers_creates_exactly_one_admin_key(tmp_path, pg_url, caplog):
    """Eight fresh servers' start-up (the key service over its store, then `bootstrap`) at once on one
    empty Postgres without RAG_ADMIN_KEY: one admin key row, one `admin.key` file, and the others log
    which host and file hold it."""
    from rag.service.auth import open_keys
    from rag.settings import Settings

    n = 8
    services = [open_keys(Settings(data_dir=tmp_path / f"server{i}", database_url=pg_url, admin_key=None, auth="on"))
                for i in range(n)]
    for i in range(n):
        (tmp_path / f"server{i}").mkdir()
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []

    def start(keys) -> None:
        try:
            barrier.wait()
            keys.bootstrap()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    caplog.set_level("INFO", logger="rag.service.auth")
    threads = [threading.Thread(target=start, args=(keys,)) for keys in services]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    written = [i for i in range(n) if (tmp_path / f"server{i}" / "admin.key").exists()]
    assert len(written) == 1, written
    with closing(psycopg.connect(pg_url)) as conn:
        rows = conn.execute("SELECT id, name FROM api_keys WHERE role = 'admin'").fetchall()
    assert len(rows) == 1, rows
    path = tmp_path / f"server{written[0]}" / "admin.key"
    assert str(path) in rows[0][1]
    told = [r.getMessage() for r in caplog.records if "exists already" in r.getMessage()]
    assert len(told) == n - 1 and all(str(path) in m for m in told), told
    assert services[0].authenticate(path.read_text().strip()).is_admin  # any server accepts it
    for keys in services:
        keys.db.close_all()
