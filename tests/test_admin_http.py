"""The owner's dashboard through the real server (`appliance.server.running`, the generated
test models, the real SQLite store, the real outbox against the Twilio stand-in): every route
refuses a request without a session, POSTs need the CSRF token, wrong passwords are slowed
down, every page renders the seeded data, and KB uploads are checked before they count."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from appliance.admin.sessions import Limits, Sessions
from appliance.app import build_app
from appliance.server import running
from appliance.store.db import Database
from tests.support.admin import (
    CALL_SID,
    CUSTOMER_PHONE,
    PASSWORD,
    AdminClient,
    seed,
    set_password,
)
from tests.support.fixtures import ACCOUNT_SID, HERE, TOKEN
from tests.support.fakes.twilio_rest import FakeTwilio
from tests.support.calls import db_rows as rows

SMS_FROM = "+15550002222"
DIGITS = CUSTOMER_PHONE.lstrip("+")
NOTICE = re.compile(r'<p class="(?:notice|problem)">[^<]*</p>')

PAGES = ["/admin/", "/admin/calls", f"/admin/calls/{CALL_SID}", "/admin/conversations",
         f"/admin/conversations/{DIGITS}", "/admin/customers", "/admin/customers/1",
         "/admin/appointments", "/admin/kb", "/admin/health", "/admin/settings",
         "/admin/static/admin.js"]
APIS = ["/admin/api/live", "/admin/api/kb/progress"]
POSTS = ["/admin/logout", "/admin/customers/1", "/admin/customers/1/delete",
         "/admin/appointments/1/move", "/admin/appointments/1/cancel",
         "/admin/appointments/block", "/admin/kb/upload", "/admin/kb/delete",
         "/admin/kb/reindex"]


def dashboard_settings(make_settings, tmp_path: Path, fake: FakeTwilio, extra: str = ""):
    kb = tmp_path / "kb"
    kb.mkdir(exist_ok=True)
    shutil.copy(HERE.parent / "kb" / "hours.md", kb / "hours.md")
    return make_settings(extra=(
        f"[kb]\ndirectory = {kb}\n[twilio]\naccount_sid = {ACCOUNT_SID}\n"
        f"api_base_url = {fake.base_url}\n[messaging]\nsms_from = {SMS_FROM}\n"
        "[appointments]\nhours = mon-sun 00:00-24:00\nmin_notice_minutes = 0\n" + extra))


@pytest.fixture
async def dash(make_settings, tmp_path, fake_twilio):
    settings = dashboard_settings(make_settings, tmp_path, fake_twilio)
    async with running(settings) as srv:
        seed(settings.storage.database, settings.business.timezone)
        set_password(settings.storage.database)
        yield srv


@pytest.fixture
async def client(dash):
    async with aiohttp.ClientSession() as http:
        yield AdminClient(dash.url, http)


def admin_routes(srv) -> set[tuple[str, str]]:
    """(method, path template) of every route under /admin, read from the app itself."""
    from appliance.admin.context import CTX

    app = build_app(srv.services)
    app[CTX].errors.uninstall()
    out = set()
    for resource in app.router.resources():
        info = resource.get_info()
        if "app" in info:
            for sub in info["app"].router.resources():
                sub_info = sub.get_info()
                path = sub_info.get("path") or sub_info.get("formatter") or sub_info["prefix"]
                out.update((r.method, path) for r in sub
                           if r.method != "HEAD")
        elif str(resource.canonical).startswith("/admin"):
            out.update((r.method, resource.canonical) for r in resource if r.method != "HEAD")
    return out


def _template(path: str) -> str:
    """/admin/calls/CAseeded... -> the route's template, for the coverage check."""
    import re

    path = path.split("?")[0]
    path = path.replace(CALL_SID, "{sid}").replace(DIGITS, "{digits}")
    path = re.sub(r"/customers/1", "/customers/{id}", path)
    path = re.sub(r"/appointments/1/(move|cancel)", "/appointments/{id}/{action}", path)
    return "/admin/static" if path.startswith("/admin/static") else path


