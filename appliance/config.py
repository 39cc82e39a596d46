"""config.ini + environment, read once into one frozen Settings object.

Every value is validated here; an invalid one raises ConfigError naming the section, the key
and the fix, so nothing starts half-configured. Components receive only the part they need
(``settings.stt``, ``settings.gemini`` ...), never the parser.

Secrets (TWILIO_AUTH_TOKEN, GEMINI_API_KEY, SMTP_PASSWORD) come from the environment or from a
secrets file outside git (``[server] secrets_file``, KEY=VALUE lines); never from config.ini.

Model settings accept either a name from models/manifest.toml (for instance ``base`` or
``whisper-base`` for [stt] model) or a path. A named model that is not downloaded yet is not a
configuration error: the appliance starts, /healthz reports it missing and ``appliance doctor``
says how to fetch it. An explicit path that does not exist is an error.
"""

from __future__ import annotations

import configparser
import logging
import os
import re
from dataclasses import replace
from pathlib import Path
from typing import Callable, Mapping
from urllib.parse import urlparse
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .ops.credentials import credentials   # systemd LoadCredential= (the service)
from .config_actions import read_actions, read_security
from .config_error import ConfigError
from .config_types import (
    E164,
    SECRET_NAMES,
    BusinessSettings,
    CallSettings,
    GeminiSettings,
    KbSettings,
    LocalLlmSettings,
    MessagingSettings,
    ModelRef,
    OwnerSettings,
    ServerSettings,
    ServiceSettings,
    Settings,
    SmtpSettings,
    StorageSettings,
    SttSettings,
    TtsSettings,
    TwilioSettings,
)
from .config_reader import Reader as _Reader
from .config_reader import read_phrase_sections
from .config_reader import parse_file as _parse_file
from .config_reader import read_secrets_file as _read_secrets_file
from .call.phrases import PhraseBook, phrase_book
from .hours import OpeningHours

__all__ = ["E164", "SECRET_NAMES", "ConfigError", "load_settings", "BusinessSettings",
           "CallSettings", "GeminiSettings", "KbSettings", "LocalLlmSettings",
           "MessagingSettings", "ModelRef", "OwnerSettings", "ServerSettings", "Settings",
           "SmtpSettings", "StorageSettings", "SttSettings", "TtsSettings", "TwilioSettings"]
log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------
# Reading

_SECRET_KEYS = {"auth_token", "api_key", "password", "token"}


def load_settings(path: str | os.PathLike[str],
                  environ: Mapping[str, str] | None = None,
                  model_resolver: Callable[[str, str, Path], Path | None] | None = None,
                  require_twilio: bool = True) -> Settings:
    """Read, validate and freeze. ``environ`` defaults to os.environ (tests pass their own).

    ``model_resolver(kind, value, models_dir)`` maps a manifest name to its path; by default the
    one in appliance.models_manifest. Each section is read by its own function below; a key
    that none of them reads is an unknown key. ``require_twilio=False`` (offline commands such
    as `appliance kb`) does not insist on the settings only the webhooks need (public_url).
    """
    env = dict(os.environ if environ is None else environ)
    config_path = Path(path).resolve()
    parser = _parse_file(config_path)
    _check_secrets(parser)
    root = config_path.parent
    r = _Reader(parser, root)
    secrets = _read_secrets_file(r.path("server", "secrets_file",
                                        str(Path.home() / ".config/appliance/secrets.env")))
    secrets.update(credentials(env, _read_secrets_file))

    def secret(name: str) -> str:
        return env.get(name) or secrets.get(name, "")

    if model_resolver is None:
        from .models_manifest import resolve_model_value as model_resolver
    models = _Models(r, model_resolver, r.path("models", "directory", "models"))
    server = _server(r)
    twilio = _twilio(r, secret("TWILIO_AUTH_TOKEN"))
    _check_public_url(server, twilio, require_twilio)
    stt = _stt(r, models)
    business = _business(r, stt.languages)
    phrases = _phrases(r, business)
    business = replace(business, greeting=phrases.text("greeting", business.language))
    settings = Settings(
        path=config_path, root=root, models_dir=models.directory, server=server, twilio=twilio,
        gemini=_gemini(r, secret("GEMINI_API_KEY")), local_llm=_local_llm(r, models), stt=stt,
        tts=_tts(r, models), call=_call(r, models), kb=_kb(r, models), storage=_storage(r),
        business=business, messaging=_messaging(r), owner=_owner(r),
        smtp=_smtp(r, secret("SMTP_PASSWORD")),
        actions=read_actions(r, secret("CRM_TOKEN")), security=read_security(r),
        service=_service(r), phrases=phrases)
    r.check_unknown_keys()
    return settings


