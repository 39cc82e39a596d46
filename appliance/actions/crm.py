"""An optional external CRM, asked over HTTP who is calling; the local record is the fallback.

GET [crm] url_template with {phone} replaced by the URL-encoded E.164 number, with
"Authorization: Bearer $CRM_TOKEN" when a token is set, bounded by [crm] timeout_ms. The
answer is a JSON object (or {"customer": {...}}, or a list whose first item is used) with any
of name, language, gender, notes, tags (a list or comma-separated). 404 means unknown.

What the CRM knows fills only what the local record lacks (the customer's own words in a
conversation win over a CRM entry); tags are merged. Any failure - timeout, refused
connection, a 5xx, bad JSON - is logged and the local record is used as it is.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import aiohttp

from ..conversation.memory import GENDERS, LANGUAGE
from ..logs import mask_phone
from .settings import CrmSettings
from ..conversation.names import InvalidName, clean_name

if TYPE_CHECKING:
    from ..conversation.memory import Customer, Memory

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CrmRecord:
    name: str = ""
    language: str = ""
    gender: str = ""
    notes: str = ""
    tags: tuple[str, ...] = ()


def parse_record(data: Any) -> CrmRecord | None:
    if isinstance(data, list):
        data = data[0] if data else None
    if isinstance(data, dict) and isinstance(data.get("customer"), dict):
        data = data["customer"]
    if not isinstance(data, dict):
        return None
    text = lambda key: str(data.get(key) or "").strip()  # noqa: E731
    language = text("language").lower()[:3]
    gender = text("gender").lower()[:1]
    tags = data.get("tags") or ()
    if isinstance(tags, str):
        tags = tags.split(",")
    return CrmRecord(name=text("name")[:80],
                     language=language if LANGUAGE.match(language) else "",
                     gender=gender if gender in GENDERS else "",
                     notes=text("notes")[:1000],
                     tags=tuple(str(t).strip() for t in tags if str(t).strip()))


class CrmClient:
    def __init__(self, settings: CrmSettings) -> None:
        self.settings = settings
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.settings.timeout_ms / 1000))
        return self._session

    async def lookup(self, phone: str) -> CrmRecord | None:
        """The CRM's record of this number; None when unknown or unreachable."""
        url = self.settings.url_template.replace("{phone}", quote(phone, safe=""))
        headers = {"Accept": "application/json"}
        if self.settings.token:
            headers["Authorization"] = f"Bearer {self.settings.token}"
        try:
            async with self._client().get(url, headers=headers) as response:
                if response.status == 404:
                    return None
                if response.status != 200:
                    log.warning("CRM lookup of %s: HTTP %d; using the local record",
                                mask_phone(phone), response.status)
                    return None
                data = json.loads(await response.text())
        except asyncio.CancelledError:
            raise
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
            log.warning("CRM lookup of %s failed (%s); using the local record",
                        mask_phone(phone), type(exc).__name__)
            return None
        return parse_record(data)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def merge(customer: "Customer", record: CrmRecord) -> dict[str, str]:
    """The fields to update: only what the local record lacks; tags merged."""
    values: dict[str, str] = {}
    if record.name and not customer.name and valid_name(record.name):
        values["name"] = record.name
    if record.language and not customer.language:
        values["language"] = record.language
    if record.gender and not customer.gender:
        values["gender"] = record.gender
    if record.notes and not customer.notes:
        values["notes"] = record.notes
    have = [t for t in customer.tags.split(",") if t]
    extra = [t for t in record.tags if t not in have]
    if extra:
        values["tags"] = ",".join(have + extra)
    return values


async def enrich(crm: CrmClient | None, memory: "Memory", customer: "Customer") -> "Customer":
    """The customer, completed from the CRM when one is configured and answers in time."""
    if crm is None:
        return customer
    record = await crm.lookup(customer.phone)
    if record is None:
        return customer
    values = merge(customer, record)
    if not values:
        return customer
    log.info("customer %d completed from the CRM: %s", customer.id, ", ".join(sorted(values)))
    return await memory.update_customer(customer.id, **values)


async def lookup_customer(crm: CrmClient | None, memory: "Memory", phone: str) -> "Customer":
    """At the start of a call or conversation: the local record (created on first contact),
    completed from the CRM."""
    return await enrich(crm, memory, await memory.customer(phone))


def valid_name(name: str) -> bool:
    """A CRM name that memory.update_customer would refuse is left out, not fatal."""
    try:
        clean_name(name)
    except InvalidName:
        log.warning("the CRM's name for a customer is not a name; ignored")
        return False
    return True

