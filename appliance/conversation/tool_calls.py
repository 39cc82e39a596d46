"""Running the tools a model asked for, inside one conversation.

A tool runs only once a speculative reply is released, at most once per inbound message (see
effects.py), bounded by its timeout; on a live call a slow tool gets one "one moment". An
interrupted reply leaves its tool running: the outcome is stored when it finishes.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING

from .effects import effect_key, run_once
from .events import ActionRequested
from .prompt import filler
from .reply_turn import ReplyTurn
from .tools import ToolError, check_args
from ..llm.base import ToolCall

if TYPE_CHECKING:
    from .conversation import Conversation

log = logging.getLogger(__name__)

JsonArgs = dict[str, object]


async def call_tool(conversation: Conversation, call: ToolCall, turn: ReplyTurn) -> str:
    """Run `call` for the conversation's customer; the text the model sees as its result."""
    engine, ctx = conversation.engine, conversation.context
    tool = engine.tools.get(call.name)
    if tool is None or not tool.available(ctx.channel):
        return f"There is no tool called {call.name} here."
    try:
        args = check_args(tool, call.args)
    except ToolError as exc:
        return f"{call.name} was not run: {exc}."
    await conversation.released(turn)  # a speculative reply acts only once the turn is over
    loop = asyncio.get_running_loop()
    before = len(ctx.actions)
    started = loop.time()
    gap_s = engine.options.filler_gap_ms / 1000
    if ctx.live_audio and tool.slow:
        turn.filler(filler(conversation.language(turn)), "slow_tool", gap_s)
    key = effect_key(ctx.message_sid, call.name, args) if ctx.message_sid else None
    task = asyncio.ensure_future(run_once(engine.memory.db, key,
                                          lambda: tool.handler(ctx, args)))
    try:
        if ctx.live_audio and not tool.slow:
            done, _ = await asyncio.wait({task}, timeout=engine.options.tool_moment_ms / 1000)
            if not done:
                turn.filler(filler(conversation.language(turn)), "slow_tool", gap_s)
        await asyncio.wait({task}, timeout=max(0.0, started + tool.timeout_s - loop.time()))
    except asyncio.CancelledError:
        # The reply was interrupted: the tool finishes on its own (it may be half-way
        # through a booking) and its outcome is stored when it does.
        task.add_done_callback(lambda t: _store_later(conversation, call, args, t))
        raise
    result = tool_result(call, task)
    log.info("tool %s ran in %.0f ms", call.name, (loop.time() - started) * 1000)
    await engine.memory.add_turn(conversation.customer.id, ctx.channel, ctx.call_id, "tool",
                                 result, full_text=json.dumps(args, ensure_ascii=False),
                                 tool_name=call.name)
    for action in ctx.actions[before:]:
        turn.actions += 1
        turn.queue.put_nowait(ActionRequested(action))
    return result


def tool_result(call: ToolCall, task: asyncio.Future[str]) -> str:
    """What the model is told of a finished (or timed-out) tool run."""
    if not task.done():
        task.cancel()
        log.warning("tool %s timed out", call.name)
        return (f"{call.name} did not answer in time. Tell the customer you could not do "
                "it right now and offer another way.")
    if task.cancelled():
        return f"{call.name} was cancelled."
    exc = task.exception()
    if isinstance(exc, ToolError):
        return f"{call.name} failed: {exc}."
    if exc is not None:
        log.error("tool %s failed", call.name, exc_info=exc)
        return (f"{call.name} failed because of a technical problem. Apologise and offer "
                "another way.")
    return str(task.result())


def _store_later(conversation: Conversation, call: ToolCall, args: JsonArgs,
                 task: asyncio.Future[str]) -> None:
    result = tool_result(call, task)
    ctx, engine = conversation.context, conversation.engine
    engine.keep(engine.memory.add_turn(
        conversation.customer.id, ctx.channel, ctx.call_id, "tool", result,
        full_text=json.dumps(args, ensure_ascii=False), tool_name=call.name))