class _Models:
    """A model setting: a name from models/manifest.toml, or a path."""

    def __init__(self, r: _Reader, resolver: Callable[[str, str, Path], Path | None],
                 directory: Path) -> None:
        self.r, self.resolver, self.directory = r, resolver, directory

    def ref(self, section: str, key: str, kind: str, default: str) -> ModelRef:
        value = self.r.raw(section, key, default)
        setting = f"[{section}] {key}"
        if not value:
            raise ConfigError(section, key, "is empty; name a model from models/manifest.toml "
                                            "or give a path")
        named = self.resolver(kind, value, self.directory)
        if named is not None:
            return ModelRef(setting, named, manifest_name=value)
        candidate = Path(os.path.expanduser(value))
        candidate = candidate if candidate.is_absolute() else self.r.root / candidate
        if not candidate.exists():
            raise ConfigError(section, key, f"{candidate} does not exist; give an existing path "
                                            "or a model name from `appliance models list`")
        return ModelRef(setting, candidate)


def _server(r: _Reader) -> ServerSettings:
    return ServerSettings(
        host=r.str("server", "host", "127.0.0.1"),
        port=r.int("server", "port", 1337, 0, 65535),
        public_url=r.str("server", "public_url", "").rstrip("/"),
        default_voice_mode=r.choice("server", "default_voice_mode", "stream",
                                    ("stream", "gather")),
        log_level=r.choice("server", "log_level", "info", ("debug", "info", "warning", "error")),
    )


def _check_public_url(server: ServerSettings, twilio: TwilioSettings,
                      require_twilio: bool = True) -> None:
    if twilio.validate_signatures and require_twilio and not server.public_url:
        raise ConfigError("server", "public_url",
                          "is required while [twilio] validate_signatures is true: set it to "
                          "the https URL Twilio calls (your Cloudflare Tunnel hostname)")
    # A missing TWILIO_AUTH_TOKEN is not a start-up error: the server starts, every webhook
    # is refused (fail closed) and /healthz and `appliance doctor` say what to set.
    if server.public_url:
        parsed = urlparse(server.public_url)
        if parsed.scheme not in ("https", "http") or not parsed.netloc or parsed.path not in ("",):
            raise ConfigError("server", "public_url",
                              f"{server.public_url!r} must look like https://receptionist.example.com "
                              "(scheme and host only)")
        # Twilio opens the Media Stream on wss:// and signs that URL: an http:// base made the
        # signature check use ws:// and refuse every streamed call. Loopback (tests, probes on
        # this box) is the one exception: Twilio never reaches it.
        if (twilio.validate_signatures and parsed.scheme != "https"
                and parsed.hostname not in ("127.0.0.1", "localhost", "::1")):
            raise ConfigError("server", "public_url",
                              f"{server.public_url!r} must start with https:// while [twilio] "
                              "validate_signatures is true (Twilio signs the https/wss URL; "
                              "your Cloudflare Tunnel hostname is https)")


def _gemini(r: _Reader, api_key: str) -> GeminiSettings:
    return GeminiSettings(
        api_key=api_key,
        model=r.str("gemini", "model", "gemini-2.5-flash"),
        base_url=r.str("gemini", "base_url", "").rstrip("/"),
        first_token_timeout_ms=r.int("gemini", "first_token_timeout_ms", 1500, 100, 60000),
        stall_timeout_ms=r.int("gemini", "stall_timeout_ms", 1200, 100, 60000),
        total_timeout_ms=r.int("gemini", "total_timeout_ms", 20000, 1000, 300000),
        thinking_budget=r.int("gemini", "thinking_budget", 0, 0, 24576),
        retry_after_failure_s=r.int("gemini", "retry_after_failure_s", 30, 1, 3600),
    )


def _local_llm(r: _Reader, models: _Models) -> LocalLlmSettings:
    return LocalLlmSettings(
        model=models.ref("local_llm", "model_path", "llm", "qwen2.5-0.5b-instruct"),
        context_tokens=r.int("local_llm", "context_tokens", 4096, 512, 131072),
        threads=r.int("local_llm", "threads", 2, 1, 256),
        max_tokens=r.int("local_llm", "max_tokens", 200, 16, 4096),
    )