async def test_nothing_under_admin_answers_without_a_session(dash, client) -> None:
    # The lists above cover every route the app has (a new page must be added to them).
    tested = {("GET", _template(p)) for p in PAGES + APIS} | {
        ("POST", _template(p)) for p in POSTS} | {
        ("GET", "/admin"), ("GET", "/admin/login"), ("POST", "/admin/login")}
    known = {(m, p if not p.startswith("/admin/static") else "/admin/static")
             for m, p in admin_routes(dash)}
    assert known == tested, known ^ tested
    for path in PAGES:
        status, _, resp = await client.get(path)
        assert status == 302, path
        assert resp.headers["Location"].startswith("/admin/login?next="), path
    for path in APIS:
        assert (await client.get(path))[0] == 401, path
    for path in POSTS:
        assert (await client.post(path, {"name": "x"}, csrf=False))[0] == 401, path
    status, _, resp = await client.get("/admin")
    assert status == 302
    # /metrics: open to a scraper on the box, closed to the internet (through the tunnel).
    assert (await client.get("/metrics"))[0] == 200
    client.headers["CF-Connecting-IP"] = "203.0.113.9"
    assert (await client.get("/metrics"))[0] == 401
    # A made-up session cookie is no session.
    client.cookies["appliance_admin"] = "forged"
    assert (await client.get("/admin/calls"))[0] == 302
    assert (await client.get("/admin/api/live"))[0] == 401


async def test_login_cookie_and_every_page_with_seeded_data(dash, client) -> None:
    assert await client.login() == 303
    status, text, resp = await client.get("/admin/")
    assert status == 200 and "Dana Levi (+97250*****67)" in text
    assert resp.headers["X-Frame-Options"] == "DENY" and "frame-ancestors 'none'" in \
        resp.headers["Content-Security-Policy"]
    assert "fridge repair" in text                        # the appointment today
    assert text.count("<svg") == 2                        # calls per day, latency
    checks = {
        "/admin/calls": ["Dana Levi (+97250*****67)", "completed", "local:qwen.gguf", "1:35"],
        f"/admin/calls/{CALL_SID}": [
            "Caller said", "Do you repair fridges?", "Yes, we repair all fridge brands",
            "Heard before the caller interrupted", 'class="cut"', "Tool run: find_free_slots",
            'class="stage"', "1180 ms", "What was done: booked", "#1 noon (fridge)"],
        "/admin/conversations": ["Dana Levi", "whatsapp"],
        f"/admin/conversations/{DIGITS}": ["Is the oven part in stock?",
                                           "Yes, the oven part is in stock.", "delivered"],
        "/admin/customers?q=dana": ["Dana Levi"],
        "/admin/customers?q=4567": ["Dana Levi"],
        "/admin/customers/1": ["+972501234567", "Is the oven part in stock?", "fridge repair"],
        "/admin/appointments": ["fridge repair", "Block a slot"],
        "/admin/kb": ["hours.md", "passages"],
        "/admin/kb?q=opening+hours+friday": ["score", "hours.md"],
        "/admin/health": ["Components", "stt", "sqlite", "migration 014"],
        "/admin/settings": ["business.name", "Sunrise Appliances", "(secret, set)"],
    }
    for path, needles in checks.items():
        status, text, _ = await client.get(path)
        assert status == 200, path
        for needle in needles:
            assert needle in text, (path, needle)
    status, text, _ = await client.get("/admin/settings")
    assert TOKEN not in text                              # the Twilio auth token is hidden
    assert (await client.get("/admin/calls/CAnope"))[0] == 404


async def test_session_cookie_is_httponly_secure_strict_and_logout_ends_it(dash, client
                                                                          ) -> None:
    status, text, _ = await client.get("/admin/login")
    token = text.split('name="csrf" value="')[1].split('"')[0]
    status, _, _ = await client.post("/admin/login", {"csrf": token, "password": PASSWORD},
                                        csrf=False)
    assert status == 303
    cookie = next(c for c in client.last_set_cookie if c.startswith("appliance_admin="))
    lowered = cookie.lower()
    assert "httponly" in lowered and "secure" in lowered and "samesite=strict" in lowered
    await client.get("/admin/")
    assert (await client.post("/admin/logout", {}))[0] == 303
    assert (await client.get("/admin/"))[0] == 302


