"""Checks every generator runtime must pass, shared by tests/test_generator.py and tests/test_llamacpp.py."""

from __future__ import annotations

import threading


def assert_calls_serialised(gen, messages: list[dict], *, callers: int) -> None:
    """Concurrent `generate` calls queue instead of interleaving: each gets the answer a lone call gets."""
    expected = gen.generate(messages, max_new_tokens=12).text
    results: list[str] = []

    def worker():
        results.append(gen.generate(messages, max_new_tokens=12).text)

    threads = [threading.Thread(target=worker) for _ in range(callers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [expected] * callers
