"""Turn-taking metrics from what the Twilio side of a call saw (simulate's SimResult events).

Everything here is measured on the caller's side of the WebSocket, so it applies to any system
that speaks Media Streams: when the caller's audio frames were sent (real-time paced, so the file
offset of the manifest maps to a send time) and when the bot's `media` and `clear` messages
arrived.

Per turn (a manifest entry played from `start_at`):
- resumed: bot audio that began before the caller's first pause (+ REACTION_S), too early to
  answer anything in this turn: the previous reply going on after a gap longer than the
  caller waited (0.6 s of quiet). Counted, and left out of the other figures.
- cut_off: the bot's first media frame (after any resumed audio) arrived after the caller
  started and before the manifest's speech_end_s, i.e. while the caller was still inside the
  turn (mid-sentence or in one of its pauses).
- turn_latency_ms: first bot media frame - end of the caller's speech, for turns not cut off.
- answer_latency_ms: first media frame that starts a new burst of bot audio after the caller's
  speech ended (for a cut-off turn: the answer the bot gave once the caller had really finished).
- clear_latency_ms (cut-off turns): `clear` - the moment the caller was speaking over the bot
  (the first frame if the caller was mid-word, else the end of the pause it landed in). None
  with cleared=False when the bot talked on over the caller.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

BURST_GAP_S = 0.3     # bot media this far apart belongs to different bursts of speech
REACTION_S = 0.3      # no system answers sooner than this after the caller pauses


@dataclass
class TurnMetrics:
    file: str
    kind: str
    noise: str | None
    speech_end_s: float
    replied: bool
    resumed: bool                    # the previous reply went on inside this turn
    cut_off: bool
    cut_off_at_s: float | None       # file offset where the bot started speaking over the turn
    turn_latency_ms: float | None
    answer_latency_ms: float | None
    cleared: bool | None
    clear_latency_ms: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _media_times(events: list[dict[str, Any]], start: float, end: float) -> list[float]:
    return [e["_at"] for e in events if e.get("event") == "media" and start <= e["_at"] < end]


def _resume_offset(offset_s: float, entry: dict[str, Any]) -> float:
    """Where the caller is speaking again at or after `offset_s` (file seconds)."""
    for pause_start, pause_end in entry.get("pauses_s", []):
        if pause_start <= offset_s < pause_end:
            return pause_end
    return offset_s


def _drop_resumed(media: list[float], earliest: float) -> list[float]:
    """`media` without the bursts that began before `earliest`."""
    kept: list[float] = []
    dropping = False
    for index, at in enumerate(media):
        if index == 0 or at - media[index - 1] > BURST_GAP_S:
            dropping = at < earliest
        if not dropping:
            kept.append(at)
    return kept


def turn_metrics(entry: dict[str, Any], events: list[dict[str, Any]], start_at: float,
                 window_end: float) -> TurnMetrics:
    """The metrics of one turn whose file started playing at `start_at` (monotonic)."""
    speech_start = start_at + entry["speech_start_s"]
    speech_end = start_at + entry["speech_end_s"]
    pauses = entry.get("pauses_s") or []
    first_pause = pauses[0][0] if pauses else entry["speech_end_s"]
    all_media = _media_times(events, start_at, window_end)
    media = _drop_resumed(all_media, start_at + first_pause + REACTION_S)
    first = media[0] if media else None
    cut_off = first is not None and speech_start <= first < speech_end
    after_end = [t for i, t in enumerate(media) if t >= speech_end and
                 (i == 0 or t - media[i - 1] > BURST_GAP_S)]
    answer = after_end[0] if after_end else None
    cleared = clear_ms = cut_at = None
    if cut_off and first is not None:
        cut_at = round(first - start_at, 2)
        resume = start_at + _resume_offset(first - start_at, entry)
        clears = [e["_at"] for e in events
                  if e.get("event") == "clear" and first <= e["_at"] < window_end]
        cleared = bool(clears) and resume < speech_end
        if cleared:
            clear_ms = round(max(0.0, clears[0] - resume) * 1000, 1)
    return TurnMetrics(
        file=entry["file"], kind=entry["kind"], noise=entry.get("noise"),
        speech_end_s=entry["speech_end_s"], replied=first is not None,
        resumed=len(media) < len(all_media), cut_off=cut_off,
        cut_off_at_s=cut_at,
        turn_latency_ms=(round((first - speech_end) * 1000, 1)
                         if first is not None and not cut_off and first >= speech_end else None),
        answer_latency_ms=round((answer - speech_end) * 1000, 1) if answer else None,
        cleared=cleared, clear_latency_ms=clear_ms)


def bargein_clear_ms(entry: dict[str, Any], start_at: float,
                     clear_at: float | None) -> float | None:
    """A barge-in: `clear` - the moment the caller started speaking over the bot (the turn's
    speech onset); None if no `clear` came."""
    if clear_at is None:
        return None
    return round((clear_at - (start_at + entry["speech_start_s"])) * 1000, 1)


def summarize_bargeins(outcomes: Sequence[float | None | str]) -> dict[str, Any]:
    """Clear latencies (ms) or None (no clear) of the barge-ins; any other value (the bench's
    "unanswered") is a barge-in spoken after a question the bot never answered, counted apart."""
    clears = [c for c in outcomes if c is None or isinstance(c, (int, float))]
    measured = [c for c in clears if c is not None]
    return {"bargeins": len(clears), "bargeins_cleared": len(measured),
            "bargeins_unanswered": len(outcomes) - len(clears),
            "bargein_clear_p50_ms": percentile(measured, 0.5),
            "bargein_clear_p95_ms": percentile(measured, 0.95)}


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank-interpolated percentile (as numpy's default 'linear')."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q
    low, high = math.floor(rank), math.ceil(rank)
    return round(ordered[low] + (ordered[high] - ordered[low]) * (rank - low), 1)


def summarize(turns: list[TurnMetrics]) -> dict[str, Any]:
    latencies = [t.turn_latency_ms for t in turns if t.turn_latency_ms is not None]
    answers = [t.answer_latency_ms for t in turns if t.answer_latency_ms is not None]
    clears = [t.clear_latency_ms for t in turns if t.clear_latency_ms is not None]
    kinds: dict[str, dict[str, int]] = {}
    for t in turns:
        row = kinds.setdefault(t.kind, {"turns": 0, "cut_offs": 0})
        row["turns"] += 1
        row["cut_offs"] += int(t.cut_off)
    return {
        "turns": len(turns),
        "replied": sum(t.replied for t in turns),
        "cut_offs": sum(t.cut_off for t in turns),
        "resumed": sum(t.resumed for t in turns),
        "turn_latency_p50_ms": percentile(latencies, 0.5),
        "turn_latency_p95_ms": percentile(latencies, 0.95),
        "turn_latency_n": len(latencies),
        "answer_latency_p50_ms": percentile(answers, 0.5),
        "answer_latency_p95_ms": percentile(answers, 0.95),
        "clear_latency_p50_ms": percentile(clears, 0.5),
        "clear_latency_p95_ms": percentile(clears, 0.95),
        "talked_over": sum(1 for t in turns if t.cut_off and t.cleared is False),
        "by_kind": kinds,
    }
