"""GeminiModel against the fake Gemini server, through the real google-genai client."""

from __future__ import annotations

import asyncio
import base64
import time

import pytest

from appliance.config import GeminiSettings
from appliance.llm.base import (ChatMessage, ChatRequest, ModelError, StreamDone, TextChunk,
                                ToolCall, ToolCallChunk, ToolSpec)
from appliance.llm.gemini import GeminiModel
from tests.support.fakes.gemini_server import Call, Reply

TOOLS = (ToolSpec("end_call", "End the call.",
                  {"type": "object", "properties": {"reason": {"type": "string"}}}),)


def settings(url: str, **overrides: object) -> GeminiSettings:
    values: dict[str, object] = dict(
        api_key="test-key", model="gemini-2.5-flash", base_url=url,
        first_token_timeout_ms=600, stall_timeout_ms=400, total_timeout_ms=5000,
        thinking_budget=0, retry_after_failure_s=1)
    values.update(overrides)
    return GeminiSettings(**values)  # type: ignore[arg-type]


def request(text: str = "When do you open?", **kw: object) -> ChatRequest:
    return ChatRequest(system_static="You are the receptionist.", system_dynamic="Phone call.",
                       messages=(ChatMessage("user", text, context="(passages)"),),
                       tools=TOOLS, voice=True, **kw)  # type: ignore[arg-type]


async def collect(model: GeminiModel, req: ChatRequest) -> list[object]:
    return [event async for event in model.stream(req)]


@pytest.fixture
async def model(fake):
    m = GeminiModel(settings(fake.base_url))
    yield m
    await m.aclose()


async def test_streams_text_and_sends_the_real_request(fake, model):
    fake.script(Reply(text="We open at nine and close at six today.", ttft_s=0.05,
                      tokens_per_s=200))
    started = time.monotonic()
    events = await collect(model, request())
    texts = [e.text for e in events if isinstance(e, TextChunk)]
    assert "".join(texts) == "We open at nine and close at six today."
    assert len(texts) > 1, "streamed in several chunks"
    assert isinstance(events[-1], StreamDone) and events[-1].finish_reason == "stop"
    assert time.monotonic() - started < 1.0

    [sent] = fake.requests
    assert sent.method == "streamGenerateContent" and sent.query == {"alt": "sse"}
    assert sent.model == "gemini-2.5-flash"
    assert sent.headers["x-goog-api-key"] == "test-key"
    assert sent.system == "You are the receptionist.\n\nPhone call."
    assert sent.user_texts() == ["(passages)", "When do you open?"]
    assert sent.tool_names == ["end_call"]
    generation = sent.body["generationConfig"]
    thinking = generation.get("thinkingConfig") or {}
    assert (thinking.get("thinkingBudget", thinking.get("thinking_budget"))) == 0
    assert sent.body["toolConfig"]["functionCallingConfig"]["mode"] == "AUTO"


async def test_thoughts_are_never_returned(fake, model):
    fake.script(Reply(text="Hello.", thoughts="The user wants hours; I should be brief."))
    events = await collect(model, request())
    assert [e.text for e in events if isinstance(e, TextChunk)] == ["Hello."]


async def test_function_call_round_trip_keeps_the_thought_signature(fake, model):
    fake.script(Reply(text="Goodbye!", calls=(Call("end_call", {"reason": "done"}),)),
                Reply(text="Bye."))
    events = await collect(model, request())
    calls = [e.call for e in events if isinstance(e, ToolCallChunk)]
    assert [(c.name, dict(c.args)) for c in calls] == [("end_call", {"reason": "done"})]
    follow_up = ChatRequest(
        system_static="s", system_dynamic="d",
        messages=(ChatMessage("user", "bye"),
                  ChatMessage("assistant", "Goodbye!", tool_calls=tuple(calls)),
                  ChatMessage("tool", "The call will end.", call=calls[0])))
    await collect(model, follow_up)
    second = fake.requests[1]
    [call_part] = second.function_calls()
    assert base64.b64decode(call_part["thoughtSignature"]) == b"fake-thought-signature"
    assert second.function_responses() == [
        {"name": "end_call", "response": {"result": "The call will end."}}]


