"""Barge-in while the bot is speaking: a pure, clock-free state machine fed VAD windows.

Design. Stopping the bot for every cough, "mhm" or line noise makes it stutter; waiting for a
transcript before stopping makes it talk over the caller for half a second or more. So the
decision comes in two steps:

1. Pause early. Once caller speech has lasted ``pause_after_ms`` (default 120 ms: four 32 ms
   windows, so with Silero's ~1 window of lag ``clear`` leaves well inside the 250 ms target)
   emit ``PauseBot``. The call sends Twilio ``clear`` and holds the rest of the reply on the
   server; nothing is cancelled yet. Shorter blips (clicks) are ignored.
2. Decide on content. When the utterance ends (``utterance_end_ms`` of silence) emit
   ``CheckUtterance``; the call transcribes [start_ms, end_of_speech_ms] and feeds
   ``resolve(text, utterance_id)``:
   - no words (noise), or only backchannels ("mhm", "uh-huh", "yes", "okay", "right", "sure",
     "כן", "אוקיי", "да", "ага", "угу", ...) -> ``ResumeBot``: continue the reply where it stopped;
   - real words -> ``Interrupt``: cancel the reply; the utterance is the caller's new turn.
   If the transcript fails, ``resolve("")`` resumes the bot.
   Speech that goes on for ``commit_after_ms`` (default 600 ms of voiced audio) is an
   interruption without waiting for text: nobody backchannels for that long.

After ``Interrupt`` the detector is done until ``reset()`` (next bot reply). With
``interruptible=False`` (e.g. a greeting or legal notice that must play) caller speech is ignored
while the bot speaks; ``set_interruptible`` changes that for the next utterance.

Time is the audio timeline (sum of durations fed since ``start_ms``). Voicing uses the same
hysteresis as the endpoint detector (open at ``start_threshold``, hold at ``continue_threshold``).
"""

from __future__ import annotations

import enum
import logging
import re
from dataclasses import dataclass
from typing import Literal

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BargeInParams:
    start_threshold: float = 0.5
    continue_threshold: float = 0.35
    pause_after_ms: int = 120  # voiced run before PauseBot (-> Twilio clear)
    commit_after_ms: int = 600  # voiced audio in one utterance that interrupts without text
    utterance_end_ms: int = 250  # silence that ends the caller's utterance -> CheckUtterance

    def __post_init__(self) -> None:
        if not 0.0 <= self.continue_threshold <= self.start_threshold <= 1.0:
            raise ValueError("need 0 <= continue_threshold <= start_threshold <= 1")
        if not 0 <= self.pause_after_ms <= self.commit_after_ms:
            raise ValueError("need 0 <= pause_after_ms <= commit_after_ms")
        if self.utterance_end_ms <= 0:
            raise ValueError("utterance_end_ms must be > 0")


@dataclass(frozen=True)
class PauseBot:
    onset_ms: int  # start of the caller's speech (barge_in_latency is measured from here)
    at_ms: int  # audio time of the decision


@dataclass(frozen=True)
class CheckUtterance:
    utterance_id: int  # pass back to resolve()
    start_ms: int  # transcribe the caller's audio from here ...
    end_of_speech_ms: int  # ... to here


@dataclass(frozen=True)
class ResumeBot:
    utterance_id: int
    reason: Literal["noise", "backchannel"]
    text: str


@dataclass(frozen=True)
class Interrupt:
    onset_ms: int  # the caller's new turn starts here
    at_ms: int  # audio time of the decision (now, or the utterance end for "words")
    reason: Literal["sustained_speech", "words"]
    text: str | None  # the transcript when reason == "words"


BargeInEvent = PauseBot | CheckUtterance | ResumeBot | Interrupt


class _State(enum.Enum):
    LISTENING = "listening"  # bot speaking, caller quiet (maybe a short blip)
    PAUSED = "paused"  # bot held, caller speaking
    CHECKING = "checking"  # caller stopped; waiting for resolve(text)
    DONE = "done"  # Interrupt emitted


