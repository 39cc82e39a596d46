"""The typed, frozen settings appliance.config reads (see config.py for how each is read)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from .actions.security import SecuritySettings
from .actions.settings import ActionSettings

SECRET_NAMES = ("TWILIO_AUTH_TOKEN", "GEMINI_API_KEY", "SMTP_PASSWORD", "CRM_TOKEN",
                "CALENDAR_FEED_TOKEN")
E164 = re.compile(r"^\+[1-9]\d{6,14}$")
# The fixed phrases (appliance/phrases.ini, [phrases_<language>] in config.ini)
PHRASE_KEYS = ("greeting", "after_dial", "still_there", "goodbye", "transfer", "no_transfer",
               "reprompt", "anything_else", "no_input_goodbye", "filler", "apology",
               "ask_gender", "voicemail", "voicemail_thanks")


def base_language(language: str | None) -> str:
    """"ru-RU" / "ru_RU" / "RU" -> "ru"; None -> ""."""
    return (language or "").replace("_", "-").split("-")[0].lower()


@dataclass(frozen=True)
class PhraseBook:
    """The fixed phrases by language; `text` falls back "ru-RU" -> "ru" -> the business's
    language -> English, so a key is never missing."""

    by_language: Mapping[str, Mapping[str, str]]   # language -> key -> text
    default_language: str = "en"                   # the business's language
    business: str = ""                             # replaces {business}

    def text(self, key: str, language: str | None = None) -> str:
        if key not in PHRASE_KEYS:
            raise KeyError(f"no phrase {key!r}; phrases are {', '.join(PHRASE_KEYS)}")
        for code in (language or "", base_language(language), self.default_language, "en"):
            found = self.by_language.get(code, {}).get(key)
            if found:
                return found.replace("{business}", self.business)
        raise KeyError(f"no phrase {key!r} in any language")

    def has(self, key: str, language: str | None) -> bool:
        """Does `language` itself (not a fallback) have this phrase?"""
        return bool(self.by_language.get(base_language(language), {}).get(key))

    @property
    def languages(self) -> tuple[str, ...]:
        return tuple(self.by_language)

    def all_texts(self, language: str | None) -> list[str]:
        """Every phrase of `language` (after fallbacks), for warming the voice cache."""
        return [self.text(key, language) for key in PHRASE_KEYS]


@dataclass(frozen=True)
class ModelRef:
    """A model setting resolved: a manifest name (maybe not downloaded yet) or an explicit path."""

    setting: str          # "[stt] model" - for messages
    path: Path            # where the weights are (or will be, once downloaded)
    manifest_name: str | None = None  # set when the value named a manifest entry

    @property
    def present(self) -> bool:
        return self.path.exists()


@dataclass(frozen=True)
class ServerSettings:
    host: str
    port: int
    public_url: str          # https://public.host (no trailing slash); "" when unset
    default_voice_mode: str  # "stream" or "gather"
    log_level: str


@dataclass(frozen=True)
class TwilioSettings:
    account_sid: str
    auth_token: str = field(repr=False)
    validate_signatures: bool
    operator_number: str
    transfer_numbers: tuple[str, ...]  # every number a transfer may go to (operator included)
    operator_key: str                  # DTMF digit that transfers to the operator ("" = off)
    api_base_url: str                  # "" = Twilio itself; a loopback fake in tests


@dataclass(frozen=True)
class GeminiSettings:
    api_key: str = field(repr=False)
    model: str
    base_url: str
    first_token_timeout_ms: int
    stall_timeout_ms: int
    total_timeout_ms: int
    thinking_budget: int
    retry_after_failure_s: int


@dataclass(frozen=True)
class LocalLlmSettings:
    model: ModelRef
    context_tokens: int
    threads: int
    max_tokens: int


@dataclass(frozen=True)
class SttSettings:
    model: ModelRef
    languages: tuple[str, ...]
    threads: int
    beam_size: int
    compute_type: str
    workers: int = 2       # model jobs at once (sched/cpu.py); voice notes use one at most
    short_window: bool = True   # encoder on the speech (>= 10 s), not a padded 30 s window


@dataclass(frozen=True)
class TtsSettings:
    voices: Mapping[str, ModelRef]  # language -> voice; "" is the default voice

    def voice_for(self, language: str | None) -> ModelRef:
        return self.voices.get(language or "", self.voices[""])


@dataclass(frozen=True)
class CallSettings:
    greeting_interruptible: bool
    silence_prompt_s: float
    silence_hangup_after: int      # prompts without an answer before a polite hang-up
    max_call_s: int
    lookahead_ms: int              # bot audio sent ahead of real time to Twilio
    barge_in_ms: int               # caller speech over the bot before it pauses
    turn_wait_ms: int = 700        # end of turn when neither transcript nor model is decisive
    transcript_wait_ms: int = 1500  # least wait while the pause's transcript has not come
    caller_pause_margin_ms: int = 150  # later waits >= the caller's longest held pause + this
    turn_model: ModelRef | None = None   # smart-turn ONNX (None: transcript + silence only)
    speculative_replies: bool = True     # start the reply in a pause, release it at the end
    # admission (call/registry.py): beyond max_concurrent streamed calls, `overflow` decides
    max_concurrent: int = 4        # [call] max_concurrent; 0 in config.ini = 2 per CPU core
    overflow: str = "operator"     # "operator" | "gather" | "busy"
    caller_max_calls: int = 6      # calls one From may start per caller_window_s ...
    caller_window_s: int = 600     # ... beyond that it hears "all lines are busy"
    receive_timeout_s: float = 10.0  # no frame from Twilio this long (it sends every 20 ms) = dead
    gather_empty_max: int = 3      # <Gather>: empty results in a row before a polite goodbye
    dtmf_quiet_s: float = 2.5      # keyed digits end after this long without a key (or at #)
    voicemail: bool = False        # record a message when a transfer is not answered / out of hours


@dataclass(frozen=True)
class KbSettings:
    directory: Path
    embedding_model: ModelRef
    top_k: int
    min_score: float


@dataclass(frozen=True)
class StorageSettings:
    database: Path


@dataclass(frozen=True)
class ServiceSettings:
    """[service]: how the running box stops and keeps its backups."""
    drain_s: float = 45.0       # after SIGTERM, live calls may finish this long
    flush_s: float = 10.0       # then the outboxes get this long to send what is due
    backup_keep: int = 7        # nightly backups kept
    backup_hour: int = 3        # local hour of the nightly backup


@dataclass(frozen=True)
class BusinessSettings:
    name: str
    timezone: str
    language: str
    greeting: str
    persona: str
    facts: str
    address: str
    website: str
    transfer_hours: str   # e.g. "sun-thu 09:00-18:00; fri 09:00-13:00"; "" = always


@dataclass(frozen=True)
class MessagingSettings:
    whatsapp_from: str
    sms_from: str
    whatsapp_template_sid: str
    reply_deadline_s: float


@dataclass(frozen=True)
class OwnerSettings:
    email: str
    whatsapp: str


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    username: str
    password: str = field(repr=False)
    sender: str
    starttls: bool


@dataclass(frozen=True)
class Settings:
    path: Path
    root: Path            # folder of config.ini: relative paths are resolved against it
    models_dir: Path
    server: ServerSettings
    twilio: TwilioSettings
    gemini: GeminiSettings
    local_llm: LocalLlmSettings
    stt: SttSettings
    tts: TtsSettings
    call: CallSettings
    kb: KbSettings
    storage: StorageSettings
    business: BusinessSettings
    messaging: MessagingSettings
    owner: OwnerSettings
    smtp: SmtpSettings
    actions: ActionSettings   # [appointments] [notify] [crm] [google_calendar]
    security: SecuritySettings = field(default_factory=SecuritySettings)   # [security]
    service: ServiceSettings = field(default_factory=ServiceSettings)      # [service]
    phrases: PhraseBook = field(default_factory=lambda: PhraseBook({}))   # [phrases_<lang>]

    def model_refs(self) -> list[ModelRef]:
        refs = [self.stt.model, self.local_llm.model, self.kb.embedding_model]
        refs.extend(self.tts.voices.values())
        return refs
