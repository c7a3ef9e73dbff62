"""Saving FAISS snapshots in the background, a moment after a collection changes.

A burst of uploads would otherwise write the whole index file once per document. A collection is
saved at most `delay_s` after its first unsaved change, by one daemon thread; a crash before the
save costs only a repair from SQLite at the next start (`rag.index.snapshot.sync_snapshot`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger("rag.index")


class DebouncedSaver:
    """Calls `save(name)` for each scheduled name once its delay is due. Thread-safe."""

    def __init__(self, save: Callable[[str], None], delay_s: float):
        self._save = save
        self.delay_s = float(delay_s)
        self._cond = threading.Condition()
        self._due: dict[str, float] = {}  # name -> monotonic due time
        self._thread: threading.Thread | None = None
        self._closed = False

    def schedule(self, name: str) -> None:
        with self._cond:
            if self._closed:
                return
            self._due.setdefault(name, time.monotonic() + self.delay_s)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="index-saver", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def clear(self) -> None:
        """Forgets pending saves (the caller is saving everything now)."""
        with self._cond:
            self._due.clear()

    def close(self) -> None:
        """Stops the thread; pending saves are the caller's to flush."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._closed:
                    now = time.monotonic()
                    due = [n for n, t in self._due.items() if t <= now]
                    if due:
                        break
                    timeout = min(self._due.values()) - now if self._due else None
                    self._cond.wait(timeout)
                if self._closed:
                    return
                for n in due:
                    self._due.pop(n, None)
            for n in due:
                try:
                    self._save(n)
                except Exception:  # keep serving; the next start repairs from SQLite
                    log.exception("collection %s: saving the dense index failed", n)