class BargeInDetector:
    def __init__(
        self,
        params: BargeInParams = BargeInParams(),
        *,
        interruptible: bool = True,
        start_ms: int = 0,
    ) -> None:
        self.params = params
        self.interruptible = interruptible
        self._now_ms = start_ms
        self._utterance_id = 0
        self.reset()

    def reset(self, at_ms: int | None = None) -> None:
        """Start listening for a new bot reply."""
        if at_ms is not None:
            self._now_ms = at_ms
        self._state = _State.LISTENING
        self._run_start_ms: int | None = None
        self._run_ms = 0
        self._onset_ms: int | None = None
        self._voiced_ms = 0  # voiced audio in the current utterance
        self._last_voiced_end_ms: int | None = None

    def set_interruptible(self, interruptible: bool) -> None:
        self.interruptible = interruptible

    @property
    def now_ms(self) -> int:
        return self._now_ms

    @property
    def bot_paused(self) -> bool:
        """True between PauseBot and ResumeBot/Interrupt."""
        return self._state in (_State.PAUSED, _State.CHECKING)

    @property
    def done(self) -> bool:
        return self._state is _State.DONE

    def process(self, speech_probability: float, duration_ms: int) -> list[BargeInEvent]:
        """Feed one VAD window of caller audio captured while the bot is speaking."""
        if duration_ms <= 0:
            raise ValueError("duration_ms must be > 0")
        start = self._now_ms
        self._now_ms = end = start + duration_ms
        p = self.params
        in_run = self._run_start_ms is not None
        voiced = speech_probability >= (p.continue_threshold if in_run else p.start_threshold)
        if voiced:
            if not in_run:
                self._run_start_ms, self._run_ms = start, 0
            self._run_ms += duration_ms
        else:
            self._run_start_ms, self._run_ms = None, 0

        if self._state is _State.DONE:
            return []
        if self._state is _State.LISTENING:
            return self._listening(voiced, end)
        return self._held(voiced, duration_ms, end)

    def resolve(self, text: str, utterance_id: int | None = None) -> list[BargeInEvent]:
        """Transcript of the utterance announced by CheckUtterance. Stale calls (the caller
        spoke again since, or another utterance) are ignored and return []."""
        if self._state is not _State.CHECKING:
            return []
        if utterance_id is not None and utterance_id != self._utterance_id:
            return []
        kind = classify_interjection(text)
        if kind == "words":
            onset = self._onset_ms
            self._state = _State.DONE
            return [Interrupt(onset, self._now_ms, "words", text)]
        uid = self._utterance_id
        self.reset()
        return [ResumeBot(uid, kind, text)]

    def _listening(self, voiced: bool, end: int) -> list[BargeInEvent]:
        if not voiced or not self.interruptible or self._run_ms < self.params.pause_after_ms:
            return []
        self._state = _State.PAUSED
        self._onset_ms = self._run_start_ms
        self._voiced_ms = self._run_ms
        self._last_voiced_end_ms = end
        events: list[BargeInEvent] = [PauseBot(self._onset_ms, end)]
        return events + self._maybe_commit(end)

    def _held(self, voiced: bool, duration_ms: int, end: int) -> list[BargeInEvent]:
        if voiced:
            self._state = _State.PAUSED  # speaking again: any pending check is stale
            self._voiced_ms += duration_ms
            self._last_voiced_end_ms = end
            return self._maybe_commit(end)
        silence_ms = end - self._last_voiced_end_ms
        if self._state is _State.PAUSED and silence_ms >= self.params.utterance_end_ms:
            self._state = _State.CHECKING
            self._utterance_id += 1
            return [CheckUtterance(self._utterance_id, self._onset_ms, self._last_voiced_end_ms)]
        return []

    def _maybe_commit(self, end: int) -> list[BargeInEvent]:
        if self._voiced_ms < self.params.commit_after_ms:
            return []
        self._state = _State.DONE
        return [Interrupt(self._onset_ms, end, "sustained_speech", None)]


# --- transcript classification ----------------------------------------------------------------

# Normalised (lower case, hyphens and apostrophes removed) words that acknowledge without
# taking the turn. Fillers count too: "um" alone is not a request.
_BACKCHANNEL_WORDS = frozenset(
    "mhm mhmm mmhmm mm mmm hmm hm uhhuh aha ah oh uh um umm yes yeah yep yup ok okay okey "
    "right sure alright fine good great cool thanks "
    "כן אוקיי אוקי בסדר נכון אהה אה יופי טוב תודה "
    "да ага угу мгм ок окей хорошо понятно ясно спасибо".split()
)
_BACKCHANNEL_PHRASES = (("uh", "huh"), ("mm", "hmm"), ("all", "right"), ("i", "see"),
                        ("got", "it"), ("thank", "you"))
# Whole transcripts Whisper is known to invent for noise or silence.
_HALLUCINATIONS = frozenset({
    ("you",), ("thanks", "for", "watching"), ("thank", "you", "for", "watching"),
})
_TOKEN = re.compile(r"\w+(?:[-'’]\w+)*", re.UNICODE)


def classify_interjection(text: str) -> Literal["noise", "backchannel", "words"]:
    """What the caller said over the bot: nothing, only backchannels, or real words."""
    tokens = [re.sub(r"[-'’]", "", t) for t in _TOKEN.findall(text.lower())]
    if not tokens or tuple(tokens) in _HALLUCINATIONS:
        return "noise"
    i = 0
    while i < len(tokens):
        if tuple(tokens[i : i + 2]) in _BACKCHANNEL_PHRASES:
            i += 2
        elif tokens[i] in _BACKCHANNEL_WORDS:
            i += 1
        else:
            return "words"
    return "backchannel"
