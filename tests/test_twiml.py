import xml.etree.ElementTree as ET

import pytest

from appliance.telephony import twiml


def parse(xml):
    assert xml.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    root = ET.fromstring(xml)
    assert root.tag == "Response"
    return root


def test_connect_stream():
    root = parse(twiml.connect_stream(
        "wss://example.trycloudflare.com/media",
        "https://example.trycloudflare.com/voice/after-stream",
        {"token": "t0k&n<1>", "caller": "+972501234567"},
    ))
    [connect] = list(root)
    assert connect.tag == "Connect"
    assert connect.get("action") == "https://example.trycloudflare.com/voice/after-stream"
    [stream] = list(connect)
    assert stream.tag == "Stream" and stream.get("url") == "wss://example.trycloudflare.com/media"
    params = {p.get("name"): p.get("value") for p in stream}
    assert params == {"token": "t0k&n<1>", "caller": "+972501234567"}
    assert all(p.tag == "Parameter" for p in stream)


def test_connect_stream_without_parameters():
    root = parse(twiml.connect_stream("wss://h.example/media", "/after", {}))
    assert list(root.find("Connect/Stream")) == []


@pytest.mark.parametrize("url", [
    "ws://h.example/media", "https://h.example/media", "wss://h.example/media?token=1",
    "wss:///media",
])
def test_connect_stream_rejects_bad_urls(url):
    with pytest.raises(ValueError):
        twiml.connect_stream(url, "/after", {})


def test_connect_stream_rejects_bad_parameters():
    with pytest.raises(ValueError):
        twiml.connect_stream("wss://h.example/media", "/after", {"n": "x" * 499})
    with pytest.raises(ValueError):
        twiml.connect_stream("wss://h.example/media", "/after", {"n": 5})
    with pytest.raises(ValueError):
        twiml.connect_stream("wss://h.example/media", "", {})


def test_dial():
    root = parse(twiml.dial("+972501234567", "https://h.example/dial-status",
                            caller_id="+97235550000"))
    [dial] = list(root)
    assert dial.tag == "Dial" and dial.text == "+972501234567"
    assert dial.get("action") == "https://h.example/dial-status"
    assert dial.get("callerId") == "+97235550000"
    assert dial.get("timeout") == "20"
    plain = parse(twiml.dial("+1555", "/s", timeout_s=30)).find("Dial")
    assert plain.get("callerId") is None and plain.get("timeout") == "30"
    with pytest.raises(ValueError):
        twiml.dial("", "/s")


def test_say_and_hangup():
    root = parse(twiml.say_and_hangup("Goodbye & thanks", language="he-IL"))
    assert [el.tag for el in root] == ["Say", "Hangup"]
    assert root[0].text == "Goodbye & thanks" and root[0].get("language") == "he-IL"
    assert parse(twiml.say_and_hangup("Bye"))[0].get("language") is None


def test_gather_speech():
    root = parse(twiml.gather_speech("https://h.example/gather", prompt="How can I help?",
                                     language="ru-RU", hints=["booking", "price"]))
    [gather] = list(root)
    assert gather.tag == "Gather"
    assert gather.get("input") == "speech"
    assert gather.get("action") == "https://h.example/gather"
    assert gather.get("language") == "ru-RU"
    assert gather.get("speechTimeout") == "auto"
    assert gather.get("hints") == "booking, price"
    assert gather.get("actionOnEmptyResult") == "true"
    [say] = list(gather)
    assert say.tag == "Say" and say.text == "How can I help?" and say.get("language") == "ru-RU"


def test_gather_speech_minimal():
    gather = parse(twiml.gather_speech("/g", speech_timeout=2)).find("Gather")
    assert gather.get("speechTimeout") == "2" and gather.get("hints") is None
    assert gather.get("language") == "en-US"
    assert list(gather) == []


def test_redirect():
    root = parse(twiml.redirect("https://h.example/voice"))
    assert root[0].tag == "Redirect" and root[0].text == "https://h.example/voice"


def test_messaging():
    root = parse(twiml.message("Hi <there> & welcome"))
    assert [el.tag for el in root] == ["Message"]
    assert root[0].text == "Hi <there> & welcome"
    empty = parse(twiml.empty_messaging())
    assert list(empty) == []