async def test_posts_without_the_csrf_token_are_refused(dash, client) -> None:
    # The login form itself needs its token.
    status, text, _ = await client.post("/admin/login", {"password": PASSWORD}, csrf=False)
    assert status == 403 and "CSRF" in text
    assert await client.login() == 303
    for data in ({"name": "Mallory"}, {"name": "Mallory", "csrf": "wrong"}):
        status, text, _ = await client.post("/admin/customers/1", data, csrf=False)
        assert status == 403 and "CSRF" in text
    assert rows(dash, "SELECT name FROM customers WHERE id = 1")[0]["name"] == "Dana Levi"
    status, _, _ = await client.post("/admin/customers/1", {"name": "Dana L.",
                                                            "language": "he"})
    assert status == 303
    assert tuple(rows(dash, "SELECT name, language FROM customers WHERE id = 1")[0]) == \
        ("Dana L.", "he")
    status, text, _ = await client.post("/admin/customers/1", {"name": "x", "language": "xx1"})
    assert status == 400 and "two-letter code" in text
    # Uploads carry the token in the query string; without it, refused too.
    form = aiohttp.FormData()
    form.add_field("file", b"# New\n\nText.", filename="new.md")
    status, _, _ = await client.post("/admin/kb/upload", form)
    assert status == 403
    assert not (dash.services.settings.kb.directory / "new.md").exists()


async def test_wrong_passwords_are_slowed_down_per_address(dash, client) -> None:
    client.headers["CF-Connecting-IP"] = "198.51.100.7"    # as Cloudflare Tunnel names it
    for _ in range(Limits().free_failures):
        assert await client.login("not the password") == 401
    # Now even the right password waits: the attacker cannot keep guessing at full speed.
    status = await client.login(PASSWORD)
    assert status == 429
    # Another address is not locked out by this one.
    client.headers["CF-Connecting-IP"] = "198.51.100.8"
    assert await client.login(PASSWORD) == 303


async def test_rate_limit_backs_off_per_address_and_globally(tmp_path: Path) -> None:
    now = [1000.0]
    db = await Database.open(tmp_path / "a.db")
    limits = Limits(free_failures=3, global_failures=10, global_window_s=60)
    sessions = Sessions(db, lambda: now[0], limits)
    try:
        for _ in range(3):
            assert await sessions.wait_before_login("a") == 0
            await sessions.record_attempt("a", False)
        assert await sessions.wait_before_login("a") == 2.0
        now[0] += 2.0
        assert await sessions.wait_before_login("a") == 0
        await sessions.record_attempt("a", False)
        assert await sessions.wait_before_login("a") == 4.0           # doubles
        assert await sessions.wait_before_login("b") == 0
        for i in range(6):                                            # many addresses
            await sessions.record_attempt(f"bot{i}", False)
        # everyone waits until the oldest of the last 10 failures (t=1000) is a minute old
        assert await sessions.wait_before_login("fresh") == 58.0
        now[0] += 61
        assert await sessions.wait_before_login("fresh") == 0
    finally:
        db.close()


async def test_kb_upload_of_a_bad_file_is_refused_and_the_index_keeps_working(dash, client
                                                                              ) -> None:
    assert await client.login() == 303
    kb_dir = dash.services.settings.kb.directory
    before = sorted(p.name for p in kb_dir.iterdir())
    for name, data, why in [("prices.pdf", b"%PDF-1.4 ...", "only .csv"),
                            ("broken.md", b"\x00\x01binary\x00", "binary"),
                            ("latin.txt", "caf\xe9".encode("latin-1"), "not UTF-8"),
                            ("../evil.md", b"# x\n\ny", "not an acceptable file name")]:
        form = aiohttp.FormData()
        form.add_field("file", data, filename=name)
        status, _, resp = await client.post(f"/admin/kb/upload?csrf={client.csrf}", form)
        assert status == 303, name
        status, text, _ = await client.get(resp.headers["Location"])
        assert "Upload refused" in text and why in text and "was not changed" in text, \
            NOTICE.findall(text)
        assert sorted(p.name for p in kb_dir.iterdir()) == before
    assert not (kb_dir.parent / "evil.md").exists()
    status, text, _ = await client.get("/admin/kb?q=opening+hours+friday")
    assert "hours.md" in text and "score" in text
    # A good file: saved, re-indexed (progress readable), and searchable.
    form = aiohttp.FormData()
    form.add_field("file", b"# Warranty\n\nEvery kettle repair carries a 14 month zebra "
                           b"warranty on parts.\n", filename="warranty.md")
    status, _, resp = await client.post(f"/admin/kb/upload?csrf={client.csrf}", form)
    assert status == 303
    job = await dash_kb_idle(client)
    assert job["error"] == "" and "1 added" in job["message"]
    status, text, _ = await client.get("/admin/kb?q=zebra+warranty+kettle")
    assert "warranty.md" in text and "14 month zebra" in text
    # Delete it again: gone from the folder and from the search.
    assert (await client.post("/admin/kb/delete", {"name": "warranty.md"}))[0] == 303
    await dash_kb_idle(client)
    assert not (kb_dir / "warranty.md").exists()
    status, text, _ = await client.get("/admin/kb?q=zebra+warranty+kettle")
    assert "14 month zebra" not in text


