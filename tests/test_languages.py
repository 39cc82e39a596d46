"""Languages through the real server: a returning Russian customer is greeted in Russian with
the Russian voice, a language switch mid-call is followed, and `appliance doctor` names every
configured language without a voice.

No Russian Piper weights can be fetched here (model hubs are unreachable), so a generated
test voice stands in for ru_RU-dmitri-medium: the 22.05 kHz test graph with a Russian espeak
config, so its audio differs from the default (16 kHz) test voice for the same text.
"""

from __future__ import annotations

import base64
import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from appliance.doctor import check_voices
from appliance.server import running
from appliance.simulate import simulate_call
from tests.support import models as tm
from tests.support.fixtures import MODELS_CACHE, PUBLIC_URL, TOKEN
from tests.support.fakes.gemini_server import FakeGemini, Reply
from tests.support.calls import db_rows, turn

CALLER = "+15550001111"


def russian_stand_in(outdir: Path) -> Path:
    """A generated voice configured as Russian (espeak "ru"), standing in for dmitri."""
    source = tm.make_piper_voice(MODELS_CACHE, sample_rate=22050)
    target = outdir / "ru_RU-test-medium.onnx"
    shutil.copyfile(source, target)
    config = json.loads(Path(f"{source}.json").read_text(encoding="utf-8"))
    config["espeak"] = {"voice": "ru"}
    config["language"] = {"code": "ru_RU", "family": "ru", "region": "RU",
                          "name_native": "Русский", "name_english": "Russian",
                          "country_english": "Russia"}
    Path(f"{target}.json").write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")
    return target


@pytest.fixture
async def gemini():
    async with FakeGemini() as fake:
        fake.default = Reply(text="Of course. Which day suits you?", ttft_s=0.05)
        yield fake


@pytest.fixture
async def ru_server(make_settings, gemini, tmp_path):
    voice = russian_stand_in(tmp_path)
    settings = make_settings(
        extra=f"[gemini]\nbase_url = {gemini.base_url}\n[call]\nsilence_prompt_s = 30\n"
              f"[tts]\nvoice_ru = {voice}\n",
        environ={"TWILIO_AUTH_TOKEN": TOKEN, "GEMINI_API_KEY": "test-key"})
    async with running(settings) as srv:
        assert srv.services.health()["ready"], srv.services.health()
        yield srv


def add_customer(srv, phone: str, language: str) -> None:
    conn = sqlite3.connect(srv.services.settings.storage.database)
    with conn:
        conn.execute("INSERT INTO customers(phone, language) VALUES (?, ?)", (phone, language))
    conn.close()


def audio_before(result, at: float) -> bytes:
    return b"".join(base64.b64decode(e["media"]["payload"]) for e in result.events
                    if e["event"] == "media" and e["_at"] < at)


async def test_a_returning_russian_customer_is_greeted_in_russian_with_the_russian_voice(
        ru_server) -> None:
    services = ru_server.services
    add_customer(ru_server, CALLER, "ru")
    result = await simulate_call(ru_server.url, PUBLIC_URL, TOKEN, [turn("en_book.wav")])

    russian = services.settings.phrases.text("greeting", "ru")
    assert russian.startswith("Здравствуйте") and "Sunrise Appliances" in russian
    first = db_rows(ru_server, "SELECT text FROM turns WHERE role = 'assistant' ORDER BY id")[0]
    assert first["text"] == russian, "the stored greeting is the Russian phrase"

    speaker = services.speech._speaker
    assert speaker.voice_for("ru").name == "ru_RU-test-medium"
    assert speaker.voice_for("ru") is not speaker.voice_for("en")
    heard = audio_before(result, result.turns[0].end_of_speech_at)
    with_ru_voice = await services.speech.render(russian, "ru")
    with_en_voice = await services.speech.render(russian, "en")
    assert with_ru_voice != with_en_voice
    n = min(len(with_ru_voice), 1600)
    assert heard[:n] == with_ru_voice[:n], "the caller heard the Russian voice from the start"


async def test_the_greeting_of_a_new_caller_is_the_business_language(ru_server) -> None:
    await simulate_call(ru_server.url, PUBLIC_URL, TOKEN, [turn("en_yes.wav")])
    first = db_rows(ru_server, "SELECT text FROM turns WHERE role = 'assistant' ORDER BY id")[0]
    assert first["text"] == "Hello, you have reached Sunrise Appliances."


async def test_a_language_switch_mid_call_is_followed(ru_server, gemini) -> None:
    """The stored language is ru; the caller speaks English (the test Whisper hears English):
    the reply is spoken with the voice of the language heard, not the stored one."""
    add_customer(ru_server, CALLER, "ru")
    result = await simulate_call(ru_server.url, PUBLIC_URL, TOKEN, [turn("en_book.wav")])
    (row,) = db_rows(ru_server, "SELECT language, reply_text FROM call_turns")
    assert row["language"] == "en"
    reply = row["reply_text"]
    t = result.turns[0]
    after = b"".join(base64.b64decode(e["media"]["payload"]) for e in result.events
                     if e["event"] == "media" and e["_at"] > t.end_of_speech_at)
    speech = ru_server.services.speech
    english = await speech.render(reply, "en")
    assert after[:800] == english[:800], "the reply is in the English voice"
    assert gemini.turn_requests[-1].user_texts()[-1].endswith("hello i would like an appointment")


