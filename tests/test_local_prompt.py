"""The local mode's prompt: short, and fitted to the context in a fixed order (pure code)."""

from __future__ import annotations

import pytest

from appliance.config import BusinessSettings
from appliance.llm.base import ChatMessage, ToolCall
from appliance.conversation.prompt import local_static_prompt
from appliance.llm.local_prompt import (PromptTooLong, compact_tools, fit_messages,
                                        static_prompt_check)

STATIC_TOKENS = 50


def count(messages) -> int:
    """~4 characters a token, plus a fixed static prompt."""
    return STATIC_TOKENS + sum(len(m.text) + len(m.context) for m in messages) // 4


def history(pairs: int) -> list[ChatMessage]:
    out = []
    for i in range(pairs):
        out += [ChatMessage("user", f"question {i} " * 10), ChatMessage("assistant", "a" * 80)]
    return out


def test_a_prompt_that_fits_is_untouched():
    msgs = history(2) + [ChatMessage("user", "hi", context="p" * 40)]
    fitted = fit_messages(msgs, 1000, count)
    assert list(fitted.messages) == msgs and fitted.tokens == count(msgs)
    assert not (fitted.dropped_messages or fitted.cut_passages or fitted.cut_text)


def test_history_goes_first_oldest_first_and_passages_stay():
    current = ChatMessage("user", "And on Friday?", context="passage " * 50)
    msgs = history(30) + [current]
    fitted = fit_messages(msgs, 600, count)
    assert fitted.tokens <= 600 and fitted.dropped_messages > 0 and not fitted.cut_passages
    assert fitted.messages[-1] == current
    assert fitted.messages[0].role == "user", "history restarts at a user message"
    kept = [m.text for m in fitted.messages]
    assert kept == [m.text for m in msgs[-len(kept):]], "the newest history is what stays"


def test_then_the_passages_are_shortened_then_the_text():
    current = ChatMessage("user", "the question " * 40, context="passage words " * 400)
    fitted = fit_messages(history(5) + [current], 400, count)
    assert fitted.tokens <= 400 and fitted.cut_passages and not fitted.cut_text
    assert fitted.messages == (fitted.messages[-1],), "all history went before the passages"
    assert fitted.messages[-1].context.endswith(" ...")
    assert fitted.messages[-1].text == current.text
    tight = fit_messages([current], STATIC_TOKENS + 40, count)
    assert tight.cut_text and tight.messages[-1].context == ""
    assert tight.messages[-1].text.startswith("... ") and tight.tokens <= STATIC_TOKENS + 40


def test_the_current_tool_round_is_kept_whole():
    call = ToolCall("find_free_slots", {"day": "sunday"})
    current = [ChatMessage("user", "book me"), ChatMessage("assistant", "", tool_calls=(call,)),
               ChatMessage("tool", "Free: 9:00, 10:00.", call=call)]
    fitted = fit_messages(history(40) + current, 200, count)
    assert list(fitted.messages[-3:]) == current


def test_nothing_fits_is_an_error():
    with pytest.raises(PromptTooLong):
        fit_messages([ChatMessage("user", "hi")], STATIC_TOKENS - 1, count)
    with pytest.raises(PromptTooLong):
        fit_messages([], STATIC_TOKENS - 1, count)


def test_the_local_static_prompt_is_short_and_has_the_facts():
    business = BusinessSettings(
        name="Sunrise Appliances", timezone="Asia/Jerusalem", language="he", greeting="",
        persona="You are the friendly receptionist of Sunrise Appliances.",
        facts="Repairs come with a 90-day warranty. " * 40, address="12 Herzl Street",
        website="https://sunrise.example", transfer_hours="sun-thu 09:00-18:00")
    prompt = local_static_prompt(business)
    assert prompt.startswith("You are the friendly receptionist of Sunrise Appliances.")
    assert "90-day warranty" in prompt and "12 Herzl Street" in prompt and "Hebrew" in prompt
    assert len(prompt) < 1400, "facts are capped"


def test_compact_tools_and_the_doctor_sentence():
    assert compact_tools(()) == ""
    assert static_prompt_check(1000, 4096) is None
    assert static_prompt_check(2049, 4096).startswith("the local model's static prompt")


# -- what the engine gives the local model --------------------------------------------------

async def test_an_offline_turn_gets_two_capped_passages_and_the_short_prompt(tmp_path):
    from dataclasses import dataclass

    from appliance.conversation.engine import Engine
    from appliance.conversation.tools import ToolRegistry
    from appliance.llm.failover import ChatModels
    from appliance.store.db import Database
    from tests.support.fakes import chat_model_path, listen, make_settings
    from tests.support.local_llm import RecordingLocal

    @dataclass(frozen=True)
    class Hit:
        text: str
        source: str

    class Kb:
        def search(self, query: str, k: int) -> list[Hit]:
            return [Hit(f"Passage {i}: " + "fridge repair details " * 60, f"doc{i}.md")
                    for i in range(k)]

    from appliance.config import LocalLlmSettings, ModelRef
    from appliance.llm.local import LocalModel

    model = LocalModel.load(LocalLlmSettings(
        model=ModelRef("[local_llm] model_path", chat_model_path()), context_tokens=4096,
        threads=2, max_tokens=8))
    settings = make_settings(tmp_path, api_key="", chat_gguf=chat_model_path())
    db = await Database.open(settings.storage.database)
    local = RecordingLocal(model)
    engine = Engine(settings, db, ChatModels(gemini=None, local=local), ToolRegistry.default(),
                    kb=Kb())
    try:
        await engine.start()
        conversation = await engine.open("+972501234567", "call")
        await listen(conversation, "How much is a fridge repair?")
        static_tokens = model.static_tokens(engine.local_prompt, engine.tools.specs("call"))
    finally:
        await engine.close()
        db.close()
        model.close()
    request = local.requests[-1]
    context = request.messages[-1].context_local        # what the local model reads
    assert "Passage 0:" in context and "Passage 1:" in context and "Passage 2:" not in context
    assert len(context) < 360 + 120
    assert len(request.messages[-1].context) > 2 * len(context), "Gemini's version is longer"
    assert request.system_local == engine.local_prompt and request.session.startswith("call:")
    assert model.warm_stats is not None
    assert model.warm_stats.prompt_tokens == static_tokens
