"""`appliance admin set-password`: set the dashboard's password (ends every session)."""

from __future__ import annotations

import argparse
import getpass
import sys

from ..config import Settings
from ..store.db import Database
from . import passwords


def register(subparsers: argparse._SubParsersAction) -> None:
    parents = [subparsers.common] if hasattr(subparsers, "common") else []
    admin = subparsers.add_parser("admin", parents=parents, help="the owner's dashboard")
    sub = admin.add_subparsers(dest="admin_command", required=True, metavar="ACTION")
    setpw = sub.add_parser("set-password", parents=parents,
                           help="set the password of /admin (logs everyone out)")
    setpw.add_argument("--stdin", action="store_true",
                       help="read the password from the first line of standard input")
    setpw.set_defaults(handler=run_set_password)


def _ask(args: argparse.Namespace) -> str:
    if args.stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("New dashboard password: ")
    if getpass.getpass("Again: ") != first:
        raise passwords.PasswordError("the two passwords differ")
    return first


def run_set_password(args: argparse.Namespace, settings: Settings) -> int:
    try:
        stored = passwords.make_hash(_ask(args))
    except passwords.PasswordError as exc:
        print(f"appliance admin: {exc}; nothing changed", file=sys.stderr)
        return 2
    db = Database.open_sync(settings.storage.database)
    try:
        db.write_sync(lambda c: passwords.store(c, stored))
    finally:
        db.close()
    url = settings.server.public_url or f"http://{settings.server.host}:{settings.server.port}"
    print(f"Password set; every dashboard session was ended. Log in at {url}/admin/")
    return 0
