"""Mirror the appointments into a Google Calendar and respect its busy times.

With a service account ([google_calendar] service_account_file, the calendar shared with the
account's e-mail address with "make changes to events"):
- every booking, move and cancellation marks its row `google_state = 'pending'` in the same
  transaction (appointments.py); a background task creates, updates or deletes the Google event
  and marks the row synced. When Google is unreachable the booking stands - the local calendar
  is authoritative - and the task retries with backoff (30 s doubling to 15 min);
- `busy(start, end)` lists the calendar's events (not ours, not "free"/transparent, not
  cancelled) as busy times blocking every resource; appointments.py bounds it with a timeout
  and books from the local calendar alone when it fails.

Auth is the OAuth 2.0 JWT bearer flow: an RS256 assertion signed with the key's private key
(google.auth.crypt), exchanged at the key's token_uri for an access token (cached until a
minute before it expires). All HTTP is aiohttp; tests point api_base_url and token_uri at a
fake on loopback.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from datetime import datetime, timezone
from typing import Any, Callable
from urllib.parse import quote

import aiohttp

from ..store.db import Database
from .calendar import Busy, CalendarRules, to_iso
from .settings import GoogleCalendarSettings

log = logging.getLogger(__name__)

SCOPE = "https://www.googleapis.com/auth/calendar"
OURS = "appliance_uid"


class GoogleError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


def _event_time(value: dict[str, Any], rules: CalendarRules) -> datetime | None:
    if "dateTime" in value:
        return datetime.fromisoformat(value["dateTime"].replace("Z", "+00:00"))
    if "date" in value:     # all-day: midnight in the business's time zone
        day = datetime.fromisoformat(value["date"]).date()
        return datetime.combine(day, datetime.min.time(), rules.tz)
    return None


class GoogleCalendar:
    def __init__(self, settings: GoogleCalendarSettings, db: Database, rules: CalendarRules,
                 clock: Callable[[], datetime], *, first_retry_s: float = 30.0,
                 max_retry_s: float = 900.0, poll_s: float = 300.0) -> None:
        self.settings = settings
        self.db = db
        self.rules = rules
        self.clock = clock
        self.first_retry_s, self.max_retry_s, self.poll_s = first_retry_s, max_retry_s, poll_s
        self._key: dict[str, Any] | None = None
        self._token: tuple[str, float] | None = None      # (access token, expiry monotonic)
        self._session: aiohttp.ClientSession | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.failures = 0

    # -- HTTP ------------------------------------------------------------------------------

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.settings.timeout_ms / 1000))
        return self._session

    def _service_account(self) -> dict[str, Any]:
        if self._key is None:
            assert self.settings.service_account_file is not None
            self._key = json.loads(self.settings.service_account_file.read_text("utf-8"))
        return self._key

    async def _access_token(self) -> str:
        if self._token is not None and time.monotonic() < self._token[1]:
            return self._token[0]
        from google.auth import crypt, jwt

        key = self._service_account()
        token_uri = self.settings.token_uri or key.get("token_uri",
                                                      "https://oauth2.googleapis.com/token")
        issued = int(time.time())            # Google checks it against its own clock
        signer = crypt.RSASigner.from_service_account_info(key)
        assertion = jwt.encode(signer, {"iss": key["client_email"], "scope": SCOPE,
                                        "aud": token_uri, "iat": issued,
                                        "exp": issued + 3600}).decode()
        async with self._client().post(token_uri, data={
                "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                "assertion": assertion}) as response:
            body = await response.text()
            if response.status != 200:
                raise GoogleError(response.status, f"token: {body[:200]}")
            data = json.loads(body)
        lifetime = float(data.get("expires_in", 3600))
        self._token = (data["access_token"], time.monotonic() + max(0.0, lifetime - 60))
        return self._token[0]

    async def _call(self, method: str, path: str, *, params: dict[str, str] | None = None,
                    body: dict[str, Any] | None = None, retry_auth: bool = True) -> Any:
        headers = {"Authorization": f"Bearer {await self._access_token()}"}
        url = self.settings.api_base_url + path
        async with self._client().request(method, url, params=params, json=body,
                                          headers=headers) as response:
            text = await response.text()
            if response.status == 401 and retry_auth:
                self._token = None
                return await self._call(method, path, params=params, body=body,
                                        retry_auth=False)
            if response.status >= 300:
                raise GoogleError(response.status, text[:200])
            return json.loads(text) if text.strip() else None

    def _events_path(self, event_id: str = "") -> str:
        path = f"/calendars/{quote(self.settings.calendar_id, safe='')}/events"
        return path + (f"/{quote(event_id, safe='')}" if event_id else "")

    # -- busy times ------------------------------------------------------------------------

    async def busy(self, start: datetime, end: datetime) -> list[Busy]:
        """The calendar's own busy times between start and end (raises when unreachable)."""
        found: list[Busy] = []
        params = {"timeMin": to_iso(start), "timeMax": to_iso(end), "singleEvents": "true",
                  "maxResults": "250", "orderBy": "startTime"}
        for _ in range(5):                               # at most 5 pages
            data = await self._call("GET", self._events_path(), params=params) or {}
            for item in data.get("items", []):
                private = (item.get("extendedProperties") or {}).get("private") or {}
                if (OURS in private or item.get("status") == "cancelled"
                        or item.get("transparency") == "transparent"):
                    continue
                s = _event_time(item.get("start", {}), self.rules)
                e = _event_time(item.get("end", {}), self.rules)
                if s is not None and e is not None and e > s:
                    found.append(Busy(s.astimezone(timezone.utc), e.astimezone(timezone.utc)))
            token = data.get("nextPageToken")
            if not token:
                break
            params = {**params, "pageToken": token}
        return found

    # -- mirroring -------------------------------------------------------------------------

    def schedule(self, appointment_id: int | None = None) -> None:
        """A row was marked pending: sync soon."""
        self._wake.set()

    def _event(self, row: sqlite3.Row) -> dict[str, Any]:
        from .ics import masked_number

        tail = masked_number(row["customer_phone"] or "")
        who = (row["customer_name"] or "Customer") + (f" ({tail})" if tail else "")
        return {"summary": f"Appointment: {who}" + (f" - {row['note']}" if row["note"] else ""),
                "description": f"Booked by the receptionist ({row['channel'] or '-'}), "
                               f"appointment #{row['id']}",
                "start": {"dateTime": row["start_utc"]}, "end": {"dateTime": row["end_utc"]},
                "transparency": "opaque",
                "extendedProperties": {"private": {OURS: row["uid"],
                                                   "appliance_id": str(row["id"])}}}

    async def sync_pending(self) -> int:
        """Push every pending row to Google; the number synced. Raises on the first failure
        (the rest stays pending)."""
        rows = await self.db.fetchall(
            "SELECT a.*, c.name AS customer_name, c.phone AS customer_phone FROM appointments a "
            "JOIN customers c ON c.id = a.customer_id WHERE a.google_state = 'pending' "
            "ORDER BY a.id")
        done = 0
        for row in rows:
            event_id = row["google_event_id"]
            if row["status"] == "cancelled":
                if event_id:
                    try:
                        await self._call("DELETE", self._events_path(event_id))
                    except GoogleError as exc:
                        if exc.status not in (404, 410):
                            raise
                event_id = None
            elif event_id:
                try:
                    await self._call("PUT", self._events_path(event_id), body=self._event(row))
                except GoogleError as exc:
                    if exc.status not in (404, 410):
                        raise
                    event_id = (await self._call("POST", self._events_path(),
                                                 body=self._event(row)))["id"]
            else:
                event_id = (await self._call("POST", self._events_path(),
                                             body=self._event(row)))["id"]
            # Only if the row did not change meanwhile (else it stays pending for next pass).
            await self.db.execute(
                "UPDATE appointments SET google_state = 'synced', google_event_id = ? "
                "WHERE id = ? AND updated_at = ? AND google_state = 'pending'",
                (event_id, row["id"], row["updated_at"]))
            done += 1
        return done

    async def run(self) -> None:
        while True:
            self._wake.clear()
            wait = self.poll_s
            try:
                synced = await self.sync_pending()
                if synced:
                    log.info("google calendar: %d appointment(s) synced", synced)
                self.failures = 0
            except asyncio.CancelledError:
                raise
            except (GoogleError, aiohttp.ClientError, asyncio.TimeoutError, OSError,
                    ValueError, KeyError) as exc:
                self.failures += 1
                wait = min(self.max_retry_s, self.first_retry_s * 2 ** (self.failures - 1))
                log.warning("google calendar unreachable (%s); the local calendar stands, "
                            "retrying in %.0f s", exc or type(exc).__name__, wait)
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=wait)
            except asyncio.TimeoutError:
                pass

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.run(), name="google-sync")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task})
            self._task = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    def status(self) -> dict[str, Any]:
        return {"configured": True, "failures": self.failures}

