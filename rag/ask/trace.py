"""The trace: ordered, JSON-serialisable events, streamed to `on_event` as they happen."""

from __future__ import annotations

import json
from typing import Any, Callable


def _plain(v: Any) -> Any:
    """JSON-safe copy: sets -> sorted lists, tuples -> lists, dataclasses with to_dict -> dicts."""
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, (set, frozenset)):
        return [_plain(x) for x in sorted(v, key=repr)]
    if hasattr(v, "to_dict"):
        return _plain(v.to_dict())
    if isinstance(v, float) and v != v:  # NaN is not JSON
        return None
    if v is None or isinstance(v, (str, int, float, bool)):
        return v
    return str(v)


class Trace:
    def __init__(self, clock: Callable[[], float], start: float, on_event: Callable[[dict], None] | None = None):
        self.events: list[dict] = []
        self._clock = clock
        self._start = start
        self._on_event = on_event

    def emit(self, type: str, **data: Any) -> dict:
        event = {"seq": len(self.events) + 1, "t_ms": round((self._clock() - self._start) * 1000.0, 3), "type": type}
        event.update(_plain(data))
        self.events.append(event)
        if self._on_event is not None:
            self._on_event(event)  # an exception here (client gone) ends the question
        return event


def check_json(obj: Any) -> None:
    """Raises if `obj` is not strictly JSON-serialisable (used by tests)."""
    json.dumps(obj, allow_nan=False)
