"""What the local-model tests share: the real local model recording its requests, and WhatsApp
through the real server with the test GGUF as the local model (messages in, replies counted,
the model's counters read from /healthz)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from appliance.config import load_settings
from appliance.llm.base import ChatRequest
from appliance.llm.local import LocalModel
from tests.support.fixtures import TOKEN, write_ini
from tests.support.messaging import ACCOUNT_SID, WA_FROM, inbound_params, new_sid, sign

CUSTOMER = "whatsapp:+972501234567"


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


@dataclass
class RecordingLocal:
    """The real local model, recording the requests it was given."""

    model: LocalModel
    requests: list[ChatRequest] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.model.name

    def stream(self, request: ChatRequest) -> Any:
        self.requests.append(request)
        return self.model.stream(request)

    async def warm(self, static: str, tools: Any = ()) -> Any:
        return await self.model.warm(static, tools)

    async def prefill(self, request: ChatRequest, whole: bool = False) -> Any:
        return await self.model.prefill(request, whole)
