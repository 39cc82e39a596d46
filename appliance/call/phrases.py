"""The fixed phrases a call can say besides the greeting (synthesised once at start-up)."""

from __future__ import annotations

PHRASES = {
    "still_there": "Are you still there?",
    "goodbye": "Thank you for calling. Goodbye!",
    "transfer": "One moment, I'm connecting you now.",
    "no_transfer": "I'm sorry, nobody can take the call right now. I can take a message: "
                   "what would you like me to pass on?",
    "after_dial": "I'm sorry, nobody could answer just now. I can take a message: what would "
                  "you like me to pass on?",
}