async def dash_kb_idle(client: AdminClient) -> dict:
    for _ in range(200):
        status, text, _ = await client.get("/admin/api/kb/progress")
        assert status == 200
        job = json.loads(text)
        if not job["running"]:
            return job
        await asyncio.sleep(0.05)
    raise AssertionError("the re-index did not finish")


async def test_metrics_in_prometheus_format(dash, client) -> None:
    status, text, _ = await client.get("/metrics")
    assert status == 200
    assert 'appliance_calls_total{outcome="completed"} 1' in text
    assert "appliance_turns_total 2" in text
    assert 'appliance_turn_latency_ms_bucket{le="1500"} 1' in text
    assert 'appliance_turn_latency_ms_bucket{le="+Inf"} 2' in text
    assert "appliance_turn_latency_ms_sum 2800" in text
    assert "appliance_barge_ins_total 1" in text
    assert "appliance_failovers_total 1" in text
    assert 'appliance_messages_out_total{channel="whatsapp",state="delivered"} 1' in text
    assert 'appliance_outbox_depth{state="pending"} 0' in text
    assert "# TYPE appliance_turn_latency_ms histogram" in text


async def test_deleting_a_customer_removes_their_calls_turns_and_messages(dash, client
                                                                          ) -> None:
    assert await client.login() == 303
    status, _, resp = await client.post("/admin/customers/1/delete", {})
    assert status == 303
    for table, where in [("customers", "id = 1"), ("turns", "customer_id = 1"),
                         ("calls", "customer_id = 1"), ("call_turns", "1"),
                         ("messages_in", f"phone = '{CUSTOMER_PHONE}'"),
                         ("messages_out", f"phone = '{CUSTOMER_PHONE}'"),
                         ("appointments", "customer_id = 1"), ("owner_summaries", "1"),
                         ("action_log", "1")]:
        assert rows(dash, f"SELECT count(*) FROM {table} WHERE {where}")[0][0] == 0, table
    status, text, _ = await client.get(resp.headers["Location"])
    assert "were deleted" in text and "Dana Levi" not in text
    assert (await client.get(f"/admin/calls/{CALL_SID}"))[0] == 404


async def test_owner_moves_and_cancels_and_the_customer_is_told(dash, client,
                                                                fake_twilio) -> None:
    assert await client.login() == 303
    (appt,) = rows(dash, "SELECT id FROM appointments")
    tz = dash.services.settings.business.timezone
    from zoneinfo import ZoneInfo

    day = (datetime.now(ZoneInfo(tz)) + timedelta(days=2)).date()
    status, _, resp = await client.post(f"/admin/appointments/{appt['id']}/move",
                                        {"when": f"{day}T10:00", "back": "/admin/appointments"})
    assert status == 303
    status, text, _ = await client.get(resp.headers["Location"])
    assert "Moved to" in text and "The customer was told by sms" in text
    await wait_for(lambda: fake_twilio.sent_to(CUSTOMER_PHONE))
    (sms,) = fake_twilio.sent_to(CUSTOMER_PHONE)
    assert "has been moved to" in sms.body and "10:00" in sms.body
    # Block the slot next to it, then try to move the appointment onto the block.
    status, _, resp = await client.post("/admin/appointments/block",
                                        {"when": f"{day}T10:30", "note": "dentist"})
    status, text, _ = await client.get(resp.headers["Location"])
    assert "Blocked" in text and "dentist" in text
    status, _, resp = await client.post(f"/admin/appointments/{appt['id']}/move",
                                        {"when": f"{day}T10:30"})
    status, text, _ = await client.get(resp.headers["Location"])
    assert "Not done" in text and "taken" in text
    status, _, resp = await client.post(f"/admin/appointments/{appt['id']}/cancel", {})
    status, text, _ = await client.get(resp.headers["Location"])
    assert "Cancelled" in text
    await wait_for(lambda: len(fake_twilio.sent_to(CUSTOMER_PHONE)) == 2)
    assert "has been cancelled" in fake_twilio.sent_to(CUSTOMER_PHONE)[1].body
    assert rows(dash, "SELECT status FROM appointments WHERE id = ?", appt["id"])[0][0] == \
        "cancelled"


