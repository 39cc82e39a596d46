"""The system prompt, in the order that lets the local model reuse its KV cache.

1. static (identical for every conversation of the process): who the bot is, the business
   facts from config.ini, the rules;
2. dynamic (fixed for one conversation, rebuilt only when the customer record changes): the
   channel's style, the customer record, today's date;
3. per turn, attached to the user's message rather than the system prompt: knowledge-base
   passages and the language the caller was heard speaking.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Iterable
from zoneinfo import ZoneInfo

from ..call.phrases import shipped_phrases
from ..config import BusinessSettings
from .memory import Customer
from .tools import format_passages

LANGUAGE_NAMES = {"en": "English", "he": "Hebrew", "ru": "Russian", "ar": "Arabic",
                  "es": "Spanish", "fr": "French", "de": "German", "it": "Italian",
                  "pt": "Portuguese", "uk": "Ukrainian", "am": "Amharic", "tr": "Turkish"}

CHANNEL_STYLE = {
    "call": ("You are speaking on the phone; everything you write is read aloud. Answer in one "
             "to three short spoken sentences. No markup, lists, emoji, links or symbols; write "
             "numbers, times and prices the way you would say them. Ask one question at a "
             "time."),
    "whatsapp": ("You are chatting on WhatsApp. Keep replies short and friendly; light "
                 "formatting (*bold*, a short list) and the website link are fine."),
    "sms": ("You are replying by SMS. Plain text only, one to three short sentences, no "
            "formatting and no emoji."),
}
CHANNEL_STYLE["gather"] = CHANNEL_STYLE["call"]
CHANNEL_STYLE["chat"] = CHANNEL_STYLE["whatsapp"]

# Said on a call while the answer is delayed; and the reply when no model can answer. The
# texts are the shipped phrases file's (appliance/phrases.ini, call/phrases.py).
_SHIPPED = shipped_phrases()
FILLERS = {lang: texts["filler"] for lang, texts in _SHIPPED.items() if texts.get("filler")}
APOLOGIES = {lang: texts["apology"] for lang, texts in _SHIPPED.items() if texts.get("apology")}
ASK_GENDER = {lang: t["ask_gender"] for lang, t in _SHIPPED.items() if t.get("ask_gender")}
GENDERED = ("he", "ar", "ru")   # languages whose verbs and adjectives agree with the listener


def language_name(code: str | None) -> str:
    return LANGUAGE_NAMES.get(code or "", code or "")


def filler(language: str | None) -> str:
    return FILLERS.get(language or "", FILLERS["en"])


def apology(language: str | None) -> str:
    return APOLOGIES.get(language or "", APOLOGIES["en"])


def business_facts(business: BusinessSettings, facts_max_chars: int | None = None) -> list[str]:
    """The facts from config.ini, one per line ([business] facts cut at `facts_max_chars`)."""
    facts = []
    if business.facts.strip():
        text = business.facts.strip()
        if facts_max_chars is not None and len(text) > facts_max_chars:
            text = text[:facts_max_chars].rsplit(" ", 1)[0] + " ..."
        facts.append(text)
    if business.address:
        facts.append(f"Address: {business.address}.")
    if business.website:
        facts.append(f"Website: {business.website}")
    if business.transfer_hours:
        facts.append(f"People of the business answer calls: {business.transfer_hours}.")
    return facts


def static_prompt(business: BusinessSettings) -> str:
    lines = [f"You are the receptionist of {business.name}."]
    if business.persona:
        lines.append(business.persona)
    facts = business_facts(business)
    if facts:
        lines.append("\nWhat you know about the business:\n" + "\n".join(facts))
    lines.append(
        "\nRules:\n"
        "- Use only the facts above, knowledge-base passages and tool results. If you do not "
        "know, say so and offer to take a message or to transfer the call; never invent "
        "prices, opening hours, availability or policies.\n"
        "- Never say an action was done (a booking, a message, a transfer) unless a tool "
        "confirmed it.\n"
        f"- Reply in the customer's language; the business's own language is "
        f"{language_name(business.language)}.\n"
        "- When the customer tells you their name, preferred language or how to be addressed, "
        "save it with update_customer.\n"
        "- Messages before the current conversation are earlier calls and chats with the same "
        "customer.\n"
        "- A reply of yours that ends with ' —' was cut off: the customer heard only that part.")
    return "\n".join(lines)


LOCAL_FACTS_MAX_CHARS = 600   # the rest belongs in the knowledge base


def local_static_prompt(business: BusinessSettings) -> str:
    """[i17] The local model's static prompt: persona, capped facts, five short rules (the
    tools are listed by llm/local_prompt.compact_tools). A few hundred tokens, where the
    cloud prompt above costs every offline turn's prefill on 2 cores far more."""
    first = business.persona.strip() or f"You are the receptionist of {business.name}."
    if business.name and business.name not in first:
        first = f"You are the receptionist of {business.name}. {first}"
    lines = [first]
    facts = business_facts(business, LOCAL_FACTS_MAX_CHARS)
    if facts:
        lines.append("Facts: " + " ".join(facts))
    lines.append(
        "Rules: Use only these facts, the passages given with a message, and tool results. "
        "If you do not know, say so and offer to take a message. Never invent prices, hours "
        "or availability. Never say something was done unless a tool confirmed it. Reply "
        f"briefly in the customer's language (default {language_name(business.language)}). "
        "A reply of yours ending with ' —' was cut off.")
    return "\n".join(lines)


