"""The Gemini stand-in (tests/support/fakes/gemini_server.py) in a process of its own, so the caller
stand-ins' work does not delay its clock: ``python -m bench.gemini_proc --ttft 0.3 --rate 200``.

Prints ``{"url": ...}`` when it listens and serves until stdin closes; a line such as
``ttft 0.8``, ``rate 150``, ``long 1`` or ``say TEXT`` on stdin changes what the next requests
get (any line, e.g. ``stats``, is answered with the state and the number of turn requests so
far). Every request gets TEXT once ``say`` set it (``say`` alone: back to the list), else the
next of REPLIES (or LONG_REPLY with ``--long``) after ``--ttft`` seconds,
streamed at ``--rate`` tokens per second (Gemini 2.5 Flash streams a few hundred tokens per
second).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys

from tests.support.fakes.gemini_server import FakeGemini, Reply

# What a receptionist says: one or two short sentences, the first clause early.
REPLIES = [
    "Of course, I can book that for you. Would nine or eleven tomorrow suit you better?",
    "We're open Sunday to Thursday from nine to six, and on Friday until one.",
    "The premium plan is forty-nine shekels a month, installation included.",
    "Sure, let me see who is free. Can I take your name in the meantime?",
    "Thank you, I've noted that number. Is there anything else I can help with?",
    "Great, you're booked for nine tomorrow. We'll text you a reminder the day before.",
    "Delivery across Tel Aviv takes two days, and it's free over five hundred shekels.",
    "Happy to help. Could you tell me which model you have?",
]
LONG_REPLY = ("Our shop sells and repairs washing machines, fridges and ovens. "
              "We are open from Sunday to Thursday, nine to six. On Friday we close at one. "
              "Deliveries across Tel Aviv take two days. Installation is free with every "
              "machine. Repairs come with a ninety day warranty. Is there anything else?")


async def _serve(ttft: float, rate: float, long: bool) -> None:
    state: dict[str, float | bool | str] = {"ttft": ttft, "rate": rate, "long": long, "say": ""}
    short, longs = itertools.cycle(REPLIES), itertools.cycle([LONG_REPLY])

    def answer(recorded) -> Reply:
        if recorded.is_probe:
            return Reply(text="OK")
        text = str(state["say"]) or next(longs if state["long"] else short)
        return Reply(text=text, ttft_s=float(state["ttft"]), tokens_per_s=float(state["rate"]))

    loop = asyncio.get_running_loop()
    async with FakeGemini() as fake:
        fake.default = answer
        print(json.dumps({"url": fake.base_url}), flush=True)
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            key, _, value = line.strip().partition(" ")   # "ttft 0.8", "long 1", "say Hi."
            if key in state:
                state[key] = (bool(int(value)) if key == "long" else value if key == "say"
                              else float(value))
            print(json.dumps({**state, "requests": len(fake.turn_requests)}), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gemini_proc")
    parser.add_argument("--ttft", type=float, default=0.3, help="seconds to the first token")
    parser.add_argument("--rate", type=float, default=200.0, help="tokens per second after it")
    parser.add_argument("--long", action="store_true", help="always answer LONG_REPLY")
    args = parser.parse_args()
    asyncio.run(_serve(args.ttft, args.rate, args.long))
    return 0


if __name__ == "__main__":
    sys.exit(main())