def test_doctor_names_every_language_without_a_voice(make_settings, tmp_path) -> None:
    voice = russian_stand_in(tmp_path)
    settings = make_settings(extra=f"[tts]\nvoice_ru = {voice}\n")
    report = {f.what: f for f in check_voices(settings)}
    hebrew = [f for what, f in report.items() if what.startswith("Hebrew")]
    assert len(hebrew) == 1 and hebrew[0].level == "warn"
    assert "he_IL-saspeech-medium" in hebrew[0].fix and "gather" in hebrew[0].fix
    assert report["Russian is spoken by ru_RU-test-medium.onnx"].level == "ok"
    assert [f.level for w, f in report.items() if w.startswith("English")] == ["ok"]

    bare = make_settings()
    lines = [f.what for f in check_voices(bare) if f.level == "warn"]
    assert any(w.startswith("Russian has no voice") for w in lines)
    assert any(w.startswith("Hebrew has no voice") for w in lines)
    russian = next(f for f in check_voices(bare) if f.what.startswith("Russian"))
    assert "voice_ru = ru_RU-dmitri-medium" in russian.fix


def test_phrases_come_from_config_and_override_the_shipped_ones(make_settings) -> None:
    settings = make_settings(extra="[phrases_ru]\ngoodbye = Всего доброго!\n")
    assert settings.phrases.text("goodbye", "ru") == "Всего доброго!"
    assert settings.phrases.text("goodbye", "ru-RU") == "Всего доброго!"
    assert settings.phrases.text("still_there", "ru") == "Вы ещё на линии?"
    assert settings.phrases.text("goodbye", "xx") == settings.phrases.text("goodbye", "en")
    from appliance.config import ConfigError, load_settings
    from tests.support.fixtures import write_ini

    ini = write_ini(settings.path.parent / "bad.ini", None, "[phrases_ru]\ngreting = x\n")
    with pytest.raises(ConfigError, match="greting"):
        load_settings(ini, environ={"TWILIO_AUTH_TOKEN": TOKEN})


async def test_hebrew_gender_is_asked_when_unknown_stored_and_then_used(make_settings, gemini
                                                                         ) -> None:
    """WhatsApp, real server: a Hebrew customer of unknown gender gets a prompt telling the
    model to ask (with the configured Hebrew question); the model saves the answer with
    update_customer; the next prompt addresses her in the feminine form and no longer asks."""
    from tests.support.fakes.gemini_server import Call
    from tests.support.fakes.twilio_rest import FakeTwilio
    from tests.support.channels import messaging_settings, signed_post
    from tests.support.messaging import ACCOUNT_SID, inbound_params, new_sid, wait_until

    ask = "כדי שאדבר נכון, לפנות אלייך בלשון זכר או נקבה?"
    gemini.script(Reply(text=ask),
                  Reply(calls=(Call("update_customer", {"gender": "f"}),)),
                  Reply(text="תודה! איך אפשר לעזור?"))
    async with FakeTwilio(ACCOUNT_SID, TOKEN) as twilio:
        settings = messaging_settings(make_settings, gemini, twilio)
        async with running(settings) as srv:
            sender = "whatsapp:+972501234567"
            add_customer(srv, "+972501234567", "he")
            await signed_post(srv, "/message", inbound_params(new_sid(), sender, "שלום"))
            await wait_until(lambda: twilio.sent_to(sender), "the question")
            await signed_post(srv, "/message", inbound_params(new_sid(), sender, "נקבה"))
            await wait_until(lambda: len(twilio.sent_to(sender)) == 2, "the second reply")
            (row,) = db_rows(srv, "SELECT gender FROM customers WHERE phone = '+972501234567'")
    first, second = gemini.turn_requests[0].system, gemini.turn_requests[-1].system
    assert ask in first and "ask politely once" in first
    assert row["gender"] == "f"
    assert "feminine form" in second and "ask politely once" not in second


def test_the_speaker_picks_the_voice_of_the_reply_language(tmp_path, test_models) -> None:
    from appliance.tts.piper import Speaker

    speaker = Speaker.load({"": test_models.piper_voice, "ru": russian_stand_in(tmp_path)})
    assert speaker.voice_for("ru-RU").name == "ru_RU-test-medium"
    assert speaker.voice_for("he") is speaker.voice_for(None)
    assert (speaker.has_voice("ru"), speaker.has_voice("en"), speaker.has_voice("he")) == \
        (True, True, False)
    ru = b"".join(p.samples.tobytes() for p in speaker.synthesize("Добрый день.", "ru"))
    en = b"".join(p.samples.tobytes() for p in speaker.synthesize("Добрый день.", "en"))
    assert ru and en and ru != en
