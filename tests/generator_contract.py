"""Checks every generator runtime must pass, shared by tests/test_generator.py and tests/test_llamacpp.py."""

from __future__ import annotations

import threading


def _ask(passage: str, question: str) -> list[dict]:
    return [{"role": "user", "content": f"{passage}\n\n根据上面的内容回答：{question}"}]


# The Qwen models' checks in every runtime: a Chinese and an English answer from a passage.
ZH = _ask("明长城东起鸭绿江，西至嘉峪关，全长约8851.8公里。", "明长城全长多少公里？")
EN = _ask("The secret code of the vault is 4721. The vault is in Zurich.", "What is the secret code of the vault?")


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


def assert_streams_exactly(gen, messages: list[dict]) -> None:
    """`on_token` pieces are non-empty and concatenate to exactly the completion's text."""
    pieces: list[str] = []
    c = gen.generate(messages, max_new_tokens=40, on_token=pieces.append)
    assert len(pieces) > 1 and all(pieces)
    assert "".join(pieces) == c.text


def assert_max_new_tokens_respected(gen, messages: list[dict]) -> None:
    """The token limit ends a call as `max_tokens`; 0 tokens generates nothing but still counts the prompt."""
    c = gen.generate(messages, max_new_tokens=5)
    assert c.completion_tokens == 5 and c.stopped_by == "max_tokens"
    z = gen.generate(messages, max_new_tokens=0)
    assert z.completion_tokens == 0 and z.text == "" and z.prompt_tokens == gen.prompt_tokens(messages)


def assert_stop_string_cuts(gen, messages: list[dict]):
    """A stop string (the sixth word of the plain answer) ends the call before it, streamed or not; returns
    (completion, stop string) for runtime-specific checks."""
    ref = gen.generate(messages, max_new_tokens=40).text
    words = ref.split()
    assert len(words) > 6
    stop = " " + words[5]
    expected = ref[: ref.find(stop)]
    pieces: list[str] = []
    c = gen.generate(messages, max_new_tokens=40, stop=[stop], on_token=pieces.append)
    assert c.stopped_by == "stop"
    assert c.text == expected and "".join(pieces) == expected
    return c, stop
