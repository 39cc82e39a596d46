"""The iCalendar feed: secret token, RFC 5545 shape, no full phone numbers; and the customers
CSV commands through the real command line."""

from __future__ import annotations

import dataclasses

import io
import re
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from appliance import cli
from appliance.actions.ics import escape_text, fold
from appliance.actions.routes import add_routes, feed_token
from tests.support.actions import Harness, action_settings

TOKEN = "feed-token-0123456789abcdef"


async def client_for(h: Harness, environ: dict[str, str]) -> TestClient:
    app = web.Application()
    add_routes(app, h.settings, h.db, h.services, environ=environ)
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


def unfold(body: str) -> list[str]:
    return body.replace("\r\n ", "").split("\r\n")


async def test_the_feed_lists_booked_appointments_in_rfc5545_form(h: Harness) -> None:
    dana = await h.context("+972501234567")
    # a name stored before names were checked (conversation/names.py refuses , and " now):
    # the feed still escapes it
    await h.db.execute("UPDATE customers SET name = ? WHERE id = ?",
                       ('Dana, "the" Levi', dana.customer.id))
    dana.customer = dataclasses.replace(dana.customer, name='Dana, "the" Levi')
    await h.run(dana, "book_appointment", {"start": "2025-03-17T09:00",
                                           "note": "fridge; door seal\nand a very long note " * 3})
    eve = await h.context("+972507654321", channel="whatsapp")
    await h.run(eve, "book_appointment", {"start": "2025-03-17T10:00"})
    await h.run(eve, "cancel_appointment", {})
    client = await client_for(h, {"CALENDAR_FEED_TOKEN": TOKEN})
    try:
        response = await client.get(f"/calendar/{TOKEN}.ics")
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/calendar; charset=utf-8"
        raw = await response.read()
        body = raw.decode("utf-8")
        assert body.endswith("\r\n") and "\n" not in body.replace("\r\n", "")
        assert all(len(line.encode()) <= 75 for line in body.split("\r\n"))
        lines = unfold(body)
        assert lines[:3] == ["BEGIN:VCALENDAR", "VERSION:2.0",
                             "PRODID:-//Appliance//Receptionist Calendar 1.0//EN"]
        assert lines[-2:] == ["END:VCALENDAR", ""]
        events = body.count("BEGIN:VEVENT")
        assert events == 1 == body.count("END:VEVENT")       # the cancelled one is left out
        event = {line.split(":", 1)[0].split(";")[0]: line.split(":", 1)[1] for line in lines
                 if ":" in line}
        assert event["DTSTART"] == "20250317T070000Z" and event["DTEND"] == "20250317T073000Z"
        assert re.fullmatch(r"[0-9a-f-]{36}@appliance", event["UID"])
        assert event["DTSTAMP"] == "20250316T080000Z"
        assert event["SUMMARY"].startswith("Appointment: Dana\\, \"the\" Levi (…4567) - fridge\\;"
                                           " door seal\\nand")
        # No full phone number anywhere in the feed.
        assert "501234567" not in body and "7654321" not in body
    finally:
        await client.close()


async def test_a_wrong_token_gets_404_and_the_stored_token_is_stable(h: Harness) -> None:
    client = await client_for(h, {})
    try:
        assert (await client.get("/calendar/guess.ics")).status == 404
        assert (await client.get(f"/calendar/{TOKEN}.ics")).status == 404
        stored = await feed_token(h.db, {})
        assert len(stored) >= 32 and stored == await feed_token(h.db, {})
        assert (await client.get(f"/calendar/{stored}.ics")).status == 200
    finally:
        await client.close()
    # The environment wins over the stored token; a weak one disables the feed.
    assert await feed_token(h.db, {"CALENDAR_FEED_TOKEN": TOKEN}) == TOKEN
    weak = await client_for(h, {"CALENDAR_FEED_TOKEN": "short"})
    try:
        assert (await weak.get("/calendar/short.ics")).status == 404
    finally:
        await weak.close()


def test_text_escaping_and_folding() -> None:
    assert escape_text("a,b;c\\d\ne") == "a\\,b\\;c\\\\d\\ne"
    line = "SUMMARY:" + "שלום " * 30
    folded = fold(line)
    assert all(len(part.encode()) <= 75 for part in folded.split("\r\n"))
    assert folded.replace("\r\n ", "") == line


# -- customers CSV ---------------------------------------------------------------------------

