"""The conversation engine: memory, customers, tools, fillers, barge-in, `appliance chat`."""

from __future__ import annotations

import argparse
import asyncio
import io
from dataclasses import dataclass, replace
from typing import Any

import pytest

from appliance.config import LocalLlmSettings, ModelRef
from appliance.conversation import commands
from appliance.conversation.engine import Engine, EngineOptions
from appliance.conversation.events import Action, Filler, TextDelta
from appliance.conversation.tools import Tool, ToolContext, ToolError, ToolRegistry, within_hours
from appliance.llm.base import ChatRequest
from appliance.llm.failover import ChatModels
from appliance.llm.gemini import GeminiModel
from appliance.llm.local import LocalModel
from appliance.store.db import Database
from tests.fakes import chat_model_path, listen, make_settings
from tests.fakes.gemini_server import Call, FakeGemini, Recorded, Reply

PHONE = "+972501234567"
OPERATOR = "+972501112233"   # [twilio] operator_number in make_settings


@pytest.fixture(scope="module")
def local_model() -> LocalModel:
    model = LocalModel.load(LocalLlmSettings(
        model=ModelRef("[local_llm] model_path", chat_model_path()), context_tokens=4096,
        threads=2, max_tokens=16))
    yield model
    model.close()


@pytest.fixture
async def fake():
    async with FakeGemini() as server:
        yield server


@pytest.fixture
async def build(tmp_path, fake):
    """build(tools=..., local=..., cloud=True, <section>={...}) -> Engine on one database
    file in tmp_path (`cloud=False`: no Gemini API key)."""
    engines: list[tuple[Engine, Database]] = []

    async def make(*, tools: ToolRegistry | None = None, local: Any = None,
                   cloud: bool = True, kb: Any = None, **sections: dict[str, object]) -> Engine:
        settings = make_settings(tmp_path, gemini_url=fake.base_url,
                                 api_key="test-key" if cloud else "",
                                 chat_gguf=chat_model_path(), sections=sections)
        db = await Database.open(settings.storage.database)
        models = ChatModels(gemini=GeminiModel(settings.gemini) if cloud else None,
                            local=local)
        engine = Engine(settings, db, models, tools or ToolRegistry.default(), kb=kb)
        await engine.start()
        engines.append((engine, db))
        return engine

    yield make
    for engine, db in engines:
        await engine.close()
        db.close()


async def close(engine: Engine) -> None:
    await engine.close()
    engine.memory.db.close()


def echo_tool_result(request: Recorded) -> Reply:
    """The fake model says what the tool returned (the result reaches the reply)."""
    [response] = request.function_responses()[-1:]
    return Reply(text=f"Here it is: {response['response']['result']}")


# -- memory and customers ----------------------------------------------------------------------

async def test_history_survives_a_restart(build, fake):
    first = await build()
    conversation = await first.open(PHONE, "call")
    fake.script(Reply(text="Hello, Sunrise Appliances."), Reply(text="We open at nine."))
    await listen(conversation, "Hi")
    await listen(conversation, "When do you open?")
    await close(first)

    second = await build()                        # a new process on the same database
    again = await second.open(PHONE, "whatsapp")  # (an unconfirmed call would not see it:
    #                                               test_unconfirmed_caller.py)
    assert [(m.role, m.text) for m in again.history] == [
        ("user", "Hi"), ("assistant", "Hello, Sunrise Appliances."),
        ("user", "When do you open?"), ("assistant", "We open at nine.")]
    fake.script(Reply(text="Yes."))
    await listen(again, "Also on Friday?")
    assert [t for _, t in fake.requests[-1].all_texts()][-3:] == [
        "When do you open?", "We open at nine.", "Also on Friday?"]


async def test_a_caller_who_later_writes_on_whatsapp_is_the_same_customer(build, fake):
    engine = await build()
    call = await engine.open(PHONE, "call")
    fake.script(Reply(text="We repair fridges."))
    await listen(call, "Do you repair fridges?")
    chat = await engine.open(f"whatsapp:{PHONE}", "whatsapp")
    assert chat.customer.id == call.customer.id and chat.customer.phone == PHONE
    assert [m.text for m in chat.history] == ["Do you repair fridges?", "We repair fridges."]
    rows = await engine.memory.db.fetchall("SELECT channel, role FROM turns ORDER BY id")
    assert [tuple(r) for r in rows] == [("call", "user"), ("call", "assistant")]


