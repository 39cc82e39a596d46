"""bench/results/turn_taking.md from the turn benchmark's results (bench/turn_bench.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

HOW = """\
How: bench/turn_bench.py plays the real-speech turn set (bench/speech_set.py: Piper joe and
espeak-ng voices, pauses inside turns where callers make them) to each system through the
product's Twilio stand-in (appliance.simulate) in real time, several turns per call, and
measures on the Twilio side of the WebSocket only. Both systems: real Whisper tiny.en, real Piper
joe, the same Gemini stand-in (first token after 300 ms).

- turn latency: first bot media frame - end of the caller's speech (last 20 ms frame with
  RMS > 200), over the turns that were not cut off.
- cut-off: the bot's first media frame arrived while the caller was still inside the turn
  (after its speech started, before its speech_end_s), i.e. mid-sentence or in one of its pauses.
- resumed: bot audio that began before the caller's first pause (+ 0.3 s), too early to be an
  answer to this turn: the previous reply went on after a gap longer than the caller's 0.6 s
  wait. Counted apart, and left out of the other figures.
- answer latency: first frame of a new burst of bot audio after the caller finished, all turns
  (for a cut-off turn, the answer it gave once the caller had really finished).
- clear latency: a cut-off turn's `clear` - the moment the caller spoke over the bot;
  "talked over" counts cut-offs with no `clear` while the caller went on.
- barge-in clear: separate calls in which the caller asks a question and, 0.8 s into the bot's
  answer, speaks a longer turn over it: the bot's `clear` - the caller's speech onset.
- cost: Gemini requests the stand-in answered during the set's calls / turns that got a reply
  ("confirmed turns"; a speculative reply that was cancelled is a request too); the appliance's
  cancelled speculative replies from its own call_turns.
"""

SETUP = """\
The systems:
- appliance: `python -m appliance serve` with the shipped config.ini (turn detector with
  smart-turn v3.2 and the transcript, speculative replies, barge-in after 140 ms of caller
  speech), [stt] languages = en, Whisper tiny.en int8, Piper joe; Gemini = the stand-in.
- pipecat 1.14.0 (bench/pipecat_bench/bot.py, its own venv), as its Twilio template: FastAPI
  WebSocket transport + TwilioFrameSerializer, Silero VAD (stop_secs 0.2), smart-turn v3.2 local
  analyzer as the turn-stop strategy (user_turn_stop_timeout 5 s, the default), WhisperSTTService
  (faster-whisper, int8, CPU; pipecat transcribes each VAD segment after it ends), GoogleLLMService
  with http_options.base_url = the stand-in, PiperTTSService on the joe voice (pipecat speaks a
  sentence at a time), pipeline in at 16 kHz, out at 8 kHz. It says the same greeting first.
  pipecat does not check Twilio signatures, so its calls are unsigned.
