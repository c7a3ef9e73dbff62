"""The trace: ordered, JSON-serialisable events, streamed to `on_event` as they happen."""

from __future__ import annotations

import json
from typing import Any, Callable

from rag.ask.events import Event


class Trace:
    def __init__(self, clock: Callable[[], float], start: float, on_event: Callable[[dict], None] | None = None):
        self.events: list[dict] = []
        self._clock = clock
        self._start = start
        self._on_event = on_event

    def emit(self, event: Event) -> dict:
        """Records `event` as JSON, numbered and timed from the question's start."""
        record = {"seq": len(self.events) + 1, "t_ms": round((self._clock() - self._start) * 1000.0, 3), **event.to_dict()}
        self.events.append(record)
        if self._on_event is not None:
            self._on_event(record)  # an exception here (client gone) ends the question
        return record


def check_json(obj: Any) -> None:
    """Raises if `obj` is not strictly JSON-serialisable (used by tests)."""
    json.dumps(obj, allow_nan=False)
