"""Per-key limits: requests, model calls and uploaded bytes per minute, questions in flight.

One process (the embedded store): the `limits` library's moving window, in memory. Several servers
on one Postgres (`SharedQuotas`): the same limits kept in Postgres itself (`rag.store.limits`: a
fixed window per key counted with atomic upserts, and a row per question in flight), so N servers
give a key its limits once, not N times, with no other service to run. A refusal is a 429
`rate_limited` (or `too_many_questions`) with the seconds until the window has room, which the API
sends as `Retry-After`.
"""

from __future__ import annotations

import math
import threading
import time
import uuid

from limits import RateLimitItem, RateLimitItemPerMinute, storage, strategies

from rag.errors import RagError
from rag.settings import Settings
from rag.store import Connections
from rag.store import limits as shared

WINDOW_S = 60.0  # every limit is per minute


class RateLimited(RagError):
    code = "rate_limited"
    status = 429

    def __init__(self, message: str, *, retry_after: int, code: str | None = None):
        super().__init__(message, code=code)
        self.retry_after = retry_after


class Quotas:
    def __init__(self, settings: Settings):
        self._limiter = strategies.MovingWindowRateLimiter(storage.MemoryStorage())
        self._items = {"requests": RateLimitItemPerMinute(settings.requests_per_minute),
                       "model_calls": RateLimitItemPerMinute(settings.model_calls_per_minute),
                       "upload_bytes": RateLimitItemPerMinute(settings.upload_bytes_per_minute)}
        self._in_flight_max = settings.questions_in_flight
        self._in_flight: dict[str, int] = {}
        self._lock = threading.Lock()

    # -- the counting, in memory (`SharedQuotas` keeps it in Postgres)

    def _hit(self, name: str, key: str, cost: int) -> float | None:
        """Counts `cost`; None when it fit, else the seconds until the window has room."""
        item = self._items[name]
        return None if self._limiter.hit(item, "rag", key, cost=cost) else self._wait(item, key)

    def _room(self, name: str, key: str) -> float | None:
        item = self._items[name]
        return None if self._limiter.test(item, "rag", key) else self._wait(item, key)

    def _wait(self, item: RateLimitItem, key: str) -> float:
        return self._limiter.get_window_stats(item, "rag", key).reset_time - time.time()

    def _take_slot(self, key: str) -> str | None:
        with self._lock:
            if self._in_flight.get(key, 0) >= self._in_flight_max:
                return None
            self._in_flight[key] = self._in_flight.get(key, 0) + 1
            return key

    def _give_slot(self, key: str, slot: str) -> None:
        with self._lock:
            self._in_flight[key] = max(0, self._in_flight.get(key, 0) - 1)

    # -- the limits

    def _refused(self, name: str, wait: float, what: str) -> RateLimited:
        wait = max(1, math.ceil(wait))
        limit = self._items[name]
        return RateLimited(f"{what} limit of this key reached ({limit}); retry in {wait} s", retry_after=wait)

    def request(self, key: str) -> None:
        if (wait := self._hit("requests", key, 1)) is not None:
            raise self._refused("requests", wait, "request")

    def uploaded(self, key: str, nbytes: int) -> None:
        if (wait := self._hit("upload_bytes", key, max(1, nbytes))) is not None:
            raise self._refused("upload_bytes", wait, "upload bytes")

    def check_calls(self, key: str) -> None:
        """Before a question: refused when the key has no model call left in its window."""
        if (wait := self._room("model_calls", key)) is not None:
            raise self._refused("model_calls", wait, "model call")

    def spent_calls(self, key: str, calls: int) -> None:
        if calls > 0:
            self._hit("model_calls", key, calls)

    def start_question(self, key: str) -> str:
        """Takes one of the key's in-flight question slots (`end_question` gives it back)."""
        slot = self._take_slot(key)
        if slot is None:
            raise RateLimited(f"this key already has {self._in_flight_max} question(s) running",
                              retry_after=1, code="too_many_questions")
        return slot

    def end_question(self, key: str, slot: str) -> None:
        self._give_slot(key, slot)

    def question(self, key: str) -> QuestionSlot:
        """One question of `key`: refused here (429 `rate_limited` or `too_many_questions`) when the key
        has no model call left or all its slots are taken; otherwise the slot is taken now and given
        back when the returned context exits, however it exits.

        Taken at the call rather than on entering the `with`, so a stream can be refused in the request
        (before any byte is sent) and hand the held slot to the thread that runs it."""
        self.check_calls(key)
        return QuestionSlot(self, key, self.start_question(key))


class SharedQuotas(Quotas):
    """The same limits kept in Postgres, counted once across every server (`rag.store.limits`).

    Model calls are charged after a question (as in memory), so questions started together by one key
    on several servers may pass its call limit by what they make; requests, upload bytes and slots are
    exact."""

    def __init__(self, settings: Settings, db: Connections, server_id: str):
        super().__init__(settings)
        self._db = db
        self._server_id = server_id
        self._limits = {"requests": settings.requests_per_minute, "model_calls": settings.model_calls_per_minute,
                        "upload_bytes": settings.upload_bytes_per_minute}

    def _hit(self, name: str, key: str, cost: int) -> float | None:
        return shared.hit(self._db.get(), key, name, cost=cost, limit=self._limits[name], window_s=WINDOW_S)

    def _room(self, name: str, key: str) -> float | None:
        return shared.room(self._db.get(), key, name, cost=1, limit=self._limits[name], window_s=WINDOW_S)

    def _take_slot(self, key: str) -> str | None:
        slot = uuid.uuid4().hex
        taken = shared.take_slot(self._db.get(), slot, key, server_id=self._server_id, most=self._in_flight_max)
        return slot if taken else None

    def _give_slot(self, key: str, slot: str) -> None:
        shared.give_slot(self._db.get(), slot)


class QuestionSlot:
    """A held in-flight slot: `with slot:` gives it back on exit; `spent(n)` charges the key's model calls."""

    def __init__(self, quotas: Quotas, key: str, slot: str):
        self._quotas = quotas
        self._key = key
        self._slot = slot

    def spent(self, calls: int) -> None:
        """Charges the calls the question made (known only once it ran)."""
        self._quotas.spent_calls(self._key, calls)

    def __enter__(self) -> QuestionSlot:
        return self

    def __exit__(self, *exc: object) -> None:
        self._quotas.end_question(self._key, self._slot)
