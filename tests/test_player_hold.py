"""The player holds a speculative reply: its audio is queued but nothing is sent, and it does not
count as speaking, until it is released; a dropped one is forgotten unsent."""

from __future__ import annotations

import asyncio
import json

from appliance.audio.codec import ULAW_FRAME_BYTES
from appliance.call.player import Player


async def _player() -> tuple[Player, list[dict], asyncio.Task[None]]:
    sent: list[dict] = []

    async def send(text: str) -> None:
        sent.append(json.loads(text))

    player = Player(send, "MZ1", lookahead_ms=2000)
    return player, sent, asyncio.get_running_loop().create_task(player.run())


def _piece(player: Player, reply_id: int, frames: int = 5) -> None:
    piece = player.new_piece(f"reply {reply_id}", reply_id)
    piece.add_audio(b"\xff" * ULAW_FRAME_BYTES * frames)
    piece.finish()
    player.audio_added()


async def test_held_audio_is_sent_only_once_released() -> None:
    player, sent, task = await _player()
    try:
        player.hold(7)
        _piece(player, 7)
        await asyncio.sleep(0.05)
        assert sent == [] and not player.speaking and player.is_held(7)
        player.release(7)
        await asyncio.sleep(0.05)
        assert [m["event"] for m in sent].count("media") == 5 and sent[-1]["event"] == "mark"
    finally:
        task.cancel()


async def test_a_dropped_reply_is_never_sent_and_the_player_is_idle() -> None:
    player, sent, task = await _player()
    try:
        player.hold(3)
        _piece(player, 3)
        player.drop(3)
        await asyncio.wait_for(player.wait_idle(), 1)
        _piece(player, 4, frames=2)           # the next reply plays normally
        await asyncio.sleep(0.05)
        assert [m["event"] for m in sent] == ["media", "media", "mark"]
        assert "3" not in player.heard().text and player.speaking
    finally:
        task.cancel()


def test_queued_audio_counts_what_the_caller_has_still_to_hear_and_not_held_replies() -> None:
    now = [100.0]

    async def send(text: str) -> None:
        pass

    player = Player(send, "MZ1", clock=lambda: now[0])
    assert player.queued_s() == 0.0
    _piece(player, 1, frames=50)                       # 1 s of audio queued, none sent yet
    player.hold(2)
    _piece(player, 2, frames=100)                      # a held speculative reply: not counted
    assert abs(player.queued_s() - 1.0) < 1e-9
