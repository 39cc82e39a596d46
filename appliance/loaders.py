"""Builder of the speech models, called by appliance.compose: loaded once at start-up, off the
event loop, each recorded in the runtime's components.

What can take a call: database, VAD, speech recognition, a voice, and a language model (Gemini
configured, or the local model loaded; see conversation/wiring.py). The turn model is optional:
without it turns end on the transcript and silence only (health lists it as not loaded).
"""

from __future__ import annotations

import logging
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path

from .audio.vad import SileroVad
from .call.speech import PhoneSpeech
from .config import Settings
from .conversation.prompt import filler
from .runtime import Runtime
from .stt.whisper import SpeechRecognizer
from .tts.clauses import speakable
from .tts.piper import Speaker
from .turns.smart_turn import SmartTurnModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SpeechModels:
    vad: SileroVad | None
    stt: SpeechRecognizer | None
    speech: PhoneSpeech | None      # the voice, rendered for the phone (None: no voice loaded)
    turn_model: SmartTurnModel | None = None   # None: turns end on transcript + silence only


async def load_speech(rt: Runtime, s: Settings, tts_executor: Executor | None = None
                      ) -> SpeechModels:
    """`tts_executor`: where Piper runs (compose gives the CPU scheduler's live lane)."""
    vad = await rt.load("vad", SileroVad.load, needed_for_calls=True)
    stt = await rt.load(
        "stt", lambda: SpeechRecognizer.load(s.stt.model.path, threads=s.stt.threads,
                                             compute_type=s.stt.compute_type,
                                             beam_size=s.stt.beam_size,
                                             languages=s.stt.languages,
                                             short_window=s.stt.short_window),
        needed_for_calls=True, ref=s.stt.model)
    voices = present_voices(rt, s)
    tts = await rt.load("tts", lambda: Speaker.load(voices, threads=1),
                        needed_for_calls=True, ref=s.tts.voices[""])
    return SpeechModels(vad, stt, PhoneSpeech(tts, tts_executor) if tts is not None else None,
                        await load_turn_model(rt, s))


def present_voices(rt: Runtime, s: Settings) -> dict[str, Path]:
    """The voices to load: the default one (required) and each language's that is on disk;
    a missing language voice is reported (that language falls back to the default voice)."""
    voices: dict[str, Path] = {"": s.tts.voices[""].path}
    for language, ref in s.tts.voices.items():
        if not language:
            continue
        if ref.present:
            voices[language] = ref.path
            continue
        how = (f"run `appliance models download {ref.manifest_name}`" if ref.manifest_name
               else f"fix {ref.setting}")
        rt.report(f"voice_{language}", False, f"{ref.path} is missing ({language} replies use "
                  f"the default voice); {how}", needed_for_calls=False)
        log.warning("no %s voice: %s is missing; the default voice speaks %s", language,
                    ref.path, language)
    return voices


async def load_turn_model(rt: Runtime, s: Settings) -> SmartTurnModel | None:
    """The smart-turn model; optional (health shows it missing, calls still work)."""
    ref = s.call.turn_model
    if ref is None:
        rt.report("turn_model", True, "off: turns end on transcript and silence only",
                  needed_for_calls=False)
        return None
    return await rt.load("turn_model", lambda: SmartTurnModel.load(ref.path),
                         needed_for_calls=False, ref=ref)


async def warm_phrases(speech: PhoneSpeech, s: Settings) -> None:
    """Synthesise the fixed phrases now, so the greeting starts at once on every call; the
    filler ("One moment.", said whole) too: in the business's language and in every language
    that has its own voice (call/phrases.py)."""
    await speech.render(s.business.greeting, s.business.language)
    voiced = (k for k, ref in s.tts.voices.items() if k and ref.present)
    for language in dict.fromkeys((s.business.language, *voiced)):
        for key in ("greeting", "still_there", "goodbye", "transfer", "no_transfer",
                    "after_dial"):
            if key != "greeting" or language != s.business.language:
                await speech.render(s.phrases.text(key, language), language)
        await speech.render(speakable(filler(language)), language)
