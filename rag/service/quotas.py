"""Per-key limits: requests, model calls and uploaded bytes per minute, questions in flight.

Counting is the `limits` library's moving window (in memory: one process; a shared store is the
scale-out issue's). A refusal is a 429 `rate_limited` with the seconds until the window has room,
which the API sends as `Retry-After`.
"""

from __future__ import annotations

import math
import threading
import time

from limits import RateLimitItem, RateLimitItemPerMinute, storage, strategies

from rag.errors import RagError
from rag.settings import Settings


class RateLimited(RagError):
    code = "rate_limited"
    status = 429

    def __init__(self, message: str, *, retry_after: int, code: str | None = None):
        super().__init__(message, code=code)
        self.retry_after = retry_after


class Quotas:
    def __init__(self, settings: Settings):
        self._limiter = strategies.MovingWindowRateLimiter(storage.MemoryStorage())
        self._requests = RateLimitItemPerMinute(settings.requests_per_minute)
        self._calls = RateLimitItemPerMinute(settings.model_calls_per_minute)
        self._bytes = RateLimitItemPerMinute(settings.upload_bytes_per_minute)
        self._in_flight_max = settings.questions_in_flight
        self._in_flight: dict[str, int] = {}
        self._lock = threading.Lock()

    def _refuse(self, item: RateLimitItem, key: str, what: str) -> RateLimited:
        reset = self._limiter.get_window_stats(item, "rag", key).reset_time
        wait = max(1, math.ceil(reset - time.time()))
        return RateLimited(f"{what} limit of this key reached ({item}); retry in {wait} s", retry_after=wait)

    def request(self, key: str) -> None:
        if not self._limiter.hit(self._requests, "rag", key):
            raise self._refuse(self._requests, key, "request")

    def uploaded(self, key: str, nbytes: int) -> None:
        if not self._limiter.hit(self._bytes, "rag", key, cost=max(1, nbytes)):
            raise self._refuse(self._bytes, key, "upload bytes")

    def check_calls(self, key: str) -> None:
        """Before a question: refused when the key has no model call left in its window."""
        if not self._limiter.test(self._calls, "rag", key):
            raise self._refuse(self._calls, key, "model call")

    def spent_calls(self, key: str, calls: int) -> None:
        if calls > 0:
            self._limiter.hit(self._calls, "rag", key, cost=calls)

    def start_question(self, key: str) -> None:
        """Takes one of the key's in-flight question slots (`end_question` gives it back)."""
        with self._lock:
            if self._in_flight.get(key, 0) >= self._in_flight_max:
                raise RateLimited(f"this key already has {self._in_flight_max} question(s) running",
                                  retry_after=1, code="too_many_questions")
            self._in_flight[key] = self._in_flight.get(key, 0) + 1

    def end_question(self, key: str) -> None:
        with self._lock:
            self._in_flight[key] = max(0, self._in_flight.get(key, 0) - 1)

    def question(self, key: str) -> QuestionSlot:
        """One question of `key`: refused here (429 `rate_limited` or `too_many_questions`) when the key
        has no model call left or all its slots are taken; otherwise the slot is taken now and given
        back when the returned context exits, however it exits.

        Taken at the call rather than on entering the `with`, so a stream can be refused in the request
        (before any byte is sent) and hand the held slot to the thread that runs it."""
        self.check_calls(key)
        self.start_question(key)
        return QuestionSlot(self, key)


class QuestionSlot:
    """A held in-flight slot: `with slot:` gives it back on exit; `spent(n)` charges the key's model calls."""

    def __init__(self, quotas: Quotas, key: str):
        self._quotas = quotas
        self._key = key

    def spent(self, calls: int) -> None:
        """Charges the calls the question made (known only once it ran)."""
        self._quotas.spent_calls(self._key, calls)

    def __enter__(self) -> QuestionSlot:
        return self

    def __exit__(self, *exc: object) -> None:
        self._quotas.end_question(self._key)
