"""The business tools of the conversation engine, shared by Gemini and the local model.

Every target comes from the conversation (`ToolContext`: the customer, their number, the
channel, the call) or from config.ini - never from the model's arguments. The schemas have no
"to", "number" or "customer" field, and `check_args` drops any key a schema does not list, so
"text this other number", "transfer me to +1..." or an instruction hidden in a knowledge-base
file cannot aim a tool anywhere else. Move and cancel find the appointment among the
customer's own only; one call changes one appointment.

    find_free_slots      date, part_of_day, earliest, latest, days, when
    book_appointment     start (local "YYYY-MM-DDTHH:MM"), note
    move_appointment     appointment_id, new_start
    cancel_appointment   appointment_id
    list_my_appointments -
    take_message         message, name, urgent
    send_me_info         kind: address | website | hours
    transfer_to_human    reason   (replaces the built-in one; calls only)
"""

from __future__ import annotations

from ..conversation.tools import ToolRegistry
from .booking_tools import book_tool, cancel_tool, find_tool, list_tool, move_tool
from .contact_tools import info_tool, message_tool, transfer_to_human_tool
from .services import ActionServices
from .stepup import stepup_tools


def register_tools(registry: ToolRegistry, services: ActionServices) -> None:
    """Add the business tools (appointment tools only when [appointments] enabled)."""
    s = services
    tools = []
    if s.config.appointments.enabled:
        tools += [find_tool(s), book_tool(s), move_tool(s), cancel_tool(s), list_tool(s)]
        tools += stepup_tools(s)
    tools += [message_tool(s), info_tool(s), transfer_to_human_tool(s)]
    for tool in tools:
        registry.register(tool)
