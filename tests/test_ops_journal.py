"""journald's native protocol to a real unix datagram socket: CALL_SID as a field, PRIORITY,
multi-line values, and phone numbers masked at INFO whatever the log level."""

from __future__ import annotations

import logging
import struct
from pathlib import Path

import pytest

from appliance.logs import log_context, setup_logging
from appliance.ops import journal
from tests.support.ops import listening


def decode(datagram: bytes) -> dict[str, str]:
    """The journal's side of the protocol."""
    out, i = {}, 0
    while i < len(datagram):
        nl = datagram.index(b"\n", i)
        line = datagram[i:nl]
        if b"=" in line:
            key, value = line.split(b"=", 1)
            i = nl + 1
        else:
            key = line
            (size,) = struct.unpack("<Q", datagram[nl + 1:nl + 9])
            value = datagram[nl + 9:nl + 9 + size]
            assert datagram[nl + 9 + size:nl + 10 + size] == b"\n"
            i = nl + 10 + size
        out[key.decode()] = value.decode()
    return out


@pytest.fixture
def journal_socket(tmp_path: Path):
    with listening(tmp_path / "journal.sock") as pair:
        yield pair
    logging.getLogger().handlers.clear()


def test_records_carry_call_sid_priority_and_masked_numbers(journal_socket) -> None:
    path, sock = journal_socket
    setup_logging("debug", journal=True)
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, journal.JournalHandler)
    handler.socket_path = str(path)
    log = logging.getLogger("appliance.call")
    with log_context("CA0123456789abcdef"):
        log.info("caller %s asked for a person", "+972501234567")
        log.debug("raw number %s", "+972501234567")
    log.warning("no call here\nsecond line")
    info, debug, warning = (decode(sock.recv(65536)) for _ in range(3))
    assert info["CALL_SID"] == "CA0123456789abcdef" and info["PRIORITY"] == "6"
    assert "+97250*****67" in info["MESSAGE"] and "501234567" not in info["MESSAGE"]
    assert info["SYSLOG_IDENTIFIER"] == "appliance" and info["LOGGER"] == "appliance.call"
    assert debug["PRIORITY"] == "7" and "+972501234567" in debug["MESSAGE"]  # debug: whole
    assert "CALL_SID" not in warning and warning["PRIORITY"] == "4"
    assert warning["MESSAGE"].endswith("no call here\nsecond line")


def test_exceptions_are_masked_too(journal_socket) -> None:
    path, sock = journal_socket
    setup_logging("info", journal=True)
    logging.getLogger().handlers[0].socket_path = str(path)
    try:
        raise ValueError("could not reach +15550001111")
    except ValueError:
        logging.getLogger("x").exception("failed")
    message = decode(sock.recv(65536))["MESSAGE"]
    assert "Traceback" in message and "+15550****11" in message and "0001111" not in message
    assert decode(journal.encode({"A": "x\ny"})) == {"A": "x\ny"}


def test_journal_only_when_stderr_is_the_journal(journal_socket, monkeypatch) -> None:
    path, _ = journal_socket
    assert not journal.journal_wanted({}, str(path))
    assert not journal.journal_wanted({"JOURNAL_STREAM": "1:2"}, str(path / "missing"))
    assert journal.journal_wanted({"JOURNAL_STREAM": "1:2", "APPLIANCE_FORCE_JOURNAL": "1"},
                                  str(path))


def test_message_ids_get_their_own_field() -> None:
    assert journal.id_fields("SM123") == {"MESSAGE_SID": "SM123"}
    assert journal.id_fields("-") == {}