"""


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) < 10 else f"{value:.0f}"
    return str(value)


def _ratio(a: Any, b: Any) -> str:
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)) or not b:
        return "-"
    return f"{a / b:.2f}"


RATIO_KEYS = ("_ms", "_per_confirmed_turn")
ROWS = [("turns", "turns"), ("replied", "turns with a reply"), ("cut_offs", "cut-offs"),
        ("resumed", "previous reply resumed over the caller"),
        ("turn_latency_p50_ms", "turn latency p50 (ms)"),
        ("turn_latency_p95_ms", "turn latency p95 (ms)"),
        ("turn_latency_n", "turns in the latency figures"),
        ("answer_latency_p50_ms", "answer latency p50 (ms)"),
        ("answer_latency_p95_ms", "answer latency p95 (ms)"),
        ("clear_latency_p50_ms", "clear latency p50 (ms)"),
        ("clear_latency_p95_ms", "clear latency p95 (ms)"),
        ("talked_over", "cut-offs talked over (no clear)"),
        ("bargeins", "barge-ins over the bot's answer"),
        ("bargeins_cleared", "barge-ins the bot stopped for (`clear`)"),
        ("bargeins_unanswered", "barge-ins not played: the bot never answered the question"),
        ("bargein_clear_p50_ms", "barge-in clear p50 (ms)"),
        ("bargein_clear_p95_ms", "barge-in clear p95 (ms)"),
        ("gemini_requests", "Gemini requests (the set's calls)"),
        ("gemini_per_confirmed_turn", "Gemini requests per confirmed turn"),
        ("speculative_cancelled", "speculative replies cancelled")]


def _side_by_side(systems: dict[str, Any]) -> list[str]:
    names = [n for n in systems if "summary" in systems[n]]
    if not names:
        return []
    head = "| | " + " | ".join(names) + (" | ratio |" if len(names) == 2 else " |")
    lines = [head, "|---" * (len(names) + 1 + (len(names) == 2)) + "|"]
    for key, label in ROWS:
        values = [systems[n]["summary"].get(key) for n in names]
        row = f"| {label} | " + " | ".join(_fmt(v) for v in values)
        if len(names) == 2:
            row += f" | {_ratio(values[0], values[1]) if key.endswith(RATIO_KEYS) else ''}"
        lines.append(row + " |")
    lines.append("| start-up (s) | " + " | ".join(_fmt(systems[n]["startup_s"]) for n in names)
                 + (" | |" if len(names) == 2 else " |"))
    lines.append("| wall time (s) | " + " | ".join(_fmt(systems[n]["wall_s"]) for n in names)
                 + (" | |" if len(names) == 2 else " |"))
    return lines


def _by_kind(systems: dict[str, Any]) -> list[str]:
    names = [n for n in systems if "summary" in systems[n]]
    if not names:
        return []
    kinds = sorted(systems[names[0]]["summary"]["by_kind"])
    lines = ["| kind | " + " | ".join(f"{n} cut-offs" for n in names) + " |",
             "|---" * (len(names) + 1) + "|"]
    for kind in kinds:
        cells = []
        for n in names:
            row = systems[n]["summary"]["by_kind"].get(kind, {"turns": 0, "cut_offs": 0})
            cells.append(f"{row['cut_offs']}/{row['turns']}")
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    return lines


def _per_turn(name: str, system: dict[str, Any]) -> list[str]:
    lines = [f"### {name}: per turn", "",
             "| file | kind | speech end (s) | latency (ms) | cut off at (s) | answer (ms) |"
             " clear (ms) |", "|---|---|---|---|---|---|---|"]
    for t in system["turns"]:
        cut = _fmt(t["cut_off_at_s"]) if t["cut_off_at_s"] is None else f"{t['cut_off_at_s']:.2f}"
        clear = ("talked over" if t["cleared"] is False else _fmt(t["clear_latency_ms"]))
        lines.append(f"| {t['file']} | {t['kind']} | {t['speech_end_s']:.2f} | "
                     f"{_fmt(t['turn_latency_ms'])} | {cut} | {_fmt(t['answer_latency_ms'])} | "
                     f"{clear} |")
    return lines


def _load_line(results: dict[str, Any]) -> str:
    loads = [c["load_1min"] for system in results["systems"].values()
             for c in system.get("calls", []) if "load_1min" in c]
    if not loads:
        return ""
    return (f"Machine: {results.get('cpus')} CPUs shared with other work; 1-minute load average "
            f"after each call {min(loads):.1f}-{max(loads):.1f} (median "
            f"{sorted(loads)[len(loads) // 2]:.1f}). The two systems' calls alternate, so both "
            f"ran under the same load; absolute latencies are those of this machine at that load.")


def write_report(path: Path, results: dict[str, Any], notes: str = "") -> None:
    systems = results["systems"]
    lines = ["# Turn-taking on real speech: appliance vs pipecat", "",
             f"{results['turns']} caller turns in {results['calls']} calls "
             f"({results['per_call']} per call), one run, wall time "
             f"{_fmt(results.get('wall_s'))} s. Raw numbers: {path.with_suffix('.json').name}.",
             "",
             _load_line(results), ""]
    lines += _side_by_side(systems) + [""]
    for name, system in systems.items():
        if "error" in system:
            lines += [f"**{name} did not run:** {system['error']}", ""]
    lines += ["Cut-offs by kind of turn:", ""] + _by_kind(systems) + [""]
    if notes:
        lines += [notes, ""]
    lines += [SETUP, "", HOW, ""]
    for name, system in systems.items():
        if "turns" in system:
            lines += _per_turn(name, system) + [""]
    path.write_text("\n".join(lines), encoding="utf-8")
