"""Plugging the business actions into the running appliance (called by conversation/wiring.py).

`register_actions(rt, tools)` builds the `ActionServices` on the runtime's database, connects
the `Notifier` to the messaging outbox (`rt.extras["messaging"].outbox`, looked up when a
message is sent, since the messaging channel starts with the web app), registers the tools,
starts the e-mail sender (and Google sync) and leaves the services in `rt.extras["actions"]`
for the call code (`summary.after_call`, `handover.decide_transfer`) and the calendar feed.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from .notify import Channel
from .services import ActionServices
from .tools import register_tools

if TYPE_CHECKING:
    from ..conversation.tools import ToolRegistry
    from ..runtime import Runtime

log = logging.getLogger(__name__)


class OutboxNotifier:
    """The Notifier protocol on appliance.messaging's outbox (durable, retried, in order)."""

    def __init__(self, rt: "Runtime") -> None:
        self.rt = rt

    def _outbox(self) -> Any:
        channel = self.rt.extras.get("messaging")
        return getattr(channel, "outbox", None)

    async def send_text(self, channel: Channel, to: str, body: str, reason: str) -> None:
        outbox = self._outbox()
        if outbox is None:
            raise RuntimeError("the messaging channel is not running")
        # The outbox picks the sender ([messaging] whatsapp_from / sms_from) and the address.
        await outbox.enqueue(to, channel, body, purpose=reason)


def register_actions(rt: "Runtime", tools: "ToolRegistry") -> ActionServices | None:
    if rt.db is None:
        return None
    services = ActionServices.build(rt.settings, rt.db, OutboxNotifier(rt))
    register_tools(tools, services)
    services.start_tasks()
    rt.extras["actions"] = services
    rt._closers.append(services.close)
    log.info("business actions ready (appointments %s)",
             "on" if services.config.appointments.enabled else "off")
    return services
