"""Turn-taking: when has the caller finished, and what may the bot do before it is sure.

- ``smart_turn``: the smart-turn v3 audio model (probability that the turn is complete).
- ``text``: what the partial transcript says about being finished (pure).
- ``decision``: the end-of-turn state machine (pure, clock-free) -> PAUSE / RESUME / COMMIT.
- ``speculation``: speculative replies per turn (pure): start, cancel, release, hold tools.
"""
