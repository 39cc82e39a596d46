"""Helpers for the dashboard tests: a client that keeps the session cookie itself (the cookie
is Secure, so aiohttp's jar would not send it over the loopback http), and seeded data."""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo
from http.cookies import SimpleCookie
from pathlib import Path

import aiohttp

from appliance.admin import passwords

PASSWORD = "correct horse battery"
CUSTOMER_PHONE = "+972501234567"
CALL_SID = "CAseeded00000000000000000000000001"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def set_password(db_path: Path, password: str = PASSWORD) -> None:
    conn = sqlite3.connect(db_path)
    conn.row_factory = sqlite3.Row
    try:
        passwords.store(conn, passwords.make_hash(password))
        conn.commit()
    finally:
        conn.close()


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def seed(db_path: Path, timezone: str = "Asia/Jerusalem") -> dict[str, int]:
    """A customer with a finished call (interrupted reply, a tool, timings, a summary), a
    WhatsApp thread with delivery states, and an appointment later today."""
    now = datetime.now(UTC)
    start = now - timedelta(minutes=5)
    conn = sqlite3.connect(db_path)
    try:
        cid = conn.execute("INSERT INTO customers(phone, name, language) VALUES (?, ?, 'en')",
                           (CUSTOMER_PHONE, "Dana Levi")).lastrowid
        call = conn.execute(
            "INSERT INTO calls(call_sid, customer_id, caller, mode, started_at, ended_at, "
            "outcome) VALUES (?, ?, ?, 'stream', ?, ?, 'completed')",
            (CALL_SID, cid, CUSTOMER_PHONE, _stamp(start),
             _stamp(start + timedelta(seconds=95)))).lastrowid
        turns = [("user", "Do you repair fridges?", None, 0, None, None),
                 ("assistant", "Yes, we repair all", "Yes, we repair all fridge brands, any age.",
                  1, "gemini:gemini-2.5-flash", None),
                 ("tool", "slots: 12:00, 12:30", None, 0, None, "find_free_slots"),
                 ("user", "Book me at noon please.", None, 0, None, None),
                 ("assistant", "You're booked for noon.", "You're booked for noon.", 0,
                  "local:qwen.gguf", None)]
        for role, text, full, cut, model, tool in turns:
            conn.execute("INSERT INTO turns(customer_id, channel, call_id, role, text, "
                         "full_text, interrupted, model, tool_name) VALUES "
                         "(?, 'call', ?, ?, ?, ?, ?, ?, ?)",
                         (cid, call, role, text, full, cut, model, tool))
        for i, (transcript, cut, model, total) in enumerate([
                ("Do you repair fridges?", 1, "gemini:gemini-2.5-flash", 1180.0),
                ("Book me at noon please.", 0, "local:qwen.gguf", 1620.0)]):
            conn.execute(
                "INSERT INTO call_turns(call_id, turn_index, transcript, language, reply_text, "
                "heard_text, interrupted, model, endpoint_wait_ms, stt_ms, llm_ttft_ms, "
                "first_clause_ms, tts_first_audio_ms, overhead_ms, turn_latency_ms, "
                "heard_latency_ms) VALUES (?, ?, ?, 'en', 'r', 'h', ?, ?, 500, 60, 320, 400, "
                "150, ?, ?, ?)", (call, i, transcript, cut, model, total - 1110, total,
                                  total + 80))
        conn.execute("INSERT INTO action_log(customer_id, call_id, channel, kind, detail, "
                     "created_at) VALUES (?, ?, 'call', 'booked', '#1 noon (fridge)', ?)",
                     (cid, call, _stamp(now)))
        conn.execute("INSERT INTO owner_summaries(call_id, customer_id, subject, text) VALUES "
                     "(?, ?, 'Call from Dana Levi: booked', 'Who: Dana Levi\nWhat was done: "
                     "booked')", (call, cid))
        msg = conn.execute(
            "INSERT INTO messages_in(message_sid, channel, phone, from_address, to_address, "
            "body, state) VALUES ('SMseed1', 'whatsapp', ?, ?, 'whatsapp:+15550002222', "
            "'Is the oven part in stock?', 'replied')",
            (CUSTOMER_PHONE, "whatsapp:" + CUSTOMER_PHONE)).lastrowid
        conn.execute(
            "INSERT INTO messages_out(in_id, channel, phone, to_address, from_address, body, "
            "state, twilio_sid) VALUES (?, 'whatsapp', ?, ?, 'whatsapp:+15550002222', "
            "'Yes, the oven part is in stock.', 'delivered', 'SMout1')",
            (msg, CUSTOMER_PHONE, "whatsapp:" + CUSTOMER_PHONE))
        conn.execute("INSERT INTO turns(customer_id, channel, role, text) VALUES "
                     "(?, 'whatsapp', 'user', 'Is the oven part in stock?')", (cid,))
        later = (now + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
        local = ZoneInfo(timezone)             # "today" is the business's day, not UTC's
        if later.astimezone(local).date() != now.astimezone(local).date():
            later = now + timedelta(minutes=1)
        conn.execute(
            "INSERT INTO appointments(uid, customer_id, start_utc, end_utc, note, channel) "
            "VALUES ('seed@appliance', ?, ?, ?, 'fridge repair', 'call')",
            (cid, later.strftime("%Y-%m-%dT%H:%M:%SZ"),
             (later + timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%SZ")))
        conn.commit()
        return {"customer_id": cid, "call_id": call}
    finally:
        conn.close()


@dataclass
class AdminClient:
    base: str
    http: aiohttp.ClientSession
    cookies: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)   # e.g. CF-Connecting-IP
    csrf: str = ""
    last_set_cookie: list[str] = field(default_factory=list)

    def _keep(self, resp: aiohttp.ClientResponse) -> None:
        self.last_set_cookie = resp.headers.getall("Set-Cookie", [])
        for header in self.last_set_cookie:
            jar = SimpleCookie()
            jar.load(header)
            for name, morsel in jar.items():
                if morsel["max-age"] == "0" or not morsel.value:
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value

    def _cookie_header(self) -> dict[str, str]:
        h = dict(self.headers)
        if self.cookies:
            h["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        return h

    async def get(self, path: str, **kw) -> tuple[int, str, aiohttp.ClientResponse]:
        async with self.http.get(self.base + path, headers=self._cookie_header(),
                                 allow_redirects=False, **kw) as resp:
            text = await resp.text()
            self._keep(resp)
            found = CSRF.search(text)
            if found and "appliance_admin" in self.cookies:
                self.csrf = found.group(1)
            return resp.status, text, resp

    async def post(self, path: str, data=None, csrf: bool = True, **kw
                   ) -> tuple[int, str, aiohttp.ClientResponse]:
        if isinstance(data, dict) and csrf:
            data = {"csrf": self.csrf, **data}
        async with self.http.post(self.base + path, data=data, headers=self._cookie_header(),
                                  allow_redirects=False, **kw) as resp:
            text = await resp.text()
            self._keep(resp)
            return resp.status, text, resp

    async def login(self, password: str = PASSWORD) -> int:
        status, text, _ = await self.get("/admin/login")
        token = CSRF.search(text)
        assert token, text
        status, text, _ = await self.post("/admin/login", {
            "csrf": token.group(1), "password": password, "next": "/admin/"}, csrf=False)
        if status == 303:
            await self.get("/admin/")      # picks up the session's CSRF token
        return status