async def test_customer_record_is_updated_and_read_at_the_next_conversation(build, fake):
    engine = await build()
    conversation = await engine.open(PHONE, "call")
    fake.script(Reply(calls=(Call("update_customer",
                                  {"name": "Dana", "gender": "f", "language": "he"}),)),
                echo_tool_result)
    heard = await listen(conversation, "קוראים לי דנה")
    assert "Saved: name = Dana, language = he, gender = f." in heard.text
    assert conversation.customer.name == "Dana"
    later = await engine.open(PHONE, "whatsapp")
    assert (later.customer.name, later.customer.language, later.customer.gender) == \
        ("Dana", "he", "f")
    fake.script(Reply(text="שלום דנה"))
    await listen(later, "היי")
    system = fake.requests[-1].system
    assert "name Dana" in system and "feminine" in system and "Hebrew" in system


async def test_the_user_turn_is_stored_before_the_reply_starts(build, fake):
    engine = await build()
    conversation = await engine.open(PHONE, "sms")
    fake.script(Reply(text="Sure thing.", ttft_s=0.3))
    replies = conversation.reply("Can I book a repair?")
    first = await replies.__anext__()
    rows = await engine.memory.db.fetchall("SELECT role, text FROM turns")
    assert [tuple(r) for r in rows][:1] == [("user", "Can I book a repair?")]
    assert isinstance(first, TextDelta)
    async for _ in replies:
        pass


# -- tools -------------------------------------------------------------------------------------

async def test_the_model_cannot_choose_where_to_transfer(build, fake):
    engine = await build()
    conversation = await engine.open(PHONE, "call")
    fake.script(Reply(calls=(Call("transfer_to_human",
                                  {"reason": "wants a person", "target": "+19990000000"}),)),
                Reply(text="Connecting you now."))
    heard = await listen(conversation, "Put me through to +1 999 000 0000")
    assert heard.actions == [Action("transfer", target=OPERATOR, reason="wants a person")]
    assert conversation.context.actions == heard.actions
    assert heard.text == "Connecting you now."
    [response] = fake.requests[-1].function_responses()
    assert "transferred" in response["response"]["result"]


async def test_call_only_tools_are_not_offered_in_messages(build, fake):
    engine = await build()
    await listen(await engine.open(PHONE, "call"), "hi")
    await listen(await engine.open(PHONE, "whatsapp"), "hi")
    call_tools, whatsapp_tools = fake.requests[0].tool_names, fake.requests[1].tool_names
    assert set(call_tools) == {"transfer_to_human", "end_call", "update_customer"}
    assert whatsapp_tools == ["update_customer"]


async def test_end_call_asks_for_a_hangup_after_the_goodbye(build, fake):
    engine = await build()
    conversation = await engine.open(PHONE, "call")
    fake.script(Reply(text="Goodbye!", calls=(Call("end_call", {}),)), Reply(text=""))
    heard = await listen(conversation, "That's all, bye")
    assert heard.actions == [Action("hangup")]
    assert heard.text == "Goodbye!"


def _custom_tool(name: str, handler: Any, **kw: Any) -> Tool:
    return Tool(name=name, description=f"The {name} tool.",
                parameters={"type": "object", "properties": {
                    "day": {"type": "string", "enum": ["sunday", "monday"]}}},
                handler=handler, **kw)


async def test_a_gemini_tool_call_runs_with_the_conversation_context(build, fake):
    seen: list[ToolContext] = []

    async def hours(ctx: ToolContext, args: dict[str, Any]) -> str:
        seen.append(ctx)
        return f"Open {args.get('day', 'every day')} 9 to 18."

    engine = await build(tools=ToolRegistry([_custom_tool("opening_hours", hours)]))
    conversation = await engine.open(f"whatsapp:{PHONE}", "whatsapp")
    fake.script(Reply(calls=(Call("opening_hours", {"day": "sunday", "phone": "+1555"}),)),
                echo_tool_result)
    heard = await listen(conversation, "Are you open on Sunday?")
    assert heard.text == "Here it is: Open sunday 9 to 18."
    assert [(c.phone, c.channel, c.customer.id) for c in seen] == \
        [(PHONE, "whatsapp", conversation.customer.id)]
    rows = await engine.memory.db.fetchall(
        "SELECT role, tool_name, text, full_text FROM turns WHERE role = 'tool'")
    assert [tuple(r) for r in rows] == [("tool", "opening_hours", "Open sunday 9 to 18.",
                                         '{"day": "sunday"}')]


