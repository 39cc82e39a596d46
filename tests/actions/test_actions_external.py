"""The optional outside services, faked on loopback: Google Calendar (service-account token,
events, busy times; down and back) and an HTTP CRM (found, unknown, slow, broken)."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from appliance.actions.crm import CrmClient, enrich, lookup_customer
from appliance.actions.gcal import SCOPE, GoogleError
from appliance.actions.settings import CrmSettings, GoogleCalendarSettings
from tests.support.actions import NOW, Harness, make_harness

CALLER = "+972501234567"
CALENDAR = "shop@group.calendar.google.com"


class FakeGoogle:
    """Token endpoint + Calendar API v3 events, enough for the appliance's calls."""

    def __init__(self) -> None:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.private_pem = key.private_bytes(serialization.Encoding.PEM,
                                             serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()).decode()
        self.public_pem = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        self.events: dict[str, dict[str, Any]] = {}
        self.down = False
        self.tokens_issued = 0
        self.calls: list[tuple[str, str]] = []
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> "FakeGoogle":
        app = web.Application()
        app.router.add_post("/token", self._token)
        app.router.add_route("*", "/calendar/v3/calendars/{cal}/events", self._events)
        app.router.add_route("*", "/calendar/v3/calendars/{cal}/events/{event}", self._event)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def key_file(self, folder: Path) -> Path:
        path = folder / "service-account.json"
        path.write_text(json.dumps({"type": "service_account", "client_email":
                                    "receptionist@project.iam.gserviceaccount.com",
                                    "private_key_id": "k1", "private_key": self.private_pem,
                                    "token_uri": f"{self.url}/token"}), encoding="utf-8")
        return path

    def add_busy(self, start: str, end: str, **extra: Any) -> None:
        event_id = f"owner{len(self.events)}"
        self.events[event_id] = {"id": event_id, "status": "confirmed", "summary": "dentist",
                                 "start": {"dateTime": start}, "end": {"dateTime": end}, **extra}

    def _check(self, request: web.Request) -> None:
        if self.down:
            raise web.HTTPServiceUnavailable()
        if request.headers.get("Authorization") != "Bearer fake-access-token":
            raise web.HTTPUnauthorized()
        assert request.match_info["cal"] == CALENDAR
        self.calls.append((request.method, request.path))

    async def _token(self, request: web.Request) -> web.Response:
        from google.auth import jwt

        if self.down:
            raise web.HTTPServiceUnavailable()
        form = await request.post()
        assert form["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
        claims = jwt.decode(str(form["assertion"]), certs=self.public_pem,
                            audience=f"{self.url}/token")
        assert claims["iss"] == "receptionist@project.iam.gserviceaccount.com"
        assert claims["scope"] == SCOPE
        self.tokens_issued += 1
        return web.json_response({"access_token": "fake-access-token", "expires_in": 3600,
                                  "token_type": "Bearer"})

    async def _events(self, request: web.Request) -> web.Response:
        self._check(request)
        if request.method == "POST":
            body = await request.json()
            event_id = f"ev{len(self.events)}"
            self.events[event_id] = {**body, "id": event_id, "status": "confirmed"}
            return web.json_response(self.events[event_id])
        lo, hi = request.query["timeMin"], request.query["timeMax"]
        items = [e for e in self.events.values() if _utc(e["start"]) < hi and _utc(e["end"]) > lo]
        return web.json_response({"items": items})

    async def _event(self, request: web.Request) -> web.Response:
        self._check(request)
        event_id = request.match_info["event"]
        if event_id not in self.events:
            raise web.HTTPNotFound()
        if request.method == "PUT":
            self.events[event_id] = {**await request.json(), "id": event_id,
                                     "status": "confirmed"}
            return web.json_response(self.events[event_id])
        if request.method == "DELETE":
            del self.events[event_id]
            return web.Response(status=204)
        return web.json_response(self.events[event_id])


def _utc(value: dict[str, str]) -> str:
    moment = datetime.fromisoformat(value["dateTime"].replace("Z", "+00:00"))
    return moment.astimezone(ZoneInfo("UTC")).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
async def google():
    fake = await FakeGoogle().start()
    yield fake
    await fake.stop()


@pytest.fixture
async def h(tmp_path: Path, google: FakeGoogle):
    settings = GoogleCalendarSettings(calendar_id=CALENDAR,
                                      service_account_file=google.key_file(tmp_path),
                                      api_base_url=f"{google.url}/calendar/v3", timeout_ms=500)
    harness = await make_harness(tmp_path, NOW, google=settings,
                                 appointments={"resource_count": "2"})
    yield harness
    await harness.services.close()
    harness.close()


async def test_owner_busy_times_block_every_resource_but_our_own_events_do_not(
        h: Harness, google: FakeGoogle) -> None:
    google.add_busy("2025-03-17T09:00:00+02:00", "2025-03-17T10:00:00+02:00")
    google.add_busy("2025-03-17T10:00:00+02:00", "2025-03-17T11:00:00+02:00",
                    transparency="transparent")              # marked "free": ignored
    ctx = await h.context(CALLER)
    found = await h.run(ctx, "find_free_slots", {"date": "2025-03-17", "latest": "11:00"})
    assert found.splitlines()[1] == "- Mon 17 Mar 10:00 (start=2025-03-17T10:00)"
    refused = await h.run(ctx, "book_appointment", {"start": "2025-03-17T09:30"})
    assert "already taken" in refused
    booked = await h.run(ctx, "book_appointment", {"start": "2025-03-17T10:00",
                                                   "note": "oven"})
    assert booked.startswith("Booked")
    assert await h.services.google.sync_pending() == 1
    [ours] = [e for e in google.events.values() if "extendedProperties" in e]
    assert ours["start"] == {"dateTime": "2025-03-17T08:00:00Z"}
    assert ours["summary"] == "Appointment: Customer (…4567) - oven"
    assert "501234567" not in json.dumps(ours)
    # Our mirrored event does not take the second resource away.
    other = await h.context("+972507654321")
    assert (await h.run(other, "book_appointment", {"start": "2025-03-17T10:00"})
            ).startswith("Booked")


async def test_moves_and_cancellations_follow_and_google_down_changes_nothing_locally(
        h: Harness, google: FakeGoogle) -> None:
    ctx = await h.context(CALLER)
    await h.run(ctx, "book_appointment", {"start": "2025-03-17T10:00"})
    await h.services.google.sync_pending()
    event_id = (await h.db.fetchone("SELECT google_event_id FROM appointments"))[0]
    assert event_id in google.events

    google.down = True
    started = time.monotonic()
    found = await h.run(ctx, "find_free_slots", {"date": "2025-03-18"})
    assert "Tue 18 Mar 09:00" in found and time.monotonic() - started < 2
    moved = await h.run(ctx, "move_appointment", {"new_start": "2025-03-18T09:00"})
    assert moved.startswith("Moved")
    with pytest.raises(GoogleError):
        await h.services.google.sync_pending()
    row = await h.db.fetchone("SELECT google_state, start_utc FROM appointments")
    assert (row["google_state"], row["start_utc"]) == ("pending", "2025-03-18T07:00:00Z")

    google.down = False
    assert await h.services.google.sync_pending() == 1
    assert google.events[event_id]["start"] == {"dateTime": "2025-03-18T07:00:00Z"}
    await h.run(ctx, "cancel_appointment", {})
    await h.services.google.sync_pending()
    assert event_id not in google.events
    assert ("DELETE", f"/calendar/v3/calendars/{CALENDAR}/events/{event_id}") in google.calls
    assert google.tokens_issued == 1                       # the access token is cached


async def test_the_background_sync_catches_up_when_google_returns(
        h: Harness, google: FakeGoogle) -> None:
    google.down = True
    gc = h.services.google
    gc.first_retry_s = 0.05
    gc.poll_s = 0.05
    await h.services.start()
    ctx = await h.context(CALLER)
    await h.run(ctx, "book_appointment", {"start": "2025-03-17T10:00"})
    await asyncio.sleep(0.2)
    assert gc.failures >= 1
    google.down = False
    for _ in range(100):
        await asyncio.sleep(0.05)
        row = await h.db.fetchone("SELECT google_state FROM appointments")
        if row["google_state"] == "synced":
            break
    assert row["google_state"] == "synced"
    assert len(google.events) == 1


# -- CRM -------------------------------------------------------------------------------------

async def test_crm_lookup_fills_what_the_local_record_lacks(tmp_path: Path, crm_server) -> None:
    url, seen = crm_server
    h = await make_harness(tmp_path, NOW)
    crm = CrmClient(CrmSettings(url_template=url, timeout_ms=300, token="crm-secret"))
    try:
        local = await h.memory.customer(CALLER)
        local = await h.memory.update_customer(local.id, name="Dana", tags="regular")
        enriched = await enrich(crm, h.memory, local)
        assert (enriched.name, enriched.language, enriched.gender) == ("Dana", "he", "f")
        assert enriched.tags == "regular,vip" and enriched.notes == "Owns two fridges"
        assert seen == ["Bearer crm-secret"]
        unknown = await lookup_customer(crm, h.memory, "+972509998888")
        assert unknown.name is None
        for phone in ("+972500000001", "+972500000002"):     # slow, broken
            started = time.monotonic()
            customer = await lookup_customer(crm, h.memory, phone)
            assert customer.phone == phone and customer.name is None
            assert time.monotonic() - started < 1.5
        assert (await lookup_customer(None, h.memory, CALLER)).name == "Dana"
    finally:
        await crm.close()
        h.close()


async def test_crm_unreachable_uses_the_local_record(tmp_path: Path) -> None:
    from tests.support.actions import free_port

    h = await make_harness(tmp_path, NOW)
    crm = CrmClient(CrmSettings(url_template=f"http://127.0.0.1:{free_port()}/p?n={{phone}}",
                                timeout_ms=300))
    try:
        customer = await lookup_customer(crm, h.memory, CALLER)
        assert customer.phone == CALLER
    finally:
        await crm.close()
        h.close()
