"""`appliance customers import FILE.csv`, `appliance customers export [FILE]`,
`appliance calendar url`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO

from ..config import Settings
from ..store.db import Database
from .customers import ImportReport, read_csv, upsert, write_csv


def register(subparsers: argparse._SubParsersAction) -> None:
    common = getattr(subparsers, "common", None)
    parents = [common] if common is not None else []
    customers = subparsers.add_parser("customers", parents=parents,
                                      help="import or export customers as CSV")
    sub = customers.add_subparsers(dest="customers_command", required=True, metavar="ACTION")
    imp = sub.add_parser("import", parents=parents,
                         help="add or update customers from CSV "
                              "(columns phone,name,language,gender,notes,tags)")
    imp.add_argument("file", type=Path, help="the CSV file ('-' = standard input)")
    imp.add_argument("--country-code", default="", metavar="DIGITS",
                     help="for national numbers like 050-1234567, e.g. 972")
    imp.add_argument("--strict", action="store_true",
                     help="import nothing if any row is rejected")
    imp.add_argument("--dry-run", action="store_true", help="check the file, change nothing")
    imp.set_defaults(handler=run)
    exp = sub.add_parser("export", parents=parents, help="write all customers as CSV")
    exp.add_argument("file", nargs="?", type=Path, help="output file (default: standard output)")
    exp.set_defaults(handler=run)

    calendar = subparsers.add_parser("calendar", parents=parents,
                                     help="the appointments calendar feed")
    csub = calendar.add_subparsers(dest="calendar_command", required=True, metavar="ACTION")
    url = csub.add_parser("url", parents=parents,
                          help="print the iCalendar URL to subscribe to (keep it secret)")
    url.set_defaults(handler=run_calendar)


def run(args: argparse.Namespace, settings: Settings, out: TextIO | None = None,
        err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    if args.customers_command == "import":
        return _import(args, settings, out, err)
    return _export(args, settings, out, err)


def _import(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    try:
        if str(args.file) == "-":
            report = read_csv(sys.stdin, args.country_code)
        else:
            with open(args.file, encoding="utf-8-sig", newline="") as stream:
                report = read_csv(stream, args.country_code)
    except (OSError, UnicodeDecodeError) as exc:
        print(f"customers import: cannot read {args.file}: {exc}", file=err)
        return 2
    for line in report.warnings:
        print(f"warning: {line}", file=err)
    for line in report.errors:
        print(f"rejected: {line}", file=err)
    if args.dry_run or (args.strict and report.errors):
        verdict = "nothing imported" + (" (--strict)" if report.errors and args.strict else
                                        " (--dry-run)")
        print(f"{len(report.rows)} rows valid, {len(report.errors)} rejected; {verdict}",
              file=out)
        return 1 if report.errors else 0
    db = Database.open_sync(settings.storage.database)
    try:
        db.write_sync(lambda conn: upsert(conn, report.rows, report))
    finally:
        db.close()
    print(_summary(report), file=out)
    return 1 if report.errors else 0


def _summary(report: ImportReport) -> str:
    return (f"{report.created} customers added, {report.updated} updated, "
            f"{len(report.errors)} rows rejected")


def _export(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    db = Database.open_sync(settings.storage.database)
    try:
        if args.file is None:
            count = db.read_sync(lambda conn: write_csv(conn, out))
        else:
            with open(args.file, "w", encoding="utf-8", newline="") as stream:
                count = db.read_sync(lambda conn: write_csv(conn, stream))
    finally:
        db.close()
    print(f"{count} customers exported", file=err)
    return 0


def run_calendar(args: argparse.Namespace, settings: Settings, out: TextIO | None = None) -> int:
    from .routes import FeedTokenError, feed_token_sync, feed_url

    out = out or sys.stdout
    db = Database.open_sync(settings.storage.database)
    try:
        token = feed_token_sync(db)
    except FeedTokenError as exc:
        print(f"calendar url: {exc}", file=sys.stderr)
        return 2
    finally:
        db.close()
    print(feed_url(settings.server.public_url, token), file=out)
    return 0