@dataclass
class ToolFirstLocal:
    """The real local model, made to call a tool in the first round of each turn (a random
    model would never choose to); the call itself is generated under the tools' grammar."""

    model: LocalModel
    requests: list[ChatRequest]

    @property
    def name(self) -> str:
        return self.model.name

    def stream(self, request: ChatRequest) -> Any:
        self.requests.append(request)
        if request.messages[-1].role == "user":
            request = replace(request, tool_choice="required")
        return self.model.stream(request)

    async def warm(self, static: str, tools: Any = ()) -> Any:
        return await self.model.warm(static, tools)


async def test_a_local_tool_call_runs_with_the_conversation_context(build, local_model):
    seen: list[tuple[str, str, dict[str, Any]]] = []

    async def hours(ctx: ToolContext, args: dict[str, Any]) -> str:
        seen.append((ctx.phone, ctx.channel, args))
        return "Open 9 to 18."

    local = ToolFirstLocal(local_model, [])
    engine = await build(tools=ToolRegistry([_custom_tool("opening_hours", hours)]),
                         local=local, cloud=False)
    conversation = await engine.open(PHONE, "call")
    heard = await listen(conversation, "When are you open?")
    assert len(seen) == 1
    phone, channel, args = seen[0]
    assert (phone, channel) == (PHONE, "call") and set(args) <= {"day"}
    # The result went back to the local model for the rest of the reply.
    follow_up = local.requests[-1]
    assert follow_up.messages[-1].role == "tool" and follow_up.messages[-1].text == "Open 9 to 18."
    assert "<tool_response>\nOpen 9 to 18.\n</tool_response>" in local_model.render(follow_up)
    assert heard.done.model == "local:chat-test.gguf"


async def test_a_slow_tool_gets_one_moment_on_a_call_only(build, fake):
    async def slow(ctx: ToolContext, args: dict[str, Any]) -> str:
        await asyncio.sleep(1.0)
        return "Done."

    engine = await build(tools=ToolRegistry([_custom_tool("slow_lookup", slow)]))
    for channel, expect_filler in (("call", True), ("whatsapp", False)):
        conversation = await engine.open(PHONE, channel)
        fake.script(Reply(text="Let me check.", calls=(Call("slow_lookup", {}),)),
                    Reply(text="All done."))
        heard = await listen(conversation, "Check please")
        fillers = [e for _, e in heard.fillers]
        assert fillers == ([Filler("One moment.", "slow_tool")] if expect_filler else [])
        assert heard.text == "Let me check. All done."


@pytest.mark.parametrize("behaviour, expected", [
    ("tool_error", "slow_lookup failed: the calendar is closed."),
    ("crash", "slow_lookup failed because of a technical problem"),
    ("timeout", "slow_lookup did not answer in time"),
])
async def test_tool_failures_become_sentences_for_the_model(build, fake, behaviour, expected):
    async def handler(ctx: ToolContext, args: dict[str, Any]) -> str:
        if behaviour == "tool_error":
            raise ToolError("the calendar is closed")
        if behaviour == "crash":
            raise RuntimeError("boom")
        await asyncio.sleep(5)
        return "never"

    tool = _custom_tool("slow_lookup", handler, timeout_s=0.3)
    engine = await build(tools=ToolRegistry([tool]))
    conversation = await engine.open(PHONE, "sms")
    fake.script(Reply(calls=(Call("slow_lookup", {"day": "monday"}),)), echo_tool_result)
    heard = await listen(conversation, "Book Monday")
    assert expected in heard.text


async def test_bad_arguments_and_unknown_tools_are_told_to_the_model(build, fake):
    engine = await build(tools=ToolRegistry([_custom_tool("lookup", _never)]))
    conversation = await engine.open(PHONE, "sms")
    fake.script(Reply(calls=(Call("lookup", {"day": "friday"}), Call("launch_rockets", {}))),
                Reply(text="ok"))
    await listen(conversation, "hi")
    results = [r["response"]["result"] for r in fake.requests[-1].function_responses()]
    assert results == ["lookup was not run: day must be one of sunday, monday.",
                       "There is no tool called launch_rockets here."]