async def wait_for(predicate, timeout: float = 10.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("timed out")


def test_set_password_command_stores_a_scrypt_hash_and_ends_sessions(tmp_path, test_models,
                                                                     monkeypatch, capsys
                                                                     ) -> None:
    import io

    from appliance import cli
    from appliance.admin import passwords
    from tests.support.fixtures import write_ini

    ini = write_ini(tmp_path / "config.ini", test_models)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", TOKEN)
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert cli.main(["admin", "set-password", "--stdin", "--config", str(ini)]) == 2
    assert "at least 10 characters" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert cli.main(["admin", "set-password", "--stdin", "--config", str(ini)]) == 0
    conn = sqlite3.connect(tmp_path / "appliance.db")
    conn.row_factory = sqlite3.Row
    try:
        stored = passwords.load(conn)
        assert stored is not None and stored.n == 2 ** 14 and len(stored.salt) == 16
        assert passwords.verify(PASSWORD, stored) and not passwords.verify("wrong", stored)
        assert PASSWORD not in str(tuple(conn.execute("SELECT * FROM admin_password").fetchone()))
        conn.execute("INSERT INTO admin_sessions(token_hash, csrf_token, created_at, "
                     "expires_at) VALUES ('h', 'c', 0, 9e9)")
        conn.commit()
    finally:
        conn.close()
    monkeypatch.setattr("sys.stdin", io.StringIO("another long password\n"))
    assert cli.main(["admin", "set-password", "--stdin", "--config", str(ini)]) == 0
    conn = sqlite3.connect(tmp_path / "appliance.db")
    try:
        assert conn.execute("SELECT count(*) FROM admin_sessions").fetchone()[0] == 0
    finally:
        conn.close()


async def test_today_and_health_say_what_needs_attention(tmp_path: Path) -> None:
    """Models not downloaded, no language model, a message stuck in the outbox, an error in
    the log: all on the Today page and on Health, in words the owner can act on."""
    import logging

    from appliance.config import load_settings
    from tests.support.fixtures import write_ini

    ini = write_ini(tmp_path / "config.ini", None, f"[models]\ndirectory = {tmp_path}/models\n")
    settings = load_settings(ini, environ={"TWILIO_AUTH_TOKEN": TOKEN})
    async with running(settings) as srv, aiohttp.ClientSession() as http:
        set_password(settings.storage.database)
        conn = sqlite3.connect(settings.storage.database)
        conn.execute("INSERT INTO messages_out(channel, phone, to_address, from_address, body, "
                     "state, created_at) VALUES ('sms', '+972501234567', '+972501234567', "
                     "'+15550002222', 'hi', 'pending', '2020-01-01T00:00:00.000Z')")
        conn.commit()
        conn.close()
        logging.getLogger("appliance.stt.whisper").error("decoder crashed on call %s", "CA1")
        client = AdminClient(srv.url, http)
        assert await client.login() == 303
        status, today, _ = await client.get("/admin/")
        assert status == 200
        status, health, _ = await client.get("/admin/health")
        assert status == 200
        for text in (today, health):
            assert "appliance models download base" in text            # stt missing
            assert "no language model" in text
            assert "1 WhatsApp/SMS message(s) not sent for over 10 minutes" in text
            assert "1 error(s) logged in the last hour" in text
        assert "NOT ready to take calls" in health
        assert "decoder crashed on call CA1" in health and ">stt<" in health
        _, metrics, _ = await client.get("/metrics")
        assert 'appliance_errors_total{stage="stt"} 1' in metrics
        assert "appliance_ready 0" in metrics and 'appliance_outbox_depth{state="pending"} 1' in \
            metrics
