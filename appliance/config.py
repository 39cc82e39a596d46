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
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping
from urllib.parse import urlparse
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

if TYPE_CHECKING:
    from .actions.settings import ActionSettings

SECRET_NAMES = ("TWILIO_AUTH_TOKEN", "GEMINI_API_KEY", "SMTP_PASSWORD", "CRM_TOKEN",
                "CALENDAR_FEED_TOKEN")
E164 = re.compile(r"^\+[1-9]\d{6,14}$")


class ConfigError(Exception):
    """A setting is missing or wrong. The message names section, key and the fix."""

    def __init__(self, section: str, key: str | None, reason: str) -> None:
        where = f"[{section}] {key}" if key else f"[{section}]"
        super().__init__(f"config: {where}: {reason}")
        self.section, self.key, self.reason = section, key, reason


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
    endpoint_wait_ms: int          # silence that ends a turn by default
    endpoint_short_wait_ms: int    # ... after a complete-sounding phrase
    endpoint_long_wait_ms: int     # ... while digits or a trailing "and" are heard
    barge_in_ms: int               # caller speech over the bot before it pauses


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
    actions: "ActionSettings"   # [appointments] [notify] [crm] [google_calendar]

    def model_refs(self) -> list[ModelRef]:
        refs = [self.stt.model, self.local_llm.model, self.kb.embedding_model]
        refs.extend(self.tts.voices.values())
        return refs


# ----------------------------------------------------------------------------------------------
# Reading

_SCHEMA: dict[str, set[str]] = {
    "server": {"host", "port", "public_url", "default_voice_mode", "log_level", "secrets_file"},
    "twilio": {"account_sid", "validate_signatures", "operator_number", "transfer_numbers",
               "operator_key", "api_base_url"},
    "gemini": {"model", "base_url", "first_token_timeout_ms", "stall_timeout_ms",
               "total_timeout_ms", "thinking_budget", "retry_after_failure_s"},
    "local_llm": {"model_path", "context_tokens", "threads", "max_tokens"},
    "stt": {"model", "languages", "threads", "beam_size", "compute_type"},
    "tts": {"voice"},  # plus voice_<lang>
    "call": {"greeting_interruptible", "silence_prompt_s", "silence_hangup_after", "max_call_s",
             "lookahead_ms", "endpoint_wait_ms", "endpoint_short_wait_ms",
             "endpoint_long_wait_ms", "barge_in_ms"},
    "kb": {"directory", "embedding_model", "top_k", "min_score"},
    "storage": {"database"},
    "business": {"name", "timezone", "language", "greeting", "persona", "facts", "address",
                 "website", "transfer_hours"},
    "messaging": {"whatsapp_from", "sms_from", "whatsapp_template_sid", "reply_deadline_s"},
    "owner": {"email", "whatsapp"},
    "smtp": {"host", "port", "username", "sender", "starttls"},
    "models": {"directory"},
}
_ACTION_SECTIONS = ("appointments", "notify", "crm", "google_calendar")  # checked by actions
_SECRET_KEYS = {"auth_token", "api_key", "password", "token"}


class _Reader:
    """Typed access to one parsed file; every getter raises ConfigError with section and key."""

    def __init__(self, parser: configparser.ConfigParser, root: Path) -> None:
        self.p, self.root = parser, root

    def raw(self, section: str, key: str, default: str) -> str:
        if self.p.has_option(section, key):
            return self.p.get(section, key).strip()
        return default

    def str(self, section: str, key: str, default: str = "") -> str:
        return self.raw(section, key, default)

    def int(self, section: str, key: str, default: int, lo: int | None = None,
            hi: int | None = None) -> int:
        text = self.raw(section, key, str(default))
        try:
            value = int(text)
        except ValueError:
            raise ConfigError(section, key, f"{text!r} is not a whole number") from None
        return self._bounded(section, key, value, lo, hi)

    def float(self, section: str, key: str, default: float, lo: float | None = None,
              hi: float | None = None) -> float:
        text = self.raw(section, key, str(default))
        try:
            value = float(text)
        except ValueError:
            raise ConfigError(section, key, f"{text!r} is not a number") from None
        return self._bounded(section, key, value, lo, hi)

    def bool(self, section: str, key: str, default: bool) -> bool:
        text = self.raw(section, key, "true" if default else "false").lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ConfigError(section, key, f"{text!r} is not true/false")

    def choice(self, section: str, key: str, default: str, options: tuple[str, ...]) -> str:
        value = self.raw(section, key, default).lower()
        if value not in options:
            raise ConfigError(section, key, f"{value!r} must be one of {', '.join(options)}")
        return value

    def path(self, section: str, key: str, default: str) -> Path:
        value = Path(os.path.expanduser(self.raw(section, key, default)))
        return value if value.is_absolute() else (self.root / value)

    def phone(self, section: str, key: str, default: str = "") -> str:
        value = self.raw(section, key, default).replace(" ", "").replace("-", "")
        if value and not E164.match(value):
            raise ConfigError(section, key, f"{value!r} is not an E.164 number like +972501234567")
        return value

    @staticmethod
    def _bounded(section, key, value, lo, hi):
        if lo is not None and value < lo:
            raise ConfigError(section, key, f"{value} is below the minimum {lo}")
        if hi is not None and value > hi:
            raise ConfigError(section, key, f"{value} is above the maximum {hi}")
        return value


