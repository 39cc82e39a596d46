"""<Gather> calls as Twilio makes them: /respond with the caller's words, then /continue until
the next <Gather>; and what the bot said, as <Play> clips and as stored."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from tests.support.calls import db_rows as rows, post
from tests.support.fixtures import PUBLIC_URL


async def last_reply(srv, call_sid: str) -> str:
    """The bot's last stored reply on this call (what its <Play> clips say)."""
    (row,) = rows(srv, "SELECT t.text FROM turns t JOIN calls c ON c.id = t.call_id WHERE "
                       "c.call_sid = ? AND t.role = 'assistant' ORDER BY t.id DESC LIMIT 1",
                  call_sid)
    return row["text"]


def plays(body: str) -> list[str]:
    return [p.text for p in ET.fromstring(body).iter("Play")]


async def whole_reply(srv, params: dict[str, str], speech: str) -> list[str]:
    """/respond, then /continue until the next <Gather>: every TwiML document in order."""
    status, body = await post(srv, "/respond", {**params, "SpeechResult": speech,
                                                "Confidence": "0.9"})
    assert status == 200, body
    bodies = [body]
    while ET.fromstring(body).find("Redirect") is not None:
        path = ET.fromstring(body).find("Redirect").text[len(PUBLIC_URL):]
        status, body = await post(srv, path, params)
        assert status == 200, body
        bodies.append(body)
    return bodies