def _stt(r: _Reader, models: _Models) -> SttSettings:
    languages = tuple(x.strip() for x in r.str("stt", "languages", "en").split(",") if x.strip())
    if not languages:
        raise ConfigError("stt", "languages", "needs at least one language code, e.g. en, he, ru")
    for code in languages:
        if not re.fullmatch(r"[a-z]{2,3}", code):
            raise ConfigError("stt", "languages", f"{code!r} is not a language code like en")
    return SttSettings(
        model=models.ref("stt", "model", "stt", "base"),
        languages=languages,
        threads=r.int("stt", "threads", 2, 1, 256),
        beam_size=r.int("stt", "beam_size", 1, 1, 10),
        compute_type=r.choice("stt", "compute_type", "int8", ("int8", "int8_float32", "float32")),
        workers=r.int("stt", "workers", 2, 1, 64),
        short_window=r.bool("stt", "short_window", True),
    )


def _tts(r: _Reader, models: _Models) -> TtsSettings:
    voices = {"": models.ref("tts", "voice", "tts", "en_US-joe-medium")}
    for key in r.keys("tts"):
        if key.startswith("voice_"):      # voice_<language>
            voices[key.removeprefix("voice_")] = models.ref("tts", key, "tts", "")
    return TtsSettings(voices=voices)


# [call] keys no longer read, with what replaced them: an older config.ini that still sets them
# keeps working (an upgrade keeps /etc/appliance/config.ini); they are ignored with a warning.
# The endpoint_* keys: the silence-only endpointer that issue 12 replaced. caller_pause_turns:
# the caller-pause floor counted over the last N turns, measured worse than the whole call's
# (bench/results/turn_taking_pause_floor.md).
_WHOLE_CALL = "the caller-pause floor is always that of the whole call"
RETIRED_CALL_KEYS = (("endpoint_wait_ms", "see turn_wait_ms"),
                     ("endpoint_short_wait_ms", "see turn_wait_ms"),
                     ("endpoint_long_wait_ms", "see turn_wait_ms"),
                     ("caller_pause_turns", _WHOLE_CALL))


def _call(r: _Reader, models: _Models) -> CallSettings:
    for key, instead in RETIRED_CALL_KEYS:
        if r.str("call", key):
            log.warning("[call] %s is no longer used (%s); ignored", key, instead)
    value = r.raw("call", "turn_model", "")
    if value.lower() in ("off", "none"):
        turn_model = None
    elif value:
        turn_model = models.ref("call", "turn_model", "turn", value)
    else:   # not set: the manifest's default, optional (missing -> health says so)
        turn_model = ModelRef("[call] turn_model", models.directory / "smart-turn-v3.2-cpu.onnx",
                              manifest_name="smart-turn-v3.2")
    return CallSettings(
        greeting_interruptible=r.bool("call", "greeting_interruptible", False),
        silence_prompt_s=r.float("call", "silence_prompt_s", 8.0, 2.0, 120.0),
        silence_hangup_after=r.int("call", "silence_hangup_after", 2, 1, 10),
        max_call_s=r.int("call", "max_call_s", 900, 30, 14400),
        lookahead_ms=r.int("call", "lookahead_ms", 200, 40, 2000),
        barge_in_ms=r.int("call", "barge_in_ms", 140, 40, 2000),
        turn_wait_ms=r.int("call", "turn_wait_ms", 700, 200, 5000),
        transcript_wait_ms=r.int("call", "transcript_wait_ms", 1500, 200, 10000),
        caller_pause_margin_ms=r.int("call", "caller_pause_margin_ms", 150, 0, 2000),
        turn_model=turn_model,
        speculative_replies=r.bool("call", "speculative_replies", True),
        max_concurrent=r.int("call", "max_concurrent", 0, 0, 256) or _default_max_calls(),
        overflow=r.choice("call", "overflow", "operator", ("operator", "gather", "busy")),
        caller_max_calls=r.int("call", "caller_max_calls", 6, 1, 1000),
        caller_window_s=r.int("call", "caller_window_s", 600, 10, 86400),
        receive_timeout_s=r.float("call", "receive_timeout_s", 10.0, 1.0, 300.0),
        gather_empty_max=r.int("call", "gather_empty_max", 3, 1, 10),
        dtmf_quiet_s=r.float("call", "dtmf_quiet_s", 2.5, 0.5, 30.0),
        voicemail=r.bool("call", "voicemail", False),
    )


def _default_max_calls() -> int:
    """Two streamed calls per core (STT and TTS of a turn take about half a core each)."""
    return max(1, 2 * (os.cpu_count() or 1))


def _kb(r: _Reader, models: _Models) -> KbSettings:
    return KbSettings(
        directory=r.path("kb", "directory", "kb"),
        embedding_model=models.ref("kb", "embedding_model", "embedding", "embeddinggemma-300m"),
        top_k=r.int("kb", "top_k", 4, 1, 50),
        min_score=r.float("kb", "min_score", 0.0, -1.0, 1.0),
    )


def _storage(r: _Reader) -> StorageSettings:
    return StorageSettings(database=r.path("storage", "database", "data/appliance.db"))