def test_customers_import_and_export_through_the_command_line(tmp_path: Path, capsys) -> None:
    settings = action_settings(tmp_path)
    csv_file = tmp_path / "customers.csv"
    csv_file.write_text(
        "phone,name,language,gender,notes,tags,colour\n"
        "+972 50-123-4567,Dana Levi,he,f,prefers mornings,\"vip,warranty\",red\n"
        "0507654321,Eve,EN,female,,,\n"
        "12345,Nobody,en,,,,\n"
        "+972521112222,Bad Lang,hebrew,,,,\n"
        "+972521113333,=HYPERLINK(\"x\"),ru,x,,,\n"
        "whatsapp:+14155550100,Sam,en,m,,,\n", encoding="utf-8")
    code = cli.main(["--config", str(settings.path), "customers", "import", str(csv_file),
                     "--country-code", "972"])
    captured = capsys.readouterr()
    assert code == 1
    assert "3 customers added, 0 updated, 3 rows rejected" in captured.out
    rejected = [line for line in captured.err.splitlines() if line.startswith("rejected")]
    assert [line.split(":")[1].strip() for line in rejected] == ["line 4", "line 5", "line 6"]
    assert "ignoring unknown columns colour" in captured.err

    code = cli.main(["--config", str(settings.path), "customers", "export"])
    exported = capsys.readouterr().out
    assert code == 0
    rows = exported.splitlines()
    assert rows[0] == "phone,name,language,gender,notes,tags,opted_out,first_contact,last_contact"
    assert rows[1].startswith('+972501234567,Dana Levi,he,f,prefers mornings,"vip,warranty",0,')
    assert rows[2].startswith("+972507654321,Eve,en,f,,,0,")
    assert rows[3].startswith("+14155550100,Sam,en,m,,,0,")

    # Round trip: the export imports again as updates; an empty cell keeps the stored value.
    again = tmp_path / "again.csv"
    again.write_text(exported.replace("prefers mornings", ""), encoding="utf-8")
    assert cli.main(["--config", str(settings.path), "customers", "import", str(again)]) == 0
    assert "0 customers added, 3 updated, 0 rows rejected" in capsys.readouterr().out
    out_file = tmp_path / "out.csv"
    assert cli.main(["--config", str(settings.path), "customers", "export", str(out_file)]) == 0
    assert "prefers mornings" in out_file.read_text(encoding="utf-8")


def test_strict_import_changes_nothing_and_formulas_are_defused(tmp_path: Path,
                                                                capsys) -> None:
    settings = action_settings(tmp_path)
    csv_file = tmp_path / "c.csv"
    csv_file.write_text("phone,name,notes\n+972501234567,Dana,=cmd|' /C calc'!A0\n"
                        "not-a-phone,x,\n", encoding="utf-8")
    assert cli.main(["--config", str(settings.path), "customers", "import", str(csv_file),
                     "--strict"]) == 1
    assert "nothing imported (--strict)" in capsys.readouterr().out
    csv_file.write_text("phone,name,notes\n+972501234567,Dana,=cmd|' /C calc'!A0\n",
                        encoding="utf-8")
    assert cli.main(["--config", str(settings.path), "customers", "import", str(csv_file)]) == 0
    capsys.readouterr()
    cli.main(["--config", str(settings.path), "customers", "export"])
    exported = capsys.readouterr().out.splitlines()[1]
    assert exported.startswith("+972501234567,Dana,,,'=cmd|")
    # ... and reading it back restores the stored text.
    from appliance.actions.customers import read_csv

    report = read_csv(io.StringIO("phone,name,notes\n+972501234567,Dana,'=cmd\n"))
    assert report.rows[0].notes == "=cmd"
    # a formula is never a name: that row is refused
    report = read_csv(io.StringIO("phone,name\n+972501234567,=cmd|' /C calc'!A0\n"))
    assert report.rows == [] and "line 2" in report.errors[0]


def test_calendar_url_command(tmp_path: Path, capsys) -> None:
    settings = action_settings(tmp_path)
    assert cli.main(["--config", str(settings.path), "calendar", "url"]) == 0
    first = capsys.readouterr().out.strip()
    assert re.fullmatch(r"http://127\.0\.0\.1:1337/calendar/[A-Za-z0-9_-]{32}\.ics", first)
    cli.main(["--config", str(settings.path), "calendar", "url"])
    assert capsys.readouterr().out.strip() == first
