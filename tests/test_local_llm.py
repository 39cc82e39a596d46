"""LocalModel with the real llama-cpp-python and the generated random-weight chat GGUF.

The model's words are gibberish (random weights); these tests check what does not depend on
them: streaming, cancellation, KV-cache reuse, grammar-constrained tool calls, the prompt.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace

import pytest

from appliance.config import LocalLlmSettings, ModelRef
from appliance.llm.base import (ChatMessage, ChatRequest, StreamDone, TextChunk, ToolCall,
                                ToolCallChunk, ToolSpec)
from appliance.llm.local import LocalModel, Splitter, tool_call_schema
from tests.fakes import chat_model_path

STATIC = ("You are the receptionist of Sunrise Appliances, a repair shop in Tel Aviv. "
          "Answer briefly. ") * 8
TOOLS = (
    ToolSpec("end_call", "End the call.",
             {"type": "object", "properties": {"reason": {"type": "string"}}}),
    ToolSpec("book", "Book a repair.", {
        "type": "object", "required": ["day", "slot"],
        "properties": {"day": {"type": "string", "enum": ["sunday", "monday", "tuesday"]},
                       "slot": {"type": "integer"},
                       "urgent": {"type": "boolean"}}}),
)


@pytest.fixture(scope="module")
def local() -> LocalModel:
    settings = LocalLlmSettings(model=ModelRef("[local_llm] model_path", chat_model_path()),
                                context_tokens=2048, threads=2, max_tokens=24)
    model = LocalModel.load(settings)
    yield model
    model.close()


def request(*messages: ChatMessage, **kw: object) -> ChatRequest:
    return ChatRequest(system_static=STATIC, system_dynamic="Channel: phone call.",
                       messages=messages or (ChatMessage("user", "When do you open?"),),
                       tools=TOOLS, **kw)  # type: ignore[arg-type]


async def collect(model: LocalModel, req: ChatRequest) -> list[object]:
    return [event async for event in model.stream(req)]


def text_of(events: list[object]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextChunk))


async def test_streams_text_within_max_tokens(local):
    events = await collect(local, request())
    assert isinstance(events[-1], StreamDone)
    chunks = [e for e in events if isinstance(e, TextChunk)]
    assert len(chunks) > 1, "streamed token by token"
    assert 0 < events[-1].output_tokens <= 24
    assert local.name == "local:chat-test.gguf"


async def test_prompt_uses_the_gguf_template_with_static_part_first(local):
    call = ToolCall("end_call", {"reason": "done"})
    prompt = local.render(request(
        ChatMessage("user", "hi", context="[passages]"),
        ChatMessage("assistant", "Goodbye", tool_calls=(call,)),
        ChatMessage("tool", "The call will end.", call=call)))
    assert prompt.startswith("<|im_start|>system\n" + STATIC.strip())
    assert prompt.index("- book(day, slot, urgent?): Book a repair.") < prompt.index(
        "Channel: phone call.")
    assert "<|im_start|>user\n[passages]\n\nhi<|im_end|>" in prompt
    assert ('<|im_start|>assistant\nGoodbye\n<tool_call>\n{"name": "end_call", "arguments": '
            '{"reason": "done"}}\n</tool_call><|im_end|>') in prompt
    assert "<tool_response>\nThe call will end.\n</tool_response>" in prompt
    assert prompt.endswith("<|im_start|>assistant\n")


async def test_kv_cache_is_reused_across_turns(local):
    stats = await local.warm(STATIC)
    assert stats.prompt_tokens > 100
    first = request(ChatMessage("user", "When do you open?"))
    events1 = await collect(local, first)
    turn1 = local.last_stats
    assert turn1.cached_tokens >= stats.prompt_tokens - 1, "the warmed static prompt is reused"

    second = request(ChatMessage("user", "When do you open?"),
                     ChatMessage("assistant", text_of(events1)),
                     ChatMessage("user", "And on Friday?"))
    await collect(local, second)
    turn2 = local.last_stats
    # Turn 2 re-evaluates only what follows turn 1's prompt: the reply (random text may
    # re-tokenise differently from the generated tokens) and the new message.
    assert turn2.cached_tokens >= turn1.prompt_tokens - 2
    print(f"turn 1: {turn1}\nturn 2: {turn2}")


async def test_grammar_makes_every_tool_call_valid(local):
    names = set()
    for attempt in range(6):
        req = request(ChatMessage("user", f"Please book me, attempt {attempt}"),
                      tool_choice="required")
        events = await collect(local, req)
        calls = [e.call for e in events if isinstance(e, ToolCallChunk)]
        assert len(calls) == 1, events
        call = calls[0]
        names.add(call.name)
        assert call.name in ("end_call", "book")
        if call.name == "book":
            assert call.args["day"] in ("sunday", "monday", "tuesday")
            assert isinstance(call.args["slot"], int)
            assert set(call.args) <= {"day", "slot", "urgent"}
        else:
            assert set(call.args) <= {"reason"}
        assert isinstance(events[-1], StreamDone) and events[-1].finish_reason == "tool_calls"
    assert names, "at least one call"


def test_tool_schema_bounds_free_strings():
    schema = tool_call_schema(TOOLS)
    end_call = schema["oneOf"][0]["properties"]["arguments"]
    assert end_call["properties"]["reason"]["maxLength"] > 0
    assert end_call["additionalProperties"] is False
    assert schema["oneOf"][1]["properties"]["name"] == {"const": "book"}


def test_splitter_cuts_at_tool_call_and_holds_back_partial_markup():
    splitter = Splitter(("<tool_call>", "<|im_end|>"))
    assert splitter.feed("Sure, let me") == ("Sure, let me", None)
    assert splitter.feed(" check <tool") == (" check ", None)
    assert splitter.feed('_call>\n{"name"') == ("", "<tool_call>")
    other = Splitter(("<tool_call>",))
    assert other.feed("a <") == ("a ", None)
    assert other.feed("b c") == ("<b c", None)
    assert other.feed("<tool_") == ("", None)
    assert other.flush() == ""


async def test_a_partial_reply_is_continued_not_repeated(local):
    prefix = "We open at nine and"
    req = request(prefix=prefix)
    assert local.render(req).endswith("<|im_start|>assistant\n" + prefix)
    events = await collect(local, req)
    assert not text_of(events).startswith(prefix)
    assert local.last_stats.cached_tokens > 0


async def test_cancel_stops_generation_promptly(local):
    long = replace(request(), max_tokens=1500)
    got = asyncio.Event()

    async def consume() -> None:
        async for event in local.stream(long):
            if isinstance(event, TextChunk):
                got.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(got.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    started = time.monotonic()
    events = await collect(local, replace(request(), max_tokens=4))
    assert isinstance(events[-1], StreamDone)
    assert time.monotonic() - started < 2.0, "the cancelled generation did not hold the model"
    assert local.last_stats is not None and local.last_stats.output_tokens <= 4


async def test_one_generation_at_a_time(local):
    a, b = await asyncio.gather(collect(local, request()), collect(local, request(
        ChatMessage("user", "Another question"))))
    assert isinstance(a[-1], StreamDone) and isinstance(b[-1], StreamDone)


async def test_history_longer_than_the_context_is_trimmed(local):
    messages = []
    for i in range(60):
        messages.append(ChatMessage("user", f"Question number {i} about opening hours " * 4))
        messages.append(ChatMessage("assistant", f"Answer number {i} " * 4))
    messages.append(ChatMessage("user", "last question"))
    events = await collect(local, request(*messages))
    assert isinstance(events[-1], StreamDone)
    assert events[-1].prompt_tokens <= 2048 - 24


def test_the_tool_list_is_one_line_per_tool():
    from appliance.llm.local_prompt import compact_tools

    lines = compact_tools(TOOLS).splitlines()
    assert lines[1:] == ["- end_call(reason?): End the call.",
                         "- book(day, slot, urgent?): Book a repair."]
    assert "<tool_call>" in lines[0]
