"""The fixed replies the messaging channel sends itself (not the model's), in English, Hebrew
and Russian. Pure.

The language is the one the customer wrote in when the text says so (Hebrew or Cyrillic
letters), else the language Whisper heard, else the business's default.
"""

from __future__ import annotations

from typing import Literal

Notice = Literal["opt_out", "opt_in", "unsupported_media", "voice_unusable", "voice_failed",
                 "voice_too_long", "empty", "unavailable"]

_TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "opt_out": "You won't get any more messages from us. Reply START if you change your "
                   "mind.",
        "opt_in": "Welcome back! You'll get our replies again. How can we help?",
        "unsupported_media": "Sorry, I can't open images, videos or files. I can read text "
                             "messages and listen to voice messages - please write or record "
                             "what you need.",
        "voice_unusable": "Sorry, I couldn't make out your voice message. Could you write it, "
                          "or record it again?",
        "voice_failed": "Sorry, I couldn't play your voice message. Could you write what you "
                        "need?",
        "voice_too_long": "Sorry, that voice message is too long for me. Could you send a "
                          "shorter one, or write what you need?",
        "empty": "Hi! I can read text messages and listen to voice messages. How can I help?",
        "unavailable": "Sorry, I can't answer right now. Please try again a little later, or "
                       "call us.",
    },
    "he": {
        "opt_out": "לא תקבלו מאיתנו הודעות נוספות. כדי לחדש, שלחו START.",
        "opt_in": "ברוכים השבים! תקבלו שוב את התשובות שלנו. איך אפשר לעזור?",
        "unsupported_media": "מצטערים, אני לא יכול לפתוח תמונות, סרטונים או קבצים. אני קורא "
                             "הודעות טקסט ומאזין להודעות קוליות - כתבו או הקליטו מה אתם "
                             "צריכים.",
        "voice_unusable": "מצטערים, לא הצלחתי להבין את ההודעה הקולית. אפשר לכתוב אותה או "
                          "להקליט שוב?",
        "voice_failed": "מצטערים, לא הצלחתי להשמיע את ההודעה הקולית. אפשר לכתוב מה אתם "
                        "צריכים?",
        "voice_too_long": "מצטערים, ההודעה הקולית ארוכה מדי. אפשר לשלוח הודעה קצרה יותר או "
                          "לכתוב?",
        "empty": "שלום! אני קורא הודעות טקסט ומאזין להודעות קוליות. איך אפשר לעזור?",
        "unavailable": "מצטערים, אי אפשר לענות כרגע. נסו שוב מעט מאוחר יותר, או התקשרו "
                       "אלינו.",
    },
    "ru": {
        "opt_out": "Вы больше не будете получать от нас сообщения. Чтобы возобновить, "
                   "отправьте START.",
        "opt_in": "С возвращением! Вы снова будете получать наши ответы. Чем можем помочь?",
        "unsupported_media": "Извините, я не могу открывать изображения, видео и файлы. Я "
                             "читаю текстовые сообщения и слушаю голосовые - напишите или "
                             "запишите, что вам нужно.",
        "voice_unusable": "Извините, я не разобрал голосовое сообщение. Можете написать его "
                          "или записать ещё раз?",
        "voice_failed": "Извините, не удалось воспроизвести голосовое сообщение. Можете "
                        "написать, что вам нужно?",
        "voice_too_long": "Извините, голосовое сообщение слишком длинное. Отправьте "
                          "покороче или напишите, что вам нужно.",
        "empty": "Здравствуйте! Я читаю текстовые сообщения и слушаю голосовые. Чем могу "
                 "помочь?",
        "unavailable": "Извините, сейчас не могу ответить. Попробуйте чуть позже или "
                       "позвоните нам.",
    },
}
LANGUAGES = tuple(_TEXTS)


def script_language(text: str) -> str | None:
    """"he" or "ru" when the text is mostly written in that script, else None."""
    hebrew = sum(1 for ch in text if "\u0590" <= ch <= "\u05ff")
    cyrillic = sum(1 for ch in text if "\u0400" <= ch <= "\u04ff")
    latin = sum(1 for ch in text if ch.isascii() and ch.isalpha())
    best = max((hebrew, "he"), (cyrillic, "ru"), (latin, "en"))
    if best[0] == 0 or best[1] == "en":
        return None
    return best[1]


def notice(kind: Notice, language: str | None) -> str:
    table = _TEXTS.get((language or "").split("-")[0].lower(), _TEXTS["en"])
    return table[kind]


def choose_language(text: str, heard: str | None, customer: str | None,
                    business: str) -> str:
    """Which language a fixed reply uses."""
    for candidate in (script_language(text), heard, customer, business):
        if candidate and candidate.split("-")[0].lower() in _TEXTS:
            return candidate.split("-")[0].lower()
    return "en"
