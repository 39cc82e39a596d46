"""Offline through the real server: Gemini unreachable, two WhatsApp messages answered by the
real local model (generated GGUF), and the second prefills only its own new tokens - read from
the local model's counters in /healthz, not from a patch."""

from __future__ import annotations

import aiohttp

from appliance.server import running
from tests.support.actions import free_port
from tests.support.local_llm import CUSTOMER, llm_status, message, replies, whatsapp_settings
from tests.support.messaging import twilio_stand_in

PASSAGE_HEADING = "Knowledge-base passages that may answer this (use only if relevant):\n"


async def test_the_second_offline_message_prefills_only_its_new_tokens(tmp_path, test_models):
    async with twilio_stand_in() as fake:
        settings = whatsapp_settings(tmp_path, test_models, fake.base_url,
                                     f"http://127.0.0.1:{free_port()}")
        async with running(settings) as srv, aiohttp.ClientSession() as http:
            srv.services.local_llm._llm.set_seed(1234)   # random weights: repeatable gibberish
            await message(http, srv.url, "Hello, do you repair fridges?")
            await replies(fake, 1)
            await srv.services.engine.idle()      # the conversation is prefilled meanwhile
            before = await llm_status(http, srv.url)
            question = "And how long is the warranty on a repair?"
            await message(http, srv.url, question)
            await replies(fake, 2)
            after = await llm_status(http, srv.url)

    assert before["mode"] == "local" and before["gemini"]["last_error"] == "connect"
    assert fake.sent_to(CUSTOMER)[-1].body.strip()
    kv1, kv2 = before["local"]["kv"], after["local"]["kv"]
    assert kv2["rounds"] == kv1["rounds"] + 1
    prompt = kv2["prompt_tokens"] - kv1["prompt_tokens"]
    cached = kv2["cached_tokens"] - kv1["cached_tokens"]
    new = prompt - cached
    assert new == kv2["last_new_tokens"]
    # Only the new message (with at most two capped passages) and the template around it:
    # the tiny test vocabulary has about one token per byte, so its bytes bound it.
    most = len((PASSAGE_HEADING + question).encode()) + 520 + 2 * 40 + 32
    assert 0 < new <= most, (new, most, kv2)
    assert cached > kv2["static_tokens"], "static prompt, history and first answer reused"
    print(f"round 2: {prompt} prompt tokens, {cached} reused, {new} new (bound {most})")
    assert new < prompt // 3