async def _never(ctx: ToolContext, args: dict[str, Any]) -> str:
    raise AssertionError("must not run")


def test_transfer_hours():
    from datetime import datetime

    spec = "sun-thu 09:00-18:00; fri 09:00-13:00"
    assert within_hours(spec, datetime(2024, 5, 5, 10, 0))       # Sunday
    assert not within_hours(spec, datetime(2024, 5, 10, 14, 0))  # Friday afternoon
    assert not within_hours(spec, datetime(2024, 5, 11, 10, 0))  # Saturday
    assert within_hours("", datetime(2024, 5, 11, 3, 0))


async def test_outside_transfer_hours_the_model_is_told_to_take_a_message(build, fake):
    engine = await build(business={"transfer_hours": "sat-sat 00:00-00:01"})
    conversation = await engine.open(PHONE, "call")
    fake.script(Reply(calls=(Call("transfer_to_human", {}),)), echo_tool_result)
    heard = await listen(conversation, "A person please")
    assert heard.actions == [] and "offer to take a message" in heard.text


# -- timing on a call, barge-in ----------------------------------------------------------------

async def test_a_slow_answer_gets_one_moment_on_a_call(build, fake):
    engine = await build(gemini={"first_token_timeout_ms": 3000})
    call = await engine.open(PHONE, "call")
    fake.script(Reply(text="We open at nine.", ttft_s=1.4))
    heard = await listen(call, "When do you open?")
    assert len(heard.fillers) == 1 and 0.95 < heard.fillers[0][0] < 1.3
    assert heard.text == "We open at nine." and heard.done.model == "gemini:gemini-2.5-flash"
    chat = await engine.open(PHONE, "whatsapp")
    fake.script(Reply(text="We open at nine.", ttft_s=1.4))
    assert (await listen(chat, "When do you open?")).fillers == []


async def test_fillers_speak_the_callers_language(build, fake):
    engine = await build(gemini={"first_token_timeout_ms": 3000})
    call = await engine.open(PHONE, "call")
    fake.script(Reply(text="בתשע.", ttft_s=1.2))
    heard = await listen(call, "מתי אתם פותחים?", language="he")
    assert [e.text for _, e in heard.fillers] == ["רק רגע."]
    assert "(The customer is speaking Hebrew.)" in fake.requests[-1].user_texts()
    assert call.customer.language == "he"


async def test_barge_in_stores_what_was_generated_then_what_was_heard(build, fake):
    engine = await build()
    conversation = await engine.open(PHONE, "call")
    fake.script(Reply(text="We open at nine in the morning and close at six in the evening.",
                      words_per_chunk=1, tokens_per_s=15))
    deltas: list[str] = []

    async def speak() -> None:
        async for event in conversation.reply("When do you open?"):
            if isinstance(event, TextDelta):
                deltas.append(event.text)

    task = asyncio.create_task(speak())
    while len(deltas) < 4:
        await asyncio.sleep(0.01)
    task.cancel()                                     # the caller started talking
    with pytest.raises(asyncio.CancelledError):
        await task
    row = await engine.memory.db.fetchone(
        "SELECT text, full_text, interrupted, model FROM turns WHERE role = 'assistant'")
    generated = "".join(deltas)
    assert row["full_text"].startswith(generated.strip()) and row["interrupted"] == 1
    assert row["model"] == "gemini:gemini-2.5-flash"

    await conversation.mark_heard("We open", interrupted=True)
    row = await engine.memory.db.fetchone(
        "SELECT text, interrupted FROM turns WHERE role = 'assistant'")
    assert (row["text"], row["interrupted"]) == ("We open", 1)
    fake.script(Reply(text="At nine."))
    await listen(conversation, "Sorry, what time?")
    assert [t for _, t in fake.requests[-1].all_texts()] == [
        "When do you open?", "We open —", "Sorry, what time?"]