def _read_secrets_file(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        if not sep:
            raise ConfigError("server", "secrets_file", f"{path} line {number} is not KEY=VALUE")
        values[name.strip().removeprefix("export ").strip()] = value.strip().strip("'\"")
    return values


def load_settings(path: str | os.PathLike[str],
                  environ: Mapping[str, str] | None = None,
                  model_resolver: Callable[[str, str, Path], Path | None] | None = None,
                  ) -> Settings:
    """Read, validate and freeze. ``environ`` defaults to os.environ (tests pass their own).

    ``model_resolver(kind, value, models_dir)`` maps a manifest name to its path; by default the
    one in appliance.models_manifest.
    """
    env = dict(os.environ if environ is None else environ)
    config_path = Path(path).resolve()
    if not config_path.is_file():
        raise ConfigError("file", None, f"{config_path} does not exist; copy config.ini from the "
                                        "repository or pass --config PATH")
    parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=(";",))
    parser.optionxform = str  # keys are case-sensitive, as documented
    try:
        parser.read(config_path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError) as exc:
        raise ConfigError("file", None, f"{config_path} cannot be parsed: {exc}") from None
    _check_schema(parser)
    root = config_path.parent
    r = _Reader(parser, root)

    secrets = _read_secrets_file(r.path("server", "secrets_file",
                                        str(Path.home() / ".config/appliance/secrets.env")))
    secret = lambda name: env.get(name) or secrets.get(name, "")  # noqa: E731

    if model_resolver is None:
        from .models_manifest import resolve_model_value as model_resolver
    models_dir = r.path("models", "directory", "models")

    def model(section: str, key: str, kind: str, default: str) -> ModelRef:
        value = r.raw(section, key, default)
        setting = f"[{section}] {key}"
        if not value:
            raise ConfigError(section, key, "is empty; name a model from models/manifest.toml "
                                            "or give a path")
        named = model_resolver(kind, value, models_dir)
        if named is not None:
            return ModelRef(setting, named, manifest_name=value)
        candidate = Path(os.path.expanduser(value))
        candidate = candidate if candidate.is_absolute() else root / candidate
        if not candidate.exists():
            raise ConfigError(section, key, f"{candidate} does not exist; give an existing path "
                                            "or a model name from `appliance models list`")
        return ModelRef(setting, candidate)

    server = ServerSettings(
        host=r.str("server", "host", "127.0.0.1"),
        port=r.int("server", "port", 1337, 0, 65535),
        public_url=r.str("server", "public_url", "").rstrip("/"),
        default_voice_mode=r.choice("server", "default_voice_mode", "stream",
                                    ("stream", "gather")),
        log_level=r.choice("server", "log_level", "info", ("debug", "info", "warning", "error")),
    )
    twilio = _twilio(r, secret("TWILIO_AUTH_TOKEN"))
    if twilio.validate_signatures:
        if not server.public_url:
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

    gemini = GeminiSettings(
        api_key=secret("GEMINI_API_KEY"),
        model=r.str("gemini", "model", "gemini-2.5-flash"),
        base_url=r.str("gemini", "base_url", "").rstrip("/"),
        first_token_timeout_ms=r.int("gemini", "first_token_timeout_ms", 1500, 100, 60000),
        stall_timeout_ms=r.int("gemini", "stall_timeout_ms", 1200, 100, 60000),
        total_timeout_ms=r.int("gemini", "total_timeout_ms", 20000, 1000, 300000),
        thinking_budget=r.int("gemini", "thinking_budget", 0, 0, 24576),
        retry_after_failure_s=r.int("gemini", "retry_after_failure_s", 30, 1, 3600),
    )
    local_llm = LocalLlmSettings(
        model=model("local_llm", "model_path", "llm", "qwen2.5-0.5b-instruct"),  # [i17]
        context_tokens=r.int("local_llm", "context_tokens", 4096, 512, 131072),
        threads=r.int("local_llm", "threads", 2, 1, 256),
        max_tokens=r.int("local_llm", "max_tokens", 200, 16, 4096),
    )
    languages = tuple(x.strip() for x in r.str("stt", "languages", "en").split(",") if x.strip())
    if not languages:
        raise ConfigError("stt", "languages", "needs at least one language code, e.g. en, he, ru")
    for code in languages:
        if not re.fullmatch(r"[a-z]{2,3}", code):
            raise ConfigError("stt", "languages", f"{code!r} is not a language code like en")
    stt = SttSettings(
        model=model("stt", "model", "stt", "base"),
        languages=languages,
        threads=r.int("stt", "threads", 2, 1, 256),
        beam_size=r.int("stt", "beam_size", 1, 1, 10),
        compute_type=r.choice("stt", "compute_type", "int8", ("int8", "int8_float32", "float32")),
    )
    voices = {"": model("tts", "voice", "tts", "en_US-lessac-medium")}
    if parser.has_section("tts"):
        for key in parser.options("tts"):
            if key.startswith("voice_"):
                voices[key.removeprefix("voice_")] = model("tts", key, "tts", "")
    call = CallSettings(
        greeting_interruptible=r.bool("call", "greeting_interruptible", False),
        silence_prompt_s=r.float("call", "silence_prompt_s", 8.0, 2.0, 120.0),
        silence_hangup_after=r.int("call", "silence_hangup_after", 2, 1, 10),
        max_call_s=r.int("call", "max_call_s", 900, 30, 14400),
        lookahead_ms=r.int("call", "lookahead_ms", 200, 40, 2000),
        endpoint_wait_ms=r.int("call", "endpoint_wait_ms", 500, 100, 5000),
        endpoint_short_wait_ms=r.int("call", "endpoint_short_wait_ms", 250, 60, 5000),
        endpoint_long_wait_ms=r.int("call", "endpoint_long_wait_ms", 1200, 100, 10000),
        barge_in_ms=r.int("call", "barge_in_ms", 140, 40, 2000),
    )
    kb = KbSettings(
        directory=r.path("kb", "directory", "kb"),
        embedding_model=model("kb", "embedding_model", "embedding", "embeddinggemma-300m"),
        top_k=r.int("kb", "top_k", 4, 1, 50),
        min_score=r.float("kb", "min_score", 0.0, -1.0, 1.0),
    )
    storage = StorageSettings(database=r.path("storage", "database", "data/appliance.db"))
    timezone = r.str("business", "timezone", "UTC")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError("business", "timezone",
                          f"{timezone!r} is not a time zone name like Asia/Jerusalem") from None
    business = BusinessSettings(
        name=r.str("business", "name", "Our business"),
        timezone=timezone,
        language=r.str("business", "language", languages[0]),
        greeting=r.str("business", "greeting", "Hello, how can I help you?"),
        persona=r.str("business", "persona", ""),
        facts=r.str("business", "facts", ""),
        address=r.str("business", "address", ""),
        website=r.str("business", "website", ""),
        transfer_hours=r.str("business", "transfer_hours", ""),
    )
    messaging = MessagingSettings(
        whatsapp_from=r.str("messaging", "whatsapp_from", ""),
        sms_from=r.phone("messaging", "sms_from", ""),
        whatsapp_template_sid=r.str("messaging", "whatsapp_template_sid", ""),
        reply_deadline_s=r.float("messaging", "reply_deadline_s", 10.0, 1.0, 14.0),
    )
    owner = OwnerSettings(email=r.str("owner", "email", ""),
                          whatsapp=r.phone("owner", "whatsapp", ""))
    smtp = SmtpSettings(
        host=r.str("smtp", "host", ""),
        port=r.int("smtp", "port", 587, 1, 65535),
        username=r.str("smtp", "username", ""),
        password=secret("SMTP_PASSWORD"),
        sender=r.str("smtp", "sender", ""),
        starttls=r.bool("smtp", "starttls", True),
    )
    from .actions.settings import ActionSettings

    actions = ActionSettings.from_sections(   # raises ConfigError naming section and key
        {name: dict(parser.items(name)) for name in _ACTION_SECTIONS if parser.has_section(name)},
        environ={"CRM_TOKEN": secret("CRM_TOKEN")}, root=root)
    return Settings(path=config_path, root=root, models_dir=models_dir, server=server,
                    twilio=twilio, gemini=gemini, local_llm=local_llm, stt=stt,
                    tts=TtsSettings(voices=voices), call=call, kb=kb, storage=storage,
                    business=business, messaging=messaging, owner=owner, smtp=smtp,
                    actions=actions)



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


def _check_schema(parser: configparser.ConfigParser) -> None:
    for section in parser.sections():
        if section in _ACTION_SECTIONS:
            continue
        if section not in _SCHEMA:
            known = sorted((*_SCHEMA, *_ACTION_SECTIONS))
            raise ConfigError(section, None, f"unknown section; known sections: "
                                             f"{', '.join(known)}")
        for key in parser.options(section):
            if key in _SECRET_KEYS:
                raise ConfigError(section, key, "secrets do not belong in config.ini; use the "
                                                "environment or the secrets file")
            if key not in _SCHEMA[section] and not (section == "tts" and key.startswith("voice_")):
                raise ConfigError(section, key, f"unknown key; known keys: "
                                                f"{', '.join(sorted(_SCHEMA[section]))}")
