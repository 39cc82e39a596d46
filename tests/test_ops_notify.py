"""sd_notify over a real unix datagram socket, as systemd's NOTIFY_SOCKET receives it."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from appliance.ops.notify import SystemdNotifier
from tests.support.ops import datagram_listener, listening


@pytest.fixture
def listener(tmp_path: Path):
    with listening(tmp_path / "notify.sock") as pair:
        yield pair


def fields(datagram: bytes) -> dict[str, str]:
    return dict(line.split("=", 1) for line in datagram.decode().splitlines())


def test_ready_and_stopping_arrive_as_key_value_lines(listener) -> None:
    path, sock = listener
    notifier = SystemdNotifier({"NOTIFY_SOCKET": str(path)})
    assert notifier.enabled and notifier.ready("taking calls")
    assert fields(sock.recv(4096)) == {"READY": "1", "STATUS": "taking calls"}
    notifier.stopping("draining 1 call(s)")
    assert fields(sock.recv(4096)) == {"STOPPING": "1", "STATUS": "draining 1 call(s)"}


def test_abstract_socket_names_are_supported() -> None:
    name = f"appliance-test-{os.getpid()}"
    sock = datagram_listener("\0" + name)
    try:
        assert SystemdNotifier({"NOTIFY_SOCKET": "@" + name}).notify(STATUS="hi")
        assert sock.recv(100) == b"STATUS=hi"
    finally:
        sock.close()


def test_without_systemd_everything_is_a_quiet_no_op(tmp_path: Path) -> None:
    assert not SystemdNotifier({}).ready("x")
    gone = SystemdNotifier({"NOTIFY_SOCKET": str(tmp_path / "missing.sock")})
    assert gone.enabled and not gone.ready("x")      # a warning, never an exception


async def test_the_watchdog_pings_from_the_event_loop_at_half_the_interval(listener) -> None:
    path, sock = listener
    sock.setblocking(False)
    notifier = SystemdNotifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "200000",
                                "WATCHDOG_PID": str(os.getpid())})
    assert notifier.watchdog_s == pytest.approx(0.2)
    task = asyncio.create_task(notifier.watchdog())
    await asyncio.sleep(0.45)
    task.cancel()
    pings = []
    while True:
        try:
            pings.append(sock.recv(100))
        except BlockingIOError:
            break
    assert pings and set(pings) == {b"WATCHDOG=1"} and 3 <= len(pings) <= 6


def test_a_watchdog_meant_for_another_process_is_ignored(listener) -> None:
    path, _ = listener
    other = SystemdNotifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "200000",
                             "WATCHDOG_PID": "1"})
    assert other.watchdog_s == 0.0


def test_a_full_queue_drops_the_message_instead_of_blocking_the_loop(listener) -> None:
    path, _ = listener
    notifier = SystemdNotifier({"NOTIFY_SOCKET": str(path)})
    sent = [notifier.notify(WATCHDOG="1") for _ in range(5000)]   # nobody reads
    assert sent[0] and not sent[-1]