async def test_a_call_made_by_the_local_model_gets_the_placeholder_signature(fake, model):
    local_call = ToolCall("end_call", {"reason": "done"})
    await collect(model, ChatRequest("s", "d", (
        ChatMessage("user", "bye"), ChatMessage("assistant", "", tool_calls=(local_call,)),
        ChatMessage("tool", "ok", call=local_call))))
    [part] = fake.requests[0].function_calls()
    assert part["functionCall"] == {"name": "end_call", "args": {"reason": "done"}}
    assert base64.b64decode(part["thoughtSignature"]) == b"skip_thought_signature_validator"


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_http_errors_fail_fast_without_retries(fake, model, status):
    fake.script(Reply(status=status))
    started = time.monotonic()
    with pytest.raises(ModelError) as caught:
        await collect(model, request())
    assert caught.value.code == f"http_{status}"
    assert not caught.value.started and caught.value.outage
    assert time.monotonic() - started < 0.5
    assert len(fake.requests) == 1, "google-genai must not retry on its own"


async def test_connection_refused_fails_fast_without_the_hidden_retry(fake):
    url = fake.base_url
    await fake.stop()
    model = GeminiModel(settings(url))
    started = time.monotonic()
    with pytest.raises(ModelError) as caught:
        await collect(model, request())
    await model.aclose()
    assert caught.value.code == "connect" and not caught.value.started
    # google-genai sleeps 1-10 s and retries a refused connection unless retries are set.
    assert time.monotonic() - started < 0.5


async def test_first_token_timeout(fake, model):
    fake.script(Reply(text="Too late.", ttft_s=3))
    started = time.monotonic()
    with pytest.raises(ModelError) as caught:
        await collect(model, request())
    elapsed = time.monotonic() - started
    assert caught.value.code == "first_token_timeout" and not caught.value.started
    assert 0.55 < elapsed < 1.2


async def test_stall_after_text(fake, model):
    fake.script(Reply(text="We open at nine and close at six.", stall_after=1, stall_s=5))
    received: list[str] = []
    started = time.monotonic()
    with pytest.raises(ModelError) as caught:
        async for event in model.stream(request()):
            if isinstance(event, TextChunk):
                received.append(event.text)
    assert caught.value.code == "stall_timeout" and caught.value.started
    assert received == ["We open at "]
    assert 0.35 < time.monotonic() - started < 1.2


async def test_stream_broken_midway(fake, model):
    fake.script(Reply(text="We open at nine and close at six.", break_after=2))
    received: list[str] = []
    with pytest.raises(ModelError) as caught:
        async for event in model.stream(request()):
            if isinstance(event, TextChunk):
                received.append(event.text)
    assert caught.value.code == "broken" and caught.value.started
    assert "".join(received) == "We open at nine and close "


async def test_total_timeout(fake):
    model = GeminiModel(settings(fake.base_url, total_timeout_ms=1000, stall_timeout_ms=900))
    fake.script(Reply(text=" ".join(["word"] * 40), tokens_per_s=8, words_per_chunk=1))
    with pytest.raises(ModelError) as caught:
        await collect(model, request())
    await model.aclose()
    assert caught.value.code == "total_timeout" and caught.value.started


async def test_a_slow_consumer_is_not_a_stall(fake, model):
    fake.script(Reply(text="one two three four five six", words_per_chunk=1))
    out = []
    async for event in model.stream(request()):
        if isinstance(event, TextChunk):
            out.append(event.text)
            await asyncio.sleep(0.2)  # 6 x 0.2 s > stall_timeout 0.4 s, but the data is there
    assert "".join(out) == "one two three four five six"


async def test_cancelling_the_consumer_stops_the_request(fake, model):
    fake.script(Reply(text=" ".join(["word"] * 50), tokens_per_s=20, words_per_chunk=1))
    got_first = asyncio.Event()

    async def consume() -> None:
        async for event in model.stream(request()):
            if isinstance(event, TextChunk):
                got_first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(got_first.wait(), 2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.05)
    leftovers = [t for t in asyncio.all_tasks() if t.get_name() == "gemini-reader"]
    assert leftovers == []


async def test_empty_answer_is_a_refusal_not_an_outage(fake, model):
    fake.script(Reply(text="", finish_reason="SAFETY"))
    with pytest.raises(ModelError) as caught:
        await collect(model, request())
    assert caught.value.code in ("blocked", "empty") and not caught.value.outage


async def test_probe(fake, model):
    elapsed = await model.probe()
    assert elapsed < 1000
    assert fake.requests[0].is_probe
