"""The appliance under test, in a process of its own (as in production, where Twilio is not on
the box): ``python -m bench.child CONFIG RECORD [--instant all|stt_tts]``.

Starts the real server (``appliance.server.running``: models load first), prints one JSON line
``{"url": ..., "pid": ...}`` when it listens, and serves until its stdin closes. For each call
that ends it appends one JSON line to RECORD: the call SID, the barge-ins as the session saw them
(onset of caller speech on the media clock converted to monotonic time, and when `clear` went
out), and per reply its raw TurnTimings and its pieces (text, when the first frame was sent,
frames, whether it was a "one moment" filler). CLOCK_MONOTONIC is shared by all processes, so
these times compare with the caller stand-in's.

``--local-prefill on|off`` forces the engine's background prefill of the local model (the
conversation kept in its KV cache while Gemini answers and between turns; by default only when
the local model is the one answering), to show what it costs a cloud turn.

``--instant all`` swaps speech recognition, the conversation engine and the voice for instant
stand-ins after start-up (what is left is the appliance's own overhead); ``--instant stt_tts``
keeps the real engine (Gemini stand-in, knowledge-base search, SQLite) and swaps only the two
speech models.
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

from appliance.call import player as player_mod
from appliance.call import session as session_mod
from appliance.config import load_settings
from appliance.conversation.prompt import FILLERS
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


def _instrument(record_path: Path) -> None:
    """Keep every piece a player creates, and write one record per finished call."""
    original_new_piece = player_mod.Player.new_piece
    original_run = session_mod.CallSession.run
    fillers = set(FILLERS.values())

    def new_piece(self, text, reply_id):
        piece = original_new_piece(self, text, reply_id)
        self.__dict__.setdefault("bench_pieces", []).append(piece)
        return piece

    async def run(self):
        try:
            return await original_run(self)
        finally:
            pieces = self.player.__dict__.get("bench_pieces", [])
            replies = []
            for reply_id, t in self._timings.items():
                replies.append({
                    "reply_id": reply_id, "row": t.as_row(), "model": t.model,
                    "end_of_speech_at": t.end_of_speech_at, "decided_at": t.decided_at,
                    "transcript_at": t.transcript_at, "first_token_at": t.first_token_at,
                    "first_clause_at": t.first_clause_at, "first_audio_at": t.first_audio_at,
                    "first_frame_at": t.first_frame_at, "first_heard_at": t.first_heard_at,
                    "pieces": [{"text": p.text, "first_sent_at": p.first_sent_at,
                                "frames": len(p.frames), "filler": p.text in fillers}
                               for p in pieces if p.reply_id == reply_id]})
            record = {"call_sid": self.start.call_sid, "barge_ins": self.barge_ins,
                      "replies": replies, "frames_sent": self.player.frames_sent}
            _append(record_path, record)

    local_log = logging.getLogger("appliance.llm.local")
    local_log.addHandler(_LocalRounds(record_path))
    local_log.setLevel(logging.DEBUG)
    player_mod.Player.new_piece = new_piece
    session_mod.CallSession.run = run


async def _serve(settings, instant: str | None, local_prefill: str | None) -> None:
    from appliance.call.speech import PhoneSpeech
    from appliance.loaders import _warm_phrases

    async with running(settings) as srv:
        rt = srv.runtime
        if local_prefill and rt.engine is not None:   # a diagnostic, not a product setting
            rt.engine.options = dataclasses.replace(rt.engine.options,
                                                    prefill_local=local_prefill == "on")
        if instant:
            rt.stt = InstantRecognizer(settings.business.language)
            rt.extras["phone_speech"] = PhoneSpeech(InstantSpeaker())
            await _warm_phrases(rt)
            if instant == "all":
                rt.engine = InstantEngine(rt.engine)
        health = rt.health()
        print(json.dumps({"url": srv.url, "pid": os.getpid(), "ready": health["ready"],
                          "problems": health["problems"],
                          "load_ms": {k: v["load_ms"] for k, v in health["components"].items()}}),
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
    _instrument(args.record)
    asyncio.run(_serve(settings, args.instant, args.local_prefill))
    return 0


if __name__ == "__main__":
    sys.exit(main())
