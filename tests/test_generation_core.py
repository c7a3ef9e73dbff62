"""What every generator runtime shares (no model needed): the text stream with its stop strings and
held-back text, the fit check, the completion type, the interrupted-call error, the runtime registry."""

from __future__ import annotations

import time
from typing import get_args

import pytest

from rag.ask.ports import GenerationInterrupted
from rag.errors import ModelError
from rag.models import cache, runtimes
from rag.models.chat_tokens import ChatTokenizer
from rag.models.completion import Completion, TextStream, check_fit, find_stop, safe_length

# ---------------------------------------------------------------- streaming helpers


def test_safe_length_holds_back_partial_characters_and_stop_prefixes():
    assert safe_length("abc", []) == 3
    assert safe_length("ab\ufffd", []) == 2
    assert safe_length("hello wor", ["world"]) == len("hello ")
    assert safe_length("hello w", ["xyz", "world"]) == len("hello ")
    assert safe_length("hello", ["\n\n"]) == 5
    assert safe_length("hello\n", ["\n\n"]) == 5


def test_find_stop_earliest_match():
    assert find_stop("abc END def STOP", ["STOP", "END"], 0) == 4
    assert find_stop("abc", ["x"], 0) is None


# ---------------------------------------------------------------- the text stream


def _stream(stop: list[str] | None) -> tuple[TextStream, list[str]]:
    got: list[str] = []
    return TextStream(stop, got.append), got


def test_a_stop_string_split_across_pieces_ends_the_text_before_it():
    s, got = _stream(["END"])
    assert not s.append("Hello wo")
    assert not s.append("rld! E")
    assert got == ["Hello wo", "rld! "]  # "E" may begin the stop string: held back
    assert not s.append("N")
    assert s.append("D and more")
    assert s.stopped_by == "stop" and s.output == "Hello world! " == "".join(got) and s.text == "Hello world! "
    s.flush()  # nothing left to give: the stop string is never streamed
    assert got == ["Hello wo", "rld! "]


def test_a_held_back_prefix_is_flushed_at_the_end():
    s, got = _stream(["zzz", ""])  # empty stop strings are ignored
    assert not s.append("abc z")
    assert got == ["abc "]
    assert not s.append("z")
    assert got == ["abc "]
    s.flush()
    assert got == ["abc ", "zz"] and s.output == "abc zz" and s.stopped_by == "max_tokens"


def test_a_trailing_replacement_character_is_held_back_until_complete():
    s, got = _stream(None)
    s.set_text("東\ufffd")  # a CJK character split across tokens decodes to U+FFFD until complete
    assert got == ["東"]
    s.set_text("東京")
    assert got == ["東", "京"] and s.output == "東京"


def test_whole_text_and_pieces_give_the_same_stream():
    pieces = ["The ", "answer", " is 4", "7\n", "\nSo", "urces: [1]"]
    by_piece, got_pieces = _stream(["\n\nSources:", "STOP"])
    by_text, got_text = _stream(["\n\nSources:", "STOP"])
    text = ""
    for piece in pieces:
        text += piece
        assert by_piece.append(piece) == by_text.set_text(text)
    assert got_pieces == got_text and by_piece.output == by_text.output == "The answer is 47"
    assert by_piece.stopped_by == by_text.stopped_by == "stop"


def test_why_a_stream_ends():
    s, _ = _stream(None)
    assert s.ends_before_start(0) and s.stopped_by == "max_tokens"
    s = TextStream(None, None, deadline=time.monotonic() - 1)
    assert s.ends_before_start(5) and s.stopped_by == "deadline"
    s = TextStream(None, None, deadline=time.monotonic() + 60)
    assert not s.ends_before_start(5) and not s.past_deadline() and s.stopped_by == "max_tokens"
    s.end("length")
    assert s.stopped_by == "max_tokens"
    s.end("stop")
    assert s.stopped_by == "eos"


# ---------------------------------------------------------------- fit, completion, errors


def test_context_overflow_is_refused_with_the_same_message():
    check_fit(100, 28, 128)
    check_fit(10**6, 10, None)  # unknown context length: not checked
    with pytest.raises(ModelError) as err:
        check_fit(100, 29, 128)
    assert err.value.code == "context_overflow" and err.value.status == 400
    assert err.value.message == ("prompt (100 tokens) plus max_new_tokens (29) exceeds the model's "
                                 "context length (128)")
    with pytest.raises(ModelError, match="exceeds the served model's context length"):
        check_fit(100, 29, 128, whose="served model's")


def test_completion_defaults():
    c = Completion("x", 1, 1, 0, 1.0, 0.5, "m", "eos")
    assert c.runtime == "transformers" and c.server == ""


def test_generator_unavailable_is_an_interrupted_call_with_its_status():
    from rag.models.openai_runtime import GeneratorUnavailable

    partial = Completion("so far", 10, 3, 0, 5.0, 1.0, "m", "max_tokens", runtime="openai", server="http://h:1/v1")
    err = GeneratorUnavailable("gone", partial=partial)
    assert isinstance(err, ModelError) and isinstance(err, GenerationInterrupted)
    assert err.code == "generator_unavailable" and err.status == 503 and err.partial is partial
    assert err.to_dict() == {"code": "generator_unavailable", "message": "gone"} and str(err) == "gone"
    assert GeneratorUnavailable("before the call").partial is None


def test_a_tokenizer_without_a_chat_template_is_refused():
    class Bare:
        chat_template = None

    with pytest.raises(ModelError, match="no chat template"):
        ChatTokenizer(Bare(), "folder")


# ---------------------------------------------------------------- the runtime registry


def test_every_setting_value_is_a_registered_runtime():
    from rag.settings import Settings

    assert set(get_args(Settings.model_fields["generator_runtime"].annotation)) == {runtimes.AUTO, *runtimes.RUNTIMES}
    with pytest.raises(ValueError, match="one of"):
        runtimes.get("nope")


@pytest.mark.parametrize("name", list(runtimes.RUNTIMES))
def test_a_registered_runtime_names_its_class_and_folder(name):
    import importlib

    kind = runtimes.get(name)
    module, _, cls_name = kind.cls.partition(":")
    cls = getattr(importlib.import_module(module), cls_name)
    assert cls.runtime == name and callable(cls.from_settings) and runtimes.of(cls) is kind
    assert kind.folder is None or kind.folder in cache.VARIANTS
    assert kind.bf16_folder is None or kind.bf16_folder in cache.VARIANTS
    if kind.in_process:
        assert cls.server == "" and not kind.concurrent


def test_question_slots_follow_the_registry():
    from rag.service.answering import question_slots
    from rag.settings import Settings

    class Served:
        runtime = "openai"

    class InProcess:
        runtime = "llamacpp"

    class Fake:
        runtime = "fake"

    s = Settings(max_concurrent_questions=3)
    assert question_slots(s, Served()) == 3
    assert question_slots(s, InProcess()) == question_slots(s, Fake()) == question_slots(s, None) == 1
