"""The appliance under test, in a process of its own (as in production, where Twilio is not on
the box): ``python -m bench.child CONFIG RECORD [--instant all|stt_tts]``.

Starts the real server (``appliance.server.running``: models load first), prints one JSON line
``{"url": ..., "pid": ...}`` when it listens, and serves until its stdin closes. It watches the
calls only through their events (``services.call_events``, appliance/call/events.py): for each
call that ends it appends one JSON line to RECORD: the call SID, the barge-ins as the session saw
them (onset of caller speech on the media clock converted to monotonic time, and when `clear`
went out), and per reply its stage times and its pieces (text, when the first frame was sent,
whether it was a "one moment" filler). CLOCK_MONOTONIC is shared by all processes, so these
times compare with the caller stand-in's.

``--local-prefill on|off`` forces the engine's background prefill of the local model (the
conversation kept in its KV cache while Gemini answers and between turns; by default only when
the local model is the one answering), to show what it costs a cloud turn.

``--instant all`` swaps speech recognition, the conversation engine and the voice for instant
stand-ins after start-up (what is left is the appliance's own overhead); ``--instant stt_tts``
keeps the real engine (Gemini stand-in, knowledge-base search, SQLite) and swaps only the two
speech models. The swap goes through ``running(settings, adapt)``: nothing of the product is
patched.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from appliance.call.events import AudioSent, BargeIn, CallEnded, CallEvent, TurnCompleted
from appliance.call.speech import PhoneSpeech
from appliance.compose import Services
from appliance.config import Settings, load_settings
from appliance.loaders import warm_phrases
from appliance.logs import setup_logging
from appliance.server import running

from .instant import InstantEngine, InstantRecognizer, InstantSpeaker


def _append(path: Path, record: dict) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


class _LocalRounds(logging.Handler):
    """The local model's per-round debug line (prompt tokens, cached, first token) -> RECORD."""

    def __init__(self, path: Path) -> None:
        super().__init__(logging.DEBUG)
        self.path = path

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("local round"):
            _append(self.path, {"local_round": message, "at": time.monotonic()})


def _watch_local_rounds(record_path: Path) -> None:
    """The local model's per-round statistics are a debug log line (no call event)."""
    local_log = logging.getLogger("appliance.llm.local")
    local_log.addHandler(_LocalRounds(record_path))
    local_log.setLevel(logging.DEBUG)


class CallRecorder:
    """Call events -> one RECORD line per finished call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._calls: dict[int, dict] = {}

    def _call(self, call_id: int) -> dict:
        return self._calls.setdefault(call_id, {"barge_ins": [], "replies": {}, "pieces": []})

    def __call__(self, event: CallEvent) -> None:
        call = self._call(event.call_id)
        if isinstance(event, AudioSent):
            call["pieces"].append({"reply_id": event.reply_id, "text": event.text,
                                   "first_sent_at": event.at, "filler": event.filler})
        elif isinstance(event, BargeIn):
            call["barge_ins"].append({"onset_at": event.onset_at, "clear_at": event.at})
        elif isinstance(event, TurnCompleted):
            t = event.timings
            call["replies"][event.reply_id] = {
                "reply_id": event.reply_id, "row": t.as_row(), "model": t.model,
                **{f.name: getattr(t, f.name) for f in dataclasses.fields(t)
                   if f.name.endswith("_at")}}
        elif isinstance(event, CallEnded):
            self._calls.pop(event.call_id, None)
            replies = []
            for reply_id, reply in sorted(call["replies"].items()):
                reply["pieces"] = [{k: v for k, v in p.items() if k != "reply_id"}
                                   for p in call["pieces"] if p["reply_id"] == reply_id]
                replies.append(reply)
            _append(self.path, {"call_sid": event.call_sid, "barge_ins": call["barge_ins"],
                                "replies": replies,
                                "pieces_sent": len(call["pieces"])})


def _adapter(settings: Settings, instant: str | None, local_prefill: str | None):
    async def adapt(services: Services) -> Services:
        engine = services.engine
        if local_prefill and engine is not None:   # a diagnostic, not a product setting
            engine.options = dataclasses.replace(engine.options,
                                                 prefill_local=local_prefill == "on")
        if not instant:
            return services
        speech = PhoneSpeech(InstantSpeaker())
        await warm_phrases(speech, settings)
        return dataclasses.replace(
            services, stt=InstantRecognizer(settings.business.language), speech=speech,
            engine=InstantEngine(engine) if instant == "all" else engine)
    return adapt


async def _serve(settings: Settings, record: Path, instant: str | None,
                 local_prefill: str | None) -> None:
    async with running(settings, _adapter(settings, instant, local_prefill)) as srv:
        srv.services.call_events.subscribe(CallRecorder(record))
        health = srv.services.health()
        components = health["components"]
        assert isinstance(components, dict)
        print(json.dumps({"url": srv.url, "pid": os.getpid(), "ready": health["ready"],
                          "problems": health["problems"],
                          "load_ms": {k: v["load_ms"] for k, v in components.items()}}),
              flush=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)   # until the parent closes stdin


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.child")
    parser.add_argument("config", type=Path)
    parser.add_argument("record", type=Path)
    parser.add_argument("--instant", choices=("all", "stt_tts"))
    parser.add_argument("--local-prefill", choices=("on", "off"),
                        help="force the engine's background local prefill (diagnostic)")
    args = parser.parse_args()
    settings = load_settings(args.config)
    setup_logging(settings.server.log_level)
    _watch_local_rounds(args.record)
    asyncio.run(_serve(settings, args.record, args.instant, args.local_prefill))
    return 0


if __name__ == "__main__":
    sys.exit(main())
