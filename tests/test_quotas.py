"""A key's question slots: taken before the question runs, given back however it ends, calls charged."""

import pytest

from rag.service.quotas import Quotas, RateLimited
from rag.settings import Settings


def _quotas(tmp_path, **kw) -> Quotas:
    return Quotas(Settings(data_dir=tmp_path, **kw))


def test_a_slot_is_held_until_its_context_exits_even_on_error(tmp_path):
    quotas = _quotas(tmp_path, questions_in_flight=1)
    held = quotas.question("k")
    with pytest.raises(RateLimited) as refused:
        quotas.question("k")
    assert refused.value.code == "too_many_questions" and refused.value.retry_after == 1
    quotas.question("other").__exit__(None, None, None)  # per key
    with pytest.raises(ValueError), held:
        raise ValueError("the question failed")
    with quotas.question("k"):
        pass


def test_spent_calls_refuse_the_next_question_with_retry_after(tmp_path):
    quotas = _quotas(tmp_path, model_calls_per_minute=3, questions_in_flight=1)
    with quotas.question("k") as slot:
        slot.spent(3)
    with pytest.raises(RateLimited) as refused:
        quotas.question("k")
    assert refused.value.code == "rate_limited" and refused.value.retry_after >= 1
    quotas.start_question("k")  # the refusal took no slot
