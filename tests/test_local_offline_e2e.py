"""Offline through the real server: Gemini unreachable, two WhatsApp messages answered by the
real local model (generated GGUF), and the second prefills only its own new tokens - read from
the local model's counters in /healthz, not from a patch."""

from __future__ import annotations

import asyncio

import aiohttp

from appliance.config import load_settings
from appliance.server import running
from tests.support.actions import free_port
from tests.support.fixtures import TOKEN, write_ini
from tests.support.messaging import (ACCOUNT_SID, WA_FROM, inbound_params, new_sid, sign,
                                          twilio_stand_in)

CUSTOMER = "whatsapp:+972501234567"
PASSAGE_HEADING = "Knowledge-base passages that may answer this (use only if relevant):\n"


async def message(http: aiohttp.ClientSession, url: str, body: str) -> None:
    params = inbound_params(new_sid(), CUSTOMER, body)
    async with http.post(url + "/message", data=params,
                         headers={"X-Twilio-Signature": sign("/message", params)}) as resp:
        assert resp.status == 200, await resp.text()


async def replies(fake, count: int, timeout: float = 60.0) -> None:
    async def poll() -> None:
        while len(fake.sent_to(CUSTOMER)) < count:
            await asyncio.sleep(0.05)
    await asyncio.wait_for(poll(), timeout)


async def llm_status(http: aiohttp.ClientSession, url: str) -> dict:
    async with http.get(url + "/healthz") as resp:
        return (await resp.json())["llm"]


def whatsapp_settings(tmp_path, test_models, twilio_url: str, gemini_url: str):
    """WhatsApp through the Twilio stand-in, Gemini at `gemini_url` (a key set), the test
    GGUF as the local model with room for a few turns."""
    extra = (f"[twilio]\naccount_sid = {ACCOUNT_SID}\napi_base_url = {twilio_url}\n"
             f"[messaging]\nwhatsapp_from = {WA_FROM}\n"
             f"[gemini]\nbase_url = {gemini_url}\n"
             f"first_token_timeout_ms = 1500\nretry_after_failure_s = 600\n"
             f"[local_llm]\ncontext_tokens = 4096\nmax_tokens = 24\n")
    ini = write_ini(tmp_path / "config.ini", test_models, extra)
    return load_settings(ini, environ={"TWILIO_AUTH_TOKEN": TOKEN, "GEMINI_API_KEY": "a-key"})


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
