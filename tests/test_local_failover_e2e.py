"""Failover through the real server: Gemini (a loopback fake speaking its wire protocol)
answers the first WhatsApp message and fails the second; the real local model (generated
GGUF) answers the second with the short local passages, and the third message, with Gemini
skipped, prefills only its own new tokens. Read from /healthz and the fake's recording."""

from __future__ import annotations

import aiohttp

from appliance.server import running
from tests.support.fakes.gemini_server import FakeGemini, Reply
from tests.support.local_llm import llm_status, message, replies, whatsapp_settings
from tests.support.messaging import twilio_stand_in

CLOUD_HEADING = "Knowledge-base passages that may answer this (use only if relevant):"
LOCAL_HEADING = "Passages (use only if relevant):\n"
LOCAL_PASSAGE_CHARS = 360      # EngineOptions.kb_passage_chars_local
SLACK = 2 * 40 + 48            # source labels, " ..." cuts, the chat template around it


async def test_after_a_failover_the_local_model_gets_short_passages_and_only_new_tokens(
        tmp_path, test_models):
    async with twilio_stand_in() as fake, FakeGemini() as gemini:
        gemini.script(Reply(text="We repair fridges of every brand."), Reply(status=503))
        settings = whatsapp_settings(tmp_path, test_models, fake.base_url, gemini.base_url)
        async with running(settings) as srv, aiohttp.ClientSession() as http:
            srv.services.local_llm._llm.set_seed(1234)
            await srv.services.engine.idle()
            await message(http, srv.url, "Hello, do you repair fridges?")
            await replies(fake, 1)
            start = await llm_status(http, srv.url)
            second = "How long is the warranty on a repair?"
            await message(http, srv.url, second)
            await replies(fake, 2)
            await srv.services.engine.idle()   # the conversation is prefilled meanwhile
            failed_over = await llm_status(http, srv.url)
            third = "And do you deliver to Haifa?"
            await message(http, srv.url, third)
            await replies(fake, 3)
            after = await llm_status(http, srv.url)

    assert start["mode"] == "cloud" and start["local"]["kv"]["rounds"] == 0
    assert failed_over["mode"] == "local"
    assert len(gemini.turn_requests) == 2, "Gemini saw turns 1 and 2, then was skipped"
    *_, cloud_context_text, asked = gemini.turn_requests[1].user_texts()
    assert CLOUD_HEADING in cloud_context_text and asked == second
    kv2, kv3 = failed_over["local"]["kv"], after["local"]["kv"]
    assert kv2["rounds"] == 1, "the local model answered turn 2"
    # Turn 2 (the failover) evaluated all that follows the warm static prompt once.
    assert kv2["cached_tokens"] > 0 and kv2["last_new_tokens"] > 0
    # Turn 3 (Gemini skipped): only the new message and its short passages.
    assert kv3["rounds"] == 2
    new = kv3["last_new_tokens"]
    most = len((LOCAL_HEADING + third).encode()) + LOCAL_PASSAGE_CHARS + SLACK
    assert 0 < new <= most, (new, most, kv3)
    reused = (kv3["cached_tokens"] - kv2["cached_tokens"])
    assert reused > kv3["static_tokens"] + len(second), "static prompt and turns 1-2 reused"
    print(f"turn 2 (failover): {kv2['last_new_tokens']} new tokens; turn 3: {new} new, "
          f"{reused} reused")
