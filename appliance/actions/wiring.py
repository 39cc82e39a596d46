"""Builder of the business actions, called by appliance.compose: `build_actions` makes the
`ActionServices` on the database, registers their tools, starts the e-mail sender (and Google
sync); `OutboxNotifier` is the `Notifier` that sends through the messaging outbox.
"""

from __future__ import annotations

import logging

from ..config import Settings
from ..conversation.tools import ToolRegistry
from ..messaging.outbox import Outbox
from ..runtime import Runtime
from ..store.db import Database
from .notify import Channel
from .services import ActionServices
from .tools import register_tools

log = logging.getLogger(__name__)


class OutboxNotifier:
    """The Notifier protocol on appliance.messaging's outbox (durable, retried, in order)."""

    def __init__(self, settings: Settings, outbox: Outbox | None) -> None:
        self.settings = settings
        self.outbox = outbox

    async def send_text(self, channel: Channel, to: str, body: str, reason: str,
                        dedupe_key: str | None = None) -> None:
        if self.outbox is None:
            raise RuntimeError("the messaging channel is not running")
        messaging = self.settings.messaging
        if channel == "whatsapp":
            sender = messaging.whatsapp_from
            if sender and not sender.startswith("whatsapp:"):
                sender = "whatsapp:" + sender
        else:
            sender = messaging.sms_from
        if not sender:
            raise RuntimeError(f"[messaging] {channel}_from is not set")
        await self.outbox.enqueue(to, channel, body, purpose=reason, from_address=sender,
                                  dedupe_key=dedupe_key)


def build_actions(rt: Runtime, settings: Settings, db: Database | None, outbox: Outbox | None,
                  tools: ToolRegistry) -> ActionServices | None:
    if db is None:
        return None
    services = ActionServices.build(settings, db, OutboxNotifier(settings, outbox))
    register_tools(tools, services)
    services.start_tasks()
    rt.add_closer(services.close)
    log.info("business actions ready (appointments %s)",
             "on" if services.config.appointments.enabled else "off")
    return services
