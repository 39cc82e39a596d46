"""What a reply is made of, as the channels consume it (frozen dataclasses).

`Conversation.reply()` yields, in order: `TextDelta`s as the model streams (interleaved with
`Filler`s and `ActionRequested`s), then exactly one `ReplyDone`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Union

ActionKind = Literal["transfer", "hangup", "take_message"]


@dataclass(frozen=True)
class Action:
    """Something a tool asked the channel to do once the current reply has been spoken.

    transfer:     `target` is the E.164 number to dial, always taken from config.ini
                  ([twilio] operator_number), never from the model.
    hangup:       end the call politely after the reply.
    take_message: switch to taking a message (used by the messages tools).
    """

    kind: ActionKind
    target: str = ""
    reason: str = ""


@dataclass(frozen=True)
class TextDelta:
    """More reply text, in the order generated (a few characters to a few words)."""

    text: str


@dataclass(frozen=True)
class Filler:
    """A short "one moment" to speak while the answer is delayed (spoken channels only).

    reason: "slow_model" (nothing to say yet, e.g. while failing over), "slow_tool".
    """

    text: str
    reason: str = "slow_model"


@dataclass(frozen=True)
class ActionRequested:
    """A tool asked for a transfer, a hang-up or taking a message."""

    action: Action


@dataclass(frozen=True)
class ReplyDone:
    """The reply is complete and stored.

    full_text: the whole reply as generated (TextDeltas joined; fillers not included).
    model: which model produced it: "gemini:<model>", "local:<file>", both joined with "+"
           when the local model finished a broken Gemini stream, or "none" for the fixed
           apology given when no model could answer.
    llm_ttft_ms: from the start of reply() to the first TextDelta (None if no text).
    """

    full_text: str
    model: str
    llm_ttft_ms: float | None = None


ReplyEvent = Union[TextDelta, Filler, ActionRequested, ReplyDone]