def dynamic_prompt(channel: str, customer: Customer, timezone: str,
                   now: datetime | None = None, unconfirmed: str | None = None) -> str:
    """`unconfirmed`: the line for a voice caller not yet confirmed (conversation/privacy.py),
    which replaces the customer's details."""
    now = now or datetime.now(ZoneInfo(timezone))
    lines = [CHANNEL_STYLE.get(channel, CHANNEL_STYLE["chat"])]
    about = []
    if unconfirmed is not None:
        lines.append(unconfirmed)
    elif customer.name:
        about.append(f"name {customer.name}")
    if customer.language:
        about.append(f"prefers {language_name(customer.language)}")
    if customer.gender in ("f", "m"):
        form = "feminine" if customer.gender == "f" else "masculine"
        about.append(f"address them in the {form} form (in languages such as Hebrew)")
    if customer.gender not in ("f", "m") and (customer.language or GENDERED[0]) in GENDERED:
        lines.append(_ask_gender_rule())
    if about:
        lines.append("The customer: " + "; ".join(about) + ".")
    elif unconfirmed is None:
        lines.append("This customer has not told us their name yet.")
    lines.append(f"Now: {now:%A %d %B %Y, %H:%M} ({timezone}).")
    return "\n".join(lines)


def local_turn_context(passages: Iterable[Any], language: str | None, business_language: str,
                       max_chars: int, max_each: int) -> str:
    """[i17] `turn_context` for the local model: a short heading, and the language only when
    it is not the business's own (the static prompt names that one)."""
    parts = []
    hits = list(passages)
    if hits:
        parts.append("Passages (use only if relevant):\n"
                     + format_passages(hits, max_chars=max_each, total_chars=max_chars))
    if language and language.split("-")[0] != business_language.split("-")[0]:
        parts.append(f"(The customer speaks {language_name(language)}.)")
    return "\n\n".join(parts)


def _ask_gender_rule() -> str:
    """Hebrew (and other gendered languages) needs the listener's grammatical gender."""
    examples = "; ".join(f"{language_name(lang)}: \"{ASK_GENDER[lang]}\""
                         for lang in GENDERED if lang in ASK_GENDER)
    return ("We do not know how to address this customer grammatically. If you reply in a "
            "language where words agree with the listener's gender (Hebrew, Arabic, Russian "
            "past tense) and you cannot tell from what they said, ask politely once, e.g. "
            f"{examples}, then save it with update_customer (gender f or m) and use it.")


def turn_context(passages: Iterable[Any] = (), language: str | None = None,
                 max_chars: int = 1200, max_each: int = 600) -> str:
    """Per-turn material placed before the customer's words (`max_each`: per passage)."""
    parts = []
    hits = list(passages)
    if hits:
        parts.append("Knowledge-base passages that may answer this (use only if relevant):\n"
                     + format_passages(hits, max_chars=max_each, total_chars=max_chars))
    if language:
        parts.append(f"(The customer is speaking {language_name(language)}.)")
    return "\n\n".join(parts)
