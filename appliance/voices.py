"""Which voice speaks each language the appliance is configured for, for `appliance doctor`.

A language is "voiced" when [tts] voice_<language> names a voice that is on disk, or when the
default voice ([tts] voice) speaks it (its manifest entry's `language`, else the espeak voice
in its .onnx.json). Every configured language ([stt] languages and [business] language) that
is not voiced gets a warning naming the fix; so does a voice whose licence forbids business use.
Hebrew has no Piper voice a business may use: the fix named is <Gather> mode, where Twilio's
own he-IL voice speaks.
"""

from __future__ import annotations

import json
from pathlib import Path

from . import models_manifest as mm
from .config import ModelRef, Settings
from .config_types import base_language

Check = tuple[str, str, str]      # (level, what, fix)
NAMES = {"en": "English", "he": "Hebrew", "ru": "Russian", "ar": "Arabic"}


def voice_language(ref: ModelRef) -> str:
    """The language a voice speaks: its manifest entry's, else its config's espeak voice."""
    entry = mm.find(ref.manifest_name) if ref.manifest_name else None
    if entry is not None and entry.language:
        return entry.language
    config = ref.path.with_name(ref.path.name + ".json")
    try:
        espeak = json.loads(config.read_text(encoding="utf-8"))["espeak"]["voice"]
    except (OSError, ValueError, KeyError, TypeError):
        return ""
    return base_language(str(espeak))


def configured_languages(settings: Settings) -> list[str]:
    return list(dict.fromkeys((settings.business.language, *settings.stt.languages)))


def voice_report(settings: Settings) -> list[Check]:
    default = settings.tts.voices[""]
    default_language = voice_language(default)
    out: list[Check] = []
    for language in configured_languages(settings):
        ref = settings.tts.voices.get(language)
        name = NAMES.get(language, language)
        if ref is not None and ref.present:
            out.extend(_licence(ref, name))
            if ref.present and ref is not default:
                out.append(("ok", f"{name} is spoken by {_label(ref)}", ""))
        elif ref is not None:
            out.append(("warn", f"{name} has no voice: {ref.setting} {ref.path} is missing, so "
                                f"{name} replies are read by the default voice",
                        f"run `appliance models download {ref.manifest_name}`"
                        if ref.manifest_name else f"correct {ref.setting}"))
        elif default_language == language:
            out.extend(_licence(default, name))
            out.append(("ok", f"{name} is spoken by the default voice {_label(default)}", ""))
        else:
            out.append(("warn", f"{name} has no voice: {name} replies are read by the default "
                                f"voice ({NAMES.get(default_language, default_language or '?')})",
                        _fix(language)))
    return out


def _label(ref: ModelRef) -> str:
    return ref.manifest_name or Path(ref.path).name


def _licence(ref: ModelRef, name: str) -> list[Check]:
    entry = mm.find(ref.manifest_name) if ref.manifest_name else None
    if entry is not None and not entry.commercial_use:
        return [("warn", f"the {name} voice {entry.name} may not be used by a business "
                         f"({entry.license})", "use it only for non-commercial purposes, or "
                                               f"remove {ref.setting}")]
    return []


def _fix(language: str) -> str:
    permitted = [e for e in mm.load_manifest()
                 if e.kind == "tts" and e.language == language and e.commercial_use]
    if permitted:
        e = permitted[0]
        return (f"set [tts] voice_{language} = {e.name} and run "
                f"`appliance models download {e.name}`")
    others = [e.name for e in mm.load_manifest() if e.kind == "tts" and e.language == language]
    known = (f" ({', '.join(others)} exists but may not be used commercially)" if others
             else "")
    return (f"no {NAMES.get(language, language)} voice a business may use is known{known}: set "
            "[server] default_voice_mode = gather (Twilio's own voice speaks that language) "
            f"or remove {language} from [stt] languages")