def _service(r: _Reader) -> ServiceSettings:
    return ServiceSettings(
        drain_s=r.float("service", "drain_s", 45.0, 0.0, 3600.0),
        flush_s=r.float("service", "flush_s", 10.0, 0.0, 600.0),
        backup_keep=r.int("service", "backup_keep", 7, 1, 365),
        backup_hour=r.int("service", "backup_hour", 3, 0, 23),
    )


def _business(r: _Reader, languages: tuple[str, ...]) -> BusinessSettings:
    timezone = r.str("business", "timezone", "UTC")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError("business", "timezone",
                          f"{timezone!r} is not a time zone name like Asia/Jerusalem") from None
    transfer_hours = r.str("business", "transfer_hours", "")
    try:
        OpeningHours.parse(transfer_hours)
    except ValueError as exc:
        raise ConfigError("business", "transfer_hours",
                          f"{exc}; write it like sun-thu 09:00-18:00; fri 09:00-13:00") from None
    return BusinessSettings(
        name=r.str("business", "name", "Our business"),
        timezone=timezone,
        language=r.str("business", "language", languages[0]),
        greeting=r.str("business", "greeting", ""),   # "" = the phrase book's greeting
        persona=r.str("business", "persona", ""),
        facts=r.str("business", "facts", ""),
        address=r.str("business", "address", ""),
        website=r.str("business", "website", ""),
        transfer_hours=transfer_hours,
    )


def _phrases(r: _Reader, business: BusinessSettings) -> PhraseBook:
    """appliance/phrases.ini with config.ini's [phrases_<language>] over it; [business]
    greeting, when set, is the greeting of the business's own language."""
    overrides = read_phrase_sections(r)
    if business.greeting:
        overrides.setdefault(business.language, {})["greeting"] = business.greeting
    try:
        return phrase_book(overrides, business.language, business.name)
    except OSError as exc:
        raise ConfigError("phrases", None, f"the shipped phrases file cannot be read: {exc}"
                          ) from None


def _messaging(r: _Reader) -> MessagingSettings:
    return MessagingSettings(
        whatsapp_from=r.str("messaging", "whatsapp_from", ""),
        sms_from=r.phone("messaging", "sms_from", ""),
        whatsapp_template_sid=r.str("messaging", "whatsapp_template_sid", ""),
        reply_deadline_s=r.float("messaging", "reply_deadline_s", 10.0, 1.0, 14.0),
    )


def _owner(r: _Reader) -> OwnerSettings:
    return OwnerSettings(email=r.str("owner", "email", ""),
                         whatsapp=r.phone("owner", "whatsapp", ""))


def _smtp(r: _Reader, password: str) -> SmtpSettings:
    return SmtpSettings(
        host=r.str("smtp", "host", ""),
        port=r.int("smtp", "port", 587, 1, 65535),
        username=r.str("smtp", "username", ""),
        password=password,
        sender=r.str("smtp", "sender", ""),
        starttls=r.bool("smtp", "starttls", True),
    )


def _twilio(r: _Reader, auth_token: str) -> TwilioSettings:
    operator = r.phone("twilio", "operator_number", "")
    numbers = []
    for item in r.str("twilio", "transfer_numbers", "").split(","):
        item = item.strip().replace(" ", "").replace("-", "")
        if item:
            if not E164.match(item):
                raise ConfigError("twilio", "transfer_numbers", f"{item!r} is not an E.164 number")
            numbers.append(item)
    if operator and operator not in numbers:
        numbers.insert(0, operator)
    key = r.str("twilio", "operator_key", "0")
    if key and key not in "0123456789*#":
        raise ConfigError("twilio", "operator_key", f"{key!r} must be one DTMF key (0-9, * or #)")
    sid = r.str("twilio", "account_sid", "")
    if sid and not re.fullmatch(r"AC[0-9a-fA-F]{32}", sid):
        raise ConfigError("twilio", "account_sid", f"{sid!r} must look like AC followed by 32 hex "
                                                   "digits (Twilio console, Account Info)")
    return TwilioSettings(
        account_sid=sid, auth_token=auth_token,
        validate_signatures=r.bool("twilio", "validate_signatures", True),
        operator_number=operator, transfer_numbers=tuple(numbers), operator_key=key,
        api_base_url=r.str("twilio", "api_base_url", "").rstrip("/"),
    )


def _check_secrets(parser: configparser.ConfigParser) -> None:
    for section in parser.sections():
        for key in parser.options(section):
            if key in _SECRET_KEYS:
                raise ConfigError(section, key, "secrets do not belong in config.ini; use the "
                                                "environment or the secrets file")
