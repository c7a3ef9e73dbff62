"""This process among those answering questions on one store: its id, its heartbeat, and the reaper
that closes a dead process's running questions as `interrupted` (rag.store.servers).

Every process that may ask (`rag serve`, `rag ask`, `rag replay`, `rag mcp`) registers, so a
command run beside a live server on the same folder never touches that server's questions, and a
server that dies (even `kill -9`) has its questions closed by whichever process beats next: at once
on one machine with the embedded store (its pid is gone), after `RAG_SERVER_LEASE_S` on Postgres
(a pid says nothing about another machine, nor across containers on one).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid

from rag.settings import Settings
from rag.store import Connections, servers
from rag.store.connection import Connection

log = logging.getLogger(__name__)

BEATS_PER_LEASE = 4


_LIVE: set[str] = set()  # presences of this process (tests and `rag mcp` beside an in-process app run several)


def _gone(s: servers.ServerRecord) -> bool:
    """On this machine: the process is gone, or it had this process's pid (a restart in a container
    reuses it) and is none of this process's own presences."""
    if s.pid == os.getpid():
        return s.id not in _LIVE
    try:
        os.kill(s.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class Presence:
    def __init__(self, settings: Settings, db: Connections, *, shared: bool):
        self.settings = settings
        self.db = db
        self.shared = shared
        self.host = socket.gethostname()
        self.id = f"{self.host[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Registers this process, closes what dead ones left running, and beats in the background."""
        self._register(self.db.get())
        _LIVE.add(self.id)
        self.reap()
        self._thread = threading.Thread(target=self._run, name="rag-presence", daemon=True)
        self._thread.start()

    def _register(self, conn: Connection) -> None:
        servers.register(conn, self.id, host=self.host, pid=os.getpid(), data_dir=str(self.settings.data_dir))

    def _gone(self, s: servers.ServerRecord) -> bool:
        return not self.shared and s.host == self.host and _gone(s)

    def reap(self) -> list[str]:
        closed = servers.reap(self.db.get(), me=self.id, lease_s=self.settings.server_lease_s, gone=self._gone)
        if closed:
            log.warning("closed %d question(s) of a server that stopped as interrupted: %s", len(closed),
                        ", ".join(closed[:10]))
        return closed

    def _run(self) -> None:
        interval = max(0.2, self.settings.server_lease_s / BEATS_PER_LEASE)
        while not self._stop.wait(interval):
            try:
                conn = self.db.get()
                if not servers.beat(conn, self.id):  # taken for dead (a pause longer than the lease)
                    log.warning("this server's heartbeat row was gone (silent longer than RAG_SERVER_LEASE_S); "
                                "registering again")
                    self._register(conn)
                self.reap()
            except Exception as exc:  # noqa: BLE001 - the store may be down for a while; the next beat retries
                log.warning("server heartbeat failed: %s", exc)

    def close(self) -> None:
        """Stops beating and leaves: questions still running here are closed by the next reaper."""
        self._stop.set()
        _LIVE.discard(self.id)
        if self._thread is not None:
            self._thread.join(5)
        try:
            servers.leave(self.db.get(), self.id)
        except Exception as exc:  # noqa: BLE001 - shutting down with the store gone: the lease ends it
            log.warning("could not remove this server's row: %s", exc)
