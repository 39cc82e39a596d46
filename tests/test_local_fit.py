"""Issue 13, item 7: every prompt fits the local model's context. One that did not made
llama.cpp fail ("failed to find a memory slot") and the caller heard "technical problem".
With the real llama-cpp-python and the generated chat GGUF (context 2048): huge passages on the
current turn, a huge tool result, a huge question - each answered, history trimmed first, then
passages, then the longest message."""

from __future__ import annotations

import pytest

from appliance.config import LocalLlmSettings, ModelRef
from appliance.llm.base import ChatMessage, StreamDone, ToolCall
from appliance.llm.local import LocalModel
from tests.fakes import chat_model_path
from tests.test_local_llm import collect, request

CONTEXT = 2048
PASSAGES = "Knowledge-base passages:\n" + "The warranty covers parts and labour. " * 400


@pytest.fixture(scope="module")
def local() -> LocalModel:
    settings = LocalLlmSettings(model=ModelRef("[local_llm] model_path", chat_model_path()),
                                context_tokens=CONTEXT, threads=2, max_tokens=24)
    model = LocalModel.load(settings)
    yield model
    model.close()


def history(turns: int) -> list[ChatMessage]:
    out = []
    for i in range(turns):
        out += [ChatMessage("user", f"Question {i} about the warranty " * 3),
                ChatMessage("assistant", f"Answer {i} " * 3)]
    return out


@pytest.mark.parametrize("case", ["passages", "tool_result", "question", "max_tokens"])
async def test_an_oversized_prompt_is_fitted_not_failed(local: LocalModel, case: str) -> None:
    call = ToolCall("book", {"day": "monday", "slot": 2}, id="c1")
    current = {
        "passages": [ChatMessage("user", "Is it covered?", context=PASSAGES)],
        "tool_result": [ChatMessage("user", "Book it"),
                        ChatMessage("assistant", "", tool_calls=(call,)),
                        ChatMessage("tool", "Booked. " + "Details of the slot. " * 600,
                                    call=call)],
        "question": [ChatMessage("user", "Please read this: " + "blah " * 4000)],
        "max_tokens": [ChatMessage("user", "Is it covered?", context=PASSAGES)],
    }[case]
    kw = {"max_tokens": 5000} if case == "max_tokens" else {}
    prompt, tokens = local._tokens_for(request(*history(10), *current, **kw))
    limit = CONTEXT - 64 - 8 if case == "max_tokens" else local._budget(request(**kw))
    assert len(tokens) <= limit                           # (the answer gets the rest)
    assert "Question 0 about" not in prompt                  # history went first
    if case != "question":
        assert current[-1].text[:40] in prompt or case == "tool_result"
    events = await collect(local, request(*history(10), *current, **kw))
    assert isinstance(events[-1], StreamDone)
    assert events[-1].prompt_tokens + events[-1].output_tokens <= CONTEXT


async def test_the_order_is_history_then_passages(local: LocalModel) -> None:
    small = "Knowledge-base passages:\n" + "Parts are covered. " * 30
    prompt, _ = local._tokens_for(request(*history(60), ChatMessage("user", "Covered?",
                                                                    context=small)))
    assert "Parts are covered." in prompt                   # history alone was enough
    prompt, _ = local._tokens_for(request(*history(2), ChatMessage("user", "Covered?",
                                                                   context=PASSAGES)))
    assert "The warranty covers" not in prompt and "Covered?" in prompt
