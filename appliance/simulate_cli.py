"""`appliance simulate WAV...`: call the running appliance as Twilio would (simulate.py) and
print what the caller side saw and what the appliance stored."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

from .simulate import CallerTurn, save_wav, simulate_call


def register(subparsers) -> None:
    p = subparsers.add_parser("simulate", parents=[subparsers.common],
                              help="call the running appliance as Twilio would, with WAV files")
    p.add_argument("wavs", nargs="+", type=Path, help="one WAV per caller turn")
    p.add_argument("--server", default=None, help="where the appliance listens "
                                                  "(default: from the config)")
    p.add_argument("--caller", default="+15550001111")
    p.add_argument("--save", type=Path, help="write the bot's audio to this WAV file")
    p.add_argument("--dtmf", help="press this key after the turns")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace, settings) -> int:
    server = args.server or f"http://127.0.0.1:{settings.server.port}"
    public = settings.server.public_url or server
    turns = [CallerTurn(w, speech_end_s=_manifest_end(w)) for w in args.wavs]
    if args.dtmf:
        turns.append(CallerTurn(Path("-"), dtmf=args.dtmf))
    result = asyncio.run(simulate_call(server, public, settings.twilio.auth_token, turns,
                                       caller=args.caller,
                                       sign=settings.twilio.validate_signatures,
                                       **({"account_sid": settings.twilio.account_sid}
                                          if settings.twilio.account_sid else {})))
    for turn in result.turns:
        print(f"{turn.wav}: turn_latency {turn.turn_latency_ms} ms, "
              f"heard_latency {turn.heard_latency_ms} ms (as the caller side saw it)")
    _print_stored(settings, result.call_sid)
    if result.action_twiml:
        print(f"after the stream: {result.action_twiml}")
    if args.save:
        save_wav(args.save, result.bot_audio)
        print(f"bot audio saved to {args.save}")
    return 0


def _manifest_end(wav: Path) -> float | None:
    manifest = wav.parent / "manifest.json"
    if manifest.is_file():
        for entry in json.loads(manifest.read_text()):
            if entry.get("file") == wav.name:
                return entry.get("speech_end_s")
    return None


def _print_stored(settings, call_sid: str) -> None:
    from .store.db import connect

    conn = connect(settings.storage.database)
    try:
        rows = conn.execute(
            "SELECT t.* FROM call_turns t JOIN calls c ON c.id = t.call_id WHERE c.call_sid = ? "
            "ORDER BY t.turn_index", (call_sid,)).fetchall()
        outcome = conn.execute("SELECT outcome FROM calls WHERE call_sid = ?",
                               (call_sid,)).fetchone()
    finally:
        conn.close()
    for r in rows:
        print(f"turn {r['turn_index']}: caller said {r['transcript']!r}")
        print(f"   bot said {r['reply_text']!r}; heard {r['heard_text']!r}"
              f"{' (interrupted)' if r['interrupted'] else ''}")
        print(f"   turn_latency {r['turn_latency_ms']} ms, heard_latency {r['heard_latency_ms']}"
              f" ms: endpoint_wait {r['endpoint_wait_ms']}, stt {r['stt_ms']}, llm_ttft "
              f"{r['llm_ttft_ms']}, first_clause {r['first_clause_ms']}, tts_first_audio "
              f"{r['tts_first_audio_ms']}, overhead {r['overhead_ms']}")
    if outcome:
        print(f"call outcome: {outcome['outcome']}")
