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


def assert_on_token_errors_end_the_call(gen, long: list[dict], short: list[dict]) -> None:
    """An exception raised by `on_token` (a client gone) reaches the caller and frees the generator."""
    import pytest

    def boom(piece):
        raise RuntimeError("client went away")

    with pytest.raises(RuntimeError, match="client went away"):
        gen.generate(long, max_new_tokens=100, on_token=boom)
    assert gen.generate(short, max_new_tokens=4).completion_tokens == 4


def assert_context_overflow_refused(gen, messages: list[dict]) -> None:
    """A prompt plus max_new_tokens beyond the context is a 400 `context_overflow` before any compute."""
    import pytest

    from rag.errors import ModelError

    with pytest.raises(ModelError) as err:
        gen.generate(messages, max_new_tokens=gen.context_length)
    assert err.value.code == "context_overflow"