async def test_the_greeting_can_be_recorded(build, fake):
    engine = await build()
    conversation = await engine.open(PHONE, "call")
    await conversation.said("Hello, you've reached Sunrise Appliances.")
    fake.script(Reply(text="Sure."))
    await listen(conversation, "Hi, a question")
    assert fake.requests[-1].all_texts() == [
        ("user", "(the conversation starts)"),
        ("model", "Hello, you've reached Sunrise Appliances."),
        ("user", "Hi, a question")]
    row = await engine.memory.db.fetchone("SELECT role, model FROM turns ORDER BY id LIMIT 1")
    assert (row["role"], row["model"]) == ("assistant", None)


# -- knowledge base ----------------------------------------------------------------------------

@dataclass(frozen=True)
class FakeHit:
    text: str
    source: str


class FakeKb:
    def __init__(self) -> None:
        self.queries: list[tuple[str, int]] = []

    def search(self, query: str, k: int) -> list[FakeHit]:
        self.queries.append((query, k))
        return [FakeHit("Fridge repairs cost 250 shekels plus parts.", "prices.csv")]


async def test_knowledge_base_passages_reach_the_model(build, fake):
    kb = FakeKb()
    engine = await build(kb=kb)
    conversation = await engine.open(PHONE, "whatsapp")
    fake.script(Reply(calls=(Call("kb_search", {"query": "fridge repair price"}),)),
                echo_tool_result)
    heard = await listen(conversation, "How much is a fridge repair?")
    first = fake.requests[0]
    assert "kb_search" in first.tool_names
    assert any("Fridge repairs cost 250 shekels" in t for t in first.user_texts())
    assert "250 shekels" in heard.text
    assert kb.queries == [("How much is a fridge repair?", 4), ("fridge repair price", 4)]


# -- the local model's cache follows the conversation ------------------------------------------

async def test_a_failover_turn_only_prefills_its_new_message(build, fake, local_model):
    engine = await build(local=local_model)
    conversation = await engine.open(PHONE, "call")
    fake.script(Reply(text="Hello! How can I help you today?"))
    await listen(conversation, "Hello")
    await asyncio.sleep(0.5)            # the caller listens; the local model catches up
    fake.script(Reply(status=503))
    heard = await listen(conversation, "When do you open?")
    assert heard.done.model == "local:chat-test.gguf"
    stats = local_model.last_stats
    assert stats.prompt_tokens - stats.cached_tokens < 60, stats


async def test_while_gemini_answers_the_local_model_prepares_the_same_turn(build, fake,
                                                                          local_model):
    engine = await build(local=local_model)
    conversation = await engine.open(PHONE, "call")
    await engine.idle()
    fake.script(Reply(text="We open at nine and close at six.", ttft_s=0.5, break_after=1))
    heard = await listen(conversation, "When do you open?")
    assert heard.done.model == "gemini:gemini-2.5-flash+local:chat-test.gguf"
    stats = local_model.last_stats
    # Only the words Gemini had already said were new to the local model.
    assert stats.prompt_tokens - stats.cached_tokens <= len("We open at ") + 2, stats


# -- status and the command line ---------------------------------------------------------------

async def test_status_shape(build):
    engine = await build(cloud=False)
    assert engine.status() == {"mode": "offline", "gemini": {"configured": False},
                               "local": {"loaded": False, "model": None}}


def test_chat_command_is_registered():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    commands.register(sub)
    args = parser.parse_args(["chat", "--phone", PHONE, "--model", "local"])
    assert (args.phone, args.model, args.channel, args.handler) == \
        (PHONE, "local", "chat", commands.run)


async def test_chat_command_talks_to_the_engine(tmp_path, fake):
    settings = make_settings(tmp_path, gemini_url=fake.base_url, chat_gguf=chat_model_path())
    fake.script(Reply(text="We open at nine."))
    out = io.StringIO()
    code = await commands.chat(settings, PHONE, "gemini", "call",
                               io.StringIO("When do you open?\n/status\n/quit\n"), out)
    assert code == 0
    text = out.getvalue()
    assert "We open at nine." in text and "(gemini:gemini-2.5-flash, first text" in text
    assert "'mode': 'cloud'" in text


async def test_engine_options_are_respected(build, fake):
    engine = await build()
    engine.options = EngineOptions(filler_after_ms=200)
    conversation = await engine.open(PHONE, "call")
    fake.script(Reply(text="Fine.", ttft_s=0.5))
    heard = await listen(conversation, "How are you?")
    assert len(heard.fillers) == 1 and 0.18 < heard.fillers[0][0] < 0.45
