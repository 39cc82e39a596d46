"""Stand-ins for external services, speaking their real protocols on loopback.

`make_settings()` writes a small config.ini for them (Gemini pointed at a fake, the generated
chat model as the local model, dummy files for the models a test does not load); `listen()`
plays a caller consuming one reply and timestamps what it hears.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from appliance.config import Settings, load_settings
from appliance.conversation.events import ActionRequested, Filler, ReplyDone, TextDelta

CACHE = Path(__file__).resolve().parents[2] / ".cache" / "models"


def chat_model_path() -> Path:
    """The generated random-weight chat GGUF (tests/support/models.py), built on first use."""
    from tests.support.models import make_chat_gguf

    return make_chat_gguf(CACHE)


def make_settings(tmp_path: Path, *, gemini_url: str = "", api_key: str = "test-key",
                  chat_gguf: Path | None = None,
                  sections: Mapping[str, Mapping[str, object]] | None = None) -> Settings:
    """Settings for engine tests. `sections` overrides or adds keys, e.g.
    {"gemini": {"first_token_timeout_ms": 500}}."""
    dummy = tmp_path / "dummy-model"
    dummy.mkdir(exist_ok=True)
    values: dict[str, dict[str, object]] = {
        "server": {"secrets_file": str(tmp_path / "no-secrets.env")},
        "twilio": {"validate_signatures": "false", "operator_number": "+972501112233"},
        "gemini": {"model": "gemini-2.5-flash", "base_url": gemini_url,
                   "first_token_timeout_ms": 1000, "stall_timeout_ms": 1000,
                   "total_timeout_ms": 10000, "retry_after_failure_s": 1},
        "local_llm": {"model_path": str(chat_gguf or dummy), "context_tokens": 4096,
                      "max_tokens": 24, "threads": 2},
        "stt": {"model": str(dummy), "languages": "en, he"},
        "tts": {"voice": str(dummy)},
        "kb": {"embedding_model": str(dummy), "directory": str(tmp_path / "kb")},
        "storage": {"database": str(tmp_path / "appliance.db")},
        "business": {"name": "Sunrise Appliances", "timezone": "Asia/Jerusalem",
                     "language": "en", "persona": "You are warm and brief.",
                     "facts": "We repair fridges. Repairs have a 90-day warranty.",
                     "address": "12 Herzl Street, Tel Aviv",
                     "website": "https://sunrise.example", "transfer_hours": ""},
    }
    for section, keys in (sections or {}).items():
        values.setdefault(section, {}).update(keys)
    lines = []
    for section, keys in values.items():
        lines.append(f"[{section}]")
        lines.extend(f"{k} = {v}" for k, v in keys.items())
    ini = tmp_path / "config.ini"
    ini.write_text("\n".join(lines) + "\n", encoding="utf-8")
    environ = {"GEMINI_API_KEY": api_key} if api_key else {}
    return load_settings(ini, environ=environ, model_resolver=lambda kind, value, d: None)


# -- a caller listening to a reply -------------------------------------------------------------

@dataclass
class Heard:
    """Every event of one reply with its time (seconds since reply() was called)."""

    events: list[tuple[float, Any]] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(e.text for _, e in self.events if isinstance(e, TextDelta))

    @property
    def fillers(self) -> list[tuple[float, Any]]:
        return [(t, e) for t, e in self.events if isinstance(e, Filler)]

    @property
    def actions(self) -> list[Any]:
        return [e.action for _, e in self.events if isinstance(e, ActionRequested)]

    @property
    def done(self) -> Any:
        last = self.events[-1][1]
        assert isinstance(last, ReplyDone), last
        return last

    @property
    def first_audible(self) -> float:
        return next(t for t, e in self.events if isinstance(e, (Filler, TextDelta)))

    @property
    def first_text(self) -> float:
        return next(t for t, e in self.events if isinstance(e, TextDelta))

    @property
    def longest_silence(self) -> float:
        """The longest stretch with nothing new to say (fillers count as speech), from the
        start of the reply to its end; playback time of the text is not credited."""
        times = [0.0] + [t for t, e in self.events if isinstance(e, (Filler, TextDelta))]
        times.append(self.events[-1][0])
        return max(b - a for a, b in zip(times, times[1:]))


async def listen(conversation: Any, text: str, language: str | None = None) -> Heard:
    heard = Heard()
    started = time.monotonic()
    async for event in conversation.reply(text, language):
        heard.events.append((time.monotonic() - started, event))
    return heard
