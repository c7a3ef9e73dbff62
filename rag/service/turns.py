"""Turns at one shared resource, handed out in the order they were asked for.

Ingestion jobs running at once share one embedder. A plain lock lets the thread that just released
it take it again at once (it is already running), so a large document's batches would follow one
another while a small upload waits for all of them. Here every batch queues behind the batches
already waiting, so jobs alternate batch by batch: a large document slows a small one by one batch
at a time, and never stops it.
"""

from __future__ import annotations

import threading
from collections import deque


class FairTurns:
    """A first-come, first-served lock (use as a context manager)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._waiting: deque[object] = deque()
        self._held = False

    def __enter__(self) -> "FairTurns":
        ticket = object()
        with self._cond:
            self._waiting.append(ticket)
            self._cond.wait_for(lambda: not self._held and self._waiting[0] is ticket)
            self._waiting.popleft()
            self._held = True
        return self

    def __exit__(self, *exc) -> None:
        with self._cond:
            self._held = False
            self._cond.notify_all()
