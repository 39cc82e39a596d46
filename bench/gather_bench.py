"""<Gather> mode: from Twilio's SpeechResult to the first audio Twilio can play.

    APPLIANCE_REAL_MODELS=/work/main/tests/.cache/real-models python -m bench.gather_bench

The real server (in this process) in gather mode, with the real Piper joe voice (1 thread) and
the Gemini stand-in in a process of its own (bench/gemini_proc.py: 300 ms to the first token,
200 tokens/s, the receptionist's short replies). The caller stand-in posts signed webhooks as
Twilio does: the SpeechResult to /respond, then GETs the first <Play> URL; "first audio" is
when that clip has been served whole (the WAV Twilio then plays), measured from the POST.
It then follows the <Redirect>s to /continue as Twilio would after playing each clip, and
measures how long each /continue answer and its clip take (the gap the caller could hear).

Two ways in: "final only" (no partial results) and "with partial results" (a partial result,
the same words, LEAD_S before the final one, as Twilio's partialResultCallback sends them
while its end-of-speech timer runs). The prototype took ~9 s here (it waited for the whole
reply and read it with <Say>). Writes bench/results/gather.md.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import aiohttp
from twilio.request_validator import RequestValidator

from appliance.config import load_settings
from appliance.server import running
from tests.support import models as tm
from tests.support.fixtures import MODELS_CACHE, write_ini

from .harness import _Proc
from .realmodels import ensure_or_exit

TOKEN = "bench-auth-token-0123456789abcdef"
PUBLIC = "https://receptionist.example.com"
OUT = Path(__file__).resolve().parent / "results" / "gather.md"
TURNS = 24                 # per way in
LEAD_S = 0.7               # the partial result comes this long before the final one
QUESTIONS = ["Can I book a repair?", "When are you open?", "How much is the premium plan?",
             "Can I speak to someone?", "My number is 054 123 4567.", "Can you come tomorrow?",
             "Do you deliver to Tel Aviv?", "My washing machine is broken."]


class Caller:
    def __init__(self, http: aiohttp.ClientSession, url: str, call_sid: str) -> None:
        self.http, self.url = http, url
        self.params = {"CallSid": call_sid, "From": "+15550001234", "To": "+15550002222"}

    async def post(self, path: str, extra: dict[str, str] | None = None) -> str:
        data = {**self.params, **(extra or {})}
        signature = RequestValidator(TOKEN).compute_signature(PUBLIC + path, data)
        async with self.http.post(self.url + path, data=data,
                                  headers={"X-Twilio-Signature": signature}) as resp:
            assert resp.status in (200, 204), (path, resp.status)
            return await resp.text()

    async def play(self, url: str) -> int:
        async with self.http.get(self.url + url[len(PUBLIC):]) as resp:
            assert resp.status == 200 and resp.content_type == "audio/wav", resp.status
            return len(await resp.read())


def _plays(body: str) -> list[str]:
    return [p.text for p in ET.fromstring(body).iter("Play")]


def _redirect(body: str) -> str | None:
    node = ET.fromstring(body).find("Redirect")
    return node.text[len(PUBLIC):] if node is not None else None


async def one_turn(caller: Caller, question: str, partial: bool) -> dict[str, float]:
    if partial:
        await caller.post("/gather-partial", {"UnstableSpeechResult": question.rstrip("?.")})
        await asyncio.sleep(LEAD_S)
    started = time.perf_counter()
    body = await caller.post("/respond", {"SpeechResult": question, "Confidence": "0.92"})
    twiml_ms = (time.perf_counter() - started) * 1000
    urls = _plays(body)
    await caller.play(urls[0])
    first_ms = (time.perf_counter() - started) * 1000
    for url in urls[1:]:
        await caller.play(url)
    gaps = []
    while (path := _redirect(body)) is not None:
        asked = time.perf_counter()       # Twilio asks once the clips before have played
        body = await caller.post(path)
        for url in _plays(body):
            await caller.play(url)
        gaps.append((time.perf_counter() - asked) * 1000)
    return {"twiml_ms": twiml_ms, "first_audio_ms": first_ms,
            "continue_ms": max(gaps) if gaps else 0.0, "continues": float(len(gaps))}


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def run(voice: Path, workdir: Path) -> dict[str, list[dict[str, float]]]:
    gemini = _Proc(["-m", "bench.gemini_proc", "--ttft", "0.3", "--rate", "200"],
                   workdir / "gemini.log", dict(os.environ))
    info = await gemini.start(60)
    try:
        models = tm.ensure_models(MODELS_CACHE)
        ini = write_ini(workdir / "config.ini", models,
                        f"[server]\ndefault_voice_mode = gather\nlog_level = warning\n"
                        f"[tts]\nvoice = {voice}\n[gemini]\nbase_url = {info['url']}\n"
                        "[call]\ncaller_max_calls = 1000\n")
        settings = load_settings(ini, environ={"TWILIO_AUTH_TOKEN": TOKEN,
                                               "GEMINI_API_KEY": "bench"})
        results: dict[str, list[dict[str, float]]] = {"final only": [],
                                                     "with partial results": []}
        async with running(settings) as srv, aiohttp.ClientSession() as http:
            for way, partial in (("final only", False), ("with partial results", True)):
                for n in range(TURNS):
                    if n % 6 == 0:         # a new call every six turns
                        caller = Caller(http, srv.url, f"CA{hash((way, n)) & (2**64 - 1):032x}")
                        for url in _plays(await caller.post("/voice")):
                            await caller.play(url)
                    results[way].append(await one_turn(caller, QUESTIONS[n % len(QUESTIONS)],
                                                       partial))
        return results
    finally:
        await gemini.stop()


def report(results: dict[str, list[dict[str, float]]]) -> str:
    lines = ["# <Gather> mode: SpeechResult -> first audio playable", "",
             "`python -m bench.gather_bench` (one run). Real server in gather mode, real Piper "
             "joe voice (1 thread), Gemini stand-in in its own process (300 ms to first token, "
             f"200 tokens/s); {TURNS} turns per way in, a new call every 6 turns. "
             "First audio = the first <Play> clip served whole, from the POST of the "
             f"SpeechResult. With partial results: the same words {LEAD_S} s earlier. "
             f"Load average at the start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores.",
             "", "| way in | TwiML p50 | first audio p50 | first audio p95 | worst /continue "
             "+ clip p50 | vs prototype (~9 s) |", "|---|---|---|---|---|---|"]
    for way, rows in results.items():
        first = [r["first_audio_ms"] for r in rows]
        twiml = [r["twiml_ms"] for r in rows]
        cont = [r["continue_ms"] for r in rows if r["continues"]]
        lines.append(f"| {way} | {statistics.median(twiml):.0f} ms | "
                     f"{statistics.median(first):.0f} ms | {_p(first, 0.95):.0f} ms | "
                     f"{(statistics.median(cont) if cont else 0):.0f} ms | "
                     f"{9000 / statistics.median(first):.1f}x faster |")
    lines += ["", "The prototype's ~9 s is the figure in issue 15 (whole reply, then <Say>); "
              "it was not re-measured here.", ""]
    return "\n".join(lines)


def main() -> int:
    voice = ensure_or_exit("piper-joe")
    with tempfile.TemporaryDirectory() as tmp:
        results = asyncio.run(run(voice, Path(tmp)))
    text = report(results)
    OUT.write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
