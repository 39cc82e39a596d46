"""`appliance chat`: talk to the engine in the terminal as a given phone number.

    appliance chat --phone +972501234567 [--model auto|gemini|local] [--channel chat|call|...]

Uses the real engine, database, tools and models (the local model is loaded unless --model
gemini). Lines starting with "/" are commands: /status, /history, /customer, /quit.
Fillers and actions (transfer, hang-up) are shown in brackets, and each reply ends with the
model that produced it and its time to first text.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any, TextIO

from ..config import Settings


def register(subparsers: Any) -> None:
    common = getattr(subparsers, "common", None)
    parser = subparsers.add_parser(
        "chat", parents=[common] if common is not None else [],
        help="talk to the receptionist in the terminal, as a given phone number")
    parser.add_argument("--phone", required=True, help="the customer's number, e.g. +972501234567")
    parser.add_argument("--model", choices=("auto", "gemini", "local"), default="auto",
                        help="force one model (default: Gemini with failover to the local one)")
    parser.add_argument("--channel", choices=("chat", "call", "whatsapp", "sms"), default="chat",
                        help="which channel's style and tools to use (default: chat)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(chat(settings, args.phone, args.model, args.channel, sys.stdin,
                            sys.stdout))


async def chat(settings: Settings, phone: str, model: str, channel: str, stdin: TextIO,
               stdout: TextIO) -> int:
    from ..llm.failover import ChatModels
    from ..llm.local import LocalModel
    from ..store.db import Database
    from .engine import Engine
    from .tools import ToolRegistry

    def say(text: str = "", end: str = "\n") -> None:
        stdout.write(text + end)
        stdout.flush()

    if model == "gemini" and not settings.gemini.api_key:
        say("GEMINI_API_KEY is not set; use --model local or set the key.")
        return 2
    local = None
    if model != "gemini":
        if settings.local_llm.model.present:
            say(f"loading {settings.local_llm.model.path.name} ...")
            local = await asyncio.to_thread(LocalModel.load, settings.local_llm)
        elif model == "local":
            say(f"the local model {settings.local_llm.model.path} is missing; "
                "run `appliance models download`")
            return 2
    db = await Database.open(settings.storage.database)
    kb, embedder = await asyncio.to_thread(_knowledge_base, settings, db)
    engine = Engine(settings, db, ChatModels.from_settings(settings, local=local),
                    ToolRegistry.default(), kb=kb)
    try:
        await engine.start()
        conversation = await engine.open(phone, channel, model=model)  # type: ignore[arg-type]
        customer = conversation.customer
        say(f"customer {customer.id} ({customer.name or 'no name yet'}), "
            f"{len(conversation.history)} earlier messages, mode {engine.status()['mode']}. "
            "Type /quit to leave.")
        loop = asyncio.get_running_loop()
        while True:
            say("> ", end="")
            line = await loop.run_in_executor(None, stdin.readline)
            if not line:
                break
            text = line.strip()
            if not text:
                continue
            if text.startswith("/"):
                if text in ("/quit", "/exit"):
                    break
                say(_command(text, engine, conversation))
                continue
            async for event in conversation.reply(text):
                say(_render(event), end="")
            say()
        return 0
    finally:
        await engine.close()
        if local is not None:
            await asyncio.to_thread(local.close)
        if embedder is not None:
            embedder.close()
        db.close()


def _knowledge_base(settings: Settings, db: Any) -> tuple[Any, Any]:
    """The knowledge base (appliance.kb), or (None, None) when it cannot be opened."""
    try:
        from ..kb.embed import Embedder
        from ..kb.search import KnowledgeBase
    except ImportError:
        return None, None
    ref = settings.kb.embedding_model
    embedder = None
    if ref.present:
        try:
            embedder = Embedder(ref.path, threads=settings.local_llm.threads)
        except Exception as exc:  # noqa: BLE001 - chat still works with keyword search only
            print(f"embedding model not loaded ({exc}); keyword search only", file=sys.stderr)
    return KnowledgeBase.from_settings(db, embedder, settings.kb), embedder


def _render(event: Any) -> str:
    from .events import ActionRequested, Filler, ReplyDone, TextDelta

    if isinstance(event, TextDelta):
        return event.text
    if isinstance(event, Filler):
        return f"[{event.text}] "
    if isinstance(event, ActionRequested):
        action = event.action
        return f" [{action.kind}{' to ' + action.target if action.target else ''}]"
    if isinstance(event, ReplyDone):
        ttft = "-" if event.llm_ttft_ms is None else f"{event.llm_ttft_ms:.0f} ms"
        return f"\n  ({event.model}, first text {ttft})"
    return ""


def _command(text: str, engine: Any, conversation: Any) -> str:
    if text == "/status":
        return str(engine.status())
    if text == "/history":
        return "\n".join(f"{m.role}: {m.text}" for m in conversation.history) or "(empty)"
    if text == "/customer":
        return str(conversation.customer)
    return "commands: /status /history /customer /quit"
